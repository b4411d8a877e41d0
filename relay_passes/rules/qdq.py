"""dequantize → integer form: ``real = (q - zp) · s`` is the QTensor (q, s, zp) itself."""

from __future__ import annotations

from tvm_qdq.dtypes import QTYPES
from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.ops import dtype_of

from ..qtensor import QTensor, RewriteContext, constant_value
from ..registry import forward_rule


@forward_rule("relax.dequantize")
def dequantize(ctx: RewriteContext, call) -> QTensor | None:
    """A dequantize with constant scale and zero point exposes its integer input."""
    q, scale, zero_point = call.args
    s, z = constant_value(scale), constant_value(zero_point)
    qtype = QTYPES.get(dtype_of(q))
    if s is None or z is None or qtype is None:
        return None
    axis = int(call.attrs.axis) if s.size > 1 else None
    return QTensor(q, QParams(s, z, qtype, axis), constant_value(q))
