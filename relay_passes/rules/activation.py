"""Relu and Clip on integer values: clamp in the integer domain.

``relu(x)`` with ``x = (q - zp)·s`` is ``(max(q, zp) - zp)·s``; ``clip(x, lo, hi)`` clamps ``q``
to ``[ceil(lo/s) + zp, floor(hi/s) + zp]`` (bounds outside the type saturate), so no value
leaves the integer domain. Per-axis parameters give per-axis bounds.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_qdq.qnn.ops import const

from ..qtensor import QTensor, RewriteContext
from ..registry import forward_rule


def _clamp(ctx: RewriteContext, q: QTensor, lo: np.ndarray | None, hi: np.ndarray | None,
           name: str) -> QTensor:
    dtype = q.params.qtype.container
    info = np.iinfo(dtype)
    value = q.value
    if lo is not None:
        lo = np.clip(lo, info.min, info.max)
        value = ctx.emit(relax.op.maximum(value, const(q.params.broadcast(lo, q.ndim), dtype)))
    if hi is not None:
        hi = np.clip(hi, info.min, info.max)
        value = ctx.emit(relax.op.minimum(value, const(q.params.broadcast(hi, q.ndim), dtype)),
                         name)
    ctx.record(name, str(value.name), "integer", "clamp in the integer domain")
    return QTensor(value, q.params)


@forward_rule("relax.nn.relu")
def relu(ctx: RewriteContext, call) -> QTensor | None:
    q = ctx.qtensor(call.args[0])
    if q is None:
        return None
    return _clamp(ctx, q, q.params.zero_point, None, "qnn_relu")


@forward_rule("relax.clip")
def clip(ctx: RewriteContext, call) -> QTensor | None:
    q = ctx.qtensor(call.args[0])
    if q is None:
        return None
    lo_f, hi_f = float(call.args[1].value), float(call.args[2].value)
    s, zp = q.params.scale.astype(np.float64), q.params.zero_point
    lo = np.ceil(lo_f / s).astype(np.float64) + zp if np.isfinite(lo_f) else None
    hi = np.floor(hi_f / s).astype(np.float64) + zp if np.isfinite(hi_f) else None
    return _clamp(ctx, q, lo, hi, "qnn_clip")
