"""Rule registries of the integer pass: one small function per Relax op.

* **forward rules** ``f(ctx, call) -> QTensor | list[QTensor] | None``: given a call whose
  inputs have integer forms, emit its integer form (conv → int32 accumulator, reshape of an
  integer tensor, ...). ``None`` means "no integer form": the op stays float.
* **output rules** ``f(ctx, call, out: QParams) -> relax.Expr | None``: for ops whose integer
  form needs the output's parameters (add, concat, average pools, ...), applied when a
  ``quantize`` consumes the op's result.
"""

from __future__ import annotations

from collections.abc import Callable

FORWARD_RULES: dict[str, Callable] = {}
OUTPUT_RULES: dict[str, Callable] = {}


def forward_rule(*op_names: str) -> Callable:
    """Register ``fn`` as the forward rule of each Relax op in ``op_names``."""

    def wrap(fn: Callable) -> Callable:
        for name in op_names:
            FORWARD_RULES[name] = fn
        return fn

    return wrap


def output_rule(*op_names: str) -> Callable:
    """Register ``fn`` as the output rule of each Relax op in ``op_names``."""

    def wrap(fn: Callable) -> Callable:
        for name in op_names:
            OUTPUT_RULES[name] = fn
        return fn

    return wrap
