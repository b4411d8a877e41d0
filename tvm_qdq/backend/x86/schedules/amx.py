"""AMX matmul schedule: functions with an :data:`~tvm_qdq.backend.kernel_tags.AMX` block
(:func:`..amx_matmul.matmul_amx`, possibly with a fused epilogue).

Register blocks of ``mr`` rows (16 or 32: one or two tiles) × ``nr`` blocks of 16 columns
(2 when the column blocks pair up, else 1); each 16 × 16 tile of the block is one call of
the whole-reduction intrinsic (:func:`..amx.amx_intrin`), its accumulators in a ``local``
tile of the block from which the epilogue is computed, 16 lanes wide. The row-block loop (or
a batch loop, as for the VNNI kernels: :func:`.vnni.parallel_row_loop`) is parallel when the
kernel has at least :data:`.common.PARALLEL_MIN_MACS` MACs; the padded plane copy is
vectorized along the reduction.
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx

from ...kernel_tags import AMX, SCRATCH, block_kind
from ...tir_blocks import SCHEDULE_ERRORS, blocks_of_kind, loop_extent, root_blocks
from ..amx import TILE_ROWS, amx_intrin
from ..kernels import KGROUP, LANES, ROW_TILE_ATTR
from .common import PARALLEL_MIN_MACS, epilogue_per_tile, kernel_blocks, vector_split
from .rule import Kernel
from .vnni import NOMINAL_ROWS, parallel_row_loop

KIND = "amx"


def _extent(value) -> int:
    return int(value) if isinstance(value, tirx.IntImm) else NOMINAL_ROWS


def schedule_amx(func: tirx.PrimFunc, parallel: bool | None = None) -> tirx.PrimFunc:
    """Schedule a function holding one AMX reduction ``[*batch, m, n]`` and its epilogue;
    ``parallel`` defaults to ``MACs ≥ PARALLEL_MIN_MACS`` (a symbolic extent counted as
    :data:`.vnni.NOMINAL_ROWS`)."""
    sch = s_tir.Schedule(func)
    blocks = kernel_blocks(sch, AMX)
    if len(blocks) != 1:
        raise ValueError(f"expected one AMX block, found {len(blocks)}")
    main = blocks[0]
    ivs = sch.get(main).iter_vars
    loops = sch.get_loops(main)
    batch_loops, row_loop, col_loop = loops[:-4], loops[-4], loops[-3]
    red_q = loops[-2]
    k = loop_extent(sch, red_q) * KGROUP
    row_ext = ivs[len(loops) - 4].dom.extent
    pad = sch.get(main).annotations.get(ROW_TILE_ATTR)
    rows = int(pad) if pad is not None else int(row_ext)
    mr = 2 * TILE_ROWS if rows % (2 * TILE_ROWS) == 0 else TILE_ROWS
    if rows % mr:
        raise ValueError(f"AMX rows {rows} are not whole tiles")
    n_blocks = loop_extent(sch, col_loop) // LANES
    nr = 2 if n_blocks % 2 == 0 else 1
    io, ib, ii = sch.split(row_loop, [None, mr // TILE_ROWS, TILE_ROWS])
    jo, jb, ji = sch.split(col_loop, [None, nr, LANES])
    sch.reorder(*batch_loops, io, jo, ib, jb, ii, ji)
    if parallel is None:
        parallel = math.prod(_extent(iv.dom.extent) for iv in ivs) >= PARALLEL_MIN_MACS
    if parallel:
        sch.parallel(parallel_row_loop(sch, batch_loops, io,
                                       pad is None and isinstance(row_ext, tirx.IntImm)))
    consumers = epilogue_per_tile(sch, main, jo, [
        b for b in root_blocks(sch) if block_kind(sch, b) not in (AMX, SCRATCH)])
    init = sch.decompose_reduction(main, ib)
    sch.tensorize(ii, amx_intrin(k))
    try:
        sch.vectorize(sch.get_loops(init)[-1])
    except SCHEDULE_ERRORS:
        pass
    for block in consumers:
        inner = sch.get_loops(block)[-1]
        if loop_extent(sch, inner) % LANES == 0:
            _, vec = sch.split(inner, [None, LANES])
            sch.vectorize(vec)
    for block in blocks_of_kind(sch, SCRATCH):
        inner = sch.get_loops(block)[-1]
        if isinstance(sch.get(inner).extent, tirx.IntImm):
            _, vec = vector_split(sch, inner, 64)
            if vec is not None:
                sch.vectorize(vec)
    return sch.mod["main"]


class AmxRule:
    """A function with an AMX block."""

    kind = KIND

    def applies(self, kernel: Kernel) -> bool:
        return AMX in kernel.kinds

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        return schedule_amx(kernel.func)
