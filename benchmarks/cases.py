"""The benchmark's rows and the model and inputs of each, shared by every benchmark script.

A row is ``(model, config)``, named ``model/config`` (:func:`row_id`). :data:`ROWS` lists them
in table order; :func:`build_case` makes one row's :class:`Case`: the quantized ONNX model
(or, for ``torch_dynamic``, the Relax module ``tvm_qdq.from_torch`` imports from PyTorch's
dynamic int8 model) and its inputs. Models derived here (ORT's quantizer outputs of the
real-weight models, all-MiniLM-L6-v2's ONNX export) are cached under ``.cache/models``
(git-ignored), keyed by the float model, the quantizer config, ORT's version and the number of
calibration feeds.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from timing import median_ms

#: Every row, in table order: (model, config).
ROWS: list[tuple[str, str]] = [
    ("resnet_cnn", "u8s8_perchannel"),
    ("resnet_cnn", "u16s8"),
    ("resnet_cnn", "mixed_u8u16"),
    ("resnet_cnn", "qop_u8s8_perchannel"),
    ("efficientnet_lite0", "u8s8_perchannel"),
    ("efficientnet_lite0", "u16s8"),
    ("efficientnet_lite0", "mixed_u8u16"),
    ("efficientnet_lite0", "qop_u8s8_perchannel"),
    ("mlp", "u8s8_perchannel"),
    ("mlp", "u16s8"),
    ("mlp", "dyn_s8"),
    ("transformer_encoder", "u8s8_perchannel"),
    ("transformer_encoder", "u16s8"),
    ("transformer_encoder", "mixed_u8u16"),
    ("transformer_encoder", "qop_u8s8_perchannel"),
    ("transformer_encoder", "dyn_s8"),
    ("minilm_l6", "u8s8_perchannel"),
    ("minilm_l6", "u16s8"),
    ("minilm_l6", "mixed_u8u16"),
    ("minilm_l6", "qop_u8s8_perchannel"),
    ("minilm_l6", "dyn_s8"),
    ("minilm_l6", "torch_dynamic"),
    ("bert_tiny", "torch_dynamic"),
    ("torch_mlp", "torch_dynamic"),
]

#: Mixed u8/u16 rows: the case of :data:`tvm_qdq.testing.mixed_models.MIXED_CASES`.
MIXED = {"resnet_cnn": "resnet_region_u16", "transformer_encoder": "transformer_region_u16"}

#: Mixed u8/u16 rows of the real models: the tensors promoted to uint16 (a residual sum in
#: the middle of the network; ORT's QNN override fixer adds the conversions around it).
MIXED_REAL = {"efficientnet_lite0": ["/_blocks.6/Add_output_0"],
              "minilm_l6": ["/bert/encoder/layer.2/output/Add_output_0"]}

#: The pseudo-model of :func:`synthetic_model` whose config names a case of
#: :data:`tvm_qdq.testing.mixed_models.MIXED_CASES` directly.
MIXED_CASE_MODEL = "mixed"


def row_id(model: str, config: str) -> str:
    return f"{model}/{config}"


def select_rows(patterns: list[str] | None) -> list[tuple[str, str]]:
    """Rows whose ``model/config`` contains one of ``patterns`` (all rows when None)."""
    if not patterns:
        return list(ROWS)
    return [r for r in ROWS if any(p in row_id(*r) for p in patterns)]


@dataclass
class Case:
    """One row's model: an ONNX model (ORT rows) or a Relax module (``torch_dynamic``)."""

    model: object  # onnx.ModelProto or tvm.IRModule
    feeds: dict[str, np.ndarray]
    onnx: bool = True
    torch_fn: Callable[[], object] | None = None  # PyTorch dynamic int8 forward
    torch_out: np.ndarray | None = None
    note: str = ""


def _cached_quantization(float_model, token: object, calibration: list[dict], stem: str,
                         quantize: Callable[[str, str, object], object]):
    """``quantize(float path, output path, calibration reader)`` (which returns the quantized
    model) applied to ``float_model``, cached under ``.cache/models`` as
    ``{stem}.{key}.onnx``; the key hashes the float model, ``token``, ORT's version and the
    number of calibration feeds."""
    import onnx
    import onnxruntime

    from tvm_qdq.testing.models import _FeedsReader, default_cache_dir

    key = hashlib.sha256(float_model.SerializeToString() + repr(
        (token, onnxruntime.__version__, len(calibration))).encode()).hexdigest()
    cached = default_cache_dir() / f"{stem}.{key[:16]}.onnx"
    if cached.is_file():
        return onnx.load_model(cached)
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_FeedsReader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "float.onnx", Path(tmp) / "q.onnx"
        onnx.save_model(float_model, src)
        qmodel = quantize(str(src), str(out), Reader(calibration))
    cached.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(qmodel, cached)
    return qmodel


