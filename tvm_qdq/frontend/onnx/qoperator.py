"""QOperator-format and integer ONNX ops → tvm-qdq's vocabulary (one engine, two doors).

* QLinear* ops (QLinearConv, QLinearMatMul and the ``com.microsoft`` QGemm, QLinearAdd, ...)
  are written as ``quantize(float_op(dequantize(inputs)))`` — exactly the QDQ form — so the
  integer pass turns them into integer compute with the same rules as QDQ models.
* Integer-result ops (ConvInteger, MatMulInteger, MatMulInteger16) and the dynamic ones
  (DynamicQuantizeLinear, DynamicQuantizeMatMul, MatMulIntegerToFloat) are emitted directly
  as exact integer Relax with the builders of :mod:`tvm_qdq.qnn.ops`.

Math per op is in each converter's docstring.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as tvm_onnx

from ...dtypes import QTYPES
from ...qnn.integer_ops import with_exact_rounding
from ...qnn.ops import CONV_OPS, conv_integer, matmul_integer_const
from ...relax_utils import tensor_dtype
from .context import ConvertContext, constant_value
from .shapes import static_dims

NO_PARAMS: list = [{}, {}]


def _arg(inputs: list, i: int):
    return inputs[i] if i < len(inputs) else None


def _ndim(expr: relax.Expr) -> int:
    return len(expr.ty.shape.values)


def _f32(expr: relax.Expr) -> relax.Expr:
    value = constant_value(expr)
    if value is not None:
        return relax.const(value.astype(np.float32).reshape(() if value.size == 1 else -1))
    return expr if tensor_dtype(expr) == "float32" else relax.op.astype(expr, "float32")


def _zp(expr: relax.Expr | None, like: relax.Expr, dtype: str) -> relax.Expr:
    """Zero point as a constant of ``dtype`` shaped like the scale ``like`` (0 if absent)."""
    if expr is None:
        shape = () if constant_value(like) is None else constant_value(like).reshape(-1).shape
        return relax.const(np.zeros(shape if np.prod(shape) > 1 else (), dtype))
    value = constant_value(expr)
    if value is not None:
        return relax.const(value.reshape(() if value.size == 1 else -1))
    return expr


def _per_axis(scale: relax.Expr) -> bool:
    value = constant_value(scale)
    return value is not None and value.size > 1


def dq(x: relax.Expr, scale: relax.Expr, zp: relax.Expr | None, axis: int = 0) -> relax.Expr:
    """``(x - zp) · scale`` (per tensor, or per axis when ``scale`` has several entries).

    A constant N-D ``scale`` that broadcasts against ``x`` (QLinearMatMul's batched
    per-column form) is applied as explicit float arithmetic.
    """
    value = constant_value(scale)
    if value is not None and value.ndim > 1 and value.size > 1:
        zp_value = constant_value(zp) if zp is not None else np.zeros((), np.int64)
        shifted = relax.op.subtract(relax.op.astype(x, "float32"),
                                    relax.const(np.asarray(zp_value, np.float32)))
        return relax.op.multiply(shifted, relax.const(value.astype(np.float32)))
    s = _f32(scale)
    return relax.op.dequantize(x, s, _zp(zp, s, tensor_dtype(x)), axis=axis % max(_ndim(x), 1),
                               out_dtype="float32")


def q(y: relax.Expr, scale: relax.Expr, zp: relax.Expr | None, dtype: str | None = None,
      axis: int = 0) -> relax.Expr:
    """``saturate(round(y / scale) + zp)`` in the zero point's type (uint8 if absent)."""
    s = _f32(scale)
    out = dtype or (tensor_dtype(zp) if zp is not None else "uint8")
    return relax.op.quantize(y, s, _zp(zp, s, out), axis=axis % max(_ndim(y), 1), out_dtype=out)


def _const_product(a: relax.Expr, b: relax.Expr, factor: float = 1.0) -> relax.Expr:
    """``factor · a · b`` of two scales, folded to a float32 constant when both are constant."""
    av, bv = constant_value(a), constant_value(b)
    if av is not None and bv is not None:
        prod = (np.float32(factor) * av.astype(np.float32) * bv.astype(np.float32))
        return relax.const(prod.astype(np.float32).reshape(() if prod.size == 1 else -1))
    out = relax.op.multiply(_f32(a), _f32(b))
    return relax.op.multiply(out, relax.const(factor, "float32")) if factor != 1.0 else out


# --- QLinear ops: quantize(float op(dequantize(...))) ---------------------------------------


