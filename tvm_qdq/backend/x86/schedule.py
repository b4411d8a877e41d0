"""Schedules (``tvm.s_tir.Schedule``) for the fused PrimFuncs of a lowered model.

* Functions with a ``tq_vnni*`` block (VNNI conv/matmul, possibly with a fused epilogue):
  register tiling ``MR`` output rows (a rectangle of the output's spatial dims) × ``NR``
  blocks of 16 output channels, the reduction tensorized with :data:`.intrin.VNNI_INTRIN`
  (accumulators in registers), the elementwise epilogue computed per tile straight from the
  accumulators and vectorized 16 lanes wide; the outermost row loop is parallel (in at most
  :data:`PARALLEL_CHUNKS` chunks) when the kernel has at least :data:`PARALLEL_MIN_MACS` MACs.
* Functions with a ``tq_dw*`` block (depthwise conv): channel-vectorized accumulation over a
  tile of 8 output pixels, epilogue per tile.
* Everything else (requantize chains, pooling, softmax, layer norm, ...): producers inlined,
  the innermost unit-stride loop vectorized, the outer loop parallel when large.

Inlining (:func:`_inline_elementwise`) never duplicates costly work: a value read more than
once stays a separate stage (computed per tile into a local buffer), and costly values are not
inlined into transposing consumers. Every primitive is semantics-preserving; a step that does
not apply raises and the function falls back to the next simpler schedule, and every result
must pass TVM's TIR lowering (:func:`lowers`), so the result is always correct.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx

from .intrin import VNNI_INTRIN

#: Parallelize a kernel when it performs at least this many multiply-accumulates / elements.
PARALLEL_MIN_MACS = 1 << 20
PARALLEL_MIN_ELEMS = 1 << 15
#: Maximum number of zmm accumulators in a register tile.
MAX_ACCUMULATORS = 24

#: What a schedule primitive raises when it does not apply.
_ERRORS = (RuntimeError, ValueError, TypeError, AttributeError, IndexError, AssertionError)


@dataclass(frozen=True)
class Tile:
    """Register tile: ``mr`` output rows × ``nr`` blocks of 16 output channels."""

    mr: int
    nr: int


def _name(sch: s_tir.Schedule, block) -> str:
    return str(sch.get(block).name_hint)


def _extent(sch: s_tir.Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(int(iv.iter_type) != 0 for iv in sch.get(block).iter_vars)


def _spatial_extents(sch: s_tir.Schedule, block) -> list[int]:
    return [int(iv.dom.extent) for iv in sch.get(block).iter_vars if int(iv.iter_type) == 0]


def _blocks(sch: s_tir.Schedule) -> list:
    return sch.get_child_blocks(sch.get_sblock("root"))


#: Expressions shorter than this (TVMScript characters) are inlined even when read twice,
#: unless they call a transcendental (``_COSTLY``).
_CHEAP_EXPR = 120
_COSTLY = re.compile(r"T\.(exp|exp2|log|log2|log10|tanh|erf|sqrt|rsqrt|pow|sigmoid|sin|cos)\(| / ")


def _is_cheap(sch: s_tir.Schedule, block) -> bool:
    text = _value_text(sch, block)
    return len(text) < _CHEAP_EXPR and not _COSTLY.search(text)


def _reads_by_consumers(sch: s_tir.Schedule, block) -> int:
    """Number of loads of ``block``'s output in all its consumers (inlining evaluates the
    block's expression once per load)."""
    node = sch.get(block)
    if len(node.writes) != 1:
        return 99
    pattern = re.compile(rf"\b{re.escape(str(node.writes[0].source.name))}\[")
    return sum(len(pattern.findall(_value_text(sch, c))) for c in sch.get_consumers(block))


