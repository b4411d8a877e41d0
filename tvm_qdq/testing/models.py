"""Deterministic small float ONNX models and QDQ-quantized versions of them.

The float models are written with :mod:`onnx.helper` only (no torch), so building them takes
milliseconds.  They are quantized with ONNX Runtime's static quantizer
(:func:`onnxruntime.quantization.quantize_static`) in QDQ format, using one of the named
configurations in :data:`QDQ_CONFIGS`.  Quantized models are cached on disk (see
:func:`quantize_qdq`), so repeated calls are cheap.

Typical use::

    from tvm_qdq.testing import models

    qmodel = models.quantized_model("resnet_cnn", "u8s8_perchannel")
    feeds = models.random_feeds(qmodel)
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "MODEL_BUILDERS",
    "OPSET",
    "IR_VERSION",
    "QDQ_CONFIGS",
    "QdqConfig",
    "calibration_feeds",
    "default_cache_dir",
    "default_model",
    "float_model",
    "mlp",
    "quantize_qdq",
    "quantized_model",
    "random_feeds",
    "resnet_cnn",
    "transformer_encoder",
]

#: ONNX opset of the float models.
OPSET = 17
#: IR version of the float models (9 is understood by every supported ONNX Runtime).
IR_VERSION = 9

#: Bump when the float builders, the calibration data or the quantization procedure change in a
#: way that makes previously cached quantized models stale.
_CACHE_FORMAT = "1"


# --------------------------------------------------------------------------------------------
# Float model builders
# --------------------------------------------------------------------------------------------


class _GraphBuilder:
    """Small helper that accumulates nodes and initializers with unique names."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {}

    def _unique(self, prefix: str) -> str:
        n = self._counts.get(prefix, 0)
        self._counts[prefix] = n + 1
        return f"{prefix}_{n}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        """Add an initializer and return its name."""
        name = self._unique(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, prefix: str, shape: tuple[int, ...], std: float) -> str:
        """Add a float32 normal(0, std) initializer."""
        return self.const(prefix, (self.rng.standard_normal(shape) * std).astype(np.float32))

    def bias(self, prefix: str, n: int, std: float = 0.05) -> str:
        """Add a small float32 bias vector."""
        return self.weight(prefix, (n,), std)

    def op(self, op_type: str, inputs: list[str], n_outputs: int = 1, **attrs: Any) -> str:
        """Add a node; return the name of its first output."""
        name = self._unique(op_type.lower())
        outputs = [f"{name}_out{i}" if n_outputs > 1 else f"{name}_out" for i in range(n_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))
        return outputs[0]

    def rename_output(self, tensor: str, new_name: str) -> str:
        """Rename the output ``tensor`` of the most recent node producing it to ``new_name``."""
        for node in reversed(self.nodes):
            for i, out in enumerate(node.output):
                if out == tensor:
                    node.output[i] = new_name
                    return new_name
        raise KeyError(tensor)

    def model(
        self,
        graph_name: str,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
    ) -> onnx.ModelProto:
        """Assemble, shape-infer and check the model."""
        graph = helper.make_graph(
            self.nodes, graph_name, inputs, outputs, initializer=self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="tvm_qdq.testing.models",
        )
        model.ir_version = IR_VERSION
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
        return model


def _he_std(fan_in: int) -> float:
    return math.sqrt(2.0 / fan_in)


def _conv(
    g: _GraphBuilder,
    x: str,
    c_in: int,
    c_out: int,
    k: int,
    *,
    stride: int = 1,
    group: int = 1,
    relu: bool = True,
) -> str:
    """Conv (with bias, 'same'-style padding) optionally followed by Relu."""
    fan_in = (c_in // group) * k * k
    w = g.weight("conv_w", (c_out, c_in // group, k, k), _he_std(fan_in))
    b = g.bias("conv_b", c_out)
    pad = k // 2
    y = g.op(
        "Conv",
        [x, w, b],
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad, pad, pad, pad],
        group=group,
    )
    return g.op("Relu", [y]) if relu else y


def _basic_block(g: _GraphBuilder, x: str, c_in: int, c_out: int, stride: int) -> str:
    """ResNet basic block: Conv-Relu-Conv + skip, Add, Relu (1x1 projection when needed)."""
    y = _conv(g, x, c_in, c_out, 3, stride=stride)
    y = _conv(g, y, c_out, c_out, 3, relu=False)
    skip = x
    if stride != 1 or c_in != c_out:
        skip = _conv(g, x, c_in, c_out, 1, stride=stride, relu=False)
    return g.op("Relu", [g.op("Add", [y, skip])])


def resnet_cnn(seed: int = 0) -> onnx.ModelProto:
    """Small ResNet-style CNN.

    ``input`` float32[1,3,32,32] -> Conv3x3(16)+Relu -> basic block (16, stride 1) ->
    depthwise Conv3x3 (group=16)+Relu -> MaxPool 2x2 -> basic block (32, stride 2, 1x1 projection
    skip) -> GlobalAveragePool -> Flatten -> Gemm(transB=1) -> ``logits`` float32[1,10].
    """
    g = _GraphBuilder(seed)
    x = _conv(g, "input", 3, 16, 3)  # stem, 32x32
    x = _basic_block(g, x, 16, 16, stride=1)  # 32x32
    x = _conv(g, x, 16, 16, 3, group=16)  # depthwise, 32x32
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 16x16
    x = _basic_block(g, x, 16, 32, stride=2)  # 8x8
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x], axis=1)
    w = g.weight("fc_w", (10, 32), math.sqrt(1.0 / 32))
    b = g.bias("fc_b", 10)
    y = g.op("Gemm", [x, w, b], transB=1)
    g.rename_output(y, "logits")
    return g.model(
        "resnet_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
    )


def mlp(seed: int = 0) -> onnx.ModelProto:
    """Three-layer MLP.

    ``input`` float32[1,64] -> MatMul(64x128)+Add -> Relu -> Gemm(128->64, transB=1) -> Relu ->
    MatMul(64x10)+Add -> ``logits`` float32[1,10].
    """
    g = _GraphBuilder(seed)
    x = g.op("MatMul", ["input", g.weight("fc1_w", (64, 128), _he_std(64))])
    x = g.op("Relu", [g.op("Add", [x, g.bias("fc1_b", 128)])])
    x = g.op("Gemm", [x, g.weight("fc2_w", (64, 128), _he_std(128)), g.bias("fc2_b", 64)], transB=1)
    x = g.op("Relu", [x])
    x = g.op("MatMul", [x, g.weight("fc3_w", (64, 10), math.sqrt(1.0 / 64))])
    y = g.op("Add", [x, g.bias("fc3_b", 10)])
    g.rename_output(y, "logits")
    return g.model(
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
    )


def _linear(g: _GraphBuilder, x: str, d_in: int, d_out: int, std: float | None = None) -> str:
    """MatMul with a [d_in, d_out] weight followed by Add bias."""
    w = g.weight("lin_w", (d_in, d_out), std if std is not None else math.sqrt(1.0 / d_in))
    return g.op("Add", [g.op("MatMul", [x, w]), g.bias("lin_b", d_out)])


def _layer_norm(g: _GraphBuilder, x: str, d: int) -> str:
    gamma = g.const("ln_gamma", (1.0 + 0.1 * g.rng.standard_normal(d)).astype(np.float32))
    beta = g.const("ln_beta", (0.05 * g.rng.standard_normal(d)).astype(np.float32))
    return g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)


def _encoder_layer(g: _GraphBuilder, x: str, seq: int, hidden: int, heads: int, ffn: int) -> str:
    """Post-LN transformer encoder layer (self-attention + Erf-GELU FFN)."""
    head_dim = hidden // heads
    split_shape = g.const("shape_split", np.array([1, seq, heads, head_dim], dtype=np.int64))
    merge_shape = g.const("shape_merge", np.array([1, seq, hidden], dtype=np.int64))

    def to_heads(t: str, perm: list[int]) -> str:
        return g.op("Transpose", [g.op("Reshape", [t, split_shape])], perm=perm)

    q = to_heads(_linear(g, x, hidden, hidden), [0, 2, 1, 3])  # [1,H,S,D]
    k = to_heads(_linear(g, x, hidden, hidden), [0, 2, 3, 1])  # [1,H,D,S] (= K^T)
    v = to_heads(_linear(g, x, hidden, hidden), [0, 2, 1, 3])  # [1,H,S,D]
    scores = g.op("MatMul", [q, k])  # [1,H,S,S]
    scale = g.const("attn_scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    probs = g.op("Softmax", [g.op("Mul", [scores, scale])], axis=-1)
    ctx = g.op("MatMul", [probs, v])  # [1,H,S,D]
    ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
    attn = _linear(g, ctx, hidden, hidden)
    x = _layer_norm(g, g.op("Add", [x, attn]), hidden)

    h = _linear(g, x, hidden, ffn)
    inv_sqrt2 = g.const("gelu_inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))
    one = g.const("gelu_one", np.array(1.0, dtype=np.float32))
    half = g.const("gelu_half", np.array(0.5, dtype=np.float32))
    erf = g.op("Erf", [g.op("Mul", [h, inv_sqrt2])])
    h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [erf, one])])
    h = _linear(g, h, ffn, hidden)
    return _layer_norm(g, g.op("Add", [x, h]), hidden)


def transformer_encoder(
    seed: int = 0,
    *,
    num_layers: int = 2,
    seq: int = 16,
    hidden: int = 64,
    heads: int = 4,
    ffn: int = 128,
) -> onnx.ModelProto:
    """Transformer encoder (``num_layers`` post-LN layers), written with plain ONNX ops.

    ``x`` float32[1,seq,hidden] -> per layer: Q/K/V MatMul+Add, Reshape/Transpose to heads,
    MatMul QK^T, Mul 1/sqrt(d), Softmax, MatMul V, Transpose/Reshape back, MatMul+Add, residual
    Add, LayerNormalization, FFN MatMul+Add, GELU as x*0.5*(1+Erf(x/sqrt2)), MatMul+Add, residual
    Add, LayerNormalization -> ``y`` float32[1,seq,hidden].
    """
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
    g = _GraphBuilder(seed)
    x = "x"
    for _ in range(num_layers):
        x = _encoder_layer(g, x, seq, hidden, heads, ffn)
    g.rename_output(x, "y")
    return g.model(
        "transformer_encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, hidden])],
    )


#: Float model builders by name.
MODEL_BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "resnet_cnn": resnet_cnn,
    "mlp": mlp,
    "transformer_encoder": transformer_encoder,
}


def float_model(name: str) -> onnx.ModelProto:
    """Build the float model registered as ``name`` in :data:`MODEL_BUILDERS`."""
    try:
        builder = MODEL_BUILDERS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose from {sorted(MODEL_BUILDERS)}") from None
    return builder()


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers."""
    init_names = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init_names]


