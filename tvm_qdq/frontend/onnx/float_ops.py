"""Float-op converters that replace TVM's where its lowering hides the op from the passes
or computes something other than ORT's CPU kernel.

TVM's Clip, Pad and Gather converters emit ``call_tir`` or shape arithmetic even when their
extra inputs are constants; these emit the plain Relax op (``R.clip``, ``R.nn.pad``,
``R.take``) instead, which the integer pass has rules for. They return ``None`` when the
inputs are not constant, and the importer then falls back to TVM's converter.

Sigmoid, Tanh, Pow and Mul follow ORT's CPU kernels (:mod:`.ort_math`):

* float32 ``Sigmoid`` / ``Tanh`` are MLAS's rational approximations (``MlasComputeLogistic``
  / ``MlasComputeTanh``), not ``1/(1 + e^{-x})`` / libm ``tanh``. Between a
  ``DequantizeLinear`` and ``QuantizeLinear`` nodes only (ORT's QDQ node unit) the op stays
  ``R.sigmoid`` / ``R.tanh``: the integer pass turns it into a lookup table whose entries are
  the same MLAS values (``relay_passes/rules/lookup.py``).
* float32 ``Pow`` with a constant exponent 2 or 3 is ``x·x`` / ``x·x·x``, as ORT computes it.
* A float32 ``Mul`` read by an ``Add``/``Sub``/``Sum`` is a separately rounded product
  (ORT's reference path runs every node on its own, so ``a·b + c`` is never one FMA there),
  unless an input comes from a ``DequantizeLinear`` or a consumer is a ``QuantizeLinear``:
  those products are the integer pass's to rewrite (``R.multiply`` by a constant scales a
  quantized tensor exactly).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from ...relax_utils import partial_shape
from .context import ConvertContext, constant_value
from .ort_math import mlas_logistic, mlas_tanh, rounded
from .shape_exprs import as_value

#: ONNX ops that add a product to something: LLVM would contract ``a·b + c`` into one FMA.
SUM_OPS = frozenset({"Add", "Sub", "Sum"})


def convert_clip(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """Clip(x, lo, hi) = min(max(x, lo), hi) with constant bounds (or attributes, opset < 11)."""
    x = inputs[0]
    if ctx.opset < 11:
        lo, hi = attrs.get("min", -np.inf), attrs.get("max", np.inf)
    else:
        lo_v = constant_value(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else None
        hi_v = constant_value(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
        if (len(inputs) > 1 and inputs[1] is not None and lo_v is None) or (
            len(inputs) > 2 and inputs[2] is not None and hi_v is None
        ):
            return None
        lo = float(lo_v) if lo_v is not None else -np.inf
        hi = float(hi_v) if hi_v is not None else np.inf
    if not str(x.ty.dtype).startswith("float"):
        return None
    return relax.op.clip(x, float(lo), float(hi))


def convert_pad(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """Pad with constant pads (ONNX order: all befores, then all afters) and constant value."""
    x = inputs[0]
    ndim = int(x.ty.ndim)
    if ndim < 0:  # unknown rank: TVM's converter decides
        return None
    if ctx.opset < 11:
        pads = list(attrs.get("pads", [0] * 2 * ndim))
        value = float(attrs.get("value", 0.0))
        axes = list(range(ndim))
    else:
        pads_v = constant_value(inputs[1])
        value_v = constant_value(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else 0.0
        axes_v = constant_value(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
        if pads_v is None or value_v is None or (len(inputs) > 3 and inputs[3] is not None
                                                 and axes_v is None):
            return None
        pads = [int(p) for p in pads_v.reshape(-1)]
        value = float(np.asarray(value_v).reshape(-1)[0]) if np.size(value_v) else 0.0
        axes = [int(a) % ndim for a in axes_v] if axes_v is not None else list(range(ndim))
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant" or any(p < 0 for p in pads):
        return None
    n = len(axes)
    width = [0] * (2 * ndim)
    for i, axis in enumerate(axes):
        width[2 * axis], width[2 * axis + 1] = pads[i], pads[n + i]
    return relax.op.nn.pad(x, width, "constant", value)


def convert_gather(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """Gather with constant indices: ``R.take`` with negative indices made positive; on a
    shape value (``Shape(x)``, symbolic dims included) a 1-D index picks dimensions:
    ``R.shape([dims[i] for i in idx])`` (as a tensor for consumers that take none:
    ``shape_exprs.as_value``; TVM's converter handles a 0-d index)."""
    x, indices = inputs[0], inputs[1]
    idx = constant_value(indices)
    if isinstance(x, relax.ShapeExpr) and idx is not None and idx.ndim == 1:
        dims = list(x.values)
        if ((idx < -len(dims)) | (idx >= len(dims))).any():
            raise ctx.fail(f"Gather index out of range for a shape of rank {len(dims)}")
        return as_value(relax.ShapeExpr([dims[int(i)] for i in idx]), ctx.consumer_ops)
    shape = partial_shape(x)
    if idx is None or not shape:  # runtime indices or an unknown shape: TVM's converter
        return None
    axis = int(attrs.get("axis", 0)) % len(shape)
    dim = shape[axis]
    if not isinstance(dim, int):  # a symbolic axis: only non-negative indices are known
        return relax.op.take(x, relax.const(idx.astype("int64")), axis=axis) \
            if (idx >= 0).all() else None
    idx = np.where(idx < 0, idx + dim, idx).astype("int64")
    if (idx < 0).any() or (idx >= dim).any():
        raise ctx.fail(f"Gather index out of range for axis {axis} of length {dim}")
    return relax.op.take(x, relax.const(idx), axis=axis)


def _float32_tensor(expr: relax.Expr) -> bool:
    ty = getattr(expr, "ty", None)
    return isinstance(ty, relax.TensorType) and str(ty.dtype) == "float32"


def _quantized_unit(ctx: ConvertContext) -> bool:
    """The node reads a ``DequantizeLinear`` and only ``QuantizeLinear`` nodes read it."""
    return (bool(ctx.producer_ops) and ctx.producer_ops[0] == "DequantizeLinear"
            and bool(ctx.consumer_ops)
            and all(op == "QuantizeLinear" for op in ctx.consumer_ops))


def convert_sigmoid(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """float32 Sigmoid as ORT's CPU kernel: MLAS's logistic,
    ``max(v·P(v²)/Q(v²) + 0.5, 0)`` with ``v = clamp(x, ±18)`` (``R.sigmoid`` in a QDQ unit)."""
    x = inputs[0]
    if not _float32_tensor(x) or constant_value(x) is not None or _quantized_unit(ctx):
        return None
    return mlas_logistic(x)


def convert_tanh(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """float32 Tanh as ORT's CPU kernel: MLAS's ``v·P(v²)/Q(v²)`` with ``v = clamp(x, ±9)``
    (``R.tanh`` in a QDQ unit)."""
    x = inputs[0]
    if not _float32_tensor(x) or constant_value(x) is not None or _quantized_unit(ctx):
        return None
    return mlas_tanh(x)


#: Constant exponents ORT's CPU ``Pow`` evaluates as products (``x·x``, ``x·x·x``), not ``pow``.
PRODUCT_EXPONENTS = (2.0, 3.0)


def convert_pow(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """float32 ``Pow(x, e)`` with a constant scalar ``e`` of 2 or 3 as ORT's CPU kernel computes
    it: ``x·x`` / ``(x·x)·x``, each product rounded to float32 (equal to ORT's output bit for
    bit; libm's ``powf`` is not, and is a call per element). The last product stays separately
    rounded (:func:`.ort_math.rounded`). Other exponents, and a ``Pow`` inside a QDQ node unit,
    are TVM's ``R.power``."""
    x, e = inputs[0], constant_value(inputs[1])
    exponent = float(e.reshape(-1)[0]) if e is not None and e.size == 1 else None
    if not _float32_tensor(x) or constant_value(x) is not None or _quantized_unit(ctx) or \
            exponent not in PRODUCT_EXPONENTS:
        return None
    square = relax.op.multiply(x, x)
    return rounded(square if exponent == 2.0 else relax.op.multiply(square, x))


def convert_mul(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """float32 ``a·b`` kept a rounded product (:func:`.ort_math.rounded`) when an
    ``Add``/``Sub``/``Sum`` reads it and it is no quantized product (module docstring);
    otherwise TVM's converter."""
    a, b = inputs[0], inputs[1]
    if not (_float32_tensor(a) and _float32_tensor(b)):
        return None
    if constant_value(a) is not None and constant_value(b) is not None:
        return None  # folded by TVM's converter
    if not SUM_OPS.intersection(ctx.consumer_ops) or "QuantizeLinear" in ctx.consumer_ops:
        return None
    if "DequantizeLinear" in ctx.producer_ops:
        return None
    return rounded(relax.op.multiply(a, b))


def _scalar_dim(expr) -> tvm.ir.Expr | None:
    """A dimension value: a prim value, or a one-element ``R.shape``; None otherwise."""
    if isinstance(expr, relax.ShapeExpr) and len(expr.values) == 1:
        return expr.values[0]
    if tvm.ir.is_prim_expr(expr) and not isinstance(expr, tvm.tirx.IntImm):
        return expr
    return None


def convert_range(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """``Range(start, limit, delta)`` with a symbolic ``limit`` (a dimension, e.g.
    ``Shape(ids)[1]``) and constant integer ``start``/``delta``: ``R.arange(start, limit,
    delta)``, whose length ``ceil((limit - start) / delta)`` is the same expression of the
    dimension (``limit`` itself for ``Range(0, seq, 1)``), so it broadcasts against tensors
    of that dimension. TVM's converter names the length a fresh variable instead; it
    converts every other form."""
    limit = _scalar_dim(inputs[1])
    start, delta = constant_value(inputs[0]), constant_value(inputs[2])
    if limit is None or start is None or delta is None or start.size != 1 or delta.size != 1:
        return None
    if start.dtype.kind not in "iu" or delta.dtype.kind not in "iu":
        return None
    step = int(delta.reshape(()))
    if step == 0:
        raise ctx.fail("Range delta must not be 0")
    dtype = str(start.dtype)
    if str(limit.ty) != "int64":
        limit = tvm.tirx.Cast("int64", limit)
    return relax.op.arange(int(start.reshape(())), limit, step, dtype)
