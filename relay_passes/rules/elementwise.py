"""add / subtract / multiply on quantized tensors.

* accumulator + constant bias (forward): a bias on the accumulator grid (``s_b = s_acc``,
  as ORT writes int32 biases) is added in the accumulator type,
  ``b_acc = (b - zb) · s_b / s_acc``; one off the grid (Gemm ``beta ≠ 1``, another bias
  scale) is added at the output's QuantizeLinear (output rule), in the float64 requantize:
  ``y = round(float64(acc) · s_acc/s_out + b_real/s_out) + zp_out``.
* tensor × positive float scalar (forward): only the scale changes, ``s' = s · c``
  (Gemm's ``alpha``/``beta``, attention's ``1/√d`` when it is not quantized).
* a ± b (output rule): ``y = round((a - za)·sa/sy ± (b - zb)·sb/sy) + zy`` in fixed-point
  integer arithmetic (int64, see :func:`tvm_qdq.qnn.ops.add_integer`).
* a × b (output rule): ``y = requantize((a - za)·(b - zb), sa·sb → sy)`` with an exact int32
  product.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.ops import add_integer, const, requantize_by, shift_to_signed

from ..qtensor import QTensor, RewriteContext, scalar_constant
from ..registry import forward_rule, output_rule


def _real(q: QTensor) -> np.ndarray:
    """Compile-time real values of a constant QTensor (float64)."""
    p = q.params
    return (q.const.astype(np.float64) - p.broadcast(p.zero_point, q.ndim)) * p.broadcast(
        p.scale.astype(np.float64), q.ndim
    )


def _accumulator_and_bias(ctx: RewriteContext, call) -> tuple[QTensor, QTensor] | None:
    """``(acc, b)`` when ``call`` adds an integer accumulator and a constant QTensor."""
    a, b = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if a is not None and b is not None and b.is_accumulator and not a.is_accumulator:
        a, b = b, a
    if a is None or b is None or not a.is_accumulator or b.const is None:
        return None
    if np.broadcast_shapes(a.shape, b.const.shape) != a.shape:
        return None
    return a, b


#: A bias is on the accumulator grid when ``b_real / s_acc`` is an integer up to this relative
#: error: float32 bias scales (``float32(s_x·s_w)``, as ORT's quantizer writes them) differ
#: from the exact float64 product by < 2^-24 relatively, far below it.
GRID_TOLERANCE = 2.0**-20


@forward_rule("relax.add")
def add_bias(ctx: RewriteContext, call) -> QTensor | None:
    """``acc + b`` with ``b`` on the accumulator grid: ``acc + round(b_real / s_acc)``, exact.

    A bias off the grid (scale ≠ s_x·s_w, Gemm ``beta ≠ 1``) is not folded here: rounding it
    to the grid would lose up to half an accumulator step, which a finer 16-bit output shows.
    :func:`add_to_output` then adds it exactly at the output's QuantizeLinear.
    """
    pair = _accumulator_and_bias(ctx, call)
    if pair is None:
        return None
    a, b = pair
    acc_scale = a.params.broadcast(a.params.scale.astype(np.float64), a.ndim)
    units = _real(b) / acc_scale
    bias = np.rint(units)
    if np.any(np.abs(units - bias) > GRID_TOLERANCE * np.maximum(1.0, np.abs(units))):
        return None
    info = np.iinfo(a.params.qtype.container)
    if bias.min(initial=0) < info.min / 2 or bias.max(initial=0) > info.max / 2:
        return None
    bias = bias.reshape(bias.shape[-a.ndim:] if bias.ndim > a.ndim else bias.shape)
    value = ctx.emit(relax.op.add(a.value, const(bias, a.params.qtype.container)), "qnn_bias_add")
    ctx.record("relax.add", str(value.name), "integer", "bias folded into accumulator")
    return QTensor(value, a.params)


def _accumulator_plus_constant(ctx: RewriteContext, a: QTensor, offset: np.ndarray,
                               out: QParams) -> relax.Var:
    """``y = saturate(round_half_even(float64(acc) · s_acc/s_out + c) + zp_out)`` with
    ``c = b_real / s_out`` in float64: the requantize of :func:`tvm_qdq.qnn.ops.requantize_by`
    with the bias added in the same float64 expression (exact up to ties closer than ~1e-9)."""
    ndim = a.ndim
    ratio = a.params.broadcast(a.params.scale.astype(np.float64), ndim) / np.float64(out.scale)
    f = ctx.emit(relax.op.astype(a.value, "float64"))
    f = ctx.emit(relax.op.multiply(f, const(ratio, "float64")))
    f = ctx.emit(relax.op.add(f, const(offset, "float64")))
    f = ctx.emit(relax.op.round(f))  # half to even, before the zero point (not shift-invariant)
    if out.has_zero_point:
        f = ctx.emit(relax.op.add(f, const(float(out.zero_point), "float64")))
    f = ctx.emit(relax.op.clip(f, out.qtype.qmin, out.qtype.qmax))
    return ctx.emit(relax.op.astype(f, out.qtype.container), "qnn_bias_requantize")


@forward_rule("relax.multiply", "relax.divide")
def scale_by_constant(ctx: RewriteContext, call) -> QTensor | None:
    a, c = ctx.qtensor(call.args[0]), scalar_constant(call.args[1])
    if a is None and call.op.name == "relax.multiply":
        a, c = ctx.qtensor(call.args[1]), scalar_constant(call.args[0])
    if a is None or c is None or not np.isfinite(c) or c <= 0:
        return None
    factor = c if call.op.name == "relax.multiply" else 1.0 / c
    p = a.params
    scale = p.scale * np.float64(np.float32(factor))
    return QTensor(a.value, QParams(scale, p.zero_point, p.qtype, p.axis), a.const)


def _shifted(ctx: RewriteContext, q: QTensor) -> relax.Expr:
    """``q - zq`` as a signed integer value (a constant when ``q`` is one)."""
    if q.const is not None:
        p = q.params
        return const(q.const.astype(np.int64) - p.broadcast(p.zero_point, q.ndim), "int32")
    return shift_to_signed(ctx.bb, q.value, q.params)


@output_rule("relax.add", "relax.subtract")
def add(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    a, b = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if a is None or b is None or not out.per_tensor:
        return None
    pair = _accumulator_and_bias(ctx, call) if call.op.name == "relax.add" else None
    if pair is not None:  # a bias add_bias did not fold (off the grid, or huge)
        acc, bias = pair
        offset = _real(bias) / np.float64(out.scale)
        offset = offset.reshape(offset.shape[-acc.ndim:] if offset.ndim > acc.ndim
                                else offset.shape)
        value = _accumulator_plus_constant(ctx, acc, offset, out)
        ctx.record("relax.add", str(value.name), "integer",
                   "bias off the accumulator grid added in the float64 requantize")
        return value
    if a.const is not None and b.const is not None:
        return None
    sign = -1.0 if call.op.name == "relax.subtract" else 1.0
    ra = a.params.broadcast(a.params.scale.astype(np.float64), a.ndim) / np.float64(out.scale)
    rb = sign * b.params.broadcast(b.params.scale.astype(np.float64), b.ndim) / np.float64(
        out.scale)
    bits = max(a.params.qtype.bits, b.params.qtype.bits)
    value = add_integer(ctx.bb, [(_shifted(ctx, a), ra), (_shifted(ctx, b), rb)], out, bits)
    ctx.record(call.op.name, str(value.name), "integer", "fixed-point int64 sum")
    return value


@output_rule("relax.multiply")
def multiply(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    a, b = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if a is None or b is None or not out.per_tensor:
        return None
    # |a - za| · |b - zb| < 2^31 for 8-bit operands; a 16-bit operand needs int64.
    work = "int32" if max(a.params.qtype.bits, b.params.qtype.bits) <= 8 else "int64"
    sa = ctx.emit(relax.op.astype(shift_to_signed(ctx.bb, a.value, a.params), work))
    sb = ctx.emit(relax.op.astype(shift_to_signed(ctx.bb, b.value, b.params), work))
    product = ctx.emit(relax.op.multiply(sa, sb), "qnn_mul")
    # Each operand's (per-axis) scale shaped for its own rank; numpy broadcasting then aligns
    # them from the right exactly as the product does (a rank-3 operand in a rank-4 product).
    scale = a.params.broadcast(a.params.scale, a.ndim) * b.params.broadcast(b.params.scale, b.ndim)
    multiplier = scale / out.scale
    ctx.record("relax.multiply", str(product.name), "integer", f"{work} product")
    return requantize_by(ctx.bb, product, np.zeros(()), multiplier, out, "qnn_mul_requantize")
