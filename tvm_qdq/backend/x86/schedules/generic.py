"""The generic schedule: every function no specific rule took (requantize chains, pooling,
elementwise float islands, ...): producers inlined, the innermost unit-stride loop vectorized,
the outer loop parallel when large."""

from __future__ import annotations

import math

from tvm import s_tir, tirx

from ...tir_blocks import SCHEDULE_ERRORS, is_reduction, loop_extent, root_blocks
from .common import PARALLEL_MIN_ELEMS, inline_elementwise, schedule_spatial
from .rule import Kernel
from .symbolic_rows import SymbolicLoops, is_symbolic

KIND = "generic"


def _schedule_reduction_generic(sch: s_tir.Schedule, block, tails: SymbolicLoops) -> None:
    """Parallelize the leading spatial loops of a reduction when it is large."""
    loops = sch.get_loops(block)
    ivs = sch.get(block).iter_vars
    if len(loops) != len(ivs):
        return
    spatial = [lp for lp, iv in zip(loops, ivs, strict=True) if int(iv.iter_type) == 0]
    n_lead = 0
    for iv in ivs:
        if int(iv.iter_type) != 0:
            break
        n_lead += 1
    lead = loops[:n_lead]
    if not lead:
        return
    extents = [sch.get(lp).extent for lp in [*spatial, loops[-1]]]
    if any(is_symbolic(e) for e in extents):
        tails.parallel(sch, sch.fuse(*lead) if len(lead) > 1 else lead[0],
                       math.prod(extents[1:], start=extents[0]), PARALLEL_MIN_ELEMS)
        return
    total = math.prod(loop_extent(sch, lp) for lp in spatial)
    if total * loop_extent(sch, loops[-1]) >= PARALLEL_MIN_ELEMS and len(lead) >= 1:
        fused = sch.fuse(*lead) if len(lead) > 1 else lead[0]
        if loop_extent(sch, fused) > 1:
            sch.parallel(fused)


def schedule_generic(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """Inline producers, then vectorize/parallelize each remaining root block (a symbolic
    vectorized extent: main part + tail, :class:`.symbolic_rows.SymbolicLoops`)."""
    sch = s_tir.Schedule(func)
    try:
        inline_elementwise(sch)
    except SCHEDULE_ERRORS:
        sch = s_tir.Schedule(func)
    tails = SymbolicLoops()
    for block in root_blocks(sch):
        try:
            if is_reduction(sch, block):
                _schedule_reduction_generic(sch, block, tails)
            else:
                schedule_spatial(sch, block, tails=tails)
        except SCHEDULE_ERRORS:
            continue
    return tails.apply(sch.mod["main"])


class GenericRule:
    """Applies to every function (the last rule)."""

    kind = KIND

    def applies(self, kernel: Kernel) -> bool:
        del kernel
        return True

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        return schedule_generic(kernel.func)
