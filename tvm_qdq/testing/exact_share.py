"""Measure the exact share of every single-op comparison of a test run (a pytest plugin).

``assert_single_op_contract`` requires ``frac_exact >= min_frac_exact`` (the share of elements
equal to the reference, see :class:`~tvm_qdq.testing.oracle.Agreement`); the tests that pin a
lower share wrote down a measurement.  To measure again (a new ONNX Runtime, a new case)::

    .venv/bin/python -m pytest -p tvm_qdq.testing.exact_share tests/test_qoperator_ops.py

With the plugin, every ``assert_single_op_contract`` call runs with ``min_frac_exact=0`` (only
the 1-LSB bound and ``exact=True`` are still enforced) and is recorded; the terminal summary
lists the comparisons below 100 % exact, lowest first, with ``k of n`` counts to pin.
``TVM_QDQ_EXACT_SHARE_JSONL=path`` also appends every record as one JSON line.  The plugin
replaces ``oracle.assert_single_op_contract`` in ``pytest_configure``, before the test modules
import it, so it must be loaded with ``-p``; importing this module changes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from . import oracle

__all__ = ["ExactShareRecorder", "Record"]


@dataclass(frozen=True)
class Record:
    """One single-op comparison: test id, output name, ``n`` elements, ``n_exact`` of them
    exact (``frac_exact = n_exact / n``), share within 1 LSB, and whether ``exact=True``."""

    test: str
    name: str
    n: int
    n_exact: int
    frac_exact: float
    frac_within_1: float
    bit_exact_required: bool


class ExactShareRecorder:
    """Wraps ``assert_single_op_contract`` so that it records instead of enforcing the share."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.current_test = ""

    def wrap(self, contract: Callable[..., oracle.Agreement]) -> Callable[..., oracle.Agreement]:
        """``contract`` with ``min_frac_exact=0``, recording each call's :class:`Record`."""

        def measured(actual: Any, expected: Any, *args: Any, **kwargs: Any) -> oracle.Agreement:
            kwargs["min_frac_exact"] = 0.0
            ag = contract(actual, expected, *args, **kwargs)
            self.records.append(Record(
                self.current_test, str(kwargs.get("name", "")), ag.n,
                round(ag.frac_exact * ag.n), ag.frac_exact, ag.frac_within_1,
                bool(kwargs.get("exact", False))))
            return ag

        return measured

    def summary_lines(self) -> list[str]:
        """The comparisons below 100 % exact, lowest share first, one line each."""
        below = sorted((r for r in self.records if r.n_exact < r.n),
                       key=lambda r: (r.frac_exact, r.test))
        lines = [f"exact share: {len(self.records)} single-op comparisons, "
                 f"{len(below)} below 100 %"]
        lines += [f"{r.frac_exact:8.4%}  {r.n_exact} of {r.n}  {r.test}  {r.name}".rstrip()
                  for r in below]
        return lines


_RECORDER = ExactShareRecorder()


def pytest_configure(config: pytest.Config) -> None:
    """Replace the contract by its recording form (before any test module imports it)."""
    del config
    oracle.assert_single_op_contract = _RECORDER.wrap(oracle.assert_single_op_contract)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Remember which test the following comparisons belong to."""
    _RECORDER.current_test = item.nodeid


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the comparisons below 100 % exact; write the JSON lines if asked."""
    for line in _RECORDER.summary_lines():
        terminalreporter.write_line(line)
    path = os.environ.get("TVM_QDQ_EXACT_SHARE_JSONL")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            for r in _RECORDER.records:
                f.write(json.dumps(asdict(r)) + "\n")
