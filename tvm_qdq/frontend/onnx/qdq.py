"""QuantizeLinear / DequantizeLinear (ai.onnx opsets 10-23 and com.microsoft) → Relax.

Math (ONNX and ORT agree):

* quantize:   ``q = saturate(round_half_even(x / s) + zp)`` into the output type's range;
* dequantize: ``x = (q - zp) · s``.

Parameters are per tensor (scalar ``s``), per axis (1-D ``s`` along ``axis``) or blocked
(opset 21: ``s`` has the data's rank and ``ceil(D / block_size)`` entries on ``axis``, each
covering ``block_size`` consecutive elements). Per-tensor and per-axis forms are emitted as
``R.quantize`` / ``R.dequantize`` so the integer pass can see them; blocked forms are emitted
as explicit float arithmetic (they stay float). 4-bit types live in 8-bit containers and are
clamped to their 4-bit range after quantizing.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from ...dtypes import QTYPES, QType
from ...relax_utils import tensor_dtype
from .context import ConvertContext, constant_value, onnx_type_name
from .qparams import check_param_shape, check_scale, check_zero_point, normalize_axis
from .shapes import static_dims, static_shape

FLOAT_TYPES = ("float32", "float16", "bfloat16", "float64")


def _shape(ctx: ConvertContext, expr: relax.Expr, index: int) -> tuple[int, ...]:
    """Static shape of the node's quantization parameter ``index`` (InputShapeError naming
    it otherwise)."""
    return static_shape(expr, ctx.label, index, "quantization parameters")


def _params_layout(ctx: ConvertContext, x, scale, zp, attrs) -> tuple[str, int, int]:
    """Check scale/zero point shapes against ``x``; return (kind, axis, block_size).

    The data may have symbolic dimensions, except the per-axis quantization axis (its length
    is the parameters' length) and every dimension of blocked quantization."""
    data_shape = static_dims(x, ctx.label, 0, axes=())
    block = int(attrs.get("block_size", 0))
    if block < 0:
        raise ctx.fail(f"block_size must be >= 0, got {block}")
    axis = int(attrs.get("axis", 1))
    scale_shape = _shape(ctx, scale, 1)
    per_tensor = int(np.prod(scale_shape, dtype=np.int64)) == 1 and len(scale_shape) <= 1
    if "axis" in attrs or not per_tensor or block:
        axis = normalize_axis(ctx.node, axis, len(data_shape))
    elif not data_shape:
        axis = 0
    else:
        axis = min(axis, len(data_shape) - 1)
    if block:
        data_shape = static_dims(x, ctx.label, 0, why="blocked quantization")
    elif not per_tensor and data_shape:
        data_shape = static_dims(x, ctx.label, 0, axes=[axis],
                                 why=f"per-axis quantization parameters along axis {axis}")
    kind = check_param_shape(ctx.node, "scale", scale_shape, data_shape, axis, block)
    zp_shape = _shape(ctx, zp, 2) if zp is not None else scale_shape
    if zp_shape != scale_shape:
        if not (kind == "tensor" and int(np.prod(zp_shape, dtype=np.int64)) == 1):
            raise ctx.fail(f"zero point shape {zp_shape} differs from scale shape {scale_shape}")
    if kind == "block" and data_shape[axis] % block:
        # ONNX allows a ragged last block; ORT rejects it, so do we (clear message).
        raise ctx.fail(
            f"block_size {block} does not divide axis {axis} of length {data_shape[axis]}"
        )
    return kind, axis, block


def _expand_blocks(param: relax.Expr, axis: int, block: int) -> relax.Expr:
    """Repeat each blocked parameter ``block`` times along ``axis`` (constant-folded)."""
    value = constant_value(param)
    if value is not None:
        return relax.const(np.repeat(value, block, axis=axis))
    return relax.op.repeat(param, block, axis=axis)


def _scalar_if_single(param: relax.Expr, kind: str) -> relax.Expr:
    value = constant_value(param)
    if kind == "tensor" and value is not None:
        return relax.const(value.reshape(()), str(value.dtype))
    if kind == "tensor":
        return relax.op.reshape(param, ())
    return param


def _quantized_type(ctx: ConvertContext, zp: relax.Expr | None, attrs) -> QType:
    output_dtype = int(attrs.get("output_dtype", 0))
    zp_type = ctx.input_types[2] if len(ctx.input_types) > 2 else None
    if zp is not None and zp_type is None:
        zp_type = tensor_dtype(zp)
    name = onnx_type_name(output_dtype) if output_dtype else (zp_type or "uint8")
    if output_dtype and zp is not None and zp_type != name:
        raise ctx.fail(f"output_dtype {name} does not match the zero point's type {zp_type}")
    qt = QTYPES.get(name or "")
    if qt is None or qt.name == "int32":
        raise ctx.fail(f"cannot quantize to type {name}: not a quantized integer type")
    return qt


def convert_quantize(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """QuantizeLinear: ``q = saturate(round_half_even(x / s) + zp)``."""
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    if int(attrs.get("precision", 0)) not in (0, 1):
        raise ctx.fail("the 'precision' attribute is not supported (only float32 math)")
    if tensor_dtype(x) not in FLOAT_TYPES:
        raise ctx.fail(f"input must be a float tensor, got {tensor_dtype(x)}")
    qt = _quantized_type(ctx, zp, attrs)
    check_scale(ctx.node, constant_value(scale))
    check_zero_point(ctx.node, constant_value(zp), qt)
    kind, axis, block = _params_layout(ctx, x, scale, zp, attrs)
    if zp is None:
        zp = relax.const(np.zeros(_shape(ctx, scale, 1), dtype=qt.container))
    elif tensor_dtype(zp) != qt.container:
        raise ctx.fail(f"zero point type {tensor_dtype(zp)} does not match output type {qt.name}")
    if tensor_dtype(x) != "float32":
        x = relax.op.astype(x, "float32")
    if tensor_dtype(scale) != "float32":
        scale = relax.op.astype(scale, "float32")

    if kind == "block":
        s_full = _expand_blocks(scale, axis, block)
        z_full = relax.op.astype(_expand_blocks(zp, axis, block), "float32")
        q = relax.op.add(relax.op.round(relax.op.divide(x, s_full)), z_full)
        q = relax.op.astype(relax.op.clip(q, qt.qmin, qt.qmax), qt.container)
        return q
    q = relax.op.quantize(
        x,
        _scalar_if_single(scale, kind),
        _scalar_if_single(zp, kind),
        axis=axis,
        out_dtype=qt.container,
    )
    if qt.bits < 8:
        q = relax.op.clip(ctx.bb.normalize(q), qt.qmin, qt.qmax)
    return q


def convert_dequantize(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """DequantizeLinear: ``x = (q - zp) · s`` (int32 input allowed, for biases)."""
    q, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    q_type = ctx.input_types[0] or tensor_dtype(q)
    qt = QTYPES.get(q_type)
    if qt is None:
        raise ctx.fail(f"input has type {q_type}, which is not a quantized integer type")
    if zp is not None:
        zp_type = (ctx.input_types[2] if len(ctx.input_types) > 2 else None) or tensor_dtype(zp)
        if zp_type != qt.name:
            raise ctx.fail(
                f"zero point has type {zp_type} but the input has type {qt.name}; they must match"
            )
    check_scale(ctx.node, constant_value(scale))
    check_zero_point(ctx.node, constant_value(zp), qt)
    kind, axis, block = _params_layout(ctx, q, scale, zp, attrs)
    output_dtype = int(attrs.get("output_dtype", 0))
    out_dtype = onnx_type_name(output_dtype) if output_dtype else tensor_dtype(scale)
    if zp is None:
        zp = relax.const(np.zeros(_shape(ctx, scale, 1), dtype=qt.container))
    if tensor_dtype(scale) != "float32":
        scale = relax.op.astype(scale, "float32")

    if kind == "block":
        s_full = _expand_blocks(scale, axis, block)
        z_full = relax.op.astype(_expand_blocks(zp, axis, block), "float32")
        x = relax.op.multiply(relax.op.subtract(relax.op.astype(q, "float32"), z_full), s_full)
    else:
        x = relax.op.dequantize(
            q,
            _scalar_if_single(scale, kind),
            _scalar_if_single(zp, kind),
            axis=axis,
            out_dtype="float32",
        )
    if out_dtype != "float32":
        x = relax.op.astype(ctx.bb.normalize(x), out_dtype)
    return x
