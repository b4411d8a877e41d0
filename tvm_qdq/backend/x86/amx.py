"""Intel AMX (``amx-int8``) tensor intrinsic: a block of up to 2 × 2 int32 output tiles
(16 × 16 each) over a whole reduction, for ``tvm.s_tir.Schedule.tensorize``, and the host
checks AMX needs.

The intrinsic for ``R × C`` tiles (``R, C ∈ {1, 2}``) computes, exactly in int32 (wrapping)::

    Acc[i, j] += Σ_{q < K/4, r < 4} int32(A[i, 4q + r]) · int32(B[q, j, r])
                                                    i < 16·R,  j < 16·C

with ``A``: ``16R × K`` uint8 (row stride free), ``B``: ``K/4 × 16C × 4`` int8, one column
block of the AMX matmul weight (:func:`.amx_matmul.pack_amx_weight`: ``B[q, j, r] =
b[4q + r, j]``, AMX's "VNNI-packed" right operand, ``64·C`` bytes per row) and ``Acc``:
``16R × 16C`` int32 accumulators in ``local`` scope (row stride free). ``K`` is a multiple
of :data:`TILE_K`.

Its body loads the ``R·C`` accumulator tiles (``tmm0``–``tmm3``), then per 64-element slice
of the reduction loads ``R`` slices of ``A`` (``tmm4``, ``tmm5``) and ``C`` of ``B``
(``tmm6``, ``tmm7``) and runs ``R·C`` ``tdpbusd`` (each ``16 × 16 × 64`` products: every
slice is loaded once per block, not once per tile), and stores the accumulators back.
``tdpbusd`` sums groups of four ``uint8 · int8`` products into int32 lanes with wrapping
additions, so the result equals the VNNI kernels' bit for bit.

The tile configuration (``ldtilecfg``: palette 1, all eight tiles 16 rows × 64 bytes) is
per thread: :func:`configure_tiles` loads it at the top of each parallel task (or of the
outermost loop), not per block. Linux hands out AMX's tile state only to processes that ask
for it (``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``): :func:`request_permission`
asks once per process; building for an AMX target, and loading a module, call it first.
"""

from __future__ import annotations

import ctypes
import functools
import sys

import tvm
import tvm_ffi
from tvm import tirx
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


def without_amx(target: tvm.target.Target) -> tvm.target.Target:
    """``target`` with AMX turned off (its VNNI kernels only): ``+amx-*`` attributes dropped,
    ``-amx-tile,-amx-int8`` added when the CPU model itself has AMX."""
    config = dict(target.export())
    mattr = [str(a) for a in config.get("mattr", []) if not str(a).lstrip("+-").startswith("amx")]
    if has_amx(tvm.target.Target({**config, "mattr": mattr})):
        mattr += [f"-{f}" for f in REQUIRED_FEATURES]
    config["mattr"] = mattr
    return tvm.target.Target(config)


