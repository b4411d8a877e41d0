"""Relu and Clip on integer values.

* relu (forward): with ``x = (q - zp)·s``, ``relu(x) = (max(q, zp) - zp)·s`` — exact on the
  input's grid, parameters unchanged.
* clip (output rule): quantizing is monotone, so
  ``Q_out(clip(x, lo, hi)) = clamp(Q_out(x), Q_out(lo), Q_out(hi))``: requantize the
  unclipped value to the output's parameters, then clamp to the quantized bounds. Exact even
  when ``lo``/``hi`` are not on the input's grid.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.ops import const

from ..qtensor import QTensor, RewriteContext
from ..registry import forward_rule, output_rule


@forward_rule("relax.nn.relu")
def relu(ctx: RewriteContext, call) -> QTensor | None:
    q = ctx.qtensor(call.args[0])
    if q is None:
        return None
    dtype = q.params.qtype.container
    zero = const(q.params.broadcast(q.params.zero_point, q.ndim), dtype)
    value = ctx.emit(relax.op.maximum(q.value, zero), "qnn_relu")
    ctx.record(call.op.name, str(value.name), "integer", "max(q, zp)")
    return QTensor(value, q.params)


def _quantized_bound(bound: float, out: QParams) -> int | None:
    if not np.isfinite(bound):
        return None
    q = np.rint(np.float64(np.float32(bound)) / out.scale) + int(out.zero_point)
    return int(np.clip(q, out.qtype.qmin, out.qtype.qmax))


@output_rule("relax.clip")
def clip(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    q = ctx.qtensor(call.args[0])
    if q is None or not out.per_tensor:
        return None
    value = ctx.requantize(q.value, q.params, out)
    lo = _quantized_bound(float(call.args[1].value), out)
    hi = _quantized_bound(float(call.args[2].value), out)
    dtype = out.qtype.container
    if lo is not None and lo > out.qtype.qmin:
        value = ctx.emit(relax.op.maximum(value, const(lo, dtype)))
    if hi is not None and hi < out.qtype.qmax:
        value = ctx.emit(relax.op.minimum(value, const(hi, dtype)))
    value = ctx.emit(relax.op.astype(value, dtype), "qnn_clip") if value is q.value else value
    ctx.record(call.op.name, str(value.name), "integer", f"clamp to [{lo}, {hi}] after requantize")
    return value
