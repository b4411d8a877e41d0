"""Elementwise integer chains of ONE 8-bit tensor fold into one 256-entry lookup table.

An output rule of an elementwise op (add, subtract, multiply, clip, the unary lookups) emits
its integer form ``y``. Tracing the emitted bindings back from ``y``, if ``y = f(x)`` where
``x`` is a single runtime tensor of 8 bits (uint8 / int8) and every other leaf is a constant
with one element (or the table operand of a ``take``), then ``y`` is a function of ``x``'s
code alone and::

    table[i - qmin] = f(i)         for every code i of x (256 values)
    y = take(table, x - qmin)      (uint8 x: the index is x itself; int8: int32(x) + 128)

``f`` is evaluated at compile time by running the very emitted Relax ops (the requantize ops
of :mod:`tvm_qdq.qnn.integer_ops` through their numpy definitions in
:mod:`tvm_qdq.qnn.reference`, float64 multiply / round half to even / clip, casts, nested
lookups) op by op in numpy on the 256 codes, with the same dtypes and the same IEEE /
two's-complement semantics, so every entry is what the unfolded chain computes at run time:
the result is bit-identical. GELU ``x·½(1+erf(x/√2))`` on uint8 becomes one table instead of
``take → take → int32 product → float64 requantize → take``. The index is ``x`` itself:
no int32 index tensor is materialised.

Folding is refused when the chain has an op whose numpy evaluation could differ from the
compiled code (transcendental float ops), a constant with more than one element (its value
would depend on the position, e.g. per-channel biases), a float → int cast out of range, an
input of more than 8 bits (a 65536-entry table) or an input whose shape is not the output's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax

from tvm_qdq.qnn import QParams, reference
from tvm_qdq.qnn.dims import shapes_equal
from tvm_qdq.qnn.integer_ops import REQUANTIZE, REQUANTIZE_SUM
from tvm_qdq.qnn.ops import const
from tvm_qdq.relax_utils import constant_value, partial_shape, tensor_dtype

from ..qtensor import RewriteContext
from ..registry import OUTPUT_RULES
from . import activation, elementwise, lookup  # noqa: F401  (their rules are wrapped below)

#: Output rules whose result is folded when possible (elementwise ops of one output).
FOLDED_RULES = (
    "relax.add", "relax.subtract", "relax.multiply", "relax.clip",
    "relax.sigmoid", "relax.tanh", "relax.erf", "relax.nn.leakyrelu",
)
#: Largest number of emitted bindings examined behind one result.
MAX_CONE = 512

_BINARY: dict[str, Callable] = {
    "relax.add": np.add,
    "relax.subtract": np.subtract,
    "relax.multiply": np.multiply,
    "relax.maximum": np.maximum,
    "relax.minimum": np.minimum,
    "relax.bitwise_and": np.bitwise_and,
    "relax.bitwise_or": np.bitwise_or,
    "relax.bitwise_xor": np.bitwise_xor,
    "relax.logical_and": np.logical_and,
    "relax.logical_or": np.logical_or,
    "relax.equal": np.equal,
    "relax.not_equal": np.not_equal,
    "relax.less": np.less,
    "relax.less_equal": np.less_equal,
    "relax.greater": np.greater,
    "relax.greater_equal": np.greater_equal,
}
_UNARY: dict[str, Callable] = {
    "relax.round": np.rint,  # R.round: half to even, as np.rint
    "relax.floor": np.floor,
    "relax.ceil": np.ceil,
    "relax.trunc": np.trunc,
    "relax.negative": np.negative,
    "relax.abs": np.abs,
    "relax.logical_not": np.logical_not,
    "relax.bitwise_not": np.invert,
}
_SHIFTS: dict[str, Callable] = {"relax.left_shift": np.left_shift,
                                "relax.right_shift": np.right_shift}
_SPECIAL = {"relax.astype", "relax.clip", "relax.take", "relax.where", "relax.divide",
            REQUANTIZE, REQUANTIZE_SUM}
FOLDABLE_OPS = frozenset(_BINARY) | frozenset(_UNARY) | frozenset(_SHIFTS) | _SPECIAL


class _Refused(Exception):
    """The chain cannot be evaluated exactly in numpy."""


def _op_call(ctx: RewriteContext, var: relax.Expr) -> relax.Call | None:
    """The foldable op call bound to ``var`` in the block being emitted, else None."""
    if not isinstance(var, relax.Var):
        return None
    try:
        value = ctx.bb.lookup_binding(var)
    except Exception:  # noqa: BLE001 - a var of another scope
        return None
    if (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
            and value.op.name in FOLDABLE_OPS):
        return value
    return None


def _tensor_args(call: relax.Call) -> list[relax.Expr]:
    """Arguments of ``call`` that are tensors (vars or constants), in order."""
    return [a for a in call.args
            if isinstance(a, relax.Var) or constant_value(a) is not None]


def _closed(ctx: RewriteContext, root: relax.Var, source: relax.Var) -> list[relax.Var] | None:
    """Vars from ``source`` (exclusive) to ``root`` in dependency order when every leaf of
    ``root``'s cone cut at ``source`` is a one-element constant (or a take's table), else
    None."""
    order: list[relax.Var] = []
    seen: set = set()

    def visit(expr: relax.Expr) -> bool:
        if expr.same_as(source):
            return True
        if constant_value(expr) is not None:
            return constant_value(expr).size == 1
        if expr in seen:
            return True
        call = _op_call(ctx, expr)
        if call is None or len(seen) >= MAX_CONE:
            return False
        seen.add(expr)
        args = _tensor_args(call)
        if call.op.name == "relax.take":
            table, index = call.args[0], call.args[1]
            values = constant_value(table)
            if values is None or values.ndim != 1:
                return False
            args = [index]
        if not all(visit(a) for a in args):
            return False
        order.append(expr)
        return True

    return order if visit(root) else None


def _cone_vars(ctx: RewriteContext, root: relax.Var) -> list[relax.Var]:
    """Vars of ``root``'s foldable cone (opaque producers included as leaves), nearest
    first."""
    found, queue, seen = [], [root], {root}
    while queue and len(found) < MAX_CONE:
        var = queue.pop(0)
        found.append(var)
        call = _op_call(ctx, var)
        if call is None:
            continue
        for arg in _tensor_args(call):
            if isinstance(arg, relax.Var) and arg not in seen:
                seen.add(arg)
                queue.append(arg)
    return found


def _evaluate(call: relax.Call, args: list[np.ndarray]) -> np.ndarray:
    """numpy value of one Relax op with the compiled code's semantics (or _Refused)."""
    name = call.op.name
    with np.errstate(all="ignore"):
        if name in _BINARY:
            if args[0].dtype != args[1].dtype:
                raise _Refused(name)
            return _BINARY[name](args[0], args[1])
        if name in _UNARY:
            return _UNARY[name](args[0])
        if name in _SHIFTS:
            bits = args[0].dtype.itemsize * 8
            if np.any(args[1] < 0) or np.any(args[1] >= bits):
                raise _Refused("shift out of range")
            return _SHIFTS[name](args[0], args[1].astype(args[0].dtype))
        if name == "relax.divide":
            if not np.issubdtype(args[0].dtype, np.floating) or args[0].dtype != args[1].dtype:
                raise _Refused("integer divide")
            return np.divide(args[0], args[1])
        if name == "relax.astype":
            return _astype(args[0], str(call.attrs.dtype))
        if name == "relax.clip":
            lo, hi = (int(a.value) if isinstance(a.value, int) else float(a.value)
                      for a in call.args[1:3])
            return np.minimum(np.maximum(args[0], np.asarray(lo).astype(args[0].dtype)),
                              np.asarray(hi).astype(args[0].dtype))
        if name == "relax.where":
            return np.where(args[0], args[1], args[2])
        if name == "relax.take":
            return _take(call, args[0], args[1])
        if name in (REQUANTIZE, REQUANTIZE_SUM):
            return _requantize(call, args)
    raise _Refused(name)