def _random_input(vi: onnx.ValueInfoProto, rng: np.random.Generator) -> np.ndarray:
    tt = vi.type.tensor_type
    # Unknown / symbolic dims become 1 (the models here are static, batch 1).
    shape = tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim
    )
    dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 10, size=shape).astype(dtype)
    raise TypeError(f"input {vi.name!r}: unsupported element type {dtype}")


def calibration_feeds(
    model: onnx.ModelProto, n: int = 16, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """``n`` deterministic random feeds for ``model`` (standard normal for float inputs)."""
    rng = np.random.default_rng(seed)
    inputs = _graph_inputs(model)
    return [{vi.name: _random_input(vi, rng) for vi in inputs} for _ in range(n)]


def random_feeds(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    """One deterministic random feed for ``model`` (distinct from the calibration data)."""
    return calibration_feeds(model, n=1, seed=seed)[0]


# --------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QdqConfig:
    """Arguments for :func:`onnxruntime.quantization.quantize_static` (QDQ format, MinMax).

    Quant types are given by their ``QuantType`` member name (e.g. ``"QUInt8"``) so this module
    can be imported without importing :mod:`onnxruntime.quantization`.
    """

    activation_type: str
    weight_type: str
    per_channel: bool = False
    extra_options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    quant_format: str = "QDQ"  # "QDQ" or "QOperator" (quantize_static)
    reduce_range: bool = False
    dynamic: bool = False  # quantize_dynamic instead of quantize_static

    def quantize_static_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``quantize_static`` (everything but paths and the data reader)."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

        return {
            "quant_format": QuantFormat[self.quant_format],
            "activation_type": QuantType[self.activation_type],
            "weight_type": QuantType[self.weight_type],
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "calibrate_method": CalibrationMethod.MinMax,
            "extra_options": dict(self.extra_options),
        }

    def quantize_dynamic_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``quantize_dynamic`` (everything but paths)."""
        from onnxruntime.quantization import QuantType

        return {
            "weight_type": QuantType[self.weight_type],
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "extra_options": dict(self.extra_options),
        }

    def cache_token(self) -> str:
        """Stable textual form used in the cache key."""
        extra = ",".join(f"{k}={self.extra_options[k]!r}" for k in sorted(self.extra_options))
        return (f"{self.activation_type}|{self.weight_type}|{self.per_channel}|{extra}|"
                f"{self.quant_format}|{self.reduce_range}|{self.dynamic}")


#: Named QDQ quantization configurations.
QDQ_CONFIGS: dict[str, QdqConfig] = {
    "u8s8_perchannel": QdqConfig(
        "QUInt8",
        "QInt8",
        per_channel=True,
        description="uint8 asymmetric activations, int8 per-channel weights",
    ),
    "s8s8_symmetric": QdqConfig(
        "QInt8",
        "QInt8",
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        description="int8 symmetric activations and weights (per-tensor)",
    ),
    "u16u8": QdqConfig(
        "QUInt16",
        "QUInt8",
        description="uint16 activations, uint8 weights (per-tensor)",
    ),
    "u16s8": QdqConfig(
        "QUInt16",
        "QInt8",
        description="uint16 activations, int8 weights (per-tensor)",
    ),
}


#: quantize_static in QOperator format (QLinearConv, QLinearMatMul, com.microsoft QLinear*).
QOPERATOR_CONFIGS: dict[str, QdqConfig] = {
    "qop_u8s8": QdqConfig("QUInt8", "QInt8", quant_format="QOperator",
                          description="QOperator, uint8 activations, int8 per-tensor weights"),
    "qop_u8s8_perchannel": QdqConfig("QUInt8", "QInt8", per_channel=True,
                                     quant_format="QOperator",
                                     description="QOperator, int8 per-channel weights"),
    "qop_u8u8_reduce_range": QdqConfig("QUInt8", "QUInt8", reduce_range=True,
                                       quant_format="QOperator",
                                       description="QOperator, uint8 weights, reduce_range"),
}

#: quantize_dynamic (DynamicQuantizeLinear + MatMulInteger/ConvInteger).
DYNAMIC_CONFIGS: dict[str, QdqConfig] = {
    "dyn_s8": QdqConfig("QUInt8", "QInt8", dynamic=True,
                        description="dynamic, int8 per-tensor weights"),
    "dyn_s8_perchannel": QdqConfig("QUInt8", "QInt8", per_channel=True, dynamic=True,
                                   description="dynamic, int8 per-channel weights"),
    "dyn_u8": QdqConfig("QUInt8", "QUInt8", dynamic=True,
                        description="dynamic, uint8 per-tensor weights"),
}

ALL_CONFIGS: dict[str, QdqConfig] = {**QDQ_CONFIGS, **QOPERATOR_CONFIGS, **DYNAMIC_CONFIGS}


def default_cache_dir() -> Path:
    """``$TVM_QDQ_CACHE`` if set, else ``<repo>/.cache/models`` (git-ignored)."""
    env = os.environ.get("TVM_QDQ_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / ".cache" / "models"


def _cache_key(model_bytes: bytes, name: str, config: str, cfg: QdqConfig) -> str:
    import onnxruntime

    h = hashlib.sha256()
    for part in (_CACHE_FORMAT, onnxruntime.__version__, onnx.__version__, cfg.cache_token()):
        h.update(part.encode())
        h.update(b"\0")
    h.update(model_bytes)
    safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "model"
    return f"{safe_name}.{config}.{h.hexdigest()[:16]}.onnx"


class _FeedsReader:
    """Minimal ``CalibrationDataReader`` over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def _run_quantize_static(model: onnx.ModelProto, cfg: QdqConfig, workdir: Path) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(_FeedsReader, CalibrationDataReader):
        pass

    float_path = workdir / "float.onnx"
    out_path = workdir / "qdq.onnx"
    onnx.save_model(model, float_path)
    if cfg.dynamic:
        from onnxruntime.quantization import quantize_dynamic

        quantize_dynamic(float_path, out_path, **cfg.quantize_dynamic_kwargs())
    else:
        quantize_static(
            float_path,
            out_path,
            Reader(calibration_feeds(model)),
            **cfg.quantize_static_kwargs(),
        )
    qmodel = onnx.load_model(out_path)
    # For 16-bit types ORT bumps the default-domain opset to 21 (native uint16 Q/DQ) but keeps the
    # input's IR version; opset 21 belongs to IR version 10, so make the model self-consistent.
    default_opset = max(
        (o.version for o in qmodel.opset_import if o.domain in ("", "ai.onnx")), default=0
    )
    if default_opset >= 21 and qmodel.ir_version < 10:
        qmodel.ir_version = 10
    return qmodel


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and one rename, so that a
    concurrent reader (another test worker) sees no file or the whole file (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def quantize_qdq(
    model: onnx.ModelProto,
    config: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> onnx.ModelProto:
    """Quantize a float model with ONNX Runtime's ``quantize_static`` in QDQ format.

    Calibration uses :func:`calibration_feeds` (16 standard-normal samples, seed 0) and MinMax.
    ``quant_pre_process`` is deliberately *not* run: the builders already produce fully
    shape-inferred models, and its ORT graph optimizations would rewrite the patterns the models
    are meant to exercise (e.g. MatMul+Add is fused into Gemm).  With 16-bit activation or weight
    types ORT 1.32 converts the model to opset 21 and emits standard-domain uint16/int16
    QuantizeLinear/DequantizeLinear; the IR version is then raised to 10 to match opset 21.
    The result is cached in ``cache_dir`` (default :func:`default_cache_dir`) under a key made
    of the graph name, the config name and a hash of the float model bytes, the config and the
    onnx/onnxruntime versions.

    Args:
        model: float model (e.g. from :func:`resnet_cnn`).
        config: key of :data:`QDQ_CONFIGS`.
        cache_dir: where quantized models are cached.

    Returns:
        The quantized model.
    """
    try:
        cfg = ALL_CONFIGS[config]
    except KeyError:
        raise KeyError(
            f"unknown quantization config {config!r}; choose from {sorted(ALL_CONFIGS)}"
        ) from None

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / _cache_key(model.SerializeToString(), model.graph.name, config, cfg)
    if cached.is_file():
        try:
            return onnx.load_model(cached)
        except Exception:  # corrupt / truncated cache entry: rebuild it
            cached.unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="tvm_qdq_quant.") as tmp:
        qmodel = _run_quantize_static(model, cfg, Path(tmp))

    write_atomic(cached, qmodel.SerializeToString())
    return qmodel


def quantized_model(
    name: str, config: str, *, cache_dir: str | os.PathLike[str] | None = None
) -> onnx.ModelProto:
    """Build float model ``name`` (see :data:`MODEL_BUILDERS`) and quantize it with ``config``."""
    return quantize_qdq(float_model(name), config, cache_dir=cache_dir)


def default_model() -> onnx.ModelProto:
    """``resnet_cnn`` quantized with ``u8s8_perchannel`` (the model the demo command runs)."""
    return quantized_model("resnet_cnn", "u8s8_perchannel")
