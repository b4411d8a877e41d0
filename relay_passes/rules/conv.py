"""Integer convolution (1-D/2-D, grouped, depthwise, strided, dilated, padded).

With ``w' = w - zw`` folded into a constant and ``x`` padded with its own zero point,

    acc[o] = Σ_k (x_k - zx) · w'_k = conv(x, w')[o] - zx · Σ_k w'[o, k]

is exact in the accumulator; its scale is ``s_x · s_w[o]`` and its zero point 0. The
accumulator is int32 when ``(max|x| + |zx|) · max_o Σ_k |w'[o, k]| < 2^31``, else int64.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_qdq.qnn.ops import (
    accumulator_for,
    accumulator_params,
    const,
    operand_magnitude,
    smallest_int_type,
)

from ..qtensor import QTensor, RewriteContext
from ..registry import forward_rule

_CONV = {
    "relax.nn.conv1d": (relax.op.nn.conv1d, "NCW", "OIW"),
    "relax.nn.conv2d": (relax.op.nn.conv2d, "NCHW", "OIHW"),
}


def _pad_width(padding: list[int], spatial: int) -> list[int]:
    """Conv padding (all befores, then all afters) → ``nn.pad`` width per axis (N, C, ...)."""
    width = [0, 0, 0, 0]
    for i in range(spatial):
        width += [padding[i], padding[spatial + i]]
    return width


@forward_rule(*_CONV)
def conv(ctx: RewriteContext, call) -> QTensor | None:
    x, w = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if x is None or w is None or w.const is None or not x.params.per_tensor:
        return None
    op, data_layout, kernel_layout = _CONV[call.op.name]
    attrs = call.attrs
    if str(attrs.data_layout) != data_layout or str(attrs.kernel_layout) != kernel_layout:
        return None
    if w.params.axis not in (None, 0):
        return None
    spatial = x.ndim - 2
    out_ch = w.shape[0]
    w_shift = w.const.astype(np.int64) - w.params.broadcast(w.params.zero_point, w.ndim)
    zx = int(x.params.zero_point)
    padding = [int(p) for p in attrs.padding]
    data = x.value
    if zx != 0 and any(padding):
        data = ctx.emit(relax.op.nn.pad(x.value, _pad_width(padding, spatial), "constant", zx))
        padding = [0] * len(padding)
    abs_sum = np.abs(w_shift).reshape(out_ch, -1).sum(axis=1)
    acc = accumulator_for((operand_magnitude(x.params) + abs(zx)) * int(abs_sum.max()))
    w_dtype = smallest_int_type(int(w_shift.min()), int(w_shift.max()))
    value = ctx.emit(
        op(
            data,
            const(w_shift, w_dtype),
            strides=[int(s) for s in attrs.strides],
            padding=padding,
            dilation=[int(d) for d in attrs.dilation],
            groups=int(attrs.groups),
            data_layout=data_layout,
            kernel_layout=kernel_layout,
            out_dtype=acc,
        ),
        "qnn_conv",
    )
    if zx != 0:
        correction = zx * w_shift.reshape(out_ch, -1).sum(axis=1)
        value = ctx.emit(relax.op.subtract(value, const(correction.reshape((1, out_ch) +
                                                                           (1,) * spatial), acc)))
    scale = x.params.scale * w.params.scale
    axis = 1 if w.params.axis == 0 else None
    ctx.record(call.op.name, str(value.name), "integer",
               f"{x.params.qtype.name}×{w_dtype} → {acc}")
    return QTensor(value, accumulator_params(scale, axis, acc))