def _reads_unit_stride(sch: s_tir.Schedule, consumer, producer) -> bool:
    """True when ``consumer``'s innermost iterator walks ``producer``'s output along its last
    dimension (or not at all), i.e. the consumer is no transpose of it."""
    node = sch.get(producer)
    if len(node.writes) != 1:
        return False
    buffer = node.writes[0].source
    cnode = sch.get(consumer)
    if not cnode.iter_vars:
        return True
    var = re.compile(rf"\b{re.escape(str(cnode.iter_vars[-1].var))}\b")
    return not any(
        region.source.same_as(buffer) and any(var.search(str(r.min)) for r in
                                              list(region.region)[:-1])
        for region in cnode.reads)


def _consumers_read_unit_stride(sch: s_tir.Schedule, block) -> bool:
    """True when no consumer transposes ``block``'s output. Inlining a costly value into a
    transposing consumer loses the vectorization of the costly part (e.g. quantize → the
    NCHW-to-NHWC transpose at a model's input)."""
    return all(_reads_unit_stride(sch, c, block) for c in sch.get_consumers(block))


def _reads_of_producers(sch: s_tir.Schedule, block) -> int:
    """Largest number of loads ``block`` makes of one producer's (non-cheap) output: reverse
    inlining substitutes the producer's value once per load."""
    text = _value_text(sch, block)
    most = 0
    for producer in sch.get_producers(block):
        node = sch.get(producer)
        if len(node.writes) != 1 or _is_cheap(sch, producer):
            continue
        name = re.escape(str(node.writes[0].source.name))
        most = max(most, len(re.findall(rf"\b{name}\[", text)))
    return most


def _value_text(sch: s_tir.Schedule, block) -> str:
    """TVMScript of the value a block stores (its whole body when that is not a store)."""
    body = sch.get(block).body
    return str(body.value.script() if hasattr(body, "value") else body.script())


def _inline_elementwise(sch: s_tir.Schedule, keep: Callable[[str], bool]) -> None:
    """Inline spatial blocks not kept into their consumers (or producer), to a fixpoint.

    A block whose value is read more than once (by one or several consumers) is inlined only
    if it is cheap (the inlined expression would be evaluated once per read); the others stay
    separate stages (computed per tile into local buffers by the kernel schedules).
    Each round tries ``compute_inline`` on every block (producers first), then
    ``reverse_compute_inline`` on the remaining ones (consumers first).
    """
    for _ in range(8):
        changed = False
        for block in _blocks(sch):
            name = _name(sch, block)
            if keep(name) or _is_reduction(sch, block):
                continue
            cheap = _is_cheap(sch, block)
            if (_reads_by_consumers(sch, block) <= 1 or cheap) and (
                    cheap or _consumers_read_unit_stride(sch, block)):
                try:
                    sch.compute_inline(block)
                    changed = True
                except _ERRORS:
                    pass
        for block in reversed(_blocks(sch)):
            name = _name(sch, block)
            if keep(name) or _is_reduction(sch, block):
                continue
            producers = sch.get_producers(block)
            # (TVM 0.27 also accepts a producer with other consumers and then drops the
            # producer's buffer: keep to producers this block is the only reader of.)
            if not producers or any(len(sch.get_consumers(p)) != 1 for p in producers):
                continue
            if _reads_of_producers(sch, block) > 1 or not all(
                    _reads_unit_stride(sch, block, p) for p in producers):
                continue
            try:
                sch.reverse_compute_inline(block)
                changed = True
            except _ERRORS:
                pass
        if not changed:
            return


def _vector_split(sch: s_tir.Schedule, loop, lanes: int):
    """Split ``loop`` so the inner part is the largest power of two ≤ ``lanes`` dividing it."""
    extent = _extent(sch, loop)
    width = 1
    while width * 2 <= lanes and extent % (width * 2) == 0:
        width *= 2
    if width == 1:
        return loop, None
    outer, inner = sch.split(loop, [None, width])
    return outer, inner


def _unit_stride_inner(sch: s_tir.Schedule, block) -> bool:
    """True when the block's last iterator indexes only the last dimension of every buffer it
    touches (or none of it: a broadcast), so vectorizing it needs no gather/scatter."""
    node = sch.get(block)
    if not node.iter_vars:
        return False
    var = re.compile(rf"\b{re.escape(str(node.iter_vars[-1].var))}\b")
    for region in list(node.reads) + list(node.writes):
        dims = list(region.region)
        if any(var.search(str(r.min)) for r in dims[:-1]):
            return False
    return True


