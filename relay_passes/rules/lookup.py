"""Unary element-wise ops on a quantized input become a lookup table.

For an input with per-tensor parameters and at most 16 bits, every possible input value
``i`` in ``[qmin, qmax]`` maps to ``table[i - qmin] = Q_out(f(DQ_in(i)))``, computed at compile
time in float32 the way the float graph computes it. Then ``y = table[q - qmin]`` is exact
with respect to that float formula (ties aside) and needs no float at run time.

``f`` is ORT's CPU kernel: sigmoid and tanh are MLAS's float32 rational approximations
(``MlasComputeLogistic`` / ``MlasComputeTanh``, which ORT's Sigmoid, Tanh and QLinearSigmoid
run), evaluated with exactly rounded FMAs (:mod:`tvm_qdq.frontend.onnx.ort_math`, bit-identical
to ORT on every float32 tested), so each entry is ORT's ``Q(f(DQ(i)))``.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import relax

from tvm_qdq.frontend.onnx.ort_math import logistic_f32, tanh_f32
from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.ops import const

from ..qtensor import RewriteContext
from ..registry import output_rule


def _sigmoid(x: np.ndarray, attrs) -> np.ndarray:
    """MLAS's logistic ``max(v·P(v²)/Q(v²) + 0.5, 0)``, ``v = clamp(x, ±18)`` (float32)."""
    return logistic_f32(x)


def _leaky_relu(x: np.ndarray, attrs) -> np.ndarray:
    alpha = np.float32(attrs.alpha)
    return np.where(x >= 0, x, alpha * x).astype(np.float32)


def _tanh(x: np.ndarray, attrs) -> np.ndarray:
    """MLAS's tanh ``v·P(v²)/Q(v²)``, ``v = clamp(x, ±9)`` (float32)."""
    return tanh_f32(x)


def _erf(x: np.ndarray, attrs) -> np.ndarray:
    return np.vectorize(math.erf)(x.astype(np.float64)).astype(np.float32)


FUNCTIONS = {
    "relax.sigmoid": _sigmoid,
    "relax.nn.leakyrelu": _leaky_relu,
    "relax.tanh": _tanh,
    "relax.erf": _erf,
}


@output_rule(*FUNCTIONS)
def lookup_table(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    q = ctx.qtensor(call.args[0])
    if q is None or not q.params.per_tensor or not out.per_tensor or q.params.qtype.bits > 16:
        return None
    qt = q.params.qtype
    levels = np.arange(qt.qmin, qt.qmax + 1, dtype=np.int64)
    # The float graph's own arithmetic: float32 dequantize, f, float32 quantize.
    real = (levels - int(q.params.zero_point)).astype(np.float32) * np.float32(q.params.scale)
    y = FUNCTIONS[call.op.name](real, call.attrs)
    table = np.clip(np.rint(y / np.float32(out.scale)) + int(out.zero_point), out.qtype.qmin,
                    out.qtype.qmax)
    index = ctx.emit(relax.op.astype(q.value, "int32"))
    if qt.qmin != 0:
        index = ctx.emit(relax.op.subtract(index, const(qt.qmin, "int32")))
    value = ctx.emit(relax.op.take(const(table, out.qtype.container), index, axis=0, mode="clip"),
                     "qnn_lookup")
    ctx.record(call.op.name, str(value.name), "integer", f"{len(levels)}-entry lookup table")
    return value
