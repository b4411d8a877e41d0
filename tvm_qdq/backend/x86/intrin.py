"""AVX-512 VNNI tensor intrinsic for ``tvm.s_tir.Schedule.tensorize`` and target helpers.

The intrinsic computes one ``vpdpbusd`` step on a 16-lane register tile::

    C[i] += Σ_{k<4} int32(A[k]) · int32(B[i, k])        i < 16

with ``A``: 4 × uint8 (4 consecutive reduction elements of one row of the left operand,
broadcast to all 16 lanes as one int32), ``B``: 16 × 4 int8 (one column block of the
pre-packed right operand, 64 contiguous bytes: lane ``i`` holds ``B[i, 0..3]``) and ``C``:
16 × int32 accumulators in ``local`` scope (registers after unrolling). The products are exact
and the lane sums wrap modulo 2^32 exactly like int32 addition, so an int32 accumulation of
any length is bit-exact whenever the true result fits in int32.

It is written with ``llvm.x86.avx512.vpdpbusd.512`` directly because the wheel's own
``dot_16x4_vnni`` passes ``<16 x i32>`` operands that LLVM 22 rejects.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from ..dot_intrin import dot_product_desc

VNNI_INTRIN = "tvm_qdq_x86_vnni_u8s8s32_16x4"
VNNI_LLVM_INTRINSIC = "llvm.x86.avx512.vpdpbusd.512"

#: CPU features the kernels need (``llvm -mattr`` names).
REQUIRED_FEATURES = ("avx512f", "avx512bw", "avx512vnni")


@T.prim_func(s_tir=True)
def _vnni_impl(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a_word = T.reinterpret("int32", A.vload([0], "uint8x4"))
        C[T.ramp(0, 1, 16)] = T.call_llvm_pure_intrin(
            "int32x16",
            "llvm.x86.avx512.vpdpbusd.512",
            C.vload([0], "int32x16"),
            T.reinterpret("int8x64", T.broadcast(a_word, 16)),
            B.vload([0, 0], "int8x64"),
        )


TensorIntrin.register(VNNI_INTRIN, dot_product_desc(16, 4, "uint8", "int8", "local"),
                      _vnni_impl, override=True)


def has_cpu_features(target: tvm.target.Target, features) -> bool:
    """True when ``target`` is an LLVM target whose ``mcpu``/``mattr`` give every feature."""
    if target.kind.name != "llvm":
        return False
    try:
        available = tvm.target.codegen.llvm_get_cpu_features(target)
    except Exception:  # noqa: BLE001 - LLVM without the x86 backend
        return False
    return all(f in available for f in features)


def has_vnni(target: tvm.target.Target) -> bool:
    """True when ``target`` is an LLVM target whose ``mcpu``/``mattr`` give AVX-512 VNNI."""
    return has_cpu_features(target, REQUIRED_FEATURES)


def schedule_target(target: tvm.target.Target | None = None) -> tvm.target.Target:
    """The target a schedule is chosen for: ``target``, else the current one (``with
    target:``) when it is LLVM, else the host's x86 target
    (:func:`tvm_qdq.backend.resolve_target`)."""
    from ...targets import resolve_target

    if target is not None:
        return target
    current = tvm.target.Target.current(allow_none=True)
    return current if current is not None and current.kind.name == "llvm" \
        else resolve_target("x86")


def asm_of(executable) -> str:
    """Assembly text of a module built by ``tvm.compile`` (host library and its imports)."""
    mod = executable.mod if hasattr(executable, "mod") else executable
    texts = []
    seen: set[int] = set()
    stack = [mod]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        try:
            texts.append(str(m.inspect_source("asm")))
        except Exception:  # noqa: BLE001 - modules without assembly (e.g. the VM bytecode)
            pass
        stack.extend(list(m.imports))
    return "\n".join(texts)
