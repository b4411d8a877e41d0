"""Float-op converters that replace TVM's where its lowering hides the op from the passes.

TVM's Clip, Pad and Gather converters emit ``call_tir`` or shape arithmetic even when their
extra inputs are constants; these emit the plain Relax op (``R.clip``, ``R.nn.pad``,
``R.take``) instead, which the integer pass has rules for. They return ``None`` when the
inputs are not constant, and the importer then falls back to TVM's converter.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from .context import ConvertContext, constant_value
from .shapes import known_shape


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
    """Gather with constant indices: ``R.take`` with negative indices made positive."""
    x, indices = inputs[0], inputs[1]
    idx = constant_value(indices)
    shape = known_shape(x)
    if idx is None or not shape:  # runtime indices or a computed shape: TVM's converter
        return None
    axis = int(attrs.get("axis", 0)) % len(shape)
    dim = shape[axis]
    idx = np.where(idx < 0, idx + dim, idx).astype("int64")
    if (idx < 0).any() or (idx >= dim).any():
        raise ctx.fail(f"Gather index out of range for axis {axis} of length {dim}")
    return relax.op.take(x, relax.const(idx), axis=axis)
