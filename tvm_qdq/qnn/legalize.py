"""Default legalization of the integer-IR ops (:mod:`.integer_ops`) into plain Relax ops.

``tvm_qdq.requantize`` becomes its float64 formula, op by op::

    t = x - zp_in (in int32 / int64);  f = float64(t) · m [+ c];  f = round(f) [+ zp_out]
    y = out_dtype(clip(f, qmin, qmax))

(``round`` is half to even; the zero point is added after rounding, which is not
shift-invariant otherwise). ``tvm_qdq.requantize_sum`` becomes int64 fixed-point code::

    v = Σ_i int64(x_i - zp_i) · K_i;  y = rhe(v / 2^S) [+ zp_out];  y = out_dtype(clip(y))

with ``rhe(v / 2^S)`` in arithmetic shifts (:func:`round_shift`). Each ``x_i - zp_i`` is formed
in the narrowest signed type holding it (:func:`tvm_qdq.qnn.ops.subtract_zero_point`), every
operand before the products.

:func:`legalize_call` is the ops' ``FLegalize``: TVM's own ``LegalizeOps`` (``tvm.compile``'s
default pipeline) replaces a call by these Relax ops and legalizes them in turn.
:func:`expand_integer_ops` applies it to a whole module.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from ..relax_utils import constant_value
from .integer_ops import Requantize, RequantizeSum, op_name, register
from .ops import const, subtract_zero_point


def shifted_input(bb: relax.BlockBuilder, rq: Requantize) -> relax.Expr:
    """Emit ``x - zp_in`` in the op's work type (``x`` itself when nothing changes)."""
    work = rq.work_dtype
    t = rq.value
    if str(t.ty.dtype) != work:
        t = bb.emit(relax.op.astype(t, work))
    if np.any(rq.zero_point_in != 0):
        t = bb.emit(relax.op.subtract(t, const(rq.zero_point_in, work)))
    return t


def emit_requantize(bb: relax.BlockBuilder, rq: Requantize) -> relax.Expr:
    """Emit the float64 form of ``rq`` (module docstring) up to its last op, which is
    returned unemitted (the caller binds it)."""
    t = shifted_input(bb, rq)
    f = bb.emit(relax.op.astype(t, "float64"))
    f = bb.emit(relax.op.multiply(f, const(rq.multiplier, "float64")))
    if rq.offset is not None:
        f = bb.emit(relax.op.add(f, const(rq.offset, "float64")))
    f = bb.emit(relax.op.round(f))
    if np.any(rq.zero_point_out != 0):
        f = bb.emit(relax.op.add(f, const(rq.zero_point_out, "float64")))
    f = bb.emit(relax.op.clip(f, rq.qmin, rq.qmax))
    return relax.op.astype(f, rq.out_dtype)


def shifted_terms(bb: relax.BlockBuilder, rs: RequantizeSum) -> list[relax.Expr]:
    """Emit every ``x_i - zp_i`` (a constant ``x_i`` is already zero-point free)."""
    return [x if constant_value(x) is not None else subtract_zero_point(bb, x, zp)
            for x, zp in rs.terms]


def round_shift(bb: relax.BlockBuilder, value: relax.Expr, shift: int) -> relax.Expr:
    """``round_half_to_even(value / 2^shift)`` for int64 ``value`` (arithmetic shifts)."""
    floor = bb.emit(relax.op.right_shift(value, const(shift, "int64")))
    rest = bb.emit(relax.op.subtract(value, relax.op.left_shift(floor, const(shift, "int64"))))
    half = const(1 << (shift - 1), "int64")
    odd = relax.op.equal(relax.op.bitwise_and(floor, const(1, "int64")), const(1, "int64"))
    up = relax.op.logical_or(relax.op.greater(rest, half),
                             relax.op.logical_and(relax.op.equal(rest, half), odd))
    return bb.emit(relax.op.add(floor, relax.op.astype(up, "int64")))


def finish_sum(bb: relax.BlockBuilder, rs: RequantizeSum, rounded: relax.Expr) -> relax.Expr:
    """``out_dtype(clip(rounded [+ zp_out], qmin, qmax))`` for the int64 ``rounded``; the
    cast is returned unemitted."""
    y = rounded
    if np.any(rs.zero_point_out != 0):
        y = bb.emit(relax.op.add(y, const(rs.zero_point_out, "int64")))
    y = bb.emit(relax.op.clip(y, rs.qmin, rs.qmax))
    return relax.op.astype(y, rs.out_dtype)


def emit_requantize_sum(bb: relax.BlockBuilder, rs: RequantizeSum) -> relax.Expr:
    """Emit the int64 fixed-point form of ``rs`` (module docstring) up to its last op, which
    is returned unemitted."""
    total = None
    for x, k in zip(shifted_terms(bb, rs), rs.multipliers, strict=True):
        wide = bb.emit(relax.op.astype(x, "int64"))
        part = bb.emit(relax.op.multiply(wide, const(k, "int64")))
        total = part if total is None else bb.emit(relax.op.add(total, part))
    return finish_sum(bb, rs, round_shift(bb, total, rs.shift))


def legalize_call(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """The default form of a call of either op (``FLegalize``)."""
    rq = Requantize.of(call)
    if rq is not None:
        return emit_requantize(bb, rq)
    return emit_requantize_sum(bb, RequantizeSum.of(call))


@relax.expr_functor.mutator
class _Expand(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call):  # noqa: D102 - visitor hook
        call = super().visit_call_(call)
        return legalize_call(self.builder_, call) if op_name(call) else call


def expand_integer_ops(mod: tvm.IRModule) -> tvm.IRModule:
    """Every call of the integer-IR ops of ``mod``'s Relax functions in its default form."""
    register()
    expand = _Expand(mod)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            expand.builder_.update_func(gvar, expand.visit_expr(func))
    return expand.builder_.get()
