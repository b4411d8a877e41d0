"""Schedules (``tvm.s_tir.Schedule``) of the fused PrimFuncs for HVX.

* A function with a vrmpy block (:data:`~tvm_qdq.backend.kernel_tags.HVX_VRMPY`: conv /
  matmul of :mod:`.kernels`, usually with a fused requantize epilogue): the 32 output-channel
  lanes and the 4-byte group are tensorized with the ``vrmpy`` intrinsic of the operand types
  (:mod:`.intrin`), the accumulator init is vectorized, the elementwise epilogue is inlined
  into one block and vectorized.
* A function with a depthwise block (:data:`~tvm_qdq.backend.kernel_tags.DEPTHWISE`, the
  channels-last kernel of :mod:`.depthwise`): one channel vector per tap, the elementwise
  epilogue inlined and run over channel vectors into an NHWC scratch, then copied to NCHW.
* Every other function: elementwise producers inlined into their consumers, and the
  innermost loop of each spatial block vectorized over one HVX vector of its widest type
  (128 bytes), so integer elementwise code is HVX (float math is scalarized by LLVM: HVX
  IEEE float is not used, qemu-hexagon does not implement it).

A primitive that does not apply raises; the function then keeps the simpler schedule, so the
result is always correct. ``schedule_kernels`` reports what each function got.
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx

from ..kernel_tags import DEPTHWISE, HVX_PACK, HVX_VRMPY, SCRATCH, block_kind
from ..tir_blocks import (
    SCHEDULE_ERRORS,
    blocks_of_kind,
    buffer_dtype,
    is_reduction,
    loop_extent,
    root_blocks,
)
from . import intrin  # noqa: F401 - registers the tensor intrinsics
from .depthwise import CHANNEL_LANES
from .intrin import INTRINSICS

VECTOR_BYTES = 128


def _widest_bits(sch: s_tir.Schedule, block) -> int:
    node = sch.get(block)
    bits = [tvm.DataType(buffer_dtype(r)).bits for r in list(node.reads) + list(node.writes)]
    return max(bits + [8])


def _lanes(sch: s_tir.Schedule, block) -> int:
    return VECTOR_BYTES * 8 // _widest_bits(sch, block)


def _tail(sch: s_tir.Schedule, loops: list, lanes: int) -> list:
    """The innermost loops whose fused extent first reaches ``lanes`` (or all of them)."""
    tail, extent = [], 1
    for loop in reversed(loops):
        if extent >= lanes:
            break
        tail.insert(0, loop)
        extent *= loop_extent(sch, loop)
    return tail


def _fusable(sch: s_tir.Schedule, block) -> bool:
    """True when the block reads and writes whole buffers at the same indices as its loops
    (pure elementwise: fusing its loops keeps every access contiguous)."""
    node = sch.get(block)
    write = node.writes[0].source.shape if len(node.writes) == 1 else None
    if write is None:
        return False
    for region in node.reads:
        shape = region.source.shape
        if len(shape) == len(write) and any(int(a) != int(b) for a, b in zip(shape, write,
                                                                          strict=True)):
            return False
    return "if_then_else" not in str(node.body)


def _split_vector(sch: s_tir.Schedule, loops: list, lanes: int):
    """Fuse ``loops`` and split off the widest power-of-two vector (≤ ``lanes``) that divides
    their extent: ``(outer, inner)`` or None when that is under 2 lanes."""
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    extent = loop_extent(sch, fused)
    width = 1
    while width * 2 <= lanes and extent % (width * 2) == 0:
        width *= 2
    if width < 2:
        return None
    if width == extent:
        return None, fused
    return tuple(sch.split(fused, [None, width]))


def _vectorize_inner(sch: s_tir.Schedule, block) -> bool:
    """Vectorize the innermost loops of ``block`` (fused when one is shorter than a vector and
    the block is :func:`_fusable`) over at most one HVX vector; not int64 arithmetic."""
    loops = sch.get_loops(block)
    if not loops or 'Cast("int64"' in str(sch.get(block).body):
        return False  # int64 lanes (the Add's fixed-point sum): HVX emulation costs more
    lanes = _lanes(sch, block)
    tail = _tail(sch, loops, lanes) if _fusable(sch, block) else loops[-1:]
    split = _split_vector(sch, tail, lanes)
    if split is None:
        return False
    sch.vectorize(split[1])
    return True


def _writes_float(sch: s_tir.Schedule, block) -> bool:
    return all(buffer_dtype(r).startswith("float") for r in sch.get(block).writes)


def _feeds_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(is_reduction(sch, c) for c in sch.get_consumers(block))


def _inline_elementwise(sch: s_tir.Schedule, keep: tuple[str, ...] = ()) -> None:
    """Inline spatial blocks (whose kernel role is not in ``keep``) into their consumers or
    producer, to a fixpoint.

    A producer of a reduction (a padding, a cast) stays a block of its own: inlined, its
    per-lane bounds checks would make the reduction's vector loads scalar. Except a float
    producer (float reductions are scalar code here): inlined as in the x86 build, so that
    ``acc + a·b`` contracts to the same fused multiply-add (``sffma``) and rounds the same.
    """
    changed = True
    while changed:
        changed = False
        for block in root_blocks(sch):
            if block_kind(sch, block) in keep or is_reduction(sch, block):
                continue
            primitives = (sch.reverse_compute_inline,) if (
                _feeds_reduction(sch, block) and not _writes_float(sch, block)) else (
                sch.compute_inline, sch.reverse_compute_inline)
            for primitive in primitives:
                try:
                    primitive(block)
                except SCHEDULE_ERRORS:
                    continue
                changed = True
                break
            if changed:
                break


def _operand_types(sch: s_tir.Schedule, block) -> tuple[str, str]:
    dtypes = [buffer_dtype(r) for r in sch.get(block).reads]
    dtypes = [d for d in dtypes if d in ("uint8", "int8")]
    return dtypes[0], dtypes[1]


def schedule_vrmpy(sch: s_tir.Schedule) -> str:
    """Tensorize the vrmpy block; inline and vectorize the rest."""
    (block,) = blocks_of_kind(sch, HVX_VRMPY)
    act, weight = _operand_types(sch, block)
    intrin_name = INTRINSICS[(act, weight)][0]
    node = sch.get(block)
    loops = sch.get_loops(block)
    kinds = [int(iv.iter_type) for iv in node.iter_vars]
    spatial = [lp for lp, k in zip(loops, kinds, strict=True) if k == 0]
    reduce = [lp for lp, k in zip(loops, kinds, strict=True) if k != 0]
    outer_lanes, lanes = sch.split(spatial[-1], [None, 32])
    sch.reorder(*spatial[:-1], outer_lanes, *reduce[:-1], lanes, reduce[-1])
    init = sch.decompose_reduction(block, reduce[0])
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(lanes, intrin_name)
    # (the init block decompose_reduction made keeps the vrmpy role)
    _inline_elementwise(sch, keep=(HVX_PACK, HVX_VRMPY))
    for other in root_blocks(sch):
        if block_kind(sch, other) == HVX_VRMPY:
            continue
        try:
            _vectorize_inner(sch, other)
        except SCHEDULE_ERRORS:
            pass
    return f"vrmpy ({intrin_name})"


def _unit_stride(sch: s_tir.Schedule, block, var: tirx.Var) -> bool:
    """True when every read of ``block`` that depends on ``var`` indexes its innermost
    dimension with ``var`` at stride 1 (vector loads, not gathers)."""
    from tvm.sym.pattern import detect_linear_equation

    for region in sch.get(block).reads:
        for axis, rng in enumerate(region.region):
            coef = detect_linear_equation(rng.min, [var])
            if not coef:
                return False
            step = int(coef[0]) if isinstance(coef[0], tirx.IntImm) else None
            if step is None or (step != 0 and (axis != len(region.region) - 1 or step != 1)):
                return False
    return True


def _vectorize_reduction(sch: s_tir.Schedule, block) -> bool:
    """Vectorize a reduction (pooling, depthwise conv, ...) over its innermost spatial axes.

    The loops ``S..., s, R...`` become ``S..., s_outer, R..., s_lanes``: each reduction step
    updates one vector of outputs (lanes along the innermost spatial axis, e.g. the output
    row); the init (run when the reduction indices are 0) vectorizes with it. Only when the
    reads along ``s`` are contiguous (a depthwise conv; not a strided pool or a sum over the
    other axes, where lanes would be gathers).
    """
    loops = sch.get_loops(block)
    kinds = [int(iv.iter_type) for iv in sch.get(block).iter_vars]
    if len(loops) != len(kinds):
        return False
    spatial = [lp for lp, k in zip(loops, kinds, strict=True) if k == 0]
    reduce = [lp for lp, k in zip(loops, kinds, strict=True) if k != 0]
    last = [iv.var for iv, k in zip(sch.get(block).iter_vars, kinds, strict=True) if k == 0]
    if not spatial or not reduce or not _unit_stride(sch, block, last[-1]):
        return False
    lanes = _lanes(sch, block)
    tail = spatial[-1:]
    sch.reorder(*spatial[:len(spatial) - len(tail)], *reduce, *tail)
    split = _split_vector(sch, tail, lanes)
    if split is None:
        return False
    outer, inner = split
    if outer is not None:
        sch.reorder(outer, *reduce, inner)
    sch.vectorize(inner)
    return True


def _channels_last_epilogue(sch: s_tir.Schedule, block) -> bool:
    """Vectorize the NCHW epilogue of a channels-last accumulator over the channels.

    The block (``out[n, c, h, w] = f(acc[n, h, w, c], p[c], ...)``) writes an NHWC scratch
    instead, with ``c`` innermost and vectorized (contiguous loads of the accumulator and the
    per-channel parameters, whole-vector arithmetic and stores); a copy block transposes the
    scratch to the NCHW output.
    """
    if len(sch.get(block).writes[0].source.shape) != 4 or len(sch.get_loops(block)) != 4:
        return False
    sch.cache_write(block, 0, "global")
    sch.transform_layout(block, ("write", 0), lambda n, c, h, w: (n, h, w, c))
    n, c, h, w = sch.get_loops(block)
    sch.reorder(n, h, w, c)
    split = _split_vector(sch, [c], _lanes(sch, block))
    if split is None:
        return False
    sch.vectorize(split[1])
    return True


def schedule_depthwise(sch: s_tir.Schedule) -> str:
    """The depthwise accumulator (:mod:`.depthwise`, channels innermost): one channel vector
    per tap, the reduction loops outside the lanes, the init vectorized; the elementwise
    epilogue inlined into one block and run over channel vectors
    (:func:`_channels_last_epilogue`)."""
    (block,) = blocks_of_kind(sch, DEPTHWISE)
    loops = sch.get_loops(block)
    kinds = [int(iv.iter_type) for iv in sch.get(block).iter_vars]
    spatial = [lp for lp, k in zip(loops, kinds, strict=True) if k == 0]
    reduce = [lp for lp, k in zip(loops, kinds, strict=True) if k != 0]
    channels = loop_extent(sch, spatial[-1])
    lanes = CHANNEL_LANES if channels % CHANNEL_LANES == 0 else CHANNEL_LANES // 2
    outer, inner = sch.split(spatial[-1], [None, lanes])
    sch.reorder(*spatial[:-1], outer, *reduce, inner)
    sch.vectorize(inner)
    init = sch.decompose_reduction(block, reduce[0])
    sch.vectorize(sch.get_loops(init)[-1])
    for pack in blocks_of_kind(sch, HVX_PACK):  # the transpose: read rows of x, c outermost
        n, h, w, c = sch.get_loops(pack)
        sch.reorder(n, c, h, w)
    for pad in blocks_of_kind(sch, SCRATCH):  # the padded copy: whole channel vectors
        sch.vectorize(sch.split(sch.get_loops(pad)[-1], [None, lanes])[1])
    _inline_elementwise(sch, keep=(HVX_PACK, SCRATCH, DEPTHWISE))
    done = 0
    for other in root_blocks(sch):
        if block_kind(sch, other) in (HVX_PACK, SCRATCH, DEPTHWISE):
            continue
        done += _channels_last_epilogue(sch, other)
    return f"depthwise ({lanes} channel lanes, {done} epilogue vectorized)"


def schedule_elementwise(sch: s_tir.Schedule) -> str:
    """Inline elementwise chains; vectorize the innermost loop of every spatial block and the
    innermost spatial loop of every reduction block (:func:`_vectorize_reduction`)."""
    _inline_elementwise(sch)
    done = 0
    for block in root_blocks(sch):
        vectorize = _vectorize_reduction if is_reduction(sch, block) else _vectorize_inner
        try:
            done += vectorize(sch, block)
        except SCHEDULE_ERRORS:
            continue
    return f"elementwise ({done} vectorized)" if done else "default"


def schedule_function(func: tirx.PrimFunc) -> tuple[tirx.PrimFunc, str]:
    """The scheduled function and the name of the schedule applied."""
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    has_vrmpy = bool(blocks_of_kind(sch, HVX_VRMPY))
    first = (schedule_vrmpy,) if has_vrmpy else (
        (schedule_depthwise,) if blocks_of_kind(sch, DEPTHWISE) else ())
    for attempt in (*first, schedule_elementwise):
        sch = s_tir.Schedule(tvm.IRModule({"main": func}))
        try:
            what = attempt(sch)
        except SCHEDULE_ERRORS as err:
            if attempt in first:
                last_error = (f"{attempt.__name__} failed: "
                              f"{str(err).splitlines()[-1][:200]}")
            continue
        result = sch.mod["main"]
        if first and attempt not in first:
            what += f"; {last_error}"
        return result, what
    return func, "default"


def schedule_kernels(mod: tvm.IRModule, target: tvm.target.Target
                     ) -> tuple[tvm.IRModule, dict[str, str]]:
    """Schedule every PrimFunc of ``mod`` (the kernels of a plan) for HVX."""
    funcs, notes = {}, {}
    for gvar, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        scheduled, what = schedule_function(func)
        funcs[gvar] = scheduled
        notes[str(func.attrs["global_symbol"])] = what
    del target
    return tvm.IRModule(funcs), notes
