"""Reading the blocks of a TIR schedule (shared by the x86 and Hexagon schedules).

Every schedule in the backends starts from a fused PrimFunc: the blocks under its root, their
loops, which of them reduce, and their kernel role (:mod:`.kernel_tags`).
"""

from __future__ import annotations

from tvm import s_tir, tirx

from .kernel_tags import block_kind

#: What a schedule primitive raises when it does not apply.
SCHEDULE_ERRORS = (RuntimeError, ValueError, TypeError, AttributeError, IndexError,
                   AssertionError)


def root_blocks(sch: s_tir.Schedule) -> list:
    """The blocks directly under the root block, in program order."""
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def block_name(sch: s_tir.Schedule, block) -> str:
    return str(sch.get(block).name_hint)


def loop_extent(sch: s_tir.Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def is_reduction(sch: s_tir.Schedule, block) -> bool:
    """True when the block has a reduction (non data-parallel) iterator."""
    return any(int(iv.iter_type) != 0 for iv in sch.get(block).iter_vars)


def blocks_of_kind(sch: s_tir.Schedule, *kinds: str) -> list:
    """The root blocks whose kernel role is one of ``kinds``."""
    return [b for b in root_blocks(sch) if block_kind(sch, b) in kinds]


def kernel_kinds(func: tirx.PrimFunc) -> frozenset[str]:
    """The kernel roles annotated on the root blocks of ``func`` (empty when it has none or
    cannot be scheduled)."""
    try:
        sch = s_tir.Schedule(func)
        kinds = {block_kind(sch, b) for b in root_blocks(sch)}
    except SCHEDULE_ERRORS:
        return frozenset()
    return frozenset(k for k in kinds if k is not None)


def buffer_dtype(buffer) -> str:
    """Element type of a TIR buffer (or of the buffer of a buffer region)."""
    return str(getattr(buffer, "source", buffer).ty.dtype)


def buffer_shape(buffer) -> list[int]:
    """Static dimensions of a TIR buffer."""
    return [int(d) for d in buffer.ty.shape]
