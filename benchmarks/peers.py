"""The peers of the benchmarks at their own defaults, interleaved timing, and who counts as a peer.

Shared by ``benchmarks/run.py`` and ``benchmarks/real_models.py``:

* :func:`ort_session`: ONNX Runtime's CPU session with its default session options (thread
  spinning on), only the thread count set;
* :func:`openvino_model`: OpenVINO's compiled CPU model with ``PERFORMANCE_HINT=LATENCY``, or
  the reason it refused the model;
* :func:`interleaved` / :func:`interleaved_medians`: every runner once per round, so drifts of
  the machine hit all alike; medians and the spread (min–max) over the rounds;
* :func:`within_contract` / :func:`best_peer`: a peer's output counts when it agrees with ORT's
  reference path as closely as tvm-qdq must (:data:`PEER_RULE`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

#: The agreement a peer (or tvm-qdq) must reach with ORT's reference path to count.
PEER_RULE = ("quantized output: max ≤ 2 LSB and ≥ 99% of the elements within 1 LSB (the "
             "model contract of tvm_qdq.testing.oracle); float output: worst-row cosine "
             "≥ 0.999 (rows = the last axis)")
MAX_LSB = 2.0
MIN_WITHIN_1 = 0.99
MIN_COSINE = 0.999


def ort_session(model: object, threads: int, optimized: bool = True):
    """ONNX Runtime CPU session at its default options (spinning on), ``threads`` intra-op
    threads; ``optimized=False`` is the reference path (every node as written).
    ``model``: an ``onnx.ModelProto``, serialized bytes or a path."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, (bytes, str)) else (
        str(model) if isinstance(model, Path) else model.SerializeToString())
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def openvino_model(model: object, threads: int,
                   shapes: Mapping[str, list[int]] | None = None) -> tuple[object, str | None]:
    """``(compiled model, None)`` with ``PERFORMANCE_HINT=LATENCY`` and ``threads`` inference
    threads, or ``(None, reason)`` when OpenVINO is missing or refuses the model.
    ``model``: a path, or an ``onnx.ModelProto`` (read from memory)."""
    try:
        import openvino as ov
    except ImportError:
        return None, "not installed"
    try:
        core = ov.Core()
        if isinstance(model, (str, Path)):
            ov_model = core.read_model(str(model))
        else:
            ov_model = core.read_model(model.SerializeToString(), ov.Tensor(shape=[0],
                                                                            type=ov.Type.u8))
        if shapes:
            ov_model.reshape({name: ov.PartialShape(dims) for name, dims in shapes.items()})
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                  "NUM_STREAMS": 1}
        return core.compile_model(ov_model, "CPU", config), None
    except Exception as err:  # noqa: BLE001 - a refusal is a table entry
        return None, _reason(err)


def _reason(err: Exception, width: int = 60) -> str:
    """The error's class and its last message line (OpenVINO's first lines are locations)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    last = lines[-1].replace("|", "/") if lines else ""
    return f"{type(err).__name__}: {last[:width]}" if last else type(err).__name__


def openvino_runner(compiled: object, feeds: Mapping[str, object]
                    ) -> tuple[Callable[[], object], Callable[[], object]]:
    """``(run, first_output)``: one inference of ``feeds``, and the first output of the
    latest inference as a numpy array."""
    request = compiled.create_infer_request()
    feeds = dict(feeds)

    def run() -> object:
        return request.infer(feeds)

    def first_output() -> object:
        return request.get_output_tensor(0).data.copy()

    return run, first_output


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


def within_contract(agreement: Mapping[str, float] | None) -> bool:
    """Whether an agreement record (``run.py``'s ``{"lsb", "within1"}`` or ``{"abs", "cos"}``)
    meets :data:`PEER_RULE`. A float record without a cosine does not count."""
    if not agreement:
        return False
    if "lsb" in agreement:
        return agreement["lsb"] <= MAX_LSB and agreement["within1"] >= MIN_WITHIN_1
    return agreement.get("cos", -1.0) >= MIN_COSINE


def best_peer(ms: Mapping[str, float | None], agreements: Mapping[str, Mapping | None]
              ) -> str | None:
    """The fastest peer (a key of ``ms``) whose agreement is :func:`within_contract`."""
    eligible = [(v, k) for k, v in ms.items() if v is not None
                and within_contract(agreements.get(k))]
    return min(eligible)[1] if eligible else None


def fmt_ms(value: float | None) -> str:
    """A latency in ms for a table: 3 significant digits, whole ms from 100 on."""
    if value is None:
        return "–"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def update_readme_section(readme: Path, markers: tuple[str, str], table: str) -> None:
    """Replace what stands between the two marker lines of ``readme`` by ``table``."""
    text = readme.read_text()
    start, end = markers
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def worker_rows(script: str, threads: list[int], args: list[str]) -> list[dict]:
    """Run ``script --worker T *args`` once per thread count T, each in its own process
    (TVM reads ``TVM_NUM_THREADS`` once), and concatenate the JSON rows each prints last."""
    import json
    import os
    import subprocess
    import sys

    rows: list[dict] = []
    for count in threads:
        env = dict(os.environ, TVM_NUM_THREADS=str(count))
        cmd = [sys.executable, script, "--worker", str(count), *args]
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    return rows