def _requantize(call: relax.Call, args: list[np.ndarray]) -> np.ndarray:
    """A requantize op on numpy operands (its tensor arguments, in order)."""
    a = call.attrs
    bounds = (int(a["qmin"]), int(a["qmax"]), str(a["out_dtype"]))
    info = np.iinfo(bounds[2])
    if bounds[0] < info.min or bounds[1] > info.max:
        raise _Refused("clip range beyond the output type")  # the cast would be undefined
    if call.op.name == REQUANTIZE:
        x, zp_in, multiplier, zp_out = args[:4]
        return reference.requantize_codes(x, zp_in, multiplier, zp_out, *bounds,
                                          offset=args[4] if len(args) > 4 else None)
    triples = [args[i:i + 3] for i in range(0, len(args) - 1, 3)]
    return reference.requantize_sum_codes([(x, zp) for x, zp, _ in triples],
                                          [k for _, _, k in triples], int(a["shift"]),
                                          args[-1], *bounds)


def _astype(x: np.ndarray, dtype: str) -> np.ndarray:
    target = np.dtype("bool" if dtype == "bool" else dtype)
    if np.issubdtype(x.dtype, np.floating) and np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        if not np.all(np.isfinite(x)) or np.any(x <= info.min - 1) or np.any(x >= info.max + 1):
            raise _Refused("float → int cast out of range")  # undefined in the compiled code
    return x.astype(target)


