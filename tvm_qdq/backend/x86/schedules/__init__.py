"""Schedules (``tvm.s_tir.Schedule``) for the fused PrimFuncs of a lowered x86 model.

:data:`RULES` is an ordered list of schedule rules (one module per family); a function gets
the first rule that applies to it (by its kernel roles, :mod:`tvm_qdq.backend.kernel_tags`,
and the blocks TVM's legalization named), whose result passes TVM's TIR lowering
(:func:`lowers`); a rule that raises or does not lower hands over to the next one, and the
unscheduled function is the last resort, so the result is always correct:

1. AMX matmul (:mod:`.amx`), on targets with AMX int8;
2. VNNI conv / matmul with the requested or heuristic register tile (:mod:`.vnni`), then with
   a 1×1 tile;
3. depthwise conv (:mod:`.depthwise`);
4. float32 matmul with a packed constant weight (:mod:`.float_dense`);
5. activation × activation matmuls, ``vpdpwssd`` pairs on VNNI targets, then plain vector
   multiply-adds (:mod:`.matmul`);
6. 256-entry byte table lookups as VBMI permutes (:mod:`.lut_gather`);
7. last-axis softmax, one row at a time (:mod:`.softmax_rows`);
8. row-wise functions: whole-tensor reductions, row reductions, copies (:mod:`.rows`);
9. everything else (:mod:`.generic`).

Symbolic extents (a batch, a sequence length, an image width): the row, spatial, byte lookup
and depthwise schedules split a symbolic loop into a vectorized main part and a scalar tail
and choose parallel or serial per call (:mod:`.symbolic_rows`); a rule that cannot schedule
a symbolic function declines (raises, or does not apply), and the next one is tried.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import tirx

from ...kernel_tags import VNNI
from ...tir_blocks import SCHEDULE_ERRORS, kernel_kinds
from .amx import AmxRule
from .depthwise import DepthwiseRule
from .float_dense import FloatDenseRule
from .generic import GenericRule, schedule_generic
from .lut_gather import LutRule
from .matmul import ActivationMatmulRule
from .rows import RowRule
from .rule import Kernel, ScheduleRule
from .softmax_rows import SoftmaxRowsRule
from .vnni import Tile, VnniRule, schedule_vnni

#: The schedule rules, in dispatch order.
RULES: tuple[ScheduleRule, ...] = (
    AmxRule(),
    VnniRule(),
    VnniRule(fallback=Tile(1, 1)),
    DepthwiseRule(),
    FloatDenseRule(),
    ActivationMatmulRule(pairs=True),
    ActivationMatmulRule(pairs=False),
    LutRule(),
    SoftmaxRowsRule(),
    RowRule("row_allreduce"),
    RowRule("row_reduce"),
    RowRule("row_copy"),
    GenericRule(),
)


def lowers(func: tirx.PrimFunc, target: tvm.target.Target | None = None) -> bool:
    """True when ``func`` goes through TVM's TIR lowering pipeline (no code generation): a
    guard against schedule primitives that leave an ill-formed function behind."""
    target = target or tvm.target.Target.current() or tvm.target.Target("llvm")
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    try:
        mod = tvm.tirx.transform.BindTarget(target.with_host(target))(mod)
        pipeline, _, _ = tvm.tirx.get_default_tir_pipeline(target)
        pipeline(mod)
    except Exception:  # noqa: BLE001 - any lowering failure rejects the schedule
        return False
    return True


def schedule_function(func: tirx.PrimFunc,
                      tiles: Callable[[tirx.PrimFunc], Tile | None] | None = None,
                      name: str = "", target: tvm.target.Target | None = None
                      ) -> tuple[tirx.PrimFunc, str]:
    """Schedule one PrimFunc (named ``name`` in its module; ``tiles``: a
    :data:`..tuning_db.TileSource` giving a VNNI kernel its register tile, None: the
    heuristic's); returns (scheduled function, the ``kind`` of the rule that applied, or
    ``"none"``)."""
    tile = tiles(func) if tiles is not None and VNNI in kernel_kinds(func) else None
    kernel = Kernel(func, name, target, tile)
    for rule in RULES:
        try:
            if not rule.applies(kernel):
                continue
        except SCHEDULE_ERRORS:  # e.g. a static-only rule reading a symbolic extent
            continue
        try:
            scheduled = rule.apply(kernel)
        except (SCHEDULE_ERRORS + (StopIteration,)):
            continue
        if lowers(scheduled, target):
            return scheduled, rule.kind
    return func, "none"


__all__ = ["RULES", "Kernel", "ScheduleRule", "Tile", "lowers", "schedule_function",
           "schedule_generic", "schedule_vnni"]
