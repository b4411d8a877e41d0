"""The benchmarks' timing helpers: :func:`timing.quiesce` waits for another thread of the
process that is still spinning (as ONNX Runtime's workers do after a call) and returns at
once when none is."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import timing  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(),
                                reason="needs Linux /proc thread statistics")


def test_quiesce_waits_for_a_spinning_thread() -> None:
    stop_after = 0.08
    done = threading.Event()

    def spin() -> None:
        end = time.perf_counter() + stop_after
        while time.perf_counter() < end:
            pass
        done.set()

    thread = threading.Thread(target=spin)
    thread.start()
    time.sleep(0.005)
    waited = timing.quiesce()
    assert done.is_set(), f"quiesce returned after {waited:.3f} s while the thread spun"
    thread.join()


def test_quiesce_returns_when_threads_sleep() -> None:
    idle = threading.Event()
    thread = threading.Thread(target=idle.wait)
    thread.start()
    try:
        assert timing.quiesce() < timing.QUIESCE_MAX_S
    finally:
        idle.set()
        thread.join()
