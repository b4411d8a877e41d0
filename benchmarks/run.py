"""Side-by-side latency: ONNX Runtime vs tvm-qdq vs stock TVM Relax, same inputs, one run.

    .venv/bin/python benchmarks/run.py            # all rows, 1 and 2 threads
    .venv/bin/python benchmarks/run.py --quick    # fewer repetitions

Each thread count runs in its own subprocess (TVM's thread pool reads TVM_NUM_THREADS at
start-up). Writes ``benchmarks/results/latest.{md,csv,json}`` and replaces the table in
README.md between the ``bench:start`` / ``bench:end`` markers. Latencies are medians.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ROWS = [
    ("efficientnet_lite0", "u8s8_perchannel"),
    ("resnet_cnn", "u8s8_perchannel"),
    ("resnet_cnn", "u16s8"),
    ("mlp", "u8s8_perchannel"),
    ("mlp", "u16s8"),
    ("transformer_encoder", "u8s8_perchannel"),
    ("transformer_encoder", "u16s8"),
]


def measure(threads: int, repeat: int) -> list[dict]:
    """Run every row at ``threads`` threads in this process; return one dict per row."""
    import onnxruntime as ort
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx as stock_from_onnx

    import tvm_qdq
    from tvm_qdq.target import resolve_target
    from tvm_qdq.testing.models import quantized_model, random_feeds
    from tvm_qdq.testing.oracle import agreement, output_qparams, run_ort
    from tvm_qdq.testing.timing import median_ms

    rows = []
    for name, config in ROWS:
        if name == "efficientnet_lite0":
            try:
                from tvm_qdq.testing.real_models import efficientnet_lite0_qdq, image_feeds
            except ImportError:
                continue
            try:
                model, feeds = efficientnet_lite0_qdq(), image_feeds(1, seed=5)[0]
            except ImportError as err:  # the bench extra is not installed
                print(f"skipping {name}: {err}", file=sys.stderr)
                continue
        else:
            model = quantized_model(name, config)
            feeds = random_feeds(model)
        scale, zero_point = output_qparams(model)[model.graph.output[0].name]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), opts,
                                       providers=["CPUExecutionProvider"])
        expected = session.run(None, feeds)[0]
        ort_ms = median_ms(lambda s=session, f=feeds: s.run(None, f), repeat)

        start = time.perf_counter()
        compiled = tvm_qdq.compile(model, target="x86")
        build_s = time.perf_counter() - start
        actual = compiled.run(feeds)[0]
        ag = agreement(actual, expected, scale, zero_point)
        reference = run_ort(model, feeds,
                            optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)[0]
        ag_ref = agreement(actual, reference, scale, zero_point)
        ours_ms = median_ms(lambda c=compiled, f=feeds: c.run(f), repeat)

        stock = stock_from_onnx(model)
        vm = relax.VirtualMachine(tvm.compile(stock, target=resolve_target("x86")), tvm.cpu())
        args = [tvm.runtime.tensor(feeds[i.name]) for i in model.graph.input]
        stock_ms = median_ms(lambda v=vm, a=args: v["main"](*a), max(3, repeat // 4), 1)
        rows.append({
            "model": name, "config": config, "threads": threads,
            "ort_ms": ort_ms, "tvm_qdq_ms": ours_ms, "stock_tvm_ms": stock_ms,
            "ort_over_tvm_qdq": ort_ms / ours_ms, "stock_over_tvm_qdq": stock_ms / ours_ms,
            "max_lsb_vs_ort": ag.max_lsb, "within_1_lsb": ag.frac_within_1,
            "max_lsb_vs_ort_ref": ag_ref.max_lsb, "within_1_lsb_ref": ag_ref.frac_within_1,
            "compile_s": build_s,
        })
        print(f"[{threads}t] {name}/{config}: ORT {ort_ms:.3f} ms, tvm-qdq {ours_ms:.3f} ms, "
              f"stock TVM {stock_ms:.3f} ms, max {ag.max_lsb:.2f} LSB", file=sys.stderr)
    return rows


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def render(rows: list[dict], machine: str, date: str) -> str:
    lines = [
        f"Measured {date} on {machine} by `benchmarks/run.py` (medians; ratio > 1 means "
        "tvm-qdq is faster). Agreement in LSB of the output scale with ORT's reference path "
        "(optimizations off: every node as written) and with ORT's default optimized session, "
        "which departs from its own reference on 16-bit and transformer models "
        "(docs/ARCHITECTURE.md).",
        "",
        "| model | config | threads | ORT ms | tvm-qdq ms | stock TVM ms | ORT / tvm-qdq | "
        "stock / tvm-qdq | max LSB vs ORT ref | ≤1 LSB ref | max LSB vs ORT opt | "
        "≤1 LSB opt | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['config']} | {r['threads']} | {r['ort_ms']:.3f} | "
            f"{r['tvm_qdq_ms']:.3f} | {r['stock_tvm_ms']:.2f} | {r['ort_over_tvm_qdq']:.2f} | "
            f"{r['stock_over_tvm_qdq']:.1f} | {r['max_lsb_vs_ort_ref']:.0f} | "
            f"{100 * r['within_1_lsb_ref']:.1f}% | {r['max_lsb_vs_ort']:.0f} | "
            f"{100 * r['within_1_lsb']:.1f}% | {r['compile_s']:.1f} |"
        )
    for threads in sorted({r["threads"] for r in rows}):
        sub = [r for r in rows if r["threads"] == threads]
        lines.append(
            f"| **geomean** | | {threads} | | | | "
            f"{_geomean([r['ort_over_tvm_qdq'] for r in sub]):.2f} | "
            f"{_geomean([r['stock_over_tvm_qdq'] for r in sub]):.1f} | | | | | |"
        )
    return "\n".join(lines)


def _plot(rows: list[dict], path: Path) -> None:
    """Bar chart of the medians (log scale), one group per model row and thread count."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e .[bench]): no plot", file=sys.stderr)
        return
    labels = [f"{r['model']}\n{r['config']} {r['threads']}t" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.9), 4.5))
    for i, (key, name) in enumerate((("ort_ms", "ONNX Runtime"), ("tvm_qdq_ms", "tvm-qdq"),
                                     ("stock_tvm_ms", "stock TVM Relax"))):
        ax.bar(x + (i - 1) * 0.27, [r[key] for r in rows], 0.27, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("median latency (ms, log)")
    ax.set_xticks(x, labels, fontsize=7, rotation=45, ha="right")
    ax.legend()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeat = 10 if args.quick else 50
    if args.worker is not None:
        print(json.dumps(measure(args.worker, repeat)))
        return 0
    rows: list[dict] = []
    for threads in args.threads:
        env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        cmd = [sys.executable, __file__, "--worker", str(threads)] + (["--quick"] if
                                                                     args.quick else [])
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        sys.stderr.write(out.stderr[-4000:])
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = render(rows, _machine(), date)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(table + "\n")
    (RESULTS / "latest.json").write_text(json.dumps({"date": date, "machine": _machine(),
                                                     "rows": rows}, indent=1))
    with open(RESULTS / "latest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, RESULTS / "latest.png")
    _update_readme(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