def convert_qlinear_conv(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """QLinearConv: ``Q(conv(DQ(x), DQ(w)) + DQ(B, s_x·s_w), s_y, zp_y)``; per-channel ``w``."""
    x, xs, xz, w, ws, wz, ys, yz = (_arg(inputs, i) for i in range(8))
    bias = _arg(inputs, 8)
    xf = ctx.bb.normalize(dq(x, xs, xz))
    wf = ctx.bb.normalize(dq(w, ws, wz, axis=0))
    bf = None
    if bias is not None:
        bf = ctx.bb.normalize(dq(bias, _const_product(xs, ws), None, axis=0))
    conv = tvm_onnx.Conv.get_converter(ctx.onnx_opset)(ctx.bb, [xf, wf, bf], dict(attrs),
                                                       NO_PARAMS)
    return q(ctx.bb.normalize(conv), ys, yz)


def convert_qlinear_matmul(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """QLinearMatMul: ``Q(DQ(a) @ DQ(b), s_y, zp_y)``; per-row ``a`` and per-column ``b``."""
    a, a_s, a_z, b, b_s, b_z, ys, yz = (_arg(inputs, i) for i in range(8))
    af = ctx.bb.normalize(dq(a, a_s, a_z, axis=-2 if _per_axis(a_s) else 0))
    bf = ctx.bb.normalize(dq(b, b_s, b_z, axis=-1 if _per_axis(b_s) else 0))
    return q(ctx.bb.normalize(relax.op.matmul(af, bf)), ys, yz)


def convert_qgemm(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """QGemm: ``Y = α · DQ(A) @ DQ(B) + DQ(C, α·s_a·s_b)``, quantized when ``y_scale`` is given.

    ``transA``/``transB`` transpose the quantized operands first; ``b`` may be per column.
    With a float output and a constant ``B`` the product is an exact integer GEMM scaled by
    ``α·s_a·s_b`` (like MatMulIntegerToFloat); otherwise it is written in the Q/DQ form.
    """
    a, a_s, a_z, b, b_s, b_z = (_arg(inputs, i) for i in range(6))
    c, ys, yz = _arg(inputs, 6), _arg(inputs, 7), _arg(inputs, 8)
    alpha = float(attrs.get("alpha", 1.0))
    if int(attrs.get("transA", 0)):
        a = ctx.bb.normalize(relax.op.permute_dims(a, [1, 0]))
    trans_b = int(attrs.get("transB", 0))
    b_value = constant_value(b)
    if ys is None and b_value is not None and constant_value(b_z) is not None or (
            ys is None and b_value is not None and b_z is None):
        b_t = relax.const(b_value.T.copy() if trans_b else b_value)
        acc = _matmul_integer(ctx, a, b_t, a_z, b_z)
        scale = _const_product(a_s, b_s, alpha)
        y = ctx.bb.normalize(relax.op.multiply(relax.op.astype(acc, "float32"), scale))
        if c is not None:
            c_real = relax.op.multiply(relax.op.astype(c, "float32"), scale)
            y = relax.op.add(y, ctx.bb.normalize(c_real))
        return y
    af = ctx.bb.normalize(dq(a, a_s, a_z))
    bf = ctx.bb.normalize(dq(b, b_s, b_z, axis=(0 if trans_b else 1) if _per_axis(b_s) else 0))
    if trans_b:
        bf = ctx.bb.normalize(relax.op.permute_dims(bf, [1, 0]))
    if alpha != 1.0:
        af = ctx.bb.normalize(relax.op.multiply(af, relax.const(alpha, "float32")))
    y = ctx.bb.normalize(relax.op.matmul(af, bf))
    if c is not None:
        cf = dq(c, _const_product(a_s, b_s, alpha), None, axis=-1 if _per_axis(b_s) else 0)
        y = ctx.bb.normalize(relax.op.add(y, ctx.bb.normalize(cf)))
    return y if ys is None else q(y, ys, yz)


def _binary(op):
    def convert(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
        a, a_s, a_z, b, b_s, b_z, ys, yz = (_arg(inputs, i) for i in range(8))
        af, bf = ctx.bb.normalize(dq(a, a_s, a_z)), ctx.bb.normalize(dq(b, b_s, b_z))
        y = ctx.bb.emit(with_exact_rounding(op(af, bf)), f"qlinear_{op.__name__}")
        return q(y, ys, yz, tensor_dtype(a))

    convert.__doc__ = (f"``Q({op.__name__}(DQ(a), DQ(b)), s_y, zp_y)`` (com.microsoft), the "
                       f"{op.__name__} marked as rounding the exact real result.")
    return convert


convert_qlinear_add = _binary(relax.op.add)
convert_qlinear_mul = _binary(relax.op.multiply)


def _unary(build):
    def convert(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
        x, xs, xz, ys, yz = (_arg(inputs, i) for i in range(5))
        xf = ctx.bb.normalize(dq(x, xs, xz))
        return q(ctx.bb.normalize(build(ctx, xf, attrs)), ys, yz, tensor_dtype(x))

    return convert


convert_qlinear_sigmoid = _unary(lambda ctx, x, a: relax.op.sigmoid(x))
convert_qlinear_leaky_relu = _unary(
    lambda ctx, x, a: relax.op.nn.leakyrelu(x, float(a.get("alpha", 0.01))))


def _product(dims) -> int | tvm.ir.Expr:
    """Π dims (ints, or a symbolic expression when a dimension is symbolic)."""
    out = 1
    for d in dims:
        out = out * d
    return out


def _softmax(ctx: ConvertContext, x: relax.Expr, attrs: dict) -> relax.Expr:
    """Softmax with the opset-12 (2-D coercion) or opset-13 semantics; the default axis is
    -1 for both, as ORT's QLinearSoftmax schema says."""
    version = int(attrs.get("opset", 13))
    clean = {k: v for k, v in attrs.items() if k == "axis"}
    if version < 13:  # rows = Π shape[:axis] (symbolic dims allowed), columns the rest
        axis = int(clean.get("axis", -1)) % _ndim(x)
        shape = static_dims(x, ctx.label, 0, axes=range(axis, _ndim(x)),
                            why="the softmax axes of opset-12 QLinearSoftmax")
        flat = ctx.bb.normalize(relax.op.reshape(x, [_product(shape[:axis]), -1]))
        return relax.op.reshape(ctx.bb.normalize(relax.op.nn.softmax(flat, axis=1)), shape)
    return relax.op.nn.softmax(x, axis=int(clean.get("axis", -1)))


convert_qlinear_softmax = _unary(_softmax)


def convert_qlinear_concat(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """QLinearConcat: ``Q(concat(DQ(x_i, s_i, zp_i)...), s_y, zp_y)``."""
    ys, yz = inputs[0], inputs[1]
    parts = [ctx.bb.normalize(dq(inputs[i], inputs[i + 1], inputs[i + 2]))
             for i in range(2, len(inputs), 3)]
    return q(ctx.bb.normalize(relax.op.concat(parts, axis=int(attrs.get("axis", 0)))), ys, yz,
             tensor_dtype(inputs[2]))


def _nchw(ctx: ConvertContext, x: relax.Expr, channels_last: bool) -> relax.Expr:
    if not channels_last:
        return x
    n = _ndim(x)
    return ctx.bb.normalize(relax.op.permute_dims(x, [0, n - 1, *range(1, n - 1)]))


def _back(ctx: ConvertContext, y: relax.Expr, channels_last: bool) -> relax.Expr:
    if not channels_last:
        return y
    n = _ndim(y)
    return ctx.bb.normalize(relax.op.permute_dims(y, [0, *range(2, n), 1]))


def convert_qlinear_average_pool(ctx: ConvertContext, inputs: list, attrs: dict):
    """QLinearAveragePool: ``Q(avg_pool(DQ(x)))``, NCHW or NHWC (``channels_last``).

    For NHWC the integer input is transposed to NCHW before dequantizing and the quantized
    result transposed back, so the pool itself is between DQ and Q (and goes integer).
    """
    x, xs, xz, ys, yz = (_arg(inputs, i) for i in range(5))
    last = bool(attrs.pop("channels_last", 0))
    xf = ctx.bb.normalize(dq(_nchw(ctx, x, last), xs, xz))
    pool = tvm_onnx.AveragePool.get_converter(ctx.onnx_opset)(ctx.bb, [xf], dict(attrs),
                                                              NO_PARAMS)
    return _back(ctx, ctx.bb.normalize(q(ctx.bb.normalize(pool), ys, yz, tensor_dtype(x))), last)


def convert_qlinear_global_average_pool(ctx: ConvertContext, inputs: list, attrs: dict):
    """QLinearGlobalAveragePool: ``Q(mean over spatial axes of DQ(x))``, NCHW or NHWC."""
    x, xs, xz, ys, yz = (_arg(inputs, i) for i in range(5))
    last = bool(attrs.get("channels_last", 0))
    n = _ndim(x)
    axes = list(range(1, n - 1)) if last else list(range(2, n))
    xf = ctx.bb.normalize(dq(x, xs, xz))
    return q(ctx.bb.normalize(relax.op.mean(xf, axis=axes, keepdims=True)), ys, yz, tensor_dtype(x))


def convert_qlinear_where(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """QLinearWhere: ``Q(where(cond, DQ(x), DQ(y)), s_z, zp_z)``."""
    cond, x, xs, xz, y, ys, yz, zs, zz = (_arg(inputs, i) for i in range(9))
    xf, yf = ctx.bb.normalize(dq(x, xs, xz)), ctx.bb.normalize(dq(y, ys, yz))
    return q(ctx.bb.normalize(relax.op.where(cond, xf, yf)), zs, zz, tensor_dtype(x))


# --- integer-result and dynamic ops: exact integer Relax ------------------------------------


def _int_zero_point(zp: relax.Expr | None) -> int | np.ndarray | relax.Expr:
    """A zero point as a Python int / numpy array when constant, else the runtime expr."""
    if zp is None:
        return 0
    value = constant_value(zp)
    if value is None:
        return zp
    value = value.astype(np.int64)
    return int(value.reshape(())) if value.size == 1 else value.reshape(-1)


def _pads(ctx: ConvertContext, attrs: dict, spatial: int) -> list[int]:
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("NOTSET", "VALID"):
        raise ctx.fail(f"auto_pad={mode} is not supported; give explicit pads")
    pads = list(attrs.get("pads", [0] * 2 * spatial))
    return [0] * 2 * spatial if mode == "VALID" else [int(p) for p in pads]


def convert_conv_integer(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """ConvInteger: ``y[o] = Σ_k (x_k - zp_x) · (w[o,k] - zp_w[o])`` exactly, in int32."""
    x, w, xz, wz = (_arg(inputs, i) for i in range(4))
    w_value = constant_value(w)
    spatial = _ndim(x) - 2
    kwargs = dict(
        strides=[int(s) for s in attrs.get("strides", [1] * spatial)],
        padding=_pads(ctx, attrs, spatial),
        dilation=[int(d) for d in attrs.get("dilations", [1] * spatial)],
        groups=int(attrs.get("group", 1)),
    )
    if w_value is None or isinstance(_int_zero_point(wz), relax.Expr):
        return _conv_integer_runtime(ctx, x, w, xz, wz, spatial, kwargs)
    zw = np.asarray(_int_zero_point(wz), np.int64)
    zw = zw.reshape((-1,) + (1,) * (w_value.ndim - 1)) if zw.ndim else zw
    w_shift = w_value.astype(np.int64) - zw
    value, _, _ = conv_integer(ctx.bb, x, QTYPES[tensor_dtype(x)], _int_zero_point(xz), w_shift,
                               acc="int32", **kwargs)
    return value


def _shift_runtime(ctx: ConvertContext, value, zp, shape_for_zp: list[int] | None):
    """``int32(value) - int32(zp)`` at run time (``zp`` reshaped to broadcast if given)."""
    work = ctx.bb.emit(relax.op.astype(value, "int32"))
    if zp is None:
        return work
    z = ctx.bb.normalize(relax.op.astype(zp, "int32"))
    if shape_for_zp is not None and _ndim(zp) == 1:
        z = relax.op.reshape(z, shape_for_zp)
    return ctx.bb.emit(relax.op.subtract(work, ctx.bb.normalize(z)))


def _conv_integer_runtime(ctx, x, w, xz, wz, spatial: int, kwargs: dict) -> relax.Expr:
    """ConvInteger with a runtime weight: both operands shifted to int32 first (exact)."""
    op, data_layout, kernel_layout = CONV_OPS[spatial]
    xs = _shift_runtime(ctx, x, xz, None)
    ws = _shift_runtime(ctx, w, wz, [-1] + [1] * (spatial + 1))
    return ctx.bb.emit(op(xs, ws, data_layout=data_layout, kernel_layout=kernel_layout,
                          out_dtype="int32", **kwargs), "qnn_conv")


def _matmul_integer(ctx: ConvertContext, a, b, az, bz, acc: str = "int32") -> relax.Expr:
    """Exact ``Σ_k (a - zp_a)(b - zp_b)``: constant ``b`` keeps ``a`` in its storage type."""
    b_value = constant_value(b)
    zb = _int_zero_point(bz)
    if b_value is not None and b_value.ndim == 2 and not isinstance(zb, relax.Expr):
        b_shift = b_value.astype(np.int64) - np.asarray(zb, np.int64)
        za = _int_zero_point(az)
        value, _, _ = matmul_integer_const(ctx.bb, a, QTYPES[tensor_dtype(a)], za, b_shift, acc=acc)
        return value
    a_shift = _shift_runtime(ctx, a, az, [-1, 1])
    b_shift = _shift_runtime(ctx, b, bz, None)
    return ctx.bb.emit(relax.op.matmul(a_shift, b_shift, out_dtype=acc), "qnn_matmul")


def convert_matmul_integer(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """MatMulInteger: ``y = Σ_k (a - zp_a)(b - zp_b)`` exactly, in int32."""
    a, b, az, bz = (_arg(inputs, i) for i in range(4))
    return _matmul_integer(ctx, a, b, az, bz)


def convert_matmul_integer16(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """MatMulInteger16 (com.microsoft): ``y = a @ b`` of 16-bit integers, int32 result."""
    a, b = inputs[0], inputs[1]
    out = "uint32" if tensor_dtype(a) == tensor_dtype(b) == "uint16" else "int32"
    wide = "int64" if out == "uint32" else "int32"
    y = relax.op.matmul(relax.op.astype(a, wide), relax.op.astype(b, wide), out_dtype=wide)
    return relax.op.astype(y, out) if wide != out else y


def dynamic_quantize(ctx: ConvertContext, x: relax.Expr) -> tuple[relax.Expr, ...]:
    """ORT's DynamicQuantizeLinear to uint8, as (q, scale, zero point).

    ``max' = max(max(x), 0)``, ``min' = min(min(x), 0)``, ``s = (max' - min') / 255`` (``1``
    when ``max' == min'``, an all-zero ``x``), ``zp = saturate(round_half_even(0 - min' / s))``,
    ``q = saturate(round(x / s) + zp)``.
    """
    bb = ctx.bb
    zero = relax.const(0.0, "float32")
    hi = bb.emit(relax.op.maximum(relax.op.max(x), zero))
    lo = bb.emit(relax.op.minimum(relax.op.min(x), zero))
    span = relax.op.divide(relax.op.subtract(hi, lo), relax.const(255.0, "float32"))
    scale = bb.emit(relax.op.where(relax.op.equal(hi, lo), relax.const(1.0, "float32"), span))
    zp_f = relax.op.round(relax.op.clip(relax.op.subtract(zero, relax.op.divide(lo, scale)),
                                        0, 255))
    zp = bb.emit(relax.op.astype(zp_f, "uint8"))
    q_value = bb.emit(relax.op.quantize(x, scale, zp, axis=0, out_dtype="uint8"))
    return q_value, scale, zp


def convert_dynamic_quantize_linear(ctx: ConvertContext, inputs: list, attrs: dict):
    """DynamicQuantizeLinear → (y: uint8, y_scale, y_zero_point); see :func:`dynamic_quantize`."""
    return relax.Tuple(list(dynamic_quantize(ctx, inputs[0])))


def _scaled(ctx, acc, a_s, b_s, bias) -> relax.Expr:
    """``float32(acc) · (s_a · s_b) (+ bias)`` — the dequantize of an integer product."""
    y = relax.op.multiply(relax.op.astype(acc, "float32"), _const_product(a_s, b_s))
    y = ctx.bb.normalize(y)
    return relax.op.add(y, bias) if bias is not None else y


def convert_dynamic_quantize_matmul(ctx: ConvertContext, inputs: list, attrs: dict):
    """DynamicQuantizeMatMul: ``A`` quantized at run time (uint8), integer GEMM, scale, bias."""
    a, b, b_s, b_z, bias = (_arg(inputs, i) for i in range(5))
    aq, a_s, a_z = dynamic_quantize(ctx, a)
    return _scaled(ctx, _matmul_integer(ctx, aq, b, a_z, b_z), a_s, b_s, bias)


def convert_matmul_integer_to_float(ctx: ConvertContext, inputs: list, attrs: dict):
    """MatMulIntegerToFloat: ``Σ (a - zp_a)(b - zp_b) · s_a · s_b + bias`` (float output)."""
    a, b, a_s, b_s, a_z, b_z, bias = (_arg(inputs, i) for i in range(7))
    return _scaled(ctx, _matmul_integer(ctx, a, b, a_z, b_z), a_s, b_s, bias)