def _tile_config_words() -> list[int]:
    """The 64-byte ``ldtilecfg`` operand as 16 little-endian uint32 words: palette 1;
    ``colsb`` (bytes 16–31, uint16 per tile) 64 and ``rows`` (bytes 48–55, uint8 per tile)
    16 for tiles 0–7."""
    words = [0] * 16
    words[0] = 1
    for tile in range(8):
        words[4 + tile // 2] |= TILE_K << (16 * (tile % 2))
        words[12 + tile // 4] |= TILE_ROWS << (8 * (tile % 4))
    return words


def _desc(k: int, row_tiles: int, col_tiles: int) -> tirx.PrimFunc:
    """What the intrinsic computes (see the module docstring)."""
    k4, mr, nc = k // 4, TILE_ROWS * row_tiles, TILE_ROWS * col_tiles

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        sc = T.int32()
        A = T.match_buffer(a, (mr, k), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (k4, nc, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (mr, nc), "int32", offset_factor=1, strides=[sc, 1],
                           scope="local")
        with T.sblock("root"):
            T.reads(C[0:mr, 0:nc], A[0:mr, 0:k], B[0:k4, 0:nc, 0:4])
            T.writes(C[0:mr, 0:nc])
            for i, j, q, r in T.grid(mr, nc, k4, 4):
                with T.sblock("update"):
                    vi, vj, vq, vr = T.axis.remap("SSRR", [i, j, q, r])
                    C[vi, vj] = C[vi, vj] + T.cast(A[vi, vq * 4 + vr], "int32") * \
                        T.cast(B[vq, vj, vr], "int32")

    return desc


def _tile_op(name: str, *args) -> tirx.Stmt:
    return tirx.Evaluate(tirx.call_llvm_intrin("void", name, *args))


def _impl(k: int, row_tiles: int, col_tiles: int) -> tirx.PrimFunc:
    """:func:`_desc`'s signature with the tile instructions as its body."""
    func = _desc(k, row_tiles, col_tiles)
    c, a, b = (region.source for region in func.body.block.reads)  # T.reads(C, A, B)

    def ptr(buf, *idx):
        return tirx.address_of(tirx.BufferLoad(buf, [tirx.const(i, "int32") if isinstance(
            i, int) else i for i in idx]))

    def tile(t: int):
        return tirx.const(t, "int8")

    a_stride = tirx.Cast("int64", a.strides[0])
    c_stride = tirx.Cast("int64", c.strides[0] * 4)
    b_stride = tirx.const(TILE_K * col_tiles, "int64")
    blocks = [(r, q) for r in range(row_tiles) for q in range(col_tiles)]
    step = tirx.Var("step", "int32")
    slice_ops = [_tile_op("llvm.x86.tileloadd64", tile(4 + r), ptr(a, 16 * r, step * TILE_K),
                          a_stride) for r in range(row_tiles)]
    slice_ops += [_tile_op("llvm.x86.tileloadd64", tile(6 + q),
                           ptr(b, step * (TILE_K // 4), 16 * q, 0), b_stride)
                  for q in range(col_tiles)]
    slice_ops += [_tile_op("llvm.x86.tdpbusd", tile(r * col_tiles + q), tile(4 + r),
                           tile(6 + q)) for r, q in blocks]
    stmts = [_tile_op("llvm.x86.tileloadd64", tile(r * col_tiles + q),
                      ptr(c, 16 * r, 16 * q), c_stride) for r, q in blocks]
    stmts.append(tirx.For(step, tirx.const(0, "int32"), tirx.const(k // TILE_K, "int32"),
                          tirx.ForKind.SERIAL, tirx.SeqStmt(slice_ops)))
    stmts += [_tile_op("llvm.x86.tilestored64", tile(r * col_tiles + q),
                       ptr(c, 16 * r, 16 * q), c_stride) for r, q in blocks]
    body = tirx.SeqStmt(stmts)
    outer = func.body.block.body  # the loop nest under the root block
    return func.with_body(tvm_ffi.structural_map(
        func.body, (tirx.For, lambda loop: body if loop.same_as(outer) else loop)))


@functools.cache
def amx_intrin(k: int, row_tiles: int = 1, col_tiles: int = 1) -> str:
    """Register (once) and name the intrinsic for a reduction of ``k`` elements and a block
    of ``row_tiles × col_tiles`` tiles."""
    if k % TILE_K:
        raise ValueError(f"AMX reduction {k} is not a multiple of {TILE_K}")
    if row_tiles not in (1, 2) or col_tiles not in (1, 2):
        raise ValueError(f"AMX blocks have 1 or 2 tiles per side, not {row_tiles}×{col_tiles}")
    name = f"tvm_qdq_x86_amx_u8s8s32_{row_tiles}x{col_tiles}_k{k}"
    TensorIntrin.register(name, _desc(k, row_tiles, col_tiles),
                          _impl(k, row_tiles, col_tiles), override=True)
    return name


def _config_stmts() -> list:
    """Statements loading the tile configuration (a fresh local buffer each time)."""
    buf = tirx.decl_buffer((16,), "uint32", name="amx_tile_config", scope="local")
    stores = [tirx.BufferStore(buf, tirx.const(word, "uint32"), [i])
              for i, word in enumerate(_tile_config_words())]
    load = tirx.Evaluate(tirx.call_llvm_intrin("void", "llvm.x86.ldtilecfg",
                                               tirx.address_of(tirx.BufferLoad(buf, [0]))))
    return [tirx.AllocBuffer(buf), *stores, load]


#: Loop annotation: :func:`configure_tiles` loads the tile configuration at the top of the
#: body of the loop that carries it (the parallel loop, or the outermost serial loop, around
#: the AMX tiles).
CONFIG_LOOP_ATTR = "tvm_qdq.amx_tile_config"


def configure_tiles(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` (a scheduled kernel using :func:`amx_intrin`) with the tile configuration
    loaded at the top of the body of each loop annotated :data:`CONFIG_LOOP_ATTR` (once per
    iteration; a parallel loop's iterations are the threads' tasks), the annotation
    dropped."""

    def rewrite(loop: tirx.For):
        if CONFIG_LOOP_ATTR not in loop.annotations:
            return loop
        annotations = {k: v for k, v in loop.annotations.items() if k != CONFIG_LOOP_ATTR}
        return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind,
                        tirx.SeqStmt([*_config_stmts(), loop.body]), loop.thread_binding,
                        annotations)

    return func.with_body(tvm_ffi.structural_map(func.body, (tirx.For, rewrite)))
