"""Schedule of the float32 dense and conv kernels (:mod:`..float_kernels`, role
:data:`~tvm_qdq.backend.kernel_tags.FLOAT_DENSE`) and their fused epilogue.

The output's innermost row loop (``m`` of a matmul, ``ow`` of a conv) and its columns
(``n`` / output channels) are cut into register tiles of ``mr`` rows × ``nr`` vectors of 16
columns (:func:`dense_tile`, from the shape only). The loops are ``jo`` (column panels of
``nr·16``) ⊃ the outer row loops ⊃ ``ro`` (row tiles) ⊃ the reduction loops ⊃ the tile: each
reduction step loads ``nr`` weight vectors (contiguous in the packed ``wp[n // 16, k, 16]``),
broadcasts ``mr`` input values and does ``mr · nr`` vector FMAs into accumulators that stay
in registers (tile loops unrolled, lanes vectorized). With the column panel outermost a
panel of the weight (``K · nr · 16`` values) is read from memory once and reused by every row
tile from the cache; an int8-compressed weight is expanded to float32 once per panel (the
:data:`~tvm_qdq.backend.kernel_tags.FLOAT_WEIGHT` block computed under ``jo``). A conv's
zero-padded input copy (:data:`~tvm_qdq.backend.kernel_tags.SCRATCH`) is its own vectorized
stage. The epilogue runs per tile from the accumulators; the first loop of ``jo``, the outer
row loops and ``ro`` with at least 4 iterations (else 2) is parallel when the kernel is
large.

Numerics: each output element's sum is unchanged (reduction loops in their order, one FMA
per step, see :mod:`..float_kernels`); the schedule only reorders independent elements.
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx

from ...kernel_tags import FLOAT_DENSE, FLOAT_WEIGHT, SCRATCH
from ...tir_blocks import blocks_of_kind, loop_extent
from ..float_kernels import LANES
from .common import (
    PARALLEL_MIN_MACS,
    epilogue_per_tile,
    inline_elementwise,
    keep_kinds,
    schedule_spatial,
)
from .matmul import MatmulTile, _dependents, _vectorize_inner, default_matmul_tile
from .rule import Kernel

#: Schedule kind recorded in the module report.
KIND = "float_dense"


def dense_tile(rows: int, n: int) -> MatmulTile:
    """Register tile of a ``rows × n`` output (``n`` a multiple of 16): 16-lane vectors,
    ``nr ≤ 4`` of them dividing ``n / 16``, ``mr`` dividing ``rows``, the most accumulators
    within the register budget (:func:`.matmul.default_matmul_tile`)."""
    return default_matmul_tile(rows, n)


def _parallel_loop(sch: s_tir.Schedule, loops: list):
    """The first of ``loops`` with at least 4 iterations, else 2, else None."""
    for least in (4, 2):
        for loop in loops:
            if loop_extent(sch, loop) >= least:
                return loop
    return None


def schedule_float_dense(func: tirx.PrimFunc, tile: MatmulTile | None = None,
                         parallel: bool | None = None) -> tirx.PrimFunc:
    """The schedule of the module docstring; ``tile`` defaults to :func:`dense_tile`,
    ``parallel`` to ``MACs ≥ PARALLEL_MIN_MACS``. Raises ``ValueError`` when the function
    holds no single dense block or the tile does not divide it."""
    sch = s_tir.Schedule(func)
    inline_elementwise(sch, keep=keep_kinds(FLOAT_DENSE, FLOAT_WEIGHT, SCRATCH))
    mains = blocks_of_kind(sch, FLOAT_DENSE)
    if len(mains) != 1:
        raise ValueError(f"expected one float dense block, found {len(mains)}")
    main = mains[0]
    spatial = sum(1 for iv in sch.get(main).iter_vars if int(iv.iter_type) == 0)
    loops = sch.get_loops(main)
    *outer_rows, li, lj = loops[:spatial]
    reduction = loops[spatial:]
    rows, n = loop_extent(sch, li), loop_extent(sch, lj)
    tile = tile or dense_tile(rows, n)
    if tile.lanes != LANES or rows % tile.mr or n % (tile.nr * LANES):
        raise ValueError(f"tile {tile} does not fit {rows}×{n}")
    if parallel is None:
        parallel = math.prod(loop_extent(sch, lp) for lp in loops) >= PARALLEL_MIN_MACS

    ro, ri = sch.split(li, [None, tile.mr])
    jo, jn, jl = sch.split(lj, [None, tile.nr, LANES])
    sch.reorder(jo, *outer_rows, ro, *reduction, ri, jn, jl)
    consumers = epilogue_per_tile(sch, main, ro, _dependents(sch, main))
    for block in blocks_of_kind(sch, FLOAT_WEIGHT):
        sch.compute_at(block, jo)
        _vectorize_inner(sch, block, LANES)
    for block in blocks_of_kind(sch, SCRATCH):
        schedule_spatial(sch, block, lanes=LANES)
    # Parallel and vectorized while the block is still a reduction (the update block alone
    # is not).
    outer = _parallel_loop(sch, [jo, *outer_rows, ro]) if parallel else None
    if outer is not None:
        sch.parallel(outer)
    sch.vectorize(jl)
    sch.unroll(jn)
    sch.unroll(ri)
    init = sch.decompose_reduction(main, reduction[0])
    _vectorize_inner(sch, init, LANES)
    for block in consumers:
        _vectorize_inner(sch, block, LANES)
    return sch.mod["main"]


class FloatDenseRule:
    """A function holding a :data:`~tvm_qdq.backend.kernel_tags.FLOAT_DENSE` block."""

    kind = KIND

    def applies(self, kernel: Kernel) -> bool:
        return FLOAT_DENSE in kernel.kinds

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        return schedule_float_dense(kernel.func)
