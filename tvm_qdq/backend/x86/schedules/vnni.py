"""VNNI conv / matmul schedule: functions with a :data:`~tvm_qdq.backend.kernel_tags.VNNI`
block (possibly with a fused epilogue).

Register tiling: ``MR`` output rows (a rectangle of the output's spatial dims) × ``NR`` blocks
of 16 output channels, the reduction tensorized with :data:`..intrin.VNNI_INTRIN`
(accumulators in registers), the elementwise epilogue computed per tile straight from the
accumulators and vectorized 16 lanes wide; the outermost row loop is parallel (in at most
:data:`.common.PARALLEL_CHUNKS` chunks) when the kernel has at least
:data:`.common.PARALLEL_MIN_MACS` MACs. The padded input copy (a
:data:`~tvm_qdq.backend.kernel_tags.SCRATCH` block) is vectorized along channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tvm import s_tir, tirx

from ...kernel_tags import SCRATCH, VNNI, block_kind
from ...tir_blocks import SCHEDULE_ERRORS, blocks_of_kind, loop_extent, root_blocks
from ..intrin import VNNI_INTRIN
from ..kernels import ROW_TILE_ATTR
from .common import (
    PARALLEL_MIN_MACS,
    epilogue_per_tile,
    parallel_chunks,
    schedule_scratch,
    single_kernel_block,
    spatial_extents,
    vectorize_epilogue,
    vectorize_static_scratch,
)
from .rule import Kernel

KIND = "vnni"
#: Maximum number of zmm accumulators in a register tile.
MAX_ACCUMULATORS = 24


@dataclass(frozen=True)
class Tile:
    """Register tile: ``mr`` output rows × ``nr`` blocks of 16 output channels."""

    mr: int
    nr: int


def valid_row_tiles(dims: list[int], limit: int = 64) -> list[int]:
    """Row-tile sizes ``mr ≤ limit`` whose tiles of the fused row index are rectangles of
    ``dims``.

    ``dims`` are the spatial extents before the channel axis (e.g. ``[N, OH, OW]``); a tile of
    ``mr`` consecutive fused rows is a rectangle when ``mr`` divides the innermost extent, or is
    a multiple of it whose quotient is valid for the outer extents.
    """
    total = math.prod(dims)
    out = []
    for mr in range(1, min(total, limit) + 1):
        if total % mr:
            continue
        rest, ok = mr, True
        for d in reversed(dims):
            if rest == 1:
                break
            if d % rest == 0:
                rest = 1
                break
            if rest % d == 0:
                rest //= d
                continue
            ok = False
            break
        if ok and rest == 1:
            out.append(mr)
    return out


def tile_score(mr: int, nr: int) -> float:
    """Heuristic merit of an ``mr × nr`` register tile (higher is better).

    More accumulators hide the vpdpbusd latency (up to 16), and each k-step costs ``nr`` weight
    loads + ``mr`` broadcasts for ``mr · nr`` vpdpbusd; a small bonus for ``nr > 1``.
    """
    acc = mr * nr
    return min(acc, 16) - 0.35 * (mr + nr) / acc * 4 + (0.1 if nr > 1 else 0.0)


def default_tile(dims: list[int], n_blocks: int) -> Tile:
    """Heuristic register tile for ``dims`` rows and ``n_blocks`` 16-channel column blocks.

    The best :func:`tile_score` among the tiles that fit (at most :data:`MAX_ACCUMULATORS`
    accumulators, at most 16 rows, at most 4 column blocks); the tuning database
    (:mod:`..tuning`) replaces it by a measured tile where it has one.
    """
    rows = valid_row_tiles(dims)
    best, best_score = Tile(1, 1), -1e9
    for nr in range(1, min(n_blocks, 4) + 1):
        if n_blocks % nr:
            continue
        for mr in rows:
            if mr * nr > MAX_ACCUMULATORS or mr > 16:
                continue
            score = tile_score(mr, nr)
            if score > best_score:
                best, best_score = Tile(mr, nr), score
    return best


def row_tile_factors(dims: list[int], mr: int) -> list[int]:
    """Per-dimension factors of a rectangular row tile of ``mr`` rows (see valid_row_tiles)."""
    factors = [1] * len(dims)
    rest = mr
    for i in range(len(dims) - 1, -1, -1):
        if rest == 1:
            break
        if dims[i] % rest == 0:
            factors[i], rest = rest, 1
        else:
            factors[i], rest = dims[i], rest // dims[i]
    return factors


def _tile_inner_vnni(sch: s_tir.Schedule, block, n_outer: int, unroll: bool = True):
    """Order the loops of a VNNI block below its ``n_outer`` tile loops as (reductions, rows,
    column blocks, 16 lanes, 4) and tensorize the 16×4 step; returns the init block."""
    loops = sch.get_loops(block)[n_outer:]
    n_red = sum(1 for iv in sch.get(block).iter_vars if int(iv.iter_type) != 0)
    spatial, reduce = loops[: len(loops) - n_red], loops[len(loops) - n_red:]
    rows = [lp for lp in spatial[:-1] if loop_extent(sch, lp) > 1]
    jn, ji = sch.split(spatial[-1], [None, 16])
    sch.reorder(*reduce[:-1], *rows, jn, ji, reduce[-1])
    init = sch.decompose_reduction(block, reduce[0])
    sch.tensorize(ji, VNNI_INTRIN)
    if unroll:
        for lp in [*rows, jn]:
            sch.unroll(lp)
    try:
        sch.vectorize(sch.get_loops(init)[-1])
    except SCHEDULE_ERRORS:
        pass
    return init


def _tensorize_with_epilogue(sch: s_tir.Schedule, main, jo, n_outer: int) -> None:
    """Accumulators in a local tile under the column-tile loop ``jo``, the epilogue (or a
    plain write-back) per tile vectorized 16 lanes wide, the reduction tensorized below the
    ``n_outer`` tile loops."""
    consumers = epilogue_per_tile(sch, main, jo, [
        b for b in root_blocks(sch) if block_kind(sch, b) not in (VNNI, SCRATCH)])
    _tile_inner_vnni(sch, main, n_outer)
    vectorize_epilogue(sch, consumers, 16)


def schedule_vnni(func: tirx.PrimFunc, tile: Tile | None = None, parallel: bool | None = None
                  ) -> tirx.PrimFunc:
    """Schedule a function holding one VNNI reduction and its fused epilogue.

    ``tile`` defaults to :func:`default_tile`; ``parallel`` to ``MACs ≥ PARALLEL_MIN_MACS``.
    A block with symbolic extents or padded rows (:data:`..kernels.ROW_TILE_ATTR`, also a
    static row count padded by :mod:`..padded_tiles`) takes :func:`_schedule_symbolic_rows`.
    """
    sch = s_tir.Schedule(func)
    main = vnni_block(sch)
    if not _static_extents(sch, main) or ROW_TILE_ATTR in sch.get(main).annotations:
        return _schedule_symbolic_rows(sch, main, tile, parallel)
    loops = sch.get_loops(main)
    ivs = sch.get(main).iter_vars
    spatial_ext = spatial_extents(sch, main)
    n_sp = len(spatial_ext)
    row_dims, chan = spatial_ext[:-1], spatial_ext[-1]
    n_blocks = chan // 16
    if tile is None:
        tile = default_tile(row_dims, n_blocks)
    if tile.mr not in valid_row_tiles(row_dims, max(tile.mr, 64)) or n_blocks % tile.nr:
        raise ValueError(f"tile {tile} does not fit rows {row_dims} × {n_blocks} blocks")
    macs = math.prod(spatial_ext) * math.prod(
        int(iv.dom.extent) for iv in ivs if int(iv.iter_type) != 0)

    # Tile loops: row tiles (per dimension, rectangles), then column tiles.
    outer_rows, inner_rows = [], []
    for loop, dim, factor in zip(loops[: n_sp - 1], row_dims,
                                 row_tile_factors(row_dims, tile.mr), strict=True):
        if factor == 1:
            outer_rows.append(loop)
        elif factor == dim:
            inner_rows.append(loop)
        else:
            lo, li = sch.split(loop, [None, factor])
            outer_rows.append(lo)
            inner_rows.append(li)
    jo, jr = sch.split(loops[n_sp - 1], [None, tile.nr * 16])
    sch.reorder(*outer_rows, jo, *inner_rows, jr)
    if parallel is None:
        parallel = macs >= PARALLEL_MIN_MACS
    if parallel:
        # Chunk the first non-unit outer row loop (fusing + splitting would leave bindings
        # that tensorize cannot blockize).
        for loop in outer_rows:
            if loop_extent(sch, loop) > 1:
                parallel_chunks(sch, loop)
                break
    n_red = sum(1 for iv in ivs if int(iv.iter_type) != 0)
    n_outer = len(sch.get_loops(main)) - len(inner_rows) - 1 - n_red

    _tensorize_with_epilogue(sch, main, jo, n_outer)
    for block in blocks_of_kind(sch, SCRATCH):
        schedule_scratch(sch, block)
    return sch.mod["main"]


#: Row count assumed for a symbolic row dimension in tile and parallelization decisions.
NOMINAL_ROWS = 128


def _static_extents(sch: s_tir.Schedule, block) -> bool:
    return all(isinstance(iv.dom.extent, tirx.IntImm) for iv in sch.get(block).iter_vars)


def best_column_tile(mr: int, n_blocks: int) -> int:
    """The ``nr`` of the best :func:`tile_score` for ``mr`` rows and ``n_blocks`` column
    blocks (``nr`` divides ``n_blocks``, at most 4, at most :data:`MAX_ACCUMULATORS`)."""
    fits = [nr for nr in range(1, min(n_blocks, 4) + 1)
            if n_blocks % nr == 0 and mr * nr <= MAX_ACCUMULATORS]
    return max(fits, key=lambda nr: tile_score(mr, nr), default=1)


def symbolic_row_tile(n_blocks: int) -> Tile:
    """Register tile of a matmul with a symbolic row count: :func:`default_tile` for
    :data:`NOMINAL_ROWS` rows (the kernel pads its rows to whole tiles of ``mr``)."""
    return default_tile([NOMINAL_ROWS], n_blocks)


def _nominal(extent) -> int:
    return int(extent) if isinstance(extent, tirx.IntImm) else NOMINAL_ROWS


#: A static outer loop with at least this many iterations is parallel instead of the
#: symbolic row-tile loop below it (one parallel region instead of one per iteration).
_OUTER_PARALLEL_MIN = 16


def parallel_row_loop(sch: s_tir.Schedule, batch_loops: list, row_tiles, static_rows: bool):
    """The loop :func:`_schedule_symbolic_rows` parallelizes: a static batch loop with at
    least :data:`_OUTER_PARALLEL_MIN` iterations (e.g. a conv's output height), else the
    row-tile loop when the row count is symbolic or padded (``static_rows`` False) unless it
    is a single tile, else the first static batch loop with more than one iteration (else the
    outermost loop)."""
    extents = [sch.get(lp).extent for lp in batch_loops]
    static = [(int(e), lp) for e, lp in zip(extents, batch_loops, strict=True)
              if isinstance(e, tirx.IntImm) and int(e) > 1]
    large = [lp for e, lp in static if e >= _OUTER_PARALLEL_MIN]
    if large:
        return large[0]
    tiles = sch.get(row_tiles).extent
    single_tile = isinstance(tiles, tirx.IntImm) and int(tiles) == 1
    if not static_rows and not (single_tile and static):
        return row_tiles
    return static[0][1] if static else ([*batch_loops, row_tiles][0])


def _schedule_symbolic_rows(sch: s_tir.Schedule, main, tile: Tile | None,
                            parallel: bool | None) -> tirx.PrimFunc:
    """:func:`schedule_vnni` for a matmul ``[*batch, m, n]`` (or conv) whose batch dims or row
    count are symbolic.

    A padded ``m`` (symbolic, or static with a poor divisor: :mod:`..padded_tiles`) is
    padded by the kernel to whole tiles of its ``row_tile`` annotation
    (:func:`..kernels.matmul_vnni`), so the row split has no predicate; ``mr`` divides it.
    An unpadded static ``m`` takes a row tile dividing it. The row-tile loop (or, with an
    unpadded static ``m``, the outermost batch loop) is parallel unless a static batch loop
    is large, unchunked (a chunk split over the tensorized tiles is refused by TVM); the
    epilogue's row predicate sits outside its 16-lane vector loop.
    """
    ivs = sch.get(main).iter_vars
    n_red = sum(1 for iv in ivs if int(iv.iter_type) != 0)
    loops = sch.get_loops(main)
    spatial = loops[: len(loops) - n_red]
    batch_loops, row_loop, col_loop = spatial[:-2], spatial[-2], spatial[-1]
    row_ext = ivs[len(spatial) - 2].dom.extent
    n_blocks = int(ivs[len(spatial) - 1].dom.extent) // 16
    pad = sch.get(main).annotations.get(ROW_TILE_ATTR)
    if pad is not None:
        rows_ok = [d for d in range(1, int(pad) + 1) if int(pad) % d == 0]
    elif isinstance(row_ext, tirx.IntImm):
        rows_ok = valid_row_tiles([int(row_ext)], 16)
    else:
        raise ValueError("symbolic VNNI rows without a row_tile annotation")
    if tile is None or tile.mr not in rows_ok or n_blocks % tile.nr or \
            tile.mr * tile.nr > MAX_ACCUMULATORS:
        mr = max(rows_ok) if pad is not None else default_tile([int(row_ext)], n_blocks).mr
        tile = Tile(mr, best_column_tile(mr, n_blocks))
    if tile.mr > 1:
        io, ii = sch.split(row_loop, [None, tile.mr])
        inner_rows = [ii]
    else:
        io, inner_rows = row_loop, []
    jo, jr = sch.split(col_loop, [None, tile.nr * 16])
    sch.reorder(*batch_loops, io, jo, *inner_rows, jr)
    if parallel is None:
        macs = math.prod(_nominal(iv.dom.extent) for iv in ivs)
        parallel = macs >= PARALLEL_MIN_MACS
    if parallel:
        sch.parallel(parallel_row_loop(sch, batch_loops, io,
                                    pad is None and isinstance(row_ext, tirx.IntImm)))
    _tensorize_with_epilogue(sch, main, jo, len(batch_loops) + 2)
    vectorize_static_scratch(sch)
    return sch.mod["main"]


def vnni_block(sch: s_tir.Schedule):
    """Inline the elementwise blocks around the one VNNI block of ``sch`` (kept apart: the
    VNNI and scratch blocks) and return the VNNI block."""
    return single_kernel_block(sch, VNNI, "VNNI")


class VnniRule:
    """A function with a VNNI block: the requested (or heuristic) tile, or ``fallback``."""

    kind = KIND

    def __init__(self, fallback: Tile | None = None) -> None:
        self.fallback = fallback

    def applies(self, kernel: Kernel) -> bool:
        return VNNI in kernel.kinds

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        return schedule_vnni(kernel.func, self.fallback or kernel.tile)
