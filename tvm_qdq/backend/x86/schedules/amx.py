"""AMX matmul schedule: functions with an :data:`~tvm_qdq.backend.kernel_tags.AMX` block
(:func:`..amx_matmul.matmul_amx`, possibly with a fused epilogue).

Blocks of ``mr`` rows (32, or 16 for a static row count that 32 does not divide) × the
packed weight's column block (16 or 32: :data:`..kernels.COL_TILE_ATTR`), each one call of
the whole-reduction intrinsic (:func:`..amx.amx_intrin`, up to 2 × 2 tiles), its
accumulators in a ``local`` block from which the epilogue is computed, 16 lanes wide. The
row-block loop (or a batch loop, as for the VNNI kernels: :func:`.vnni.parallel_row_loop`)
is parallel when the kernel has at least :data:`.common.PARALLEL_MIN_MACS` MACs, and loads
the tile configuration once per iteration (:func:`..amx.configure_tiles`); the padded plane
copy is vectorized along the reduction.
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx

from ...kernel_tags import AMX, SCRATCH, block_kind
from ...tir_blocks import SCHEDULE_ERRORS, loop_extent, root_blocks
from ..amx import CONFIG_LOOP_ATTR, TILE_ROWS, amx_intrin, configure_tiles
from ..kernels import COL_TILE_ATTR, KGROUP, LANES, ROW_TILE_ATTR
from .common import (
    PARALLEL_MIN_MACS,
    epilogue_per_tile,
    single_kernel_block,
    vectorize_epilogue,
    vectorize_static_scratch,
)
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
    main = single_kernel_block(sch, AMX, "AMX")
    ivs = sch.get(main).iter_vars
    loops = sch.get_loops(main)
    batch_loops, row_loop, col_loop = loops[:-4], loops[-4], loops[-3]
    red_q = loops[-2]
    k = loop_extent(sch, red_q) * KGROUP
    row_ext = ivs[len(loops) - 4].dom.extent
    pad = sch.get(main).annotations.get(ROW_TILE_ATTR)
    rows = int(pad) if pad is not None else int(row_ext)
    mr = 2 * TILE_ROWS if rows % (2 * TILE_ROWS) == 0 else TILE_ROWS
    width = int(sch.get(main).annotations[COL_TILE_ATTR])
    if rows % mr or width not in (LANES, 2 * LANES):
        raise ValueError(f"AMX rows {rows} / column block {width} are not whole tiles")
    io, ii = sch.split(row_loop, [None, mr])
    jo, ji = sch.split(col_loop, [None, width])
    sch.reorder(*batch_loops, io, jo, ii, ji)
    if parallel is None:
        parallel = math.prod(_extent(iv.dom.extent) for iv in ivs) >= PARALLEL_MIN_MACS
    outer = parallel_row_loop(sch, batch_loops, io,
                              pad is None and isinstance(row_ext, tirx.IntImm))
    if parallel:
        sch.parallel(outer)
    sch.annotate(outer, CONFIG_LOOP_ATTR, 1)
    consumers = epilogue_per_tile(sch, main, jo, [
        b for b in root_blocks(sch) if block_kind(sch, b) not in (AMX, SCRATCH)])
    init = sch.decompose_reduction(main, ii)
    sch.tensorize(ii, amx_intrin(k, mr // TILE_ROWS, width // LANES))
    try:
        sch.vectorize(sch.get_loops(init)[-1])
    except SCHEDULE_ERRORS:
        pass
    vectorize_epilogue(sch, consumers, LANES)
    vectorize_static_scratch(sch)
    return configure_tiles(sch.mod["main"])


class AmxRule:
    """A function with an AMX block."""

    kind = KIND

    def applies(self, kernel: Kernel) -> bool:
        return AMX in kernel.kinds

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        return schedule_amx(kernel.func)
