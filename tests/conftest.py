"""Shared pytest configuration: the ``slow`` marker of the whole-model modules, and one TVM
thread per pytest-xdist worker."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each pytest-xdist worker already has a core: one TVM thread per worker, so that the
    # workers' thread pools do not spin against each other.  Read when TVM starts.
    os.environ.setdefault("TVM_NUM_THREADS", "1")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "slow: whole real-model modules (part of CI; `-m 'not slow'` skips them "
                   "for a quick local run)")