def _take(call: relax.Call, table: np.ndarray, index: np.ndarray) -> np.ndarray:
    if int(call.attrs.axis) != 0:
        raise _Refused("take axis")
    n = table.shape[0]
    mode = str(call.attrs.mode)
    index = index.astype(np.int64)
    if mode == "clip":
        index = np.clip(index, 0, n - 1)
    elif mode == "wrap":
        index = np.mod(index, n)
    elif np.any(index < 0) or np.any(index >= n):
        raise _Refused("take index out of range")
    return table[index]


def _table(ctx: RewriteContext, order: list[relax.Var], source: relax.Var) -> np.ndarray:
    """``f(i)`` for the 256 codes ``i`` of ``source`` (ascending codes), through ``order``."""
    dtype = np.dtype(tensor_dtype(source))
    info = np.iinfo(dtype)
    values: dict = {source: np.arange(info.min, info.max + 1).astype(dtype)}

    def value_of(expr: relax.Expr) -> np.ndarray:
        found = constant_value(expr)
        return values[expr] if found is None else found

    for var in order:
        call = _op_call(ctx, var)
        args = [value_of(a) for a in _tensor_args(call)]
        if call.op.name != "relax.take":  # one-element constants broadcast as scalars
            args = [a.reshape(()) if a.size == 1 and a.ndim else a for a in args]
        result = _evaluate(call, args)
        if str(result.dtype) != str(tensor_dtype(var)):
            raise _Refused(f"{call.op.name}: numpy dtype {result.dtype} ≠ {tensor_dtype(var)}")
        values[var] = np.broadcast_to(result, (256,)) if result.ndim == 0 else result
    return np.asarray(values[order[-1]]).reshape(256)


def _already_direct(ctx: RewriteContext, root: relax.Var, source: relax.Var) -> bool:
    call = _op_call(ctx, root)
    return (call is not None and call.op.name == "relax.take"
            and call.args[1].same_as(source))


def _lookup(ctx: RewriteContext, table: np.ndarray, source: relax.Var, dtype: str
            ) -> relax.Expr:
    """``table[code(source) - qmin]`` as a ``take``: a uint8 ``source`` is the index itself
    (no int32 index tensor); an int8 one goes through ``int32(code) + 128``.

    (An int8 index could be its bit pattern ``code mod 256`` with mode ``wrap`` and the table
    rotated by 128, but the feed check (:mod:`tvm_qdq.index_bounds`) reads any ``take``
    indexed by a graph input, also through transposes/reshapes, as an embedding Gather whose
    indices must lie in ``[0, n)``, and would reject negative codes.)"""
    if tensor_dtype(source) == "uint8":
        return relax.op.take(const(table, dtype), source, axis=0, mode="clip")
    index = ctx.emit(relax.op.add(relax.op.astype(source, "int32"), const(128, "int32")))
    return relax.op.take(const(table, dtype), index, axis=0, mode="clip")


def fold_lookup(ctx: RewriteContext, value: relax.Expr, op: str) -> relax.Expr | None:
    """``take(table, x)`` replacing ``value`` when it is a function of one 8-bit tensor ``x``
    (module docstring), else None."""
    if not isinstance(value, relax.Var) or partial_shape(value) is None:
        return None
    for source in reversed(_cone_vars(ctx, value)):  # farthest input first
        if source.same_as(value) or tensor_dtype(source) not in ("uint8", "int8"):
            continue
        if not shapes_equal(partial_shape(source), partial_shape(value)):
            continue
        order = _closed(ctx, value, source)
        if not order:
            continue
        if _already_direct(ctx, value, source):
            return None
        try:
            table = _table(ctx, order, source)
        except _Refused:
            continue
        result = ctx.emit(_lookup(ctx, table, source, tensor_dtype(value)), "qnn_lut")
        ctx.record(op, str(result.name), "integer",
                   f"folded {len(order)} ops of one 8-bit tensor into a 256-entry lookup table")
        return result
    return None


def _folding(rule: Callable) -> Callable:
    """``rule`` followed by :func:`fold_lookup` of its result."""

    def folded(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
        value = rule(ctx, call, out)
        if value is None:
            return None
        folded_value = fold_lookup(ctx, value, call.op.name)
        return value if folded_value is None else folded_value

    folded.__name__ = f"lut_fold_{rule.__name__}"
    folded.__doc__ = rule.__doc__
    folded.unfolded = rule  # type: ignore[attr-defined]
    return folded


def register() -> None:
    """Wrap the output rules of :data:`FOLDED_RULES` (once) so their results fold."""
    for name in FOLDED_RULES:
        rule = OUTPUT_RULES.get(name)
        if rule is not None and not hasattr(rule, "unfolded"):
            OUTPUT_RULES[name] = _folding(rule)


register()
