"""Checking a built model: tvm-qdq against ONNX Runtime, each graph under its contract.

A graph's outputs are compared in LSBs of their quantized types: single-op graphs must be
within 1 LSB; others within 2 LSB with at least 99 % of the elements within 1 LSB.  A graph
whose outputs are not all bit-exact is triaged op by op (:mod:`.op_triage`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ..oracle import FLOAT_SLACK_LSB, agreement, output_quant_info
from . import execution
from .builder import Built, build_specs
from .judgement import OpJudgement
from .op_triage import triage
from .spec import GraphSpec


@dataclass
class OutputResult:
    """Agreement of one graph output: worst LSB difference and fraction within 1 LSB."""

    name: str
    max_lsb: float
    frac_within_1: float
    n: int
    ok: bool
    detail: str = ""

    @property
    def exact(self) -> bool:
        """Bit-exact: integer outputs equal, float outputs the same codes (≤ float slack)."""
        return self.max_lsb <= FLOAT_SLACK_LSB


@dataclass
class CheckResult:
    """Outcome of :func:`check` for a built model.

    ``ok``: every graph passed its contract and :func:`triage` found no failing op in it;
    ``error``: tvm-qdq raised (import, rewrite, compile or run); ``exact_graphs``: graphs
    whose outputs are all bit-exact (not triaged); ``explained``: graphs with differing
    tensors, every difference an explained ORT float32 near-tie (contract failures among
    them say so); ``judgements``: the per-op judgements of every triaged graph;
    ``float_ops``: float islands the pass left (not a failure).
    """

    ok: bool
    outputs: list[OutputResult] = field(default_factory=list)
    error: str | None = None
    failing_specs: list[GraphSpec] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)
    float_ops: list[dict] = field(default_factory=list)
    triage: list[str] = field(default_factory=list)
    exact_graphs: int = 0
    triaged: int = 0
    contract_explained: int = 0
    judgements: list[OpJudgement] = field(default_factory=list)

    def summary(self) -> str:
        lines = []
        if self.error:
            lines.append(f"tvm-qdq raised: {self.error}")
        for o in self.outputs:
            if not o.ok:
                lines.append(f"output {o.name}: max {o.max_lsb:.4g} LSB, "
                             f"{o.frac_within_1:.2%} of {o.n} within 1 LSB {o.detail}")
        lines += self.triage
        for s in self.failing_specs:
            lines.append(s.describe())
        return "\n".join(lines)


def _compare(name: str, actual: np.ndarray, expected: np.ndarray, model: onnx.ModelProto,
             single_op: bool) -> OutputResult:
    info = output_quant_info(model)[name]
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return OutputResult(name, math.inf, 0.0, int(expected.size), False,
                            f"shape/dtype {actual.shape}/{actual.dtype} vs "
                            f"{expected.shape}/{expected.dtype}")
    scale = axis = None
    if info is not None and info.float_output:
        scale = info.scale
        axis = info.axis if info.scale.size > 1 else None
    ag = agreement(actual, expected, scale, None, axis)
    max_allowed = 1.0 if single_op else 2.0
    ok = ag.max_lsb <= max_allowed + 1e-2 and (single_op or ag.frac_within_1 >= 0.99)
    detail = ""
    if not ok and ag.worst_index is not None:
        detail = (f"at {ag.worst_index}: tvm-qdq {actual[ag.worst_index]!r}, "
                  f"ORT {expected[ag.worst_index]!r}")
    return OutputResult(name, ag.max_lsb, ag.frac_within_1, ag.n, ok, detail)


def check(built: Built, *, triage_failures: bool = True) -> CheckResult:
    """Compile ``built.model`` with tvm-qdq, run it and ORT (optimizations off), compare.

    Each graph of a batch is judged on its own outputs (``≤ 1`` LSB for single-op graphs,
    else ``≤ 2`` LSB and ``≥ 99 %`` within 1 LSB).  A graph whose outputs are not all
    bit-exact goes to :func:`triage` (unless ``triage_failures`` is false), which judges every
    op on its own inputs: the graph fails when an op fails there (even within the contract:
    a systematic 1-LSB error) or when the contract fails and no tensor differs; a contract
    failure whose every difference is an explained near-tie passes.
    """
    model, feeds = built.model, built.feeds
    expected = execution.run_reference(model, feeds)
    try:
        compiled, actual = execution.compile_and_run(model, feeds)
    except Exception as err:  # noqa: BLE001 - any tvm-qdq failure on a valid graph is a bug
        return CheckResult(False, error=f"{type(err).__name__}: {err}",
                           failing_specs=list(built.specs))
    result = CheckResult(True, float_ops=list(compiled.report.float_ops)
                         if compiled.report else [])
    names = [o.name for o in model.graph.output]
    by_name = dict(zip(names, zip(actual, expected, strict=True), strict=True))
    for spec in built.specs:
        single = spec.num_ops == 1
        graph_outs = [r["tensor"] for r in spec.records if r["kind"] == "output"]
        results = [_compare(spec.output_name(t), *by_name[spec.output_name(t)], model, single)
                   for t in graph_outs]
        result.outputs += results
        contract_ok = all(r.ok for r in results)
        if all(r.exact for r in results):
            result.exact_graphs += 1
            continue
        verdict = triage(spec) if triage_failures else None
        if verdict is not None:
            result.triaged += 1
            result.judgements += verdict.judgements
            if verdict.explained and verdict.differs:
                what = "contract failure explained" if not contract_ok else "within contract"
                result.contract_explained += not contract_ok
                result.explained.append(f"{spec.prefix or 'graph'} ({what}): {verdict.reason}")
                continue
            if verdict.explained and contract_ok:
                continue  # float outputs within the contract, every code equal
        if verdict is None and contract_ok:
            continue
        if verdict is not None:
            result.triage.append(verdict.reason if verdict.differs or not verdict.judgements
                                 else "triage: no quantized tensor differs, but an output does")
        result.ok = False
        result.failing_specs.append(spec)
    return result


def check_specs(specs: Sequence[GraphSpec], **kwargs: Any) -> CheckResult:
    """:func:`check` of :func:`build_batch` (one spec: :func:`build`)."""
    return check(build_specs(specs), **kwargs)
