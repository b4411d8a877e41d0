"""Schedule of the float32 dense kernel (:mod:`..float_kernels`, role
:data:`~tvm_qdq.backend.kernel_tags.FLOAT_DENSE`) and its fused epilogue.

The output rows (batch dimensions and ``m`` together) and columns are cut into register
tiles of ``mr`` rows × ``nr`` vectors of 16 columns (:func:`dense_tile`, from the shape only).
The loops are ``jo`` (column panels of ``nr·16``) ⊃ ``ro`` (row tiles) ⊃ ``k`` ⊃ the tile:
each step ``k`` loads ``nr`` weight vectors (contiguous in the packed ``wp[n // 16, k, 16]``),
broadcasts ``mr`` values of ``a`` and does ``mr · nr`` vector FMAs into accumulators that
stay in registers (tile loops unrolled, lanes vectorized). With the column panel outermost
a panel of the weight (``K · nr · 16`` values) is read from memory once and reused by every
row tile from the cache; an int8-compressed weight is expanded to float32 once per panel
(the :data:`~tvm_qdq.backend.kernel_tags.FLOAT_WEIGHT` block computed under ``jo``). The
epilogue runs per tile from the accumulators; the panel loop is parallel when the kernel is
large.

Numerics: each output element's sum is unchanged (``k`` increasing, one FMA per step, see
:mod:`..float_kernels`); the schedule only reorders independent elements.
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx

from ...kernel_tags import FLOAT_DENSE, FLOAT_WEIGHT
from ...tir_blocks import blocks_of_kind, loop_extent
from ..float_kernels import LANES
from .common import PARALLEL_MIN_MACS, epilogue_per_tile, inline_elementwise, keep_kinds
from .matmul import MatmulTile, _dependents, _vectorize_inner, default_matmul_tile
from .rule import Kernel

#: Schedule kind recorded in the module report.
KIND = "float_dense"


def dense_tile(rows: int, n: int) -> MatmulTile:
    """Register tile of a ``rows × n`` output (``n`` a multiple of 16): 16-lane vectors,
    ``nr ≤ 4`` of them dividing ``n / 16``, ``mr`` dividing ``rows``, the most accumulators
    within the register budget (:func:`.matmul.default_matmul_tile`)."""
    return default_matmul_tile(rows, n)


def schedule_float_dense(func: tirx.PrimFunc, tile: MatmulTile | None = None,
                         parallel: bool | None = None) -> tirx.PrimFunc:
    """The schedule of the module docstring; ``tile`` defaults to :func:`dense_tile`,
    ``parallel`` to ``MACs ≥ PARALLEL_MIN_MACS``. Raises ``ValueError`` when the function
    holds no single dense block or the tile does not divide it."""
    sch = s_tir.Schedule(func)
    inline_elementwise(sch, keep=keep_kinds(FLOAT_DENSE, FLOAT_WEIGHT))
    mains = blocks_of_kind(sch, FLOAT_DENSE)
    if len(mains) != 1:
        raise ValueError(f"expected one float dense block, found {len(mains)}")
    main = mains[0]
    expand = blocks_of_kind(sch, FLOAT_WEIGHT)
    *row_loops, lj, lk = sch.get_loops(main)
    rows = math.prod(loop_extent(sch, lp) for lp in row_loops)
    n, k = loop_extent(sch, lj), loop_extent(sch, lk)
    tile = tile or dense_tile(rows, n)
    if tile.lanes != LANES or rows % tile.mr or n % (tile.nr * LANES):
        raise ValueError(f"tile {tile} does not fit {rows}×{n}")
    if parallel is None:
        parallel = rows * n * k >= PARALLEL_MIN_MACS

    lr = sch.fuse(*row_loops) if len(row_loops) > 1 else row_loops[0]
    ro, ri = sch.split(lr, [None, tile.mr])
    jo, jn, jl = sch.split(lj, [None, tile.nr, LANES])
    sch.reorder(jo, ro, lk, ri, jn, jl)
    consumers = epilogue_per_tile(sch, main, ro, _dependents(sch, main))
    for block in expand:
        sch.compute_at(block, jo)
        _vectorize_inner(sch, block, LANES)
    # Parallel and vectorized while the block is still a reduction (the update block alone
    # is not).
    if parallel and loop_extent(sch, jo) > 1:
        sch.parallel(jo)
    sch.vectorize(jl)
    sch.unroll(jn)
    sch.unroll(ri)
    init = sch.decompose_reduction(main, lk)
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