def _schedule_spatial(sch: s_tir.Schedule, block, lanes: int = 16) -> None:
    """Vectorize the innermost loop of a spatial block when it is a unit-stride run of at least
    4 (no fusing: fused indices need div/mod, which defeats the vectorizer), parallel
    outermost loop when the block is large."""
    loops = sch.get_loops(block)
    if not loops:
        return
    total = math.prod(_extent(sch, lp) for lp in loops)
    inner = loops[-1]
    extent = _extent(sch, inner)
    vec = None
    if extent >= 4 and _unit_stride_inner(sch, block):
        if extent > 4 * lanes:
            _, vec = _vector_split(sch, inner, lanes)
        else:
            vec = inner
    if vec is not None:
        sch.vectorize(vec)
    outer = sch.get_loops(block)[0]
    if total >= PARALLEL_MIN_ELEMS and outer != vec and _extent(sch, outer) > 1:
        sch.parallel(outer)


#: Parallel loops are split into this many (at most) chunks: TVM allocates the local buffers
#: of a parallel body once per iteration, so one iteration per tile would cost an allocation
#: per tile.
PARALLEL_CHUNKS = 4


def _parallel_chunks(sch: s_tir.Schedule, loop):
    """Parallelize ``loop`` over at most :data:`PARALLEL_CHUNKS` chunks (a divisor of it);
    returns the parallel loop (None when the loop has no divisor > 1 within the limit)."""
    extent = _extent(sch, loop)
    chunks = max((d for d in range(1, PARALLEL_CHUNKS + 1) if extent % d == 0), default=1)
    if chunks <= 1:
        return None
    if chunks == extent:
        sch.parallel(loop)
        return loop
    outer, _ = sch.split(loop, [chunks, None])
    sch.parallel(outer)
    return outer


def _schedule_reduction_generic(sch: s_tir.Schedule, block) -> None:
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
    total = math.prod(_extent(sch, lp) for lp in spatial)
    if total * _extent(sch, loops[-1]) >= PARALLEL_MIN_ELEMS and len(lead) >= 1:
        fused = sch.fuse(*lead) if len(lead) > 1 else lead[0]
        if _extent(sch, fused) > 1:
            sch.parallel(fused)


def schedule_generic(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """Inline producers, then vectorize/parallelize each remaining root block."""
    sch = s_tir.Schedule(func)
    try:
        _inline_elementwise(sch, keep=lambda _: False)
    except _ERRORS:
        sch = s_tir.Schedule(func)
    for block in _blocks(sch):
        try:
            if _is_reduction(sch, block):
                _schedule_reduction_generic(sch, block)
            else:
                _schedule_spatial(sch, block)
        except _ERRORS:
            continue
    return sch.mod["main"]


# ----------------------------------------------------------------------------------------------
# VNNI
# ----------------------------------------------------------------------------------------------


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

    Measured on Zen 4 (znver4): 8–16 accumulators with ≥ 2 rows per weight load reach
    ≥ 90 % of the VNNI peak in cache, and the pick is within ~5-10 % of the best tile of a
    measured search on the test models (see :mod:`.tuning`).
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


def _vnni_blocks(sch: s_tir.Schedule) -> list:
    return [b for b in _blocks(sch) if _name(sch, b).startswith("tq_vnni")]


def _output_blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_output_blocks(sch.get_sblock("root")))


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
    rows = [lp for lp in spatial[:-1] if _extent(sch, lp) > 1]
    jn, ji = sch.split(spatial[-1], [None, 16])
    sch.reorder(*reduce[:-1], *rows, jn, ji, reduce[-1])
    init = sch.decompose_reduction(block, reduce[0])
    sch.tensorize(ji, VNNI_INTRIN)
    if unroll:
        for lp in [*rows, jn]:
            sch.unroll(lp)
    try:
        sch.vectorize(sch.get_loops(init)[-1])
    except _ERRORS:
        pass
    return init


