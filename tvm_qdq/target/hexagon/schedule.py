"""Schedules (``tvm.s_tir.Schedule``) of the fused PrimFuncs for HVX.

* A function with a ``tq_hx_vrmpy`` block (conv / matmul of :mod:`.kernels`, usually with a
  fused requantize epilogue): the 32 output-channel lanes and the 4-byte group are tensorized
  with the ``vrmpy`` intrinsic of the operand types (:mod:`.intrin`), the accumulator init is
  vectorized, the elementwise epilogue is inlined into one block and vectorized.
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

from . import intrin  # noqa: F401 - registers the tensor intrinsics
from .intrin import INTRINSICS

_ERRORS = (RuntimeError, ValueError, TypeError, AttributeError, IndexError, AssertionError)
VECTOR_BYTES = 128


def _blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _name(sch: s_tir.Schedule, block) -> str:
    return str(sch.get(block).name_hint)


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(int(iv.iter_type) != 0 for iv in sch.get(block).iter_vars)


def _extent(sch: s_tir.Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def _region_dtype(region) -> str:
    source = region.source
    return str(source.dtype if hasattr(source, "dtype") else source.ty.dtype)


def _widest_bits(sch: s_tir.Schedule, block) -> int:
    node = sch.get(block)
    bits = [tvm.DataType(_region_dtype(r)).bits for r in list(node.reads) + list(node.writes)]
    return max(bits + [8])


def _vectorize_inner(sch: s_tir.Schedule, block) -> bool:
    """Vectorize the innermost loop of ``block`` over at most one HVX vector."""
    loops = sch.get_loops(block)
    if not loops:
        return False
    lanes = VECTOR_BYTES * 8 // _widest_bits(sch, block)
    inner = loops[-1]
    extent = _extent(sch, inner)
    if extent <= 1:
        return False
    width = 1
    while width * 2 <= lanes and extent % (width * 2) == 0:
        width *= 2
    if width < 2:
        return False
    if width < extent:
        _, inner = sch.split(inner, [None, width])
    sch.vectorize(inner)
    return True


def _inline_elementwise(sch: s_tir.Schedule, keep: set[str]) -> None:
    """Inline spatial blocks (not in ``keep``) into their consumers or producer, to a fixpoint."""
    changed = True
    while changed:
        changed = False
        for block in _blocks(sch):
            if _name(sch, block) in keep or _is_reduction(sch, block):
                continue
            for primitive in (sch.compute_inline, sch.reverse_compute_inline):
                try:
                    primitive(block)
                except _ERRORS:
                    continue
                changed = True
                break
            if changed:
                break


def _operand_types(sch: s_tir.Schedule, block) -> tuple[str, str]:
    dtypes = [_region_dtype(r) for r in sch.get(block).reads]
    dtypes = [d for d in dtypes if d in ("uint8", "int8")]
    return dtypes[0], dtypes[1]


def schedule_vrmpy(sch: s_tir.Schedule) -> str:
    """Tensorize the ``tq_hx_vrmpy`` block; inline and vectorize the rest."""
    block = sch.get_sblock("tq_hx_vrmpy")
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
    _inline_elementwise(sch, keep={"tq_hx_pack", "tq_hx_vrmpy", "tq_hx_vrmpy_init"})
    for other in _blocks(sch):
        name = _name(sch, other)
        if name.startswith("tq_hx_vrmpy"):
            continue
        try:
            _vectorize_inner(sch, other)
        except _ERRORS:
            pass
    return f"vrmpy ({intrin_name})"


def schedule_elementwise(sch: s_tir.Schedule) -> str:
    """Inline elementwise chains; vectorize the innermost loop of every spatial block."""
    _inline_elementwise(sch, keep=set())
    done = 0
    for block in _blocks(sch):
        if _is_reduction(sch, block):
            continue
        try:
            done += _vectorize_inner(sch, block)
        except _ERRORS:
            continue
    return f"elementwise ({done} vectorized)" if done else "default"


def schedule_function(func: tirx.PrimFunc) -> tuple[tirx.PrimFunc, str]:
    """The scheduled function and the name of the schedule applied."""
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    has_vrmpy = any(_name(sch, b) == "tq_hx_vrmpy" for b in _blocks(sch))
    for attempt in ((schedule_vrmpy, schedule_elementwise) if has_vrmpy
                    else (schedule_elementwise,)):
        sch = s_tir.Schedule(tvm.IRModule({"main": func}))
        try:
            what = attempt(sch)
        except _ERRORS as err:
            if attempt is schedule_vrmpy:
                last_error = f"vrmpy schedule failed: {str(err).splitlines()[-1][:200]}"
            continue
        result = sch.mod["main"]
        if has_vrmpy and attempt is not schedule_vrmpy:
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
