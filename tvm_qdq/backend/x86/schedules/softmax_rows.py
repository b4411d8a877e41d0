"""Schedule of a last-axis softmax (:func:`tvm_qdq.backend.fast_math.te_softmax_rows`, the
stages tagged :data:`~tvm_qdq.backend.kernel_tags.SOFTMAX_ROWS`) and what is fused to it
(a mask added before, a quantize after).

One row at a time, every stage under the row loop so a row stays in the L1 cache between
stages: the partial max and the partial sum vectorized along their lanes (``t`` outer:
each lane's chain keeps its order), the tails (the row's last whole vector, masked) one
vector per row, the exponentials and the output vectorized along the row (16 lanes; a static
length that is not a multiple of 16 as one vector up to :data:`WHOLE_ROW_LANES`, beyond that
with the partial last vector split off by loop partitioning; a symbolic length: main part +
tail, :class:`.symbolic_rows.SymbolicLoops`), the lane trees of the row max and sum one
expression per row. The row loop (all leading axes fused; with a symbolic shape the last row
axis, the leading ones fused into a loop around it) is parallel for calls with at least
:data:`.common.PARALLEL_MIN_ELEMS` elements. Producers of the softmax's input are inlined
(recomputed per read: they are elementwise).
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx

from ...kernel_tags import SOFTMAX_ROWS, block_kind
from ...tir_blocks import SCHEDULE_ERRORS, block_name, is_reduction, loop_extent, root_blocks
from .common import (
    PARALLEL_MIN_ELEMS,
    inline_elementwise,
    keep_kinds,
    output_blocks,
)
from .rule import Kernel
from .symbolic_rows import SymbolicLoops, is_symbolic

KIND = "softmax_rows"
LANES = 16
#: Longest static row (not a multiple of 16) vectorized as one vector (LLVM splits it into
#: whole registers and one partial register).
WHOLE_ROW_LANES = 512


def _vectorize_row(sch: s_tir.Schedule, loop, tails: SymbolicLoops) -> None:
    """Vectorize a loop along a row: 16 lanes (main part + tail when symbolic or a static
    extent longer than :data:`WHOLE_ROW_LANES`), the whole loop when a static extent of at
    most that is not a multiple of 16."""
    extent = sch.get(loop).extent
    if is_symbolic(extent):
        _, vec = tails.split(sch, loop, [None, LANES])
        sch.vectorize(vec)
        return
    extent = loop_extent(sch, loop)
    if extent % LANES == 0 or extent <= WHOLE_ROW_LANES:
        vec = sch.split(loop, [None, LANES])[1] if extent % LANES == 0 else loop
        sch.vectorize(vec)
        return
    # vectors of 16 and a partial last one, which TIR's loop partitioning splits off
    # (scalar) so that the whole vectors carry no predicate
    outer, vec = sch.split(loop, [None, LANES])
    sch.annotate(outer, "pragma_loop_partition_hint", 1)
    sch.vectorize(vec)


def _is_unit(sch: s_tir.Schedule, loop) -> bool:
    extent = sch.get(loop).extent
    return not is_symbolic(extent) and int(extent) == 1


def _lane_reduction(sch: s_tir.Schedule, block) -> None:
    """A partial reduction ``[..., l] ⊕= f(t)``: ``t`` outside the lanes, lanes vectorized,
    the init vectorized."""
    lane, t = sch.get_loops(block)[-2:]
    sch.reorder(t, lane)
    sch.vectorize(lane)
    init = sch.decompose_reduction(block, t)
    sch.vectorize(sch.get_loops(init)[-1])


def schedule_softmax_rows(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """Schedule a function whose one output is computed from softmax stages (see the module
    docstring)."""
    sch = s_tir.Schedule(func)
    inline_elementwise(sch, keep_kinds(SOFTMAX_ROWS))
    outputs = output_blocks(sch)
    if len(outputs) != 1:
        raise ValueError("softmax rows: one output expected")
    out = outputs[0]
    stages = [b for b in root_blocks(sch) if block_name(sch, b) != block_name(sch, out)]
    if not stages or any(block_kind(sch, b) != SOFTMAX_ROWS for b in stages):
        raise ValueError("softmax rows: unexpected stages")
    names = [block_name(sch, b) for b in stages]
    loops = sch.get_loops(out)
    extents = [sch.get(lp).extent for lp in loops]
    size = math.prod(extents[1:], start=extents[0])
    tails = SymbolicLoops()
    if is_symbolic(size) and len(loops) > 2:
        # fused with a symbolic row count, the row index would not be quasi-affine: the
        # stages go under the last row loop, the loops before it are fused and parallel
        outer = sch.fuse(*loops[:-2]) if len(loops) > 3 else loops[0]
        row = loops[-2]
        tails.parallel(sch, outer, size, PARALLEL_MIN_ELEMS)
    else:
        row = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
        if is_symbolic(size) or int(size) >= PARALLEL_MIN_ELEMS:
            tails.parallel(sch, row, size, PARALLEL_MIN_ELEMS)
    depth = len(sch.get_loops(out)) - 1  # loops down to the row loop
    for name in reversed(names):
        sch.compute_at(sch.get_sblock(name), row, preserve_unit_loops=True)
    _vectorize_row(sch, sch.get_loops(out)[-1], tails)
    for name in names:
        block = sch.get_sblock(name)
        inner = sch.get_loops(block)[depth:]
        if is_reduction(sch, block):  # [rows..., l] ⊕= f(t)
            _lane_reduction(sch, block)
        elif inner and not _is_unit(sch, inner[-1]):  # the exponentials, the tails
            _vectorize_row(sch, inner[-1], tails)
    return tails.apply(sch.mod["main"])


class SoftmaxRowsRule:
    """A function holding a last-axis softmax."""

    kind = KIND

    def applies(self, kernel: Kernel) -> bool:
        return SOFTMAX_ROWS in kernel.kinds

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        try:
            return schedule_softmax_rows(kernel.func)
        except SCHEDULE_ERRORS as err:
            raise ValueError(f"softmax rows: {err}") from err
