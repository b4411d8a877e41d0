"""Schedule steps shared by the x86 schedule families (:mod:`tvm_qdq.backend.x86.schedules`).

Inlining (:func:`inline_elementwise`) never duplicates costly work: a value read more than
once stays a separate stage (computed per tile into a local buffer), and costly values are not
inlined into transposing consumers. Every primitive is semantics-preserving; a step that does
not apply raises (one of :data:`SCHEDULE_ERRORS`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from tvm import s_tir, tirx

from ...kernel_tags import SCRATCH, block_kind
from ...tir_blocks import (
    SCHEDULE_ERRORS,
    block_name,
    blocks_of_kind,
    is_reduction,
    loop_extent,
    root_blocks,
)
from .symbolic_rows import SymbolicLoops, is_symbolic, nominal_size

#: Parallelize a kernel when it performs at least this many multiply-accumulates / elements.
PARALLEL_MIN_MACS = 1 << 20
PARALLEL_MIN_ELEMS = 1 << 15

#: ``keep`` predicate of :func:`inline_elementwise`: which blocks stay stages of their own.
Keep = Callable[[s_tir.Schedule, object], bool]


def keep_kinds(*kinds: str) -> Keep:
    """Keep the blocks whose kernel role (:mod:`tvm_qdq.backend.kernel_tags`) is in ``kinds``."""
    return lambda sch, block: block_kind(sch, block) in kinds


def keep_none(sch: s_tir.Schedule, block) -> bool:
    del sch, block
    return False


def spatial_extents(sch: s_tir.Schedule, block) -> list[int]:
    return [int(iv.dom.extent) for iv in sch.get(block).iter_vars if int(iv.iter_type) == 0]


def output_blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_output_blocks(sch.get_sblock("root")))


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


def inline_elementwise(sch: s_tir.Schedule, keep: Keep = keep_none) -> None:
    """Inline spatial blocks not kept into their consumers (or producer), to a fixpoint.

    A block whose value is read more than once (by one or several consumers) is inlined only
    if it is cheap (the inlined expression would be evaluated once per read); the others stay
    separate stages (computed per tile into local buffers by the kernel schedules).
    Each round tries ``compute_inline`` on every block (producers first), then
    ``reverse_compute_inline`` on the remaining ones (consumers first).
    """
    for _ in range(8):
        changed = False
        for block in root_blocks(sch):
            if keep(sch, block) or is_reduction(sch, block):
                continue
            cheap = _is_cheap(sch, block)
            if (_reads_by_consumers(sch, block) <= 1 or cheap) and (
                    cheap or _consumers_read_unit_stride(sch, block)):
                try:
                    sch.compute_inline(block)
                    changed = True
                except SCHEDULE_ERRORS:
                    pass
        for block in reversed(root_blocks(sch)):
            if keep(sch, block) or is_reduction(sch, block):
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
            except SCHEDULE_ERRORS:
                pass
        if not changed:
            return


#: Longest innermost loop :func:`schedule_spatial` vectorizes whole when no power of two
#: divides it (LLVM splits the vector into full registers and one partial register).
WHOLE_VECTOR_LANES = 128


def vector_split(sch: s_tir.Schedule, loop, lanes: int):
    """Split ``loop`` so the inner part is the largest power of two ≤ ``lanes`` dividing it
    (a symbolic extent is not split: :class:`.symbolic_rows.SymbolicLoops` does that)."""
    if is_symbolic(sch.get(loop).extent):
        return loop, None
    extent = loop_extent(sch, loop)
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


def schedule_spatial(sch: s_tir.Schedule, block, lanes: int = 16,
                     tails: SymbolicLoops | None = None) -> None:
    """Vectorize the innermost loop of a spatial block when it is a unit-stride run of at least
    4 (no fusing: fused indices need div/mod, which defeats the vectorizer), parallel
    outermost loop when the block is large. Symbolic extents: :func:`_schedule_spatial_symbolic`."""
    loops = sch.get_loops(block)
    if not loops:
        return
    if any(is_symbolic(sch.get(lp).extent) for lp in loops):
        _schedule_spatial_symbolic(sch, block, lanes, tails)
        return
    total = math.prod(loop_extent(sch, lp) for lp in loops)
    inner = loops[-1]
    extent = loop_extent(sch, inner)
    vec = None
    if extent >= 4 and _unit_stride_inner(sch, block):
        if extent > 4 * lanes:
            _, vec = vector_split(sch, inner, lanes)
            if vec is None and extent <= WHOLE_VECTOR_LANES:
                vec = inner  # e.g. 77 (no power of two divides it): one 77-lane vector
        else:
            vec = inner
    if vec is not None:
        sch.vectorize(vec)
    if total >= PARALLEL_MIN_ELEMS:
        # the outermost loop that has more than one iteration (a leading batch of 1 would
        # leave the block serial)
        outer = next((lp for lp in sch.get_loops(block)
                      if lp != vec and loop_extent(sch, lp) > 1), None)
        if outer is not None:
            sch.parallel(outer)


def _schedule_spatial_symbolic(sch: s_tir.Schedule, block, lanes: int,
                               tails: SymbolicLoops | None) -> None:
    """:func:`schedule_spatial` when some loop extent is symbolic: a static innermost loop
    as there; a symbolic one split by ``lanes`` (main part + tail, with ``tails``; not
    vectorized without); the outermost loop parallel, as there, for calls with enough
    elements (with ``tails``; else when large at nominal sizes)."""
    loops = sch.get_loops(block)
    extents = [sch.get(lp).extent for lp in loops]
    total = math.prod(extents[1:], start=extents[0])
    inner, extent = loops[-1], extents[-1]
    vec = None
    if nominal_size(extent) >= 4 and _unit_stride_inner(sch, block):
        if not is_symbolic(extent):
            vec = vector_split(sch, inner, lanes)[1] if int(extent) > 4 * lanes else inner
        elif tails is not None:
            vec = tails.split(sch, inner, [None, lanes])[1]
    if vec is not None:
        sch.vectorize(vec)
    outer = sch.get_loops(block)[0]
    if vec is not None and outer.same_as(vec):
        return
    if tails is not None:
        tails.parallel(sch, outer, total, PARALLEL_MIN_ELEMS)
    elif nominal_size(total) >= PARALLEL_MIN_ELEMS:
        sch.parallel(outer)


#: Parallel loops are split into this many (at most) chunks: TVM allocates the local buffers
#: of a parallel body once per iteration, so one iteration per tile would cost an allocation
#: per tile.
PARALLEL_CHUNKS = 4
#: A loop without a divisor in 2..PARALLEL_CHUNKS (a 7×7 map's rows) is parallel as it is
#: when it has at most this many iterations (one local-buffer allocation each).
PARALLEL_WHOLE_MAX = 32


def parallel_chunks(sch: s_tir.Schedule, loop):
    """Parallelize ``loop`` over at most :data:`PARALLEL_CHUNKS` chunks (a divisor of it), or
    over its own iterations when it has no such divisor and at most
    :data:`PARALLEL_WHOLE_MAX` of them; returns the parallel loop (None otherwise). A
    symbolic extent is parallel as it is (a split into chunks would need a predicate)."""
    if is_symbolic(sch.get(loop).extent):
        sch.parallel(loop)
        return loop
    extent = loop_extent(sch, loop)
    chunks = max((d for d in range(1, PARALLEL_CHUNKS + 1) if extent % d == 0), default=1)
    if chunks <= 1:
        if 1 < extent <= PARALLEL_WHOLE_MAX:  # a prime extent (7, 13, …): one row each
            sch.parallel(loop)
            return loop
        return None
    if chunks == extent:
        sch.parallel(loop)
        return loop
    outer, _ = sch.split(loop, [chunks, None])
    sch.parallel(outer)
    return outer


def kernel_blocks(sch: s_tir.Schedule, kind: str) -> list:
    """Inline the elementwise blocks around the kernel blocks of role ``kind`` (kept apart:
    those and the padded input copies, :data:`~tvm_qdq.backend.kernel_tags.SCRATCH`) and
    return the kernel blocks."""
    inline_elementwise(sch, keep=keep_kinds(kind, SCRATCH))
    return blocks_of_kind(sch, kind)


def single_kernel_block(sch: s_tir.Schedule, kind: str, label: str):
    """:func:`kernel_blocks` of role ``kind`` when there is exactly one (ValueError naming the
    ``label`` otherwise)."""
    blocks = kernel_blocks(sch, kind)
    if len(blocks) != 1:
        raise ValueError(f"expected one {label} block, found {len(blocks)}")
    return blocks[0]


def vectorize_epilogue(sch: s_tir.Schedule, blocks: list, lanes: int = 16) -> None:
    """Vectorize each epilogue block's innermost loop ``lanes`` wide when ``lanes`` divides
    it."""
    for block in blocks:
        inner = sch.get_loops(block)[-1]
        if loop_extent(sch, inner) % lanes == 0:
            _, vec = sch.split(inner, [None, lanes])
            sch.vectorize(vec)


def vectorize_static_scratch(sch: s_tir.Schedule) -> None:
    """Vectorize the innermost loop of every padded copy
    (:data:`~tvm_qdq.backend.kernel_tags.SCRATCH`) whose extent is static, by the largest
    power of two up to 64 dividing it."""
    for block in blocks_of_kind(sch, SCRATCH):
        inner = sch.get_loops(block)[-1]
        if isinstance(sch.get(inner).extent, tirx.IntImm):
            _, vec = vector_split(sch, inner, 64)
            if vec is not None:
                sch.vectorize(vec)


def epilogue_per_tile(sch: s_tir.Schedule, main, loop, consumers: list) -> list:
    """Compute the epilogue of the reduction ``main`` per tile, under ``loop``, from
    accumulators in ``local`` scope; returns the blocks now under ``loop``.

    When ``main`` writes the function's output, a local accumulator tile is written back per
    tile; otherwise ``consumers`` (the epilogue blocks) move under ``loop`` and every
    intermediate of theirs that is no output becomes ``local``.
    """
    outputs = {block_name(sch, b) for b in output_blocks(sch)}
    if block_name(sch, main) in outputs:
        writeback = sch.cache_write(main, 0, "local")
        sch.reverse_compute_at(writeback, loop)
        return [writeback]
    for block in consumers:
        sch.reverse_compute_at(block, loop)
    sch.set_scope(main, 0, "local")
    for block in consumers:
        if block_name(sch, block) not in outputs:
            sch.set_scope(block, 0, "local")
    return consumers


def schedule_scratch(sch: s_tir.Schedule, block, tails: SymbolicLoops | None = None) -> None:
    """A padded uint8 copy: vectorized along channels (the select on h, w is per pixel)."""
    schedule_spatial(sch, block, lanes=64, tails=tails)
