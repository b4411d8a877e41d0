"""The description half of the dot-product tensor intrinsics (x86 ``vpdpbusd``, HVX
``vrmpy``): what one instruction computes, for ``tvm.s_tir.Schedule.tensorize`` to match."""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T


def dot_product_desc(lanes: int, group: int, a_dtype: str, b_dtype: str,
                     c_scope: str = "global") -> tirx.PrimFunc:
    """``C[i] += Σ_{k<group} int32(A[k]) · int32(B[i, k])`` for ``i < lanes``: ``A`` holds
    ``group`` consecutive reduction elements of one row (broadcast to every lane), ``B`` one
    block of packed weights (lane ``i`` holds ``B[i, 0..group)``), ``C`` the int32
    accumulators (in ``c_scope``)."""

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((group,), a_dtype, offset_factor=1),
        B: T.Buffer((lanes, group), b_dtype, offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1, scope=c_scope),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:group], B[0:lanes, 0:group])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, group):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc
