"""What a schedule rule sees of a function, and what a rule is.

A rule (as in TVM's dlight ``ApplyDefaultSchedule``) says whether it ``applies`` to a fused
PrimFunc, from its kernel roles (:mod:`tvm_qdq.backend.kernel_tags`) and the blocks TVM's
legalization named, and ``apply`` returns the scheduled function or raises when a step does
not fit. :data:`tvm_qdq.backend.x86.schedules.RULES` is the ordered list.
"""

from __future__ import annotations

from functools import cached_property
from typing import Protocol

import tvm
from tvm import s_tir, tirx

from ...tir_blocks import SCHEDULE_ERRORS, block_name, kernel_kinds, root_blocks


class Kernel:
    """A fused PrimFunc to schedule: its name in the module, the target, the register tile
    asked for it (VNNI), and what rules dispatch on (computed once)."""

    def __init__(self, func: tirx.PrimFunc, name: str = "",
                 target: tvm.target.Target | None = None, tile=None) -> None:
        self.func = func
        self.name = name
        self.target = target
        self.tile = tile
        self._memo: dict[str, object] = {}

    def memo(self, key: str, compute):
        """``compute()``, once per kernel (for what several rules ask)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @cached_property
    def kinds(self) -> frozenset[str]:
        """Kernel roles of its root blocks."""
        return kernel_kinds(self.func)

    @cached_property
    def block_names(self) -> list[str]:
        """Names of its root blocks (TVM's legalized ops name theirs after the op)."""
        try:
            sch = s_tir.Schedule(self.func)
            return [block_name(sch, b) for b in root_blocks(sch)]
        except SCHEDULE_ERRORS:
            return []


class ScheduleRule(Protocol):
    """One schedule family: ``kind`` is what the module report records when it applied."""

    kind: str

    def applies(self, kernel: Kernel) -> bool: ...

    def apply(self, kernel: Kernel) -> tirx.PrimFunc: ...
