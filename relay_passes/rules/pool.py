"""Pools on integer values.

* max pool (forward): ``max`` commutes with the increasing map ``q ↦ (q - zp)·s``, so it
  runs on ``q`` directly (padding never wins: it pads with the type's minimum).
* average pool (output rule): window sums of ``q - zp`` in int32 (a depthwise convolution
  with a ones kernel, zero padding), then ``y = round(sum · s_in / (count · s_out)) + zp_out``
  where ``count`` is the window size, or per position the number of real (unpadded)
  elements when ``count_include_pad`` is false.
* global average pool / mean over spatial axes (output rule): ``sum(q - zp)`` in int32, then
  the same requantize with ``count = H·W``.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.ops import const, requantize_by, shift_to_signed

from ..qtensor import QTensor, RewriteContext
from ..registry import forward_rule, output_rule


@forward_rule("relax.nn.max_pool2d", "relax.nn.max_pool1d")
def max_pool(ctx: RewriteContext, call) -> QTensor | None:
    q = ctx.qtensor(call.args[0])
    if q is None or not q.params.per_tensor:
        return None
    value = ctx.emit(relax.Call(call.op, [q.value], call.attrs, call.ty_args), "qnn_max_pool")
    ctx.record(call.op.name, str(value.name), "integer", "max on integers")
    return QTensor(value, q.params)


def _window_counts(shape_hw, pool, strides, dilation, padding, include_pad) -> np.ndarray:
    """Number of elements each output window averages over (numpy, compile time)."""
    if include_pad:
        return np.asarray(float(pool[0] * pool[1]))
    h, w = shape_hw
    ones = np.pad(np.ones((h, w)), ((padding[0], padding[2]), (padding[1], padding[3])))
    oh = (h + padding[0] + padding[2] - dilation[0] * (pool[0] - 1) - 1) // strides[0] + 1
    ow = (w + padding[1] + padding[3] - dilation[1] * (pool[1] - 1) - 1) // strides[1] + 1
    counts = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            counts[i, j] = ones[
                i * strides[0] : i * strides[0] + dilation[0] * (pool[0] - 1) + 1 : dilation[0],
                j * strides[1] : j * strides[1] + dilation[1] * (pool[1] - 1) + 1 : dilation[1],
            ].sum()
    return counts.reshape(1, 1, oh, ow)


@output_rule("relax.nn.avg_pool2d")
def avg_pool2d(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    q = ctx.qtensor(call.args[0])
    a = call.attrs
    if q is None or not q.params.per_tensor or not out.per_tensor or bool(a.ceil_mode):
        return None
    if str(a.layout) != "NCHW":
        return None
    pool = [int(p) for p in a.pool_size]
    strides = [int(s) for s in a.strides]
    dilation = [int(d) for d in a.dilation]
    padding = [int(p) for p in a.padding]
    channels = q.shape[1]
    shifted = ctx.emit(relax.op.astype(shift_to_signed(ctx.bb, q.value, q.params), "int32"))
    sums = ctx.emit(
        relax.op.nn.conv2d(
            shifted,
            const(np.ones((channels, 1, *pool)), "int32"),
            strides=strides,
            padding=padding,
            dilation=dilation,
            groups=channels,
            out_dtype="int32",
        ),
        "qnn_window_sum",
    )
    counts = _window_counts(q.shape[2:], pool, strides, dilation, padding,
                            bool(a.count_include_pad))
    multiplier = q.params.scale / (counts * out.scale)
    ctx.record(call.op.name, str(sums.name), "integer", "int32 window sums")
    return requantize_by(ctx.bb, sums, np.zeros(()), multiplier, out, "qnn_avg_pool")


@output_rule("relax.mean")
def mean(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    q = ctx.qtensor(call.args[0])
    if q is None or not q.params.per_tensor or not out.per_tensor or call.attrs.axis is None:
        return None
    axes = [int(ax) % q.ndim for ax in call.attrs.axis]
    count = int(np.prod([q.shape[ax] for ax in axes]))
    shifted = ctx.emit(relax.op.astype(shift_to_signed(ctx.bb, q.value, q.params), "int32"))
    sums = ctx.emit(relax.op.sum(shifted, axis=axes, keepdims=bool(call.attrs.keepdims)),
                    "qnn_sum")
    multiplier = q.params.scale / (count * out.scale)
    ctx.record(call.op.name, str(sums.name), "integer", "int32 sum")
    return requantize_by(ctx.bb, sums, np.zeros(()), multiplier, out, "qnn_mean")
