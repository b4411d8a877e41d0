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
* a ± c, c - a, a × c with ``c`` one constant value (a scalar, or a constant tensor whose
  elements are all equal) and ``a`` per tensor, at most 16 bits (output rule, before the two
  above): a lookup table over every code ``i`` of ``a``, computed in float32 exactly as the
  float graph computes it (ORT's reference session)::

      table[i - qmin] = saturate(rint(float32(float32(DQ_a(i)) op float32(DQ_c)) / sy) + zy)

  with ``DQ(q) = float32(q - zp) · float32(s)``. The exact real sum is not the same thing
  when the scales are "round": GELU's ``Erf(x/√2) + 1`` with ``1.0`` quantized as
  ``255 · (1/255)`` and the output scale ``2/255`` (both float32) puts ``(e - 128) + 127.5``
  exactly on a tie for every code ``e``. ORT's float32 ``DQ(1.0)`` is exactly ``1.0``, below
  the tie by 7.5e-6 LSB, and its float32 sum and division then round each tie one way or the
  other; half to even on the exact value differs from it by 1 LSB on ~40 % of all elements,
  which the next GELU / LayerNorm amplify (14 LSB of ``Erf`` per LSB of its input).
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.dims import broadcast_shapes, shapes_equal
from tvm_qdq.qnn.integer_ops import rounds_exactly
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
    if not shapes_equal(broadcast_shapes(a.shape, b.const.shape), a.shape):
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
    ratio = a.params.broadcast(a.params.scale.astype(np.float64), a.ndim) / np.float64(out.scale)
    return requantize_by(ctx.bb, a.value, np.zeros(()), ratio, out, "qnn_bias_requantize",
                         offset)


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


def _term(q: QTensor, ratio: np.ndarray) -> tuple[relax.Expr, np.ndarray, np.ndarray]:
    """``(q, zq, ratio)`` for :func:`~tvm_qdq.qnn.ops.add_integer`: a constant ``q`` as its
    zero-point-free values ``q - zq`` (int32) with zero point 0."""
    p = q.params
    zp = p.broadcast(p.zero_point, q.ndim)
    if q.const is not None:
        return const(q.const.astype(np.int64) - zp, "int32"), np.zeros((), np.int64), ratio
    return q.value, zp, ratio


#: float32 arithmetic of the float graph, per op: ``f(a, b)`` on float32 arrays.
_FLOAT32_OPS = {
    "relax.add": np.add,
    "relax.subtract": np.subtract,
    "relax.multiply": np.multiply,
}


def _single_value(q: QTensor) -> np.float32 | None:
    """``float32(DQ(c))`` of a constant QTensor whose dequantized elements are all equal
    (ORT's float32 dequantize: ``float32(c - zp) · float32(s)``), else None."""
    if q.const is None or q.const.size == 0:
        return None
    p = q.params
    zp = p.broadcast(p.zero_point, q.ndim).astype(np.int64)
    scale = p.broadcast(np.asarray(p.scale, np.float32), q.ndim)
    real = (q.const.astype(np.int64) - zp).astype(np.float32) * scale
    first = np.float32(real.reshape(-1)[0])
    return first if bool(np.all(real == first)) else None


def constant_operand_table(call_op: str, a: QTensor, c: np.float32, a_first: bool,
                           out: QParams) -> np.ndarray:
    """``table[i - qmin]`` of :func:`scalar_operand_lookup` (the formula is in the module
    docstring), one entry per code ``i`` of ``a``'s type."""
    qt = a.params.qtype
    levels = np.arange(qt.qmin, qt.qmax + 1, dtype=np.int64)
    real = (levels - int(a.params.zero_point)).astype(np.float32) * np.float32(a.params.scale)
    other = np.full_like(real, c)
    fn = _FLOAT32_OPS[call_op]
    with np.errstate(over="ignore", invalid="ignore"):
        y = fn(real, other) if a_first else fn(other, real)
        code = np.rint(y.astype(np.float32) / np.float32(out.scale))
    code = np.nan_to_num(code, nan=0.0) + int(out.zero_point)  # ORT: NaN → zero point
    return np.clip(code, out.qtype.qmin, out.qtype.qmax).astype(out.qtype.container)


def scalar_operand_lookup(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    """``a op c`` (``c op a``) with a single-valued constant ``c`` as a table lookup on ``a``'s
    code, exact with respect to the float graph's float32 arithmetic (module docstring);
    None unless ``a`` is a per-tensor runtime tensor of at most 16 bits and ``out`` is per
    tensor."""
    if rounds_exactly(call):  # QLinearAdd / QLinearMul: ORT's kernel rounds the exact value
        return None
    a, b = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if a is None or b is None or not out.per_tensor:
        return None
    if (a.const is None) == (b.const is None):
        return None
    a_first = b.const is not None
    x, c = (a, b) if a_first else (b, a)
    if x.is_accumulator or not x.params.per_tensor or x.params.qtype.bits > 16:
        return None
    value = _single_value(c)
    if value is None or not np.isfinite(value):
        return None
    if not shapes_equal(broadcast_shapes(x.shape, c.shape), x.shape):
        return None  # the constant broadcasts the tensor up: leave it to the general rules
    table = constant_operand_table(call.op.name, x, value, a_first, out)
    index = ctx.emit(relax.op.astype(x.value, "int32"))
    if x.params.qtype.qmin != 0:
        index = ctx.emit(relax.op.subtract(index, const(x.params.qtype.qmin, "int32")))
    result = ctx.emit(relax.op.take(const(table, out.qtype.container), index, axis=0,
                                    mode="clip"), "qnn_lookup")
    ctx.record(call.op.name, str(result.name), "integer",
               f"constant operand: {len(table)}-entry float32-exact lookup table")
    return result


@output_rule("relax.add", "relax.subtract")
def add(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    a, b = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if a is None or b is None or not out.per_tensor:
        return None
    looked_up = scalar_operand_lookup(ctx, call, out)
    if looked_up is not None:
        return looked_up
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
    value = add_integer(ctx.bb, [_term(a, ra), _term(b, rb)], out, bits)
    ctx.record(call.op.name, str(value.name), "integer", "fixed-point int64 sum")
    return value


@output_rule("relax.multiply")
def multiply(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    a, b = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if a is None or b is None or not out.per_tensor:
        return None
    looked_up = scalar_operand_lookup(ctx, call, out)
    if looked_up is not None:
        return looked_up
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