def schedule_vnni(func: tirx.PrimFunc, tile: Tile | None = None, parallel: bool | None = None
                  ) -> tirx.PrimFunc:
    """Schedule a function holding one ``tq_vnni`` reduction and its fused epilogue.

    ``tile`` defaults to :func:`default_tile`; ``parallel`` to ``MACs ≥ PARALLEL_MIN_MACS``.
    """
    sch = s_tir.Schedule(func)
    _inline_elementwise(sch, keep=lambda n: n.startswith(("tq_vnni", "tq_scratch")))
    vnni = _vnni_blocks(sch)
    if len(vnni) != 1:
        raise ValueError(f"expected one VNNI block, found {len(vnni)}")
    main = vnni[0]
    loops = sch.get_loops(main)
    ivs = sch.get(main).iter_vars
    spatial_ext = _spatial_extents(sch, main)
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
            if _extent(sch, loop) > 1:
                _parallel_chunks(sch, loop)
                break
    n_red = sum(1 for iv in ivs if int(iv.iter_type) != 0)
    n_outer = len(sch.get_loops(main)) - len(inner_rows) - 1 - n_red

    # Accumulators: a local tile; the epilogue (or a plain write-back) per tile.
    outputs = {_name(sch, b) for b in _output_blocks(sch)}
    if _name(sch, main) in outputs:
        writeback = sch.cache_write(main, 0, "local")
        sch.reverse_compute_at(writeback, jo)
        consumers = [writeback]
    else:
        consumers = [b for b in _blocks(sch) if not _name(sch, b).startswith(
            ("tq_vnni", "tq_scratch"))]
        for block in consumers:
            sch.reverse_compute_at(block, jo)
        sch.set_scope(main, 0, "local")
        for block in consumers:
            if _name(sch, block) not in outputs:
                sch.set_scope(block, 0, "local")
    _tile_inner_vnni(sch, main, n_outer)

    for block in consumers:
        inner = sch.get_loops(block)[-1]
        if _extent(sch, inner) % 16 == 0:
            _, vec = sch.split(inner, [None, 16])
            sch.vectorize(vec)
    for block in _blocks(sch):
        if _name(sch, block).startswith("tq_scratch"):
            _schedule_padding(sch, block)
    return sch.mod["main"]


def _schedule_padding(sch: s_tir.Schedule, block) -> None:
    """A padded uint8 copy: vectorized along channels (the select on h, w is per pixel)."""
    _schedule_spatial(sch, block, lanes=64)


# ----------------------------------------------------------------------------------------------
# Depthwise
# ----------------------------------------------------------------------------------------------


#: Output pixels per depthwise register tile (one accumulator vector each).
DW_PIXELS = 8