def _quantize_cached(float_model, config: str, calibration: list[dict], tag: str):
    """``float_model`` quantized by ORT with :data:`ALL_CONFIGS` ``[config]`` and our own
    calibration feeds, cached under ``.cache/models``; an opset ≥ 21 result gets IR version
    10 at least (what that opset requires)."""
    import onnx

    from tvm_qdq.testing.models import ALL_CONFIGS

    cfg = ALL_CONFIGS[config]

    def quantize(src: str, out: str, reader: object):
        from onnxruntime.quantization import quantize_dynamic, quantize_static

        if cfg.dynamic:
            quantize_dynamic(src, out, **cfg.quantize_dynamic_kwargs())
        else:
            quantize_static(src, out, reader, **cfg.quantize_static_kwargs())
        qmodel = onnx.load_model(out)
        opset = max((o.version for o in qmodel.opset_import if o.domain in ("", "ai.onnx")),
                    default=0)
        if opset >= 21 and qmodel.ir_version < 10:
            qmodel.ir_version = 10
        return qmodel

    return _cached_quantization(float_model, cfg.cache_token(), calibration,
                                f"{tag}.{config}", quantize)


def _mixed_cached(float_model, promote: list[str], calibration: list[dict], tag: str):
    """``float_model`` quantized to uint8 (uint8 weights) with ``promote`` overridden to
    uint16 by ORT's QNN mixed-precision flow, our calibration feeds; cached."""

    def quantize(src: str, out: str, reader: object):
        import onnx
        from onnxruntime.quantization import QuantType
        from onnxruntime.quantization import quantize as ort_quantize
        from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

        config = get_qnn_qdq_config(
            src, reader, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
            init_overrides={t: [{"quant_type": QuantType.QUInt16}] for t in promote})
        ort_quantize(src, out, config)
        return onnx.load_model(out)

    return _cached_quantization(float_model, sorted(promote), calibration,
                                f"{tag}.mixed_u8u16", quantize)


def _minilm_inputs():
    from tvm_qdq.testing import torch_models as tm

    encoder, tokenizer = tm.load_minilm()
    ids, mask = tokenizer.batch(tm.SENTENCES)
    return encoder, tokenizer, ids, mask


def _minilm_float(encoder, ids, mask):
    """all-MiniLM-L6-v2 exported to ONNX (opset 17, TorchScript exporter), cached."""
    import onnx
    import torch

    from tvm_qdq.testing.models import default_cache_dir

    cached = default_cache_dir() / f"minilm_l6.float.{ids.shape[0]}x{ids.shape[1]}.onnx"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(encoder, (ids, mask), str(cached),
                              input_names=["input_ids", "attention_mask"],
                              output_names=["embedding"], opset_version=17, dynamo=False)
    return onnx.load_model(cached)


def minilm_dynamic(config: str):
    """all-MiniLM-L6-v2 exported with symbolic ``batch`` and ``sequence`` (``dynamic_axes``)
    and quantized by ORT with ``config`` and the calibration of the static rows, cached."""
    import onnx
    import torch

    from tvm_qdq.testing.models import default_cache_dir

    encoder, tokenizer, ids, mask = _minilm_inputs()
    cached = default_cache_dir() / "minilm_l6.float.dynamic.onnx"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        axes = {0: "batch", 1: "sequence"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(encoder, (ids, mask), str(cached),
                              input_names=["input_ids", "attention_mask"],
                              output_names=["embedding"], opset_version=17, dynamo=False,
                              dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                            "embedding": {0: "batch"}})
    return _quantize_cached(onnx.load_model(cached), config,
                            _minilm_calibration(tokenizer, ids.shape[1]), "minilm_l6.dynamic")


