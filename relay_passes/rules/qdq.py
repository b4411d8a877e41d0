"""dequantize → integer form: ``real = (q - zp) · s`` is the QTensor (q, s, zp) itself.

A dequantize of ``quantize(c)`` with a constant ``c`` (how ORT's quantizer writes graph
constants such as GELU's ``1.0`` and ``0.5``: ``Constant → QuantizeLinear →
DequantizeLinear``) gets the compile-time codes
``saturate(round_half_even(float32(c) / float32(s)) + zp)`` (ORT's float32 division) as
its ``const``, so rules fold it like an initializer.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvm_qdq.dtypes import QTYPES
from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.ops import dtype_of

from ..qtensor import QTensor, RewriteContext, constant_value
from ..registry import forward_rule


def _params(call: relax.Call, scale: np.ndarray, zero_point: np.ndarray, dtype: str
            ) -> QParams | None:
    qtype = QTYPES.get(dtype)
    if qtype is None:
        return None
    axis = int(call.attrs.axis) if scale.size > 1 else None
    return QParams(scale, zero_point, qtype, axis)


def folded_quantize(ctx: RewriteContext, expr: relax.Expr) -> np.ndarray | None:
    """Codes of ``expr = quantize(c, s, zp)`` when ``c``, ``s`` and ``zp`` are constants:
    ``saturate(round_half_even(float32(c) / float32(s)) + zp)``; None otherwise."""
    call = ctx.producer(expr)
    if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
            and call.op.name == "relax.quantize"):
        return None
    x, s, z = (constant_value(a) for a in call.args)
    if x is None or s is None or z is None or not np.issubdtype(x.dtype, np.floating):
        return None
    p = _params(call, s, z, str(call.attrs.out_dtype))
    if p is None or (p.axis is not None and not -x.ndim <= p.axis < x.ndim):
        return None
    ndim = x.ndim
    scale = p.broadcast(np.asarray(s, np.float32).reshape(-1), ndim)
    if p.axis is None:
        scale = np.float32(scale.reshape(()))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        code = np.rint(x.astype(np.float32) / scale)
    code = np.nan_to_num(code, nan=0.0) + p.broadcast(p.zero_point, ndim)
    return np.clip(code, p.qtype.qmin, p.qtype.qmax).astype(p.qtype.container)


@forward_rule("relax.dequantize")
def dequantize(ctx: RewriteContext, call) -> QTensor | None:
    """A dequantize with constant scale and zero point exposes its integer input."""
    q, scale, zero_point = call.args
    s, z = constant_value(scale), constant_value(zero_point)
    if s is None or z is None:
        return None
    params = _params(call, s, z, dtype_of(q))
    if params is None:
        return None
    codes = constant_value(q)
    if codes is None:
        codes = folded_quantize(ctx, q)
    return QTensor(q, params, codes)
