"""Real models made by others: import, integer share, agreement and speed beside ORT/OpenVINO.

``python benchmarks/real_models.py`` measures every model of the real-model corpus
(``tvm_qdq/testing/real_corpus.py``) as its authors shipped it, at 1 thread by default, and
writes ``benchmarks/results/real_models.{md,json}`` and the README table between the
``real:start`` / ``real:end`` markers. ``benchmarks/run.py`` calls it after its own table.

Per model: whether it imports (else the error's class), how many of its quantized
conv/matmul nodes became integer, agreement with ORT's reference path under the float-output
yardstick (``tvm_qdq/testing/yardstick.py``), and median latency of ONNX Runtime (default
session options: its own thread spinning), OpenVINO (``PERFORMANCE_HINT=LATENCY``) and
tvm-qdq with the stored tuning and untuned (``tuning_db=False``), measured interleaved in
one process: each round runs every peer once, so drifts of the machine hit all alike.
Each thread count runs in its own process (TVM reads ``TVM_NUM_THREADS`` once).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from peers import openvino_model, ort_session
from report import describe_machine, render_real_models, update_readme_section
from timing import interleaved_medians, worker_rows

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKERS = ("<!-- real:start -->", "<!-- real:end -->")


def measure_model(name: str, threads: int, budget_s: float, max_rounds: int) -> dict:
    """One corpus model: import status, integer ops, agreement, peers' and our latency."""
    import numpy as np
    import onnx

    import tvm_qdq
    from tvm_qdq.testing import real_corpus, yardstick

    entry = real_corpus.BY_NAME[name]
    path = real_corpus.model_path(name)
    proto = onnx.load_model(path)
    row: dict = {"model": name, "source": entry.source, "format": entry.description,
                 "threads": threads}
    feeds = entry.feeds(0)
    try:
        t0 = time.perf_counter()
        tuned = tvm_qdq.compile(str(path), "x86", shapes=entry.shapes)
        row["compile_s"] = time.perf_counter() - t0
        untuned = tvm_qdq.compile(str(path), "x86", shapes=entry.shapes, tuning_db=False)
    except Exception as err:  # noqa: BLE001 - a failure is a table entry
        row["import"] = type(err).__name__
        return row
    row["import"] = "ok"
    compute_float = sum(1 for f in tuned.report.float_ops if f["compute"])
    row["quantized_nodes"] = real_corpus.quantized_compute_nodes(proto)
    row["float_compute"] = compute_float
    expected = yardstick.reference(proto, feeds)
    actual = tuned.run(feeds)
    movement = yardstick.input_sensitivity(proto, feeds, expected)
    verdict = yardstick.judge(actual[0], expected[0], None if movement is None else movement[0])
    row["agreement"] = {"max_abs": verdict.max_abs, "movement": verdict.movement,
                        "cosine": verdict.cosine, "ok": verdict.ok}
    if entry.kind == "classifier":
        row["agreement"]["top1"] = bool(np.array_equal(np.argmax(actual[0], -1),
                                                       np.argmax(expected[0], -1)))
    session = ort_session(path, threads)
    runners: dict[str, Callable[[], object]] = {
        "ort": lambda: session.run(None, feeds),
        "tvm_qdq": lambda: tuned.run(feeds),
        "tvm_qdq_untuned": lambda: untuned.run(feeds),
    }
    ov_model, ov_error = openvino_model(path, threads, entry.shapes)
    if ov_model is not None:
        request = ov_model.create_infer_request()
        runners["openvino"] = lambda: request.infer(feeds)
    else:
        row["openvino_error"] = ov_error
    row["ms"] = interleaved_medians(runners, budget_s, max_rounds)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--models", nargs="+", metavar="NAME", help="a subset of the corpus")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per model")
    parser.add_argument("--max-rounds", type=int, default=30)
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from tvm_qdq.testing.real_corpus import CORPUS

    names = args.models or [m.name for m in CORPUS]
    if args.worker is not None:
        rows = [measure_model(n, args.worker, args.budget, args.max_rounds) for n in names]
        print(json.dumps(rows))
        return 0
    rows = worker_rows(__file__, args.threads, ["--budget", str(args.budget), "--max-rounds",
                                                str(args.max_rounds), "--models", *names])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = render_real_models(rows, describe_machine(os_name=False), date)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real_models.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "real_models.md").write_text(table + "\n")
    print(table)
    if not args.no_readme and args.models is None:
        update_readme_section(ROOT / "README.md", MARKERS, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