def _minilm_calibration(tokenizer, length: int) -> list[dict[str, np.ndarray]]:
    """Four batches of the 16 sentences in different orders (same padded length)."""
    from tvm_qdq.testing import torch_models as tm

    rng = np.random.default_rng(0)
    feeds = []
    for _ in range(4):
        order = rng.permutation(len(tm.SENTENCES))
        ids, mask = tokenizer.batch([tm.SENTENCES[i] for i in order], seq_len=length)
        feeds.append({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    return feeds


def synthetic_model(model: str, config: str):
    """The ONNX model of a random-weight model (:mod:`tvm_qdq.testing.models`) in ``config``:
    ORT's quantizer output, or for ``mixed_u8u16`` the mixed case of :data:`MIXED`; model
    :data:`MIXED_CASE_MODEL` takes the name of a mixed case as its config."""
    if model == MIXED_CASE_MODEL or config == "mixed_u8u16":
        from tvm_qdq.testing.mixed_models import mixed_case

        return mixed_case(config if model == MIXED_CASE_MODEL else MIXED[model])
    from tvm_qdq.testing.models import quantized_model

    return quantized_model(model, config)


def build_case(model: str, config: str) -> Case:
    """The model and inputs of one row (ImportError: an optional package is missing)."""
    from tvm_qdq.testing.models import random_feeds

    if model == "efficientnet_lite0":
        from tvm_qdq.testing.real_models import (
            efficientnet_lite0_float,
            efficientnet_lite0_qdq,
            image_feeds,
        )

        if config == "u8s8_perchannel":
            proto = efficientnet_lite0_qdq()
        elif config == "mixed_u8u16":
            proto = _mixed_cached(efficientnet_lite0_float(), MIXED_REAL[model],
                                  image_feeds(8), model)
        else:
            proto = _quantize_cached(efficientnet_lite0_float(), config, image_feeds(8),
                                     "efficientnet_lite0")
        return Case(proto, image_feeds(1, seed=5)[0])
    if model == "minilm_l6":
        encoder, tokenizer, ids, mask = _minilm_inputs()
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        if config == "torch_dynamic":
            return _torch_case(encoder, (ids, mask), ["input_ids", "attention_mask"])
        float_model = _minilm_float(encoder, ids, mask)
        calibration = _minilm_calibration(tokenizer, ids.shape[1])
        if config == "mixed_u8u16":
            proto = _mixed_cached(float_model, MIXED_REAL[model], calibration, model)
        else:
            proto = _quantize_cached(float_model, config, calibration, model)
        return Case(proto, feeds)
    if model == "bert_tiny":  # PyTorch only: random BERT, hidden 64, 2 layers, pooled
        from tvm_qdq.testing import torch_models as tm

        ids, mask = tm.token_batch(4, 32, tm.BertConfig().vocab_size, seed=3)
        encoder = tm.SentenceEncoder(tm.random_bert(tm.BertConfig(), seed=0)).eval()
        return _torch_case(encoder, (ids, mask), ["input_ids", "attention_mask"])
    if model == "torch_mlp":  # PyTorch only: Linear+ReLU ×2, Linear; 64 rows of 32
        import torch

        from tvm_qdq.testing import torch_models as tm

        torch.manual_seed(0)
        x = torch.randn(64, 32)
        return _torch_case(tm.MLP().eval().fused(), (x,), ["x"])
    proto = synthetic_model(model, config)
    return Case(proto, random_feeds(proto))


def _torch_case(float_model, inputs: tuple, names: list[str]) -> Case:
    """PyTorch's dynamic int8 version of ``float_model`` (every ``nn.Linear``), traced and
    imported with ``tvm_qdq.from_torch``; its output is the reference."""
    import torch

    import tvm_qdq
    from tvm_qdq.testing import torch_models as tm

    qmodel = tm.quantize_dynamic(float_model)
    with torch.no_grad():
        traced = torch.jit.trace(qmodel, inputs)
        reference = qmodel(*inputs).numpy()
        fp32_ms = median_ms(lambda: float_model(*inputs), 10, budget_s=3.0)
    mod = tvm_qdq.from_torch(traced, inputs, input_names=names)

    def forward():
        with torch.no_grad():
            return qmodel(*inputs)

    feeds = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
    return Case(mod, feeds, onnx=False, torch_fn=forward, torch_out=reference,
                note=f"PyTorch fp32 {fp32_ms:.3g} ms")