def schedule_depthwise(func: tirx.PrimFunc, parallel: bool | None = None) -> tirx.PrimFunc:
    """Schedule a depthwise conv (``tq_dw`` block) and its fused epilogue.

    Register tile: up to :data:`DW_PIXELS` output pixels of one row × 16 channels (int32
    lanes), one accumulator vector per pixel; for each tap ``(rh, rw)`` one weight vector is
    loaded and multiplied into every pixel's accumulator (taps and pixels unrolled). The
    epilogue runs per tile from the accumulators (all intermediates in registers / ``local``).
    The padded input copy (``tq_scratch``) is made per parallel chunk of output rows (only the
    input rows the chunk reads), so it is parallel too.
    """
    sch = s_tir.Schedule(func)
    _inline_elementwise(sch, keep=lambda n: n.startswith(("tq_dw", "tq_scratch")))
    main = next(b for b in _blocks(sch) if _name(sch, b).startswith("tq_dw"))
    n, oh, ow, c, rh, rw = sch.get_loops(main)
    macs = math.prod(_spatial_extents(sch, main)) * _extent(sch, rh) * _extent(sch, rw)
    row = sch.fuse(n, oh)
    wo, wi = sch.split(ow, [None, _largest_divisor(_extent(sch, ow), DW_PIXELS)])
    co, ci = _vector_split(sch, c, 16)
    if ci is None:
        raise ValueError("depthwise channels not a multiple of 2")
    sch.reorder(row, wo, co, rh, rw, wi, ci)
    if parallel is None:
        parallel = macs >= PARALLEL_MIN_MACS
    chunk = _parallel_chunks(sch, row) if parallel else None
    for block in _blocks(sch):
        if _name(sch, block).startswith("tq_scratch"):
            if chunk is not None:
                sch.compute_at(block, chunk)
                _, vec = _vector_split(sch, sch.get_loops(block)[-1], 64)
                if vec is not None:
                    sch.vectorize(vec)
            else:
                _schedule_padding(sch, block)
    outputs = {_name(sch, b) for b in _output_blocks(sch)}
    if _name(sch, main) in outputs:
        consumers = [sch.cache_write(main, 0, "local")]
        sch.reverse_compute_at(consumers[0], co)
    else:
        consumers = [b for b in _blocks(sch) if not _name(sch, b).startswith(
            ("tq_dw", "tq_scratch"))]
        for block in consumers:
            sch.reverse_compute_at(block, co)
        sch.set_scope(main, 0, "local")
        for block in consumers:
            if _name(sch, block) not in outputs:
                sch.set_scope(block, 0, "local")
    sch.vectorize(ci)
    init = sch.decompose_reduction(main, rh)
    for loop in (wi, rw, rh):
        sch.unroll(loop)
    for block in [init, *consumers]:
        inner = sch.get_loops(block)[-1]
        _, vec = _vector_split(sch, inner, 16)
        sch.vectorize(vec if vec is not None else inner)
    return sch.mod["main"]


def _largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------


def block_names(func: tirx.PrimFunc) -> list[str]:
    """Names of the root-level blocks of ``func``."""
    try:
        sch = s_tir.Schedule(func)
        return [_name(sch, b) for b in _blocks(sch)]
    except _ERRORS:
        return []


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


def special_attempts(func: tirx.PrimFunc, names: list[str],
                     target: tvm.target.Target | None = None
                     ) -> list[tuple[str, Callable[[], tirx.PrimFunc]]]:
    """Schedules for particular kinds of non-VNNI functions, tried before the generic one:
    activation × activation matmuls (:mod:`.schedule_matmul`) and row-wise ops such as
    softmax, layer norm and reductions (:mod:`.schedule_rows`)."""
    from .schedule_matmul import matmul_attempts
    from .schedule_rows import row_attempts

    return [*matmul_attempts(func, names, target), *row_attempts(func, names, target)]


def schedule_function(func: tirx.PrimFunc,
                      tiles: Callable[[tirx.PrimFunc], Tile | None] | None = None,
                      name: str = "", target: tvm.target.Target | None = None
                      ) -> tuple[tirx.PrimFunc, str]:
    """Schedule one PrimFunc; returns (scheduled function, which schedule applied).

    ``tiles`` (a :data:`.tuning_db.TileSource`) gives a VNNI kernel its register tile (None:
    :func:`default_tile`).

    Schedules are tried from the most specific to the generic one; each result must pass
    :func:`lowers`, else the next is tried (the unscheduled function is the last resort).
    """
    names = block_names(func)
    attempts: list[tuple[str, Callable[[], tirx.PrimFunc]]] = []
    if any(n.startswith("tq_vnni") for n in names):
        tile = tiles(func) if tiles is not None else None
        attempts.append(("vnni", lambda: schedule_vnni(func, tile)))
        attempts.append(("vnni", lambda: schedule_vnni(func, Tile(1, 1))))
    if any(n.startswith("tq_dw") for n in names):
        attempts.append(("depthwise", lambda: schedule_depthwise(func)))
    attempts.extend(special_attempts(func, names, target))
    attempts.append(("generic", lambda: schedule_generic(func)))
    for kind, attempt in attempts:
        try:
            scheduled = attempt()
        except (_ERRORS + (StopIteration,)):
            continue
        if lowers(scheduled, target):
            return scheduled, kind
    return func, "none"
