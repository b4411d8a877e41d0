"""256-entry byte table lookups ``y[i] = table[x[i]]`` (uint8 ``x``) as AVX-512 VBMI permutes.

The integer pass turns unary ops and whole elementwise chains of one 8-bit tensor into
``take(table, x)`` (``relay_passes/rules/lut_fold.py``); TVM's generic schedule gathers one
byte per element. With AVX-512 VBMI the 256-byte table fits in four zmm registers
``T0..T3`` (64 entries each) and 64 lookups take two two-table byte permutes and a blend::

    lo = vpermi2b(T0, x, T1)      = table[x & 127]          (bit 6 picks T0/T1, bits 0-5 the byte)
    hi = vpermi2b(T2, x, T3)      = table[128 + (x & 127)]
    y  = x ≥ 128 ? hi : lo        = table[x]

(``llvm.x86.avx512.vpermi2var.qi.512``, reached from TIR with ``T.call_llvm_pure_intrin``
like the VNNI intrinsic of :mod:`..intrin`). The result is the same bytes as the gather, so it
is exact. It applies to a function of one block ``Y[v] = A[index(X[v])]`` with ``A`` a
256-entry 8-bit table, ``X`` uint8 of ``Y``'s shape and ``index(c) = c`` for every code ``c``
(checked by evaluating the index expression on the 256 codes: the ``clip`` of
``take(..., mode="clip")`` is then a no-op); other functions, and targets without
``avx512vbmi``, keep the generic schedule. A tail of fewer than 64 elements is gathered one
by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tvm
import tvm_ffi
from tvm import ir, s_tir, tirx
from tvm.script import tirx as T

from ...tir_blocks import SCHEDULE_ERRORS, buffer_dtype, buffer_shape, root_blocks
from ..intrin import has_cpu_features, schedule_target
from .common import PARALLEL_MIN_ELEMS
from .rule import Kernel
from .symbolic_rows import parallel_per_call

#: CPU feature of the byte permutes (``llvm -mattr`` name).
VBMI_FEATURE = "avx512vbmi"
#: Two-table byte permute: ``vpermi2b`` (operands: table low half, index, table high half).
PERMI2B = "llvm.x86.avx512.vpermi2var.qi.512"
LANES = 64
TABLE_SIZE = 256


def has_vbmi(target: tvm.target.Target | None = None) -> bool:
    """AVX-512 VBMI on ``target``, else on the current target (``with target:``), else on the
    host's x86 target (:func:`..intrin.schedule_target`), like the VNNI choice of
    :mod:`.matmul`."""
    return has_cpu_features(schedule_target(target), (VBMI_FEATURE,))


def _same_vars(indices, ivs) -> bool:
    return len(indices) == len(ivs) and all(
        isinstance(i, tirx.Var) and i.same_as(iv.var) for i, iv in zip(indices, ivs, strict=True))


_BINARY: dict[type, Callable[[int, int], int]] = {
    tirx.Add: lambda a, b: a + b,
    tirx.Sub: lambda a, b: a - b,
    tirx.Mul: lambda a, b: a * b,
    tirx.Min: min,
    tirx.Max: max,
    tirx.FloorDiv: lambda a, b: a // b,
    tirx.FloorMod: lambda a, b: a % b,
    tirx.Div: lambda a, b: int(a / b),  # truncating
    tirx.Mod: lambda a, b: int(math.fmod(a, b)),  # truncating
}


def _evaluate(expr: tirx.PrimExpr, load, code: int) -> int:
    """Integer value of an index expression with ``load`` equal to ``code`` (ValueError on
    anything but integer constants, casts that keep the value and the ops of
    :data:`_BINARY`)."""
    if expr.same_as(load):
        return code
    if isinstance(expr, tirx.IntImm):
        return int(expr.value)
    if isinstance(expr, tirx.Cast) and str(expr.ty).startswith(("int", "uint")):
        value = _evaluate(expr.value, load, code)
        info = np.iinfo(str(expr.ty))
        if not info.min <= value <= info.max:
            raise ValueError("narrowing cast")
        return value
    for kind, fn in _BINARY.items():
        if isinstance(expr, kind):
            return fn(_evaluate(expr.a, load, code), _evaluate(expr.b, load, code))
    raise ValueError(f"index expression node {type(expr).__name__}")


def _loads(expr: tirx.PrimExpr) -> list:
    """The tensor loads inside an index expression (of the kinds :func:`_evaluate` reads)."""
    if isinstance(expr, ir.expr.TensorLoad):
        return [expr]
    if isinstance(expr, tirx.Cast):
        return _loads(expr.value)
    if isinstance(expr, tuple(_BINARY)):
        return _loads(expr.a) + _loads(expr.b)
    return []


def _index_is_code(index: tirx.PrimExpr, load) -> bool:
    """``index`` with ``load`` equal to each uint8 code ``c`` evaluates to ``c``."""
    try:
        return all(_evaluate(index, load, code) == code for code in range(TABLE_SIZE))
    except (ValueError, ZeroDivisionError):
        return False


def match_byte_lookup(func: tirx.PrimFunc) -> tuple | None:
    """``(table, x, y)`` buffers when ``func`` is ``y[v] = table[x[v]]`` (module docstring)."""
    sch = s_tir.Schedule(func)
    blocks = root_blocks(sch)
    if len(blocks) != 1:
        return None
    block = sch.get(blocks[0])
    store = block.body
    if not isinstance(store, tirx.BufferStore) or not _same_vars(store.indices, block.iter_vars):
        return None
    if any(int(iv.iter_type) != 0 for iv in block.iter_vars):
        return None
    gather = store.value
    if not isinstance(gather, ir.expr.TensorLoad) or len(gather.indices) != 1:
        return None
    table, out = gather.source, store.buffer
    if buffer_shape(table) != [TABLE_SIZE] or buffer_dtype(table) not in ("uint8", "int8"):
        return None
    if buffer_dtype(out) != buffer_dtype(table):
        return None
    inner = _loads(gather.indices[0])
    if len(inner) != 1:
        return None
    (load,) = inner
    x = load.source
    if buffer_dtype(x) != "uint8" or not _same_vars(load.indices, block.iter_vars):
        return None
    if not tvm_ffi.structural_equal(list(x.ty.shape), list(out.ty.shape)):
        return None
    if not _index_is_code(gather.indices[0], load):
        return None
    params = list(func.params)
    if len(params) != 3 or not (params[0].same_as(table) and params[1].same_as(x)
                                and params[2].same_as(out)):
        return None
    return table, x, out


def byte_lookup_func(shape: list, dtype: str) -> tirx.PrimFunc:
    """``Y = A[X]`` over ``shape`` (``X`` uint8, ``A`` 256 × ``dtype``) with VBMI permutes.
    A symbolic shape (PrimExpr dimensions) has ``n // 64`` vectors and ``n mod 64`` elements
    gathered one by one, parallel for calls with enough elements."""
    if all(isinstance(d, int) for d in shape):
        n = math.prod(shape)
        vectors, tail = divmod(n, LANES)
        dims = [tirx.IntImm("int64", d) for d in shape]
        parallel = n >= PARALLEL_MIN_ELEMS and vectors > 1
    else:
        dims = [tirx.IntImm("int64", d) if isinstance(d, int) else d for d in shape]
        n = math.prod(dims[1:], start=dims[0])
        vectors, tail = n // LANES, n % LANES
        parallel = True  # or serial, per call: parallel_per_call below
    vec = f"{dtype}x{LANES}"
    loop = T.parallel if parallel else T.serial

    # No named vector values: TVM would allocate a workspace buffer for each per iteration.
    # The table's four loads are loop-invariant (LLVM hoists them into registers) and the
    # three loads of the codes are one (LLVM merges them).
    @T.prim_func(private=True)
    def lookup(A: T.Buffer((T.int64(TABLE_SIZE),), dtype), X: T.Buffer(dims, "uint8"),
               Y: T.Buffer(dims, dtype)):
        T.func_attr({"tirx.noalias": True})
        xf = T.decl_buffer((n,), "uint8", data=X.data)
        yf = T.decl_buffer((n,), dtype, data=Y.data)
        for v in loop(vectors):
            yf[T.ramp(v * LANES, 1, LANES)] = T.Select(
                xf[T.ramp(v * LANES, 1, LANES)] >= T.broadcast(T.uint8(128), LANES),
                T.call_llvm_pure_intrin(vec, PERMI2B, A[T.ramp(2 * LANES, 1, LANES)],
                                        xf[T.ramp(v * LANES, 1, LANES)],
                                        A[T.ramp(3 * LANES, 1, LANES)]),
                T.call_llvm_pure_intrin(vec, PERMI2B, A[T.ramp(0, 1, LANES)],
                                        xf[T.ramp(v * LANES, 1, LANES)],
                                        A[T.ramp(LANES, 1, LANES)]))
        for i in range(tail):
            yf[vectors * LANES + i] = A[T.Cast("int64", xf[vectors * LANES + i])]

    if isinstance(n, int):
        return lookup
    return parallel_per_call(lookup, n, PARALLEL_MIN_ELEMS)


def schedule_byte_lookup(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """The matched ``func`` rewritten as :func:`byte_lookup_func` (same parameters, attrs)."""
    found = match_byte_lookup(func)
    if found is None:
        raise ValueError("not a 256-entry byte lookup")
    _, _, out = found
    shape = [int(d) if isinstance(d, tirx.IntImm) else d for d in out.ty.shape]
    new = byte_lookup_func(shape, buffer_dtype(out))
    for key, value in (func.attrs or {}).items():
        new = new.with_attr(key, value)
    return new


class LutRule:
    """A byte table lookup (TVM's ``take``, blocks named ``T_take…``) on a target (see
    :func:`has_vbmi`) with AVX-512 VBMI."""

    kind = "lut_vbmi"

    def applies(self, kernel: Kernel) -> bool:
        if not any(n.startswith("T_take") for n in kernel.block_names) or \
                not has_vbmi(kernel.target):
            return False
        try:
            return match_byte_lookup(kernel.func) is not None
        except SCHEDULE_ERRORS:
            return False

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        return schedule_byte_lookup(kernel.func)
