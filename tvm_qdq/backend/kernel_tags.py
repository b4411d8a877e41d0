"""What a TIR block of a backend kernel is, as an explicit block annotation.

Kernels built with TE mark their blocks with ``te.compute(..., attrs={KERNEL_ATTR: kind})``
(the annotation survives operator fusion, which renames functions and blocks); schedules,
tuning and profiling ask :func:`block_kind` instead of reading name prefixes.
"""

from __future__ import annotations

from tvm import s_tir, tirx

#: Block annotation key naming the role of a kernel's block.
KERNEL_ATTR = "tvm_qdq.kernel"

#: Roles. x86: the VNNI reduction, the depthwise multiply-accumulate, a padded scratch copy
#: of the input, the float32 matmul with a packed constant weight and the expansion of its
#: int8-compressed weight. Hexagon: the vrmpy reduction, its pack/unpack steps.
VNNI = "vnni"
#: x86: the AMX reduction of a matmul (16 × 16 int32 tiles, :mod:`tvm_qdq.backend.x86.amx`).
AMX = "amx"
#: x86: a padded activation × activation matmul (symbolic rows / columns).
ACTIVATION_MATMUL = "activation_matmul"
DEPTHWISE = "depthwise"
SCRATCH = "scratch"
FLOAT_DENSE = "float_dense"
FLOAT_WEIGHT = "float_weight"
#: A stage of a last-axis softmax (:func:`tvm_qdq.backend.fast_math.te_softmax_rows`).
SOFTMAX_ROWS = "softmax_rows"
HVX_VRMPY = "hvx_vrmpy"
HVX_PACK = "hvx_pack"
HVX_UNPACK = "hvx_unpack"


def tag(kind: str) -> dict[str, str]:
    """The ``attrs`` argument of ``te.compute`` that marks a block as ``kind``."""
    return {KERNEL_ATTR: kind}


def block_kind(sch: s_tir.Schedule, block) -> str | None:
    """The role annotated on ``block`` (a block RV or SBlock), None when it has none."""
    node = sch.get(block)
    value = node.annotations.get(KERNEL_ATTR)
    return None if value is None else str(value)


def without_tags(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with every kernel annotation removed: structurally equal (same hash) to the
    function built without tags, so keys computed before tagging still match."""
    sch = s_tir.Schedule(func)

    def strip(parent) -> None:
        for block in sch.get_child_blocks(parent):
            if KERNEL_ATTR in sch.get(block).annotations:
                sch.unannotate(block, KERNEL_ATTR)
            strip(block)

    strip(sch.get_sblock("root"))
    return sch.mod["main"]
