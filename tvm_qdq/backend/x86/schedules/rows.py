"""Schedules for row-wise functions (softmax, layer norm, reductions, gathers, transposes).

:class:`RowRule` applies the one of them that fits a function (:func:`row_kind`). Every
schedule is a composition of semantics-preserving primitives that keep each float reduction's
order of operations, so the outputs are bit-identical to the generic schedule's:

* ``row_allreduce`` — a reduction of a whole tensor to a scalar by ``max`` / ``min`` (or any
  integer reduction), e.g. DynamicQuantizeLinear's range: ``rfactor`` over
  :data:`ALLREDUCE_LANES` lanes (lane ``l`` reduces the elements ``i ≡ l`` modulo the lane
  count, vectorized), then one reduction of the lanes. When the trailing axes hold whole
  lane vectors (an NHWC map's channels) the lanes run along each row, so every vector is one
  contiguous load (a lane index over the fused axes would divide every element's index).
  ``max``/``min`` are associative and commutative (exactly, in floating point too), so the
  result is unchanged. Float sums are not re-associated (they would round differently) and
  are left to the generic schedule.
* ``row_reduce`` — functions whose reductions run along the last axis of rows (layer norm,
  softmax): each row's reduction is still one sequential chain ``acc = acc ⊕ x[r, k]``
  for ``k = 0, 1, …`` (hence the identical result), but :data:`ROW_LANES` rows are reduced
  side by side (the row loop inside the ``k`` loop, vectorized), which turns a latency-bound
  scalar chain into independent vector lanes. Elementwise stages are vectorized along the
  last axis as in the generic schedule.
* ``row_copy`` — pure data movement (reshape/transpose chains): the output's last axis is
  split at the granularity at which the input is contiguous, so the copy is vectorized.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import ir, s_tir, tirx
from tvm import sym as arith

from ...tir_blocks import SCHEDULE_ERRORS, block_name, is_reduction, loop_extent, root_blocks
from .common import PARALLEL_MIN_ELEMS, inline_elementwise, schedule_spatial
from .lut_gather import LutRule
from .rule import Kernel
from .symbolic_rows import SymbolicLoops, divides, is_symbolic, known_divisor, nominal_size

#: Lanes of the partial reduction of ``row_allreduce`` (4 AVX-512 vectors of float32: enough
#: independent chains to hide the latency of ``vmaxps``).
ALLREDUCE_LANES = 64
#: Rows reduced side by side by ``row_reduce`` (one AVX-512 vector of float32).
ROW_LANES = 16


def _iter_types(sch: s_tir.Schedule, block) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def _update_value(sch: s_tir.Schedule, block) -> tirx.PrimExpr | None:
    body = sch.get(block).body
    return body.value if isinstance(body, tirx.BufferStore) else None


def _order_free(sch: s_tir.Schedule, block) -> bool:
    """True when the block's reduction can be re-associated without changing its result:
    ``max``/``min`` (exact in any order) or any integer combiner (exact, wrapping)."""
    value = _update_value(sch, block)
    if value is None:
        return False
    if isinstance(value, tirx.Max | tirx.Min):
        return True
    return not str(value.dtype).startswith(("float", "bfloat"))


# ----------------------------------------------------------------------------------------------
# Whole-tensor reduction
# ----------------------------------------------------------------------------------------------


def _allreduce_blocks(sch: s_tir.Schedule) -> list[str]:
    """Names of the whole-tensor order-free reductions of the function when every other block
    is 0-d arithmetic (e.g. DynamicQuantizeLinear's min, max and the scale / zero point
    computed from them, grouped by :mod:`..group_scalars`); [] otherwise."""
    reductions, others = [], []
    for block in root_blocks(sch):
        types = _iter_types(sch, block)
        if types and all(t != 0 for t in types) and _order_free(sch, block):
            reductions.append(block_name(sch, block))
        else:
            others.append([iv.dom.extent for iv in sch.get(block).iter_vars])
    if any(is_symbolic(extent) or int(extent) != 1
           for extents in others for extent in extents):  # not 0-d arithmetic
        return []
    return reductions


def _is_allreduce(sch: s_tir.Schedule) -> bool:
    return bool(_allreduce_blocks(sch))


def _row_lanes(sch: s_tir.Schedule, loops: list, lanes: int) -> tuple[int, int] | None:
    """``(p, width)``: the loops before ``p >= 1`` are rows (they may be symbolic) and each
    row's trailing static loops hold whole vectors of ``width`` lanes: the last axis alone
    when it is a multiple of ``lanes``, ``lanes / 2`` or ``lanes / 4`` (e.g. 144 channels →
    16), else the shortest static suffix whose size is a multiple of ``lanes`` (e.g.
    ``[batch, seq, 64]`` → 2 with 64 lanes). None otherwise. A row's elements are
    contiguous, so each lane vector is one load."""
    if len(loops) < 2:
        return None
    extents = [sch.get(lp).extent for lp in loops]
    if not is_symbolic(extents[-1]):
        for width in (lanes, lanes // 2, lanes // 4):
            if int(extents[-1]) % width == 0:
                return len(loops) - 1, width
    size = 1
    for p in range(len(extents) - 1, 0, -1):  # extents[p + 1:] are static here
        if is_symbolic(extents[p]):
            return None
        size *= int(extents[p])
        if size % lanes == 0:
            return p, lanes
    return None


def _allreduce_rows(sch: s_tir.Schedule, block, loops: list, split: int, lanes: int) -> None:
    """``out = ⊕ x[r, j]`` over rows ``r`` (the loops before ``split``, fused) and static
    ``j`` (the loops from ``split``, fused, a multiple of ``lanes``):
    ``part[c, l] = ⊕_{r in chunk c, j ≡ l (mod lanes)} x[r, j]`` vectorized over ``l`` and
    parallel over 2 chunks of rows when the tensor is large (static rows), then
    ``⊕_{c, l} part[c, l]``. The row index is split into the tensor's dims once per row,
    not per element (a fused index would divide every lane)."""
    rows = sch.fuse(*loops[:split]) if split > 1 else loops[0]
    cols = sch.fuse(*loops[split:]) if len(loops) - split > 1 else loops[split]
    extent = sch.get(rows).extent
    total = None if is_symbolic(extent) else int(extent) * int(sch.get(cols).extent)
    chunks = 2 if total is not None and total >= PARALLEL_MIN_ELEMS and \
        int(extent) % 2 == 0 else 1
    chunk, rest = sch.split(rows, [chunks, None])
    col, lane = sch.split(cols, [None, lanes])
    sch.reorder(chunk, lane, rest, col)
    rf = sch.rfactor(sch.fuse(chunk, lane), 0)
    part, r, c = sch.get_loops(rf)
    chunk, lane = sch.split(part, [chunks, lanes])
    sch.reorder(chunk, r, c, lane)
    sch.vectorize(lane)
    if chunks > 1:
        sch.parallel(chunk)
    init = sch.decompose_reduction(rf, r)
    sch.vectorize(sch.get_loops(init)[-1])


def _allreduce_block(sch: s_tir.Schedule, block, lanes: int, tails: SymbolicLoops) -> None:
    """``out = ⊕_i x[i]`` as ``part[l] = ⊕_{i ≡ l (mod lanes)} x[i]`` (vectorized over ``l``,
    parallel over chunks of ``i`` when large), then ``out = ⊕_l part[l]``; row by row
    (:func:`_allreduce_rows`) when the trailing axes hold whole lane vectors
    (:func:`_row_lanes`). A symbolic
    element count must be a multiple of ``lanes`` for every size (e.g. ``b·s·384``), else
    ValueError."""
    loops = sch.get_loops(block)
    rows = _row_lanes(sch, loops, lanes)
    if rows is not None:
        _allreduce_rows(sch, block, loops, *rows)
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    total = sch.get(fused).extent
    if is_symbolic(total):
        chunks = 2 if nominal_size(total) >= PARALLEL_MIN_ELEMS and \
            divides(2 * lanes, total) else 1
        outer, mid, lane = tails.split(sch, fused, [chunks, None, lanes])
    else:
        total = int(total)
        if total % lanes:
            raise ValueError(f"{total} elements not a multiple of {lanes} lanes")
        chunks = 2 if total >= PARALLEL_MIN_ELEMS and (total // lanes) % 2 == 0 else 1
        outer, mid, lane = sch.split(fused, [chunks, None, lanes])
    sch.reorder(outer, lane, mid)
    part_loop = sch.fuse(outer, lane)
    rf = sch.rfactor(part_loop, 0)
    # rf block loops: (part_loop [spatial], mid [reduce]); split the part back into
    # (chunk, lane) and put the lanes innermost.
    p, m = sch.get_loops(rf)
    chunk, lane = sch.split(p, [chunks, lanes])
    sch.reorder(chunk, m, lane)
    sch.vectorize(lane)
    if chunks > 1:
        tails.parallel(sch, chunk, total, PARALLEL_MIN_ELEMS)
    init = sch.decompose_reduction(rf, m)
    sch.vectorize(sch.get_loops(init)[-1])


def schedule_allreduce(func: tirx.PrimFunc, lanes: int = ALLREDUCE_LANES) -> tirx.PrimFunc:
    """Every whole-tensor reduction of ``func`` as :func:`_allreduce_block` (0-d blocks as
    they are)."""
    sch = s_tir.Schedule(func)
    names = _allreduce_blocks(sch)
    for block in root_blocks(sch):  # rfactor rejects loop-less sibling blocks: give them a loop
        if not sch.get_loops(block):
            sch.add_unit_loop(block)
    tails = SymbolicLoops()
    for name in names:
        _allreduce_block(sch, sch.get_sblock(name), lanes, tails)
    return tails.apply(sch.mod["main"])


# ----------------------------------------------------------------------------------------------
# Row reductions (layer norm, softmax)
# ----------------------------------------------------------------------------------------------


def _row_reductions(sch: s_tir.Schedule) -> list:
    """Reduction blocks of the form ``S…S R`` (rows × one trailing reduction axis); raises
    when a reduction has another shape."""
    found = []
    for block in root_blocks(sch):
        if not is_reduction(sch, block):
            continue
        types = _iter_types(sch, block)
        if len(types) < 2 or types[-1] == 0 or any(t != 0 for t in types[:-1]):
            raise ValueError("not a row reduction")
        found.append(block)
    return found


def _schedule_row_reduction(sch: s_tir.Schedule, block, lanes: int,
                            tails: SymbolicLoops) -> None:
    """Reduce ``lanes`` rows side by side: loops ``(row tile, k, row lane)``, lanes
    vectorized; each row's chain over ``k`` keeps its order. Symbolic extents:
    :func:`_schedule_row_reduction_symbolic`."""
    loops = sch.get_loops(block)
    if any(is_symbolic(sch.get(lp).extent) for lp in loops):
        _schedule_row_reduction_symbolic(sch, block, lanes, tails)
        return
    rows = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    k = loops[-1]
    n_rows = loop_extent(sch, rows)
    width = math.gcd(n_rows, lanes)
    if width < 4:
        raise ValueError(f"{n_rows} rows: no row tile")
    tile, lane = sch.split(rows, [None, width])
    sch.reorder(tile, k, lane)
    sch.vectorize(lane)
    if n_rows * loop_extent(sch, k) >= PARALLEL_MIN_ELEMS and loop_extent(sch, tile) > 1:
        sch.parallel(tile)
    init = sch.decompose_reduction(block, k)
    sch.vectorize(sch.get_loops(init)[-1])


def _schedule_row_reduction_symbolic(sch: s_tir.Schedule, block, lanes: int,
                                     tails: SymbolicLoops) -> None:
    """:func:`_schedule_row_reduction` with symbolic extents: the innermost row axis is split
    into tiles of ``lanes`` rows (main part + tail), not the fused rows (their indices would
    divide by a symbolic extent in every lane); the outer row axes are fused into one loop,
    parallel when it has a static factor of at least 4 (e.g. 12 heads), else the tile loop
    is, for calls with enough elements (:meth:`SymbolicLoops.parallel`)."""
    loops = sch.get_loops(block)
    outer, row, k = loops[:-2], loops[-2], loops[-1]
    size = math.prod([sch.get(lp).extent for lp in loops[1:]], start=sch.get(loops[0]).extent)
    tile, lane = tails.split(sch, row, [None, lanes])
    sch.reorder(tile, k, lane)
    sch.vectorize(lane)
    fused = sch.fuse(*outer) if len(outer) > 1 else (outer[0] if outer else None)
    if fused is not None and known_divisor(sch.get(fused).extent) >= 4:
        tails.parallel(sch, fused, size, PARALLEL_MIN_ELEMS)
    else:
        tails.parallel(sch, tile, size, PARALLEL_MIN_ELEMS)
    init = sch.decompose_reduction(block, k)
    sch.vectorize(sch.get_loops(init)[-1])


def schedule_row_reduce(func: tirx.PrimFunc, lanes: int = ROW_LANES) -> tirx.PrimFunc:
    """Generic inlining, then row reductions :data:`ROW_LANES` rows at a time and the
    elementwise stages vectorized along their last axis."""
    sch = s_tir.Schedule(func)
    inline_elementwise(sch)
    reductions = _row_reductions(sch)
    if not reductions:
        raise ValueError("no row reduction")
    names = {block_name(sch, b) for b in reductions}
    tails = SymbolicLoops()
    for block in root_blocks(sch):
        if block_name(sch, block) in names:
            _schedule_row_reduction(sch, block, lanes, tails)
        else:
            try:
                schedule_spatial(sch, block, tails=tails)
            except SCHEDULE_ERRORS:
                continue
    return tails.apply(sch.mod["main"])


# ----------------------------------------------------------------------------------------------
# Copies (reshape / transpose chains)
# ----------------------------------------------------------------------------------------------

#: Candidate vector widths (elements) of a copy, widest first; capped at 64 bytes.
_COPY_WIDTHS = (64, 32, 16, 8, 4)


def _copy_load(sch: s_tir.Schedule, block):
    """The single load a pure-copy block stores (possibly through a cast), else None."""
    value = _update_value(sch, block)
    while isinstance(value, tirx.Cast):
        value = value.value
    return value if isinstance(value, ir.expr.TensorLoad) else None


def _input_stride(sch: s_tir.Schedule, block, load, width: int) -> int | None:
    """Stride (in input elements) between consecutive iterations of the inner part when the
    block's last axis is split by ``width``; None when it is not constant."""
    ivs = list(sch.get(block).iter_vars)
    extent = ivs[-1].dom.extent
    extent = extent if is_symbolic(extent) else int(extent)
    ana = arith.Analyzer()
    dtype = str(ivs[-1].var.ty)
    outer, inner = tirx.Var("o", dtype), tirx.Var("i", dtype)
    for iv in ivs[:-1]:
        ana.bind(iv.var, ir.Range.from_min_extent(iv.dom.min, iv.dom.extent))
    ana.bind(outer, ir.Range.from_min_extent(0, extent // width))
    ana.bind(inner, ir.Range.from_min_extent(0, width))
    ana.bind(ivs[-1].var, outer * width + inner)
    offset = tirx.const(0, dtype)
    for index, dim in zip(load.indices, load.source.shape, strict=True):
        offset = offset * dim + index
    coef = arith.detect_linear_equation(ana.simplify(offset), [inner])
    if len(coef) != 2 or not isinstance(coef[0], tirx.IntImm):
        return None
    return int(coef[0])


def schedule_copy(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """A pure data movement: inline the chain into the output, split the output's last axis
    by the widest width at which the input is contiguous too (a vector load and store), or
    else by up to 16 (a gathered load), vectorize that, parallelize the outermost loop."""
    sch = s_tir.Schedule(func)
    for block in root_blocks(sch)[:-1]:  # copies are free to recompute: inline them all
        sch.compute_inline(block)
    blocks = root_blocks(sch)
    if len(blocks) != 1 or is_reduction(sch, blocks[0]):
        raise ValueError("not a single copy block")
    (block,) = blocks
    load = _copy_load(sch, block)
    if load is None:
        raise ValueError("not a pure copy")
    loops = sch.get_loops(block)
    if any(is_symbolic(sch.get(lp).extent) for lp in loops):
        return _schedule_copy_symbolic(sch, block, load)
    extent = loop_extent(sch, loops[-1])
    itemsize = np.dtype(str(load.ty)).itemsize
    widths = [w for w in _COPY_WIDTHS if extent % w == 0 and w * itemsize <= 64]
    unit = [w for w in widths if _input_stride(sch, block, load, w) == 1]
    gathered = [w for w in widths if w <= 16]
    width = unit[0] if unit else (gathered[0] if gathered else None)
    if width is None:
        raise ValueError("no vector width")
    if width < extent:
        _, inner = sch.split(loops[-1], [None, width])
    else:
        inner = loops[-1]
    sch.vectorize(inner)
    total = math.prod(loop_extent(sch, lp) for lp in sch.get_loops(block))
    outer = sch.get_loops(block)[0]
    if total >= PARALLEL_MIN_ELEMS and not outer.same_as(inner) and loop_extent(sch, outer) > 1:
        sch.parallel(outer)
    return sch.mod["main"]


def _schedule_copy_symbolic(sch: s_tir.Schedule, block, load) -> tirx.PrimFunc:
    """:func:`schedule_copy` with symbolic extents: the widest width (≤ 64 bytes) at which
    the input is contiguous too, else up to 16 gathered, splitting the last axis into a main
    part + tail when the width may not divide it (:class:`SymbolicLoops`); the outermost loop
    parallel for calls with enough elements."""
    loops = sch.get_loops(block)
    extents = [sch.get(lp).extent for lp in loops]
    itemsize = np.dtype(str(load.ty)).itemsize
    widths = [w for w in _COPY_WIDTHS if w * itemsize <= 64 and nominal_size(extents[-1]) >= w]
    unit = [w for w in widths if _input_stride(sch, block, load, w) == 1]
    gathered = [w for w in widths if w <= 16]
    width = unit[0] if unit else (gathered[0] if gathered else None)
    if width is None:
        raise ValueError("no vector width")
    tails = SymbolicLoops()
    if is_symbolic(extents[-1]) or width < int(extents[-1]):
        _, inner = tails.split(sch, loops[-1], [None, width])
    else:
        inner = loops[-1]
    sch.vectorize(inner)
    outer = sch.get_loops(block)[0]
    if not outer.same_as(inner):
        tails.parallel(sch, outer, math.prod(extents[1:], start=extents[0]),
                       PARALLEL_MIN_ELEMS)
    return tails.apply(sch.mod["main"])


def _is_copy(sch: s_tir.Schedule) -> bool:
    """Every block spatial, the output block a (cast) load: reshape/transpose chains."""
    blocks = root_blocks(sch)
    return bool(blocks) and not any(is_reduction(sch, b) for b in blocks) and all(
        _copy_load(sch, b) is not None for b in blocks)


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------


def row_kind(kernel: Kernel) -> str | None:
    """Which row schedule fits ``kernel`` (at most one; none for a byte table lookup, which
    :class:`.lut_gather.LutRule` takes)."""
    return kernel.memo("row_kind", lambda: _row_kind(kernel))


def _row_kind(kernel: Kernel) -> str | None:
    if LutRule().applies(kernel):
        return None
    func = kernel.func
    try:
        sch = s_tir.Schedule(func)
        if _is_allreduce(sch):
            return "row_allreduce"
        if any(is_reduction(sch, b) for b in root_blocks(sch)):
            _row_reductions(sch)
            return "row_reduce"
        if _is_copy(sch) and any("transpose" in n or "reshape" in n
                                 for n in kernel.block_names):
            return "row_copy"
    except SCHEDULE_ERRORS:
        return None
    return None


class RowRule:
    """One of the row schedules (``kind``: ``row_allreduce``, ``row_reduce``, ``row_copy``)."""

    _SCHEDULES = {"row_allreduce": schedule_allreduce, "row_reduce": schedule_row_reduce,
                  "row_copy": schedule_copy}

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def applies(self, kernel: Kernel) -> bool:
        return row_kind(kernel) == self.kind

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        return self._SCHEDULES[self.kind](kernel.func)
