"""Depthwise conv schedule: functions with a
:data:`~tvm_qdq.backend.kernel_tags.DEPTHWISE` block and their fused epilogue."""

from __future__ import annotations

import math

from tvm import s_tir, tirx

from ...kernel_tags import DEPTHWISE, SCRATCH, block_kind
from ...tir_blocks import blocks_of_kind, loop_extent, root_blocks
from . import common
from .rule import Kernel
from .symbolic_rows import SymbolicLoops, is_symbolic, nominal_size

KIND = "depthwise"

#: Output pixels per depthwise register tile (one accumulator vector each).
DW_PIXELS = 8
#: A depthwise conv is parallel from this many MACs: it does one multiply-add per loaded
#: input element, so it takes several times longer per MAC than a dense conv and a smaller
#: one already outlasts the launch of a parallel region.
DW_PARALLEL_MIN_MACS = 1 << 18


def schedule_depthwise(func: tirx.PrimFunc, parallel: bool | None = None) -> tirx.PrimFunc:
    """Schedule a depthwise conv (the ``DEPTHWISE`` block) and its fused epilogue.

    Register tile: up to :data:`DW_PIXELS` output pixels of one row × 16 channels (int32
    lanes), one accumulator vector per pixel; for each tap ``(rh, rw)`` one weight vector is
    loaded and multiplied into every pixel's accumulator (taps and pixels unrolled). The
    epilogue runs per tile from the accumulators (all intermediates in registers / ``local``).
    The padded input copy (the ``SCRATCH`` block) is made per parallel chunk of output rows
    (only the input rows the chunk reads), so it is parallel too.
    """
    sch = s_tir.Schedule(func)
    main = common.kernel_blocks(sch, DEPTHWISE)[0]
    n, oh, ow, c, rh, rw = sch.get_loops(main)
    tails = SymbolicLoops()
    if any(is_symbolic(sch.get(lp).extent) for lp in (n, oh, ow)):
        # a symbolic width (an image of any width): main part + tail of DW_PIXELS pixels
        extents = [sch.get(lp).extent for lp in (oh, ow, c, rh, rw)]
        macs = nominal_size(math.prod(extents, start=sch.get(n).extent))
        row = sch.fuse(n, oh)
        wo, wi = tails.split(sch, ow, [None, DW_PIXELS])
    else:
        macs = math.prod(common.spatial_extents(sch, main)) * loop_extent(sch, rh) * \
            loop_extent(sch, rw)
        row = sch.fuse(n, oh)
        wo, wi = sch.split(ow, [None, _largest_divisor(loop_extent(sch, ow), DW_PIXELS)])
    co, ci = common.vector_split(sch, c, 16)
    if ci is None:
        raise ValueError("depthwise channels not a multiple of 2")
    sch.reorder(row, wo, co, rh, rw, wi, ci)
    if parallel is None:
        parallel = macs >= DW_PARALLEL_MIN_MACS
    chunk = common.parallel_chunks(sch, row) if parallel else None
    for block in blocks_of_kind(sch, SCRATCH):
        if chunk is not None:
            sch.compute_at(block, chunk)
            _, vec = common.vector_split(sch, sch.get_loops(block)[-1], 64)
            if vec is not None:
                sch.vectorize(vec)
        else:
            common.schedule_scratch(sch, block)
    consumers = common.epilogue_per_tile(sch, main, co, [
        b for b in root_blocks(sch) if block_kind(sch, b) not in (DEPTHWISE, SCRATCH)])
    sch.vectorize(ci)
    init = sch.decompose_reduction(main, rh)
    for loop in (wi, rw, rh):
        sch.unroll(loop)
    for block in [init, *consumers]:
        inner = sch.get_loops(block)[-1]
        _, vec = common.vector_split(sch, inner, 16)
        sch.vectorize(vec if vec is not None else inner)
    return tails.apply(sch.mod["main"])


def _largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


class DepthwiseRule:
    """A function with a depthwise block."""

    kind = KIND

    def applies(self, kernel: Kernel) -> bool:
        return DEPTHWISE in kernel.kinds

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        return schedule_depthwise(kernel.func)
