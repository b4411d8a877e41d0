"""How the benchmarks time a runner: medians of repeated calls, interleaved rounds, and one
worker process per thread count.

* :func:`median_ms`: the median of up to ``repeat`` calls within a time budget (one runner);
* :func:`interleaved` / :func:`interleaved_medians`: every runner once per round, so drifts of
  the machine hit all alike; medians and the spread (min–max) over the rounds;
* :func:`worker_rows`: a script's ``--worker T`` mode run once per thread count T, each in its
  own process (TVM reads ``TVM_NUM_THREADS`` once, at start-up).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
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


def _round_ms(fn: Callable[[], object], burst: int, settle: int) -> float:
    """``settle`` untimed calls, then the median ms of ``burst`` timed ones."""
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
    ``max_rounds``). In a round each runner makes ``settle`` untimed calls (the previous
    runner's spinning threads, caches) and ``burst`` timed ones, whose median is the round's
    value. The order rotates from round to round, so none is always first."""
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
