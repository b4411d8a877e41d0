"""Intel AMX (``amx-int8``) tensor intrinsic: one 16 × 16 int32 output tile over a whole
reduction, for ``tvm.s_tir.Schedule.tensorize``, and the host checks AMX needs.

The intrinsic computes, exactly in int32 (wrapping)::

    C[i, j] += Σ_{q < K/4, r < 4} int32(A[i, 4q + r]) · int32(B[q, j, r])    i, j < 16

with ``A``: 16 rows × ``K`` uint8 (row stride free), ``B``: ``K/4 × 16 × 4`` int8, one column
block of the packed matmul weight (:func:`..kernels.pack_matmul_weight`: ``B[q, j, r] =
b[4q + r, j]``, exactly AMX's "VNNI-packed" right operand, 64 bytes per row) and ``C``:
16 × 16 int32 accumulators in ``local`` scope (row stride free). ``K`` is a multiple of
:data:`TILE_K`. The body configures the tile registers (``ldtilecfg``, palette 1: ``tmm0``
the accumulator, ``tmm1`` the ``A`` slice, ``tmm2`` the ``B`` slice, each 16 rows × 64
bytes), loads ``C``, runs ``K / 64`` ``tdpbusd`` steps (each ``16 × 16 × 64`` products) and
stores ``C`` back. ``tdpbusd`` sums groups of four ``uint8 · int8`` products into int32 lanes
with wrapping additions, so the result equals the VNNI kernels' bit for bit.

Linux hands out AMX's tile state only to processes that ask for it
(``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``): :func:`request_permission` asks
once per process; a build or a loaded module that uses AMX calls it first.
"""

from __future__ import annotations

import ctypes
import functools
import sys

import tvm
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

#: Rows (of ``A`` and ``C``) and columns (of ``C``) of one tile.
TILE_ROWS = 16
#: Reduction elements per ``tdpbusd`` step (64 bytes of one ``A`` row).
TILE_K = 64
#: CPU features the intrinsic needs (``llvm -mattr`` names).
REQUIRED_FEATURES = ("amx-tile", "amx-int8")

_SYS_ARCH_PRCTL = 158
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


@functools.cache
def request_permission() -> bool:
    """Ask Linux for the AMX tile state of this process (once); True when granted."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


def host_has_amx() -> bool:
    """True when the host CPU reports AMX int8 (``/proc/cpuinfo``) and the OS grants it."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_int8" in flags and "amx_tile" in flags and request_permission()


def has_amx(target: tvm.target.Target) -> bool:
    """True when ``target`` is an LLVM target whose ``mcpu``/``mattr`` give AMX int8."""
    from .intrin import has_cpu_features

    return has_cpu_features(target, REQUIRED_FEATURES)


def _tile_config_words() -> list[int]:
    """The 64-byte ``ldtilecfg`` operand as 16 little-endian uint32 words: palette 1;
    ``colsb`` (bytes 16–47, uint16 per tile) and ``rows`` (bytes 48–63, uint8 per tile)
    16 × 64 bytes for tiles 0–2, every other tile unconfigured (both 0)."""
    words = [0] * 16
    words[0] = 1
    words[4] = TILE_K | (TILE_K << 16)  # colsb of tmm0, tmm1
    words[5] = TILE_K  # colsb of tmm2
    words[12] = TILE_ROWS | (TILE_ROWS << 8) | (TILE_ROWS << 16)  # rows of tmm0..tmm2
    return words


def _void(name: str, *args):
    return T.call_llvm_intrin("void", name, *args)


@functools.cache
def amx_intrin(k: int) -> str:
    """Register (once) and name the intrinsic for a reduction of ``k`` elements."""
    if k % TILE_K:
        raise ValueError(f"AMX reduction {k} is not a multiple of {TILE_K}")
    k4, steps = k // 4, k // TILE_K
    words = _tile_config_words()

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        sc = T.int32()
        A = T.match_buffer(a, (16, k), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (k4, 16, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (16, 16), "int32", offset_factor=1, strides=[sc, 1],
                           scope="local")
        with T.sblock("root"):
            T.reads(C[0:16, 0:16], A[0:16, 0:k], B[0:k4, 0:16, 0:4])
            T.writes(C[0:16, 0:16])
            for i, j, q, r in T.grid(16, 16, k4, 4):
                with T.sblock("update"):
                    vi, vj, vq, vr = T.axis.remap("SSRR", [i, j, q, r])
                    C[vi, vj] = C[vi, vj] + T.cast(A[vi, vq * 4 + vr], "int32") * \
                        T.cast(B[vq, vj, vr], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        sc = T.int32()
        A = T.match_buffer(a, (16, k), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (k4, 16, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (16, 16), "int32", offset_factor=1, strides=[sc, 1],
                           scope="local")
        with T.sblock("root"):
            T.reads(C[0:16, 0:16], A[0:16, 0:k], B[0:k4, 0:16, 0:4])
            T.writes(C[0:16, 0:16])
            cfg = T.alloc_buffer((16,), "uint32", scope="local")
            for w in T.unroll(16):
                cfg[w] = T.uint32(0)
            cfg[0] = T.uint32(words[0])
            cfg[4] = T.uint32(words[4])
            cfg[5] = T.uint32(words[5])
            cfg[12] = T.uint32(words[12])
            T.evaluate(_void("llvm.x86.ldtilecfg", T.address_of(cfg[0])))
            T.evaluate(_void("llvm.x86.tileloadd64", T.int8(0), T.address_of(C[0, 0]),
                             T.cast(sc * 4, "int64")))
            for s in range(steps):
                T.evaluate(_void("llvm.x86.tileloadd64", T.int8(1),
                                 T.address_of(A[0, s * 64]), T.cast(sa, "int64")))
                T.evaluate(_void("llvm.x86.tileloadd64", T.int8(2),
                                 T.address_of(B[s * 16, 0, 0]), T.int64(64)))
                T.evaluate(_void("llvm.x86.tdpbusd", T.int8(0), T.int8(1), T.int8(2)))
            T.evaluate(_void("llvm.x86.tilestored64", T.int8(0), T.address_of(C[0, 0]),
                             T.cast(sc * 4, "int64")))

    name = f"tvm_qdq_x86_amx_u8s8s32_16x16x{k}"
    TensorIntrin.register(name, desc, impl, override=True)
    return name
