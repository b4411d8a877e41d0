"""How the benchmarks time a runner: medians of repeated calls, interleaved rounds, and one
worker process per thread count.

* :func:`median_ms`: the median of up to ``repeat`` calls within a time budget (one runner);
* :func:`interleaved` / :func:`interleaved_medians`: every runner once per round, so drifts of
  the machine hit all alike; medians and the spread (min–max) over the rounds;
* :func:`worker_rows`: a script's ``--worker T`` mode run once per thread count T, each in its
  own process (TVM reads ``TVM_NUM_THREADS`` once, at start-up).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass


def median_ms(fn: Callable[[], object], repeat: int, budget_s: float = 5.0,
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


@dataclass(frozen=True)
class Timing:
    """Milliseconds over the rounds of :func:`interleaved`."""

    median: float
    min: float
    max: float
    rounds: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


#: :func:`quiesce` polls the process's threads this often (s), waits at most this long (s),
#: and counts a thread as spinning when it ran this share of a poll interval.
QUIESCE_POLL_S, QUIESCE_MAX_S, SPINNING_SHARE = 0.002, 0.25, 0.5


def _thread_run_ns() -> dict[str, int] | None:
    """Nanoseconds each thread of this process (except the calling one) has run
    (``/proc/self/task/*/schedstat``), or None where the kernel does not say."""
    me = str(threading.get_native_id())
    try:
        tids = [t for t in os.listdir("/proc/self/task") if t != me]
        run = {}
        for tid in tids:
            with contextlib.suppress(OSError):
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    run[tid] = int(f.read().split()[0])
        return run
    except OSError:
        return None


def quiesce() -> float:
    """Wait until no other thread of this process is running: a runtime's workers keep
    spinning after its last call (ONNX Runtime's for about 26 ms on the Intel benchmark
    machine), and a runner timed while they hold a core waits for the scheduler's tick
    (4 ms) to get its own workers on a core. Returns the seconds waited (at most
    :data:`QUIESCE_MAX_S`; a fixed 50 ms where ``/proc`` has no ``schedstat``)."""
    start = time.perf_counter()
    before = _thread_run_ns()
    if before is None:
        time.sleep(0.05)
        return time.perf_counter() - start
    while time.perf_counter() - start < QUIESCE_MAX_S:
        t0 = time.perf_counter()
        time.sleep(QUIESCE_POLL_S)
        after = _thread_run_ns() or {}
        budget = SPINNING_SHARE * 1e9 * (time.perf_counter() - t0)
        if all(ns - before.get(tid, ns) < budget for tid, ns in after.items()):
            break
        before = after
    return time.perf_counter() - start


def _round_ms(fn: Callable[[], object], burst: int, settle: int) -> float:
    """After :func:`quiesce`, ``settle`` untimed calls, then the median ms of ``burst``
    timed ones."""
    quiesce()
    for _ in range(settle):
        fn()
    times = []
    for _ in range(burst):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def interleaved(runners: Mapping[str, Callable[[], object]], budget_s: float,
                min_rounds: int = 5, max_rounds: int = 50, burst: int = 1,
                settle: int = 0) -> dict[str, Timing]:
    """:class:`Timing` of each runner over rounds that run every runner in turn, after one
    warm-up round; as many rounds as fit in ``budget_s`` (within ``min_rounds`` and
    ``max_rounds``). In a round each runner waits until the previous runner's threads stop
    spinning (:func:`quiesce`), makes ``settle`` untimed calls (caches) and ``burst`` timed
    ones, whose median is the round's value. The order rotates from round to round, so none
    is always first."""
    keys = list(runners)
    start = time.perf_counter()
    for fn in runners.values():
        fn()
    per_round = max(time.perf_counter() - start, 1e-6) * (burst + settle)
    rounds = max(min_rounds, min(max_rounds, int(budget_s / per_round)))
    times: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(rounds):
        for key in keys[i % len(keys):] + keys[:i % len(keys)]:
            times[key].append(_round_ms(runners[key], burst, settle))
    return {k: Timing(statistics.median(v), min(v), max(v), len(v)) for k, v in times.items()}


def interleaved_medians(runners: Mapping[str, Callable[[], object]], budget_s: float,
                        max_rounds: int, settle: int = 1) -> dict[str, float]:
    """Median ms of each runner (:func:`interleaved`, at least 3 rounds, one timed call per
    turn after ``settle`` untimed ones)."""
    timings = interleaved(runners, budget_s, min_rounds=3, max_rounds=max_rounds,
                          settle=settle)
    return {k: t.median for k, t in timings.items()}


def worker_rows(script: str, threads: list[int], args: list[str]) -> list[dict]:
    """Run ``script --worker T *args`` once per thread count T, each in its own process
    (TVM reads ``TVM_NUM_THREADS`` once), and concatenate the JSON rows each prints last."""
    rows: list[dict] = []
    for count in threads:
        env = dict(os.environ, TVM_NUM_THREADS=str(count))
        cmd = [sys.executable, script, "--worker", str(count), *args]
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    return rows
