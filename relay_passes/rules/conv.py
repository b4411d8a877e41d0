"""Integer convolution (1-D/2-D, grouped, depthwise, strided, dilated, padded).

With ``w' = w - zw`` folded into a constant and ``x`` padded with its own zero point,

    acc[o] = Σ_k (x_k - zx) · w'_k = conv(x, w')[o] - zx · Σ_k w'[o, k]

is exact in the accumulator; its scale is ``s_x · s_w[o]`` and its zero point 0. The
accumulator is int32 when ``(max|x| + |zx|) · max_o Σ_k |w'[o, k]| < 2^31``, else int64.
"""

from __future__ import annotations

import numpy as np

from tvm_qdq.qnn.ops import CONV_OPS, accumulator_params, conv_integer

from ..qtensor import QTensor, RewriteContext
from ..registry import forward_rule


@forward_rule("relax.nn.conv1d", "relax.nn.conv2d")
def conv(ctx: RewriteContext, call) -> QTensor | None:
    x, w = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if x is None or w is None or w.const is None or not x.params.per_tensor:
        return None
    _, data_layout, kernel_layout = CONV_OPS[x.ndim - 2]
    attrs = call.attrs
    if str(attrs.data_layout) != data_layout or str(attrs.kernel_layout) != kernel_layout:
        return None
    if w.params.axis not in (None, 0):
        return None
    w_shift = w.const.astype(np.int64) - w.params.broadcast(w.params.zero_point, w.ndim)
    value, acc, w_dtype = conv_integer(
        ctx.bb, x.value, x.params.qtype, int(x.params.zero_point), w_shift,
        strides=[int(s) for s in attrs.strides],
        padding=[int(p) for p in attrs.padding],
        dilation=[int(d) for d in attrs.dilation],
        groups=int(attrs.groups),
    )
    scale = x.params.scale * w.params.scale
    axis = 1 if w.params.axis == 0 else None
    ctx.record(call.op.name, str(value.name), "integer",
               f"{x.params.qtype.name}×{w_dtype} → {acc}")
    return QTensor(value, accumulator_params(scale, axis, acc))
