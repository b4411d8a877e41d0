"""HVX ``vrmpy`` tensor intrinsics for ``tvm.s_tir.Schedule.tensorize``.

Each computes one 128-byte ``vrmpy`` accumulation on 32 int32 lanes::

    C[i] += Σ_{k<4} int32(A[k]) · int32(B[i, k])        i < 32

``A``: 4 bytes (4 consecutive reduction elements of one activation row, broadcast to all
lanes as one int32), ``B``: 32 × 4 bytes (one aligned 128-byte block of the packed weights),
``C``: 32 int32 accumulators. Written with the LLVM Hexagon intrinsics
(``llvm.hexagon.V6.<name>.acc.128B``, operands ``<32 x i32>``) directly: TVM's own
``VRMPY_u8i8i32_INTRIN`` crashed ``tensorize`` in 0.27.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from ..dot_intrin import dot_product_desc

#: (activation plane dtype, weight dtype) → (intrinsic name, LLVM intrinsic)
INTRINSICS = {
    ("uint8", "int8"): ("tvm_qdq_hexagon_vrmpybusv_32x4", "llvm.hexagon.V6.vrmpybusv.acc.128B"),
    ("int8", "int8"): ("tvm_qdq_hexagon_vrmpybv_32x4", "llvm.hexagon.V6.vrmpybv.acc.128B"),
    ("uint8", "uint8"): ("tvm_qdq_hexagon_vrmpyubv_32x4", "llvm.hexagon.V6.vrmpyubv.acc.128B"),
}


def _register(a_dtype: str, b_dtype: str, name: str, llvm_name: str) -> None:
    a_vec = f"{a_dtype}x4"
    b_vec = f"{b_dtype}x128"

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), a_dtype, offset_factor=1),
        B: T.Buffer((32, 4), b_dtype, offset_factor=1),
        C: T.Buffer((32,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:32], A[0:4], B[0:32, 0:4])
            T.writes(C[0:32])
            C[T.ramp(0, 1, 32)] = T.call_llvm_pure_intrin(
                "int32x32",
                llvm_name,
                C.vload([0], "int32x32"),
                T.broadcast(T.reinterpret("int32", A.vload([0], a_vec)), 32),
                T.reinterpret("int32x32", B.vload([0, 0], b_vec)),
            )

    TensorIntrin.register(name, dot_product_desc(32, 4, a_dtype, b_dtype), impl, override=True)


for (_a, _b), (_name, _llvm) in INTRINSICS.items():
    _register(_a, _b, _name, _llvm)
