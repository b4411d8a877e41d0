"""Shared pytest configuration: the ``slow`` marker of the whole-model modules."""

from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "slow: whole real-model modules (part of CI; `-m 'not slow'` skips them "
                   "for a quick local run)")
