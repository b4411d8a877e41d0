"""add / subtract / multiply on quantized tensors.

* accumulator + constant bias (forward): the bias is requantized at compile time to the
  accumulator's scale, ``b_acc = round((b - zb) · s_b / s_acc)`` (exact when
  ``s_b = s_acc``, as ORT writes int32 biases), then added in the accumulator type.
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


@forward_rule("relax.add")
def add_bias(ctx: RewriteContext, call) -> QTensor | None:
    a, b = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if a is not None and b is not None and b.is_accumulator and not a.is_accumulator:
        a, b = b, a
    if a is None or b is None or not a.is_accumulator or b.const is None:
        return None
    acc_scale = a.params.broadcast(a.params.scale.astype(np.float64), a.ndim)
    bias = np.rint(_real(b) / acc_scale)
    if np.broadcast_shapes(a.shape, bias.shape) != a.shape:
        return None
    info = np.iinfo(a.params.qtype.container)
    if bias.min(initial=0) < info.min / 2 or bias.max(initial=0) > info.max / 2:
        return None
    bias = bias.reshape(bias.shape[-a.ndim:] if bias.ndim > a.ndim else bias.shape)
    value = ctx.emit(relax.op.add(a.value, const(bias, a.params.qtype.container)), "qnn_bias_add")
    ctx.record("relax.add", str(value.name), "integer", "bias folded into accumulator")
    return QTensor(value, a.params)


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
    ndim = len(product.ty.shape.values)
    scale = a.params.broadcast(a.params.scale, ndim) * b.params.broadcast(b.params.scale, ndim)
    multiplier = scale / out.scale
    ctx.record("relax.multiply", str(product.name), "integer", f"{work} product")
    return requantize_by(ctx.bb, product, np.zeros(()), multiplier, out, "qnn_mul_requantize")
