"""Resize with ``mode="nearest"``: a gather of input elements, computed the way ORT does.

Every output element of a nearest Resize is one input element, chosen independently per
axis. For an axis of input length ``n`` and output length ``m`` with scale ``s``, output
index ``i`` reads input index

    j(i) = clamp(nearest(coord(i, s, m, n)), 0, n - 1)

where ``coord`` is the coordinate transformation mode and ``nearest`` the nearest mode. This
module computes ``j`` in numpy with ORT's arithmetic (float32, the same operation order; see
``onnxruntime/core/providers/cpu/tensor/upsamplebase.h``) and emits one ``R.take`` per resized
axis, so the result is the same for float and quantized tensors and the integer pass treats
it as plain data movement. When the output shape equals the input shape, ORT copies the
input whatever the scales (e.g. 1.25 on a length 3), and so does this.
``tf_crop_and_resize`` puts the extrapolation value where a coordinate falls outside the
region of interest: ``where(inside, gathered, value)`` with a constant mask, last, so that
the integer pass meets it right before the output's QuantizeLinear.

Covered: opsets 10–19 (opset 10: asymmetric, ORT's "simple" rounding), every coordinate
transformation mode and nearest mode, ``scales`` or ``sizes``, opset-18 ``axes`` and
``keep_aspect_ratio_policy``, any rank, static shapes and constant scales/sizes/roi. Other
modes (linear, cubic) and non-constant inputs go to TVM's converter (``None``).

Rounding follows ORT 1.32 as measured, which is not quite its source: ``round_prefer_floor``
and ``round_prefer_ceil`` treat a coordinate within 1e-6 of a half-way point as the tie
(``TIE_TOLERANCE``), so a float32 coordinate a few ulps off an exact tie (0.6 on a length 12
under ``half_pixel_symmetric``: 0.5000002) rounds as the tie.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tvm import relax

from .context import ConvertContext, constant_value

F32 = np.float32


def _text(attrs: dict, key: str, default: str) -> str:
    value = attrs.get(key, default)
    return value.decode() if isinstance(value, bytes) else str(value)


# --- coordinate transformation: output index → input coordinate (float32, as ORT) --------

def _coord_half_pixel(i, s, m, n, r0, r1):
    return (F32(i) + F32(0.5)) / s - F32(0.5)


def _coord_pytorch_half_pixel(i, s, m, n, r0, r1):
    return (F32(i) + F32(0.5)) / s - F32(0.5) if m > 1 else F32(0.0)


def _coord_asymmetric(i, s, m, n, r0, r1):
    return F32(i) / s


def _coord_tf_half_pixel_for_nn(i, s, m, n, r0, r1):
    return (F32(i) + F32(0.5)) / s


def _coord_align_corners(i, s, m, n, r0, r1):
    return F32(0.0) if m == 1 else F32(i) * F32(n - 1) / F32(m - 1)


def _coord_half_pixel_symmetric(i, s, m, n, r0, r1):
    """ORT: float ``offset = n/2 · (1 - m / (s·n))``; ``offset + (i + 0.5)/s - 0.5`` is
    evaluated in double (the literal 0.5 is a double) and rounded to float32."""
    adjustment = F32(m) / (s * F32(n))
    offset = (F32(n) / F32(2)) * (F32(1) - adjustment)
    return F32(np.float64(offset) + (np.float64(F32(i)) + 0.5) / np.float64(s) - 0.5)


def _coord_tf_crop_and_resize(i, s, m, n, r0, r1):
    """ORT: ``r0·(n-1) + i·(r1-r0)·(n-1)/(m-1)`` in float32 (centre of the roi if m = 1)."""
    if m > 1:
        return r0 * F32(n - 1) + (F32(i) * (r1 - r0) * F32(n - 1)) / F32(m - 1)
    return F32(0.5 * np.float64(r0 + r1) * np.float64(n - 1))


COORDINATE_MODES: dict[str, Callable] = {
    "half_pixel": _coord_half_pixel,
    "pytorch_half_pixel": _coord_pytorch_half_pixel,
    "asymmetric": _coord_asymmetric,
    "tf_half_pixel_for_nn": _coord_tf_half_pixel_for_nn,
    "align_corners": _coord_align_corners,
    "half_pixel_symmetric": _coord_half_pixel_symmetric,
    "tf_crop_and_resize": _coord_tf_crop_and_resize,
}


# --- nearest mode: input coordinate → integer index -------------------------------------
#: ORT 1.32 treats a coordinate within this distance of a half-way point as the tie itself
#: (measured: 1.5 + 9.5e-7 rounds as 1.5 with round_prefer_floor, 1.5 + 1.07e-6 does not; floor
#: and ceil have no such tolerance). Float32 coordinates of exact ties land a few ulps off.
TIE_TOLERANCE = 1e-6


def _tie(x: F32) -> bool:
    return abs(np.float64(x) - (np.floor(np.float64(x)) + 0.5)) < TIE_TOLERANCE


def _nearest_round_prefer_floor(x, downsample):
    return int(np.floor(x)) if _tie(x) else int(np.floor(np.float64(x) + 0.5))


def _nearest_round_prefer_ceil(x, downsample):
    return int(np.floor(x)) + 1 if _tie(x) else int(np.floor(np.float64(x) + 0.5))


def _nearest_floor(x, downsample):
    return int(np.floor(x))


def _nearest_ceil(x, downsample):
    return int(np.ceil(x))


def _nearest_simple(x, downsample):
    """Opset 10: ceil when downsampling, else truncation toward zero."""
    return int(np.ceil(x)) if downsample else int(np.trunc(x))


NEAREST_MODES: dict[str, Callable] = {
    "round_prefer_floor": _nearest_round_prefer_floor,
    "round_prefer_ceil": _nearest_round_prefer_ceil,
    "floor": _nearest_floor,
    "ceil": _nearest_ceil,
    "simple": _nearest_simple,
}


def source_indices(n: int, m: int, scale: float, coord: str, nearest: str,
                   roi: tuple[float, float] = (0.0, 1.0), rank: int = 4) -> np.ndarray:
    """Input index read by each of the ``m`` outputs of an axis of length ``n``.

    ``-1`` marks an output that takes the extrapolation value (``tf_crop_and_resize``,
    coordinate outside ``[0, n - 1]``). A scale of exactly 1 is the identity for inputs of
    rank ≥ 2, as in ORT (its rank-1 path transforms every coordinate).
    """
    s = F32(scale)
    if s == F32(1.0) and m == n and rank > 1:
        return np.arange(n, dtype=np.int64)
    transform, pick = COORDINATE_MODES[coord], NEAREST_MODES[nearest]
    r0, r1 = F32(roi[0]), F32(roi[1])
    out = np.empty(m, dtype=np.int64)
    for i in range(m):
        x = F32(transform(i, s, m, n, r0, r1))
        if coord == "tf_crop_and_resize" and (x < 0 or x > n - 1):
            out[i] = -1
            continue
        out[i] = min(max(pick(x, s < F32(1.0)), 0), n - 1)
    return out


def _ints(expr) -> list[int] | None:
    if isinstance(expr, relax.ShapeExpr):
        return [int(v) for v in expr.values]
    value = constant_value(expr)
    return None if value is None else [int(v) for v in value.reshape(-1)]


def _floats(expr) -> list[float] | None:
    value = constant_value(expr)
    return None if value is None else [float(v) for v in value.astype(np.float32).reshape(-1)]


def _optional(inputs: list, index: int):
    return inputs[index] if len(inputs) > index else None


def _axes(attrs: dict, rank: int) -> list[int]:
    return [int(a) % rank for a in attrs.get("axes", [])] or list(range(rank))


def output_plan(ctx: ConvertContext, shape: list[int], inputs: list,
                attrs: dict) -> tuple[list[float], list[int]] | None:
    """Per-axis float32 scales and output sizes, as ORT derives them; None if not constant."""
    rank = len(shape)
    axes = _axes(attrs, rank)
    scales_in = _optional(inputs, 1 if ctx.opset <= 10 else 2)
    sizes_in = None if ctx.opset <= 10 else _optional(inputs, 3)
    scales = _floats(scales_in) if scales_in is not None else None
    if scales:  # ORT: output = (int64)(float32 scale · n)
        full = [1.0] * rank
        for a, s in zip(axes, scales, strict=True):
            full[a] = s
        sizes = [int(F32(s) * F32(n)) for s, n in zip(full, shape, strict=True)]
        return full, sizes
    if sizes_in is None:
        return None
    given = _ints(sizes_in)
    if given is None:
        return None
    sizes = list(shape)
    for a, v in zip(axes, given, strict=True):
        sizes[a] = v
    full = [float(F32(o) / F32(n)) if n else 1.0 for o, n in zip(sizes, shape, strict=True)]
    policy = _text(attrs, "keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        pick = min if policy == "not_larger" else max
        common = pick(F32(full[a]) for a in axes)
        for a in range(rank):
            full[a] = float(common) if a in axes else 1.0
            sizes[a] = int(np.round(F32(common) * F32(shape[a]))) if a in axes else shape[a]
    return full, sizes


def _modes(ctx: ConvertContext, attrs: dict) -> tuple[str, str]:
    if ctx.opset <= 10:
        return "asymmetric", "simple"
    coord = _text(attrs, "coordinate_transformation_mode", "half_pixel")
    nearest = _text(attrs, "nearest_mode", "round_prefer_floor")
    if coord not in COORDINATE_MODES or nearest not in NEAREST_MODES:
        raise ctx.fail(f"unknown coordinate_transformation_mode {coord!r} or "
                       f"nearest_mode {nearest!r}")
    return coord, nearest


def _roi(inputs: list, attrs: dict, rank: int) -> list[float] | None:
    """Full-rank roi ``[starts..., ends...]`` (``tf_crop_and_resize`` only)."""
    roi = [0.0] * rank + [1.0] * rank
    given = _floats(_optional(inputs, 1))
    if given is None:
        return None
    axes = _axes(attrs, rank)
    k = len(axes)
    for j, a in enumerate(axes):
        roi[a], roi[rank + a] = given[j], given[k + j]
    return roi


def convert_resize(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """Nearest Resize as ``R.take`` along each resized axis (see the module docstring)."""
    if _text(attrs, "mode", "nearest") != "nearest":
        return None
    x = inputs[0]
    shape_ty = getattr(x.ty, "shape", None)
    dims = getattr(shape_ty, "values", None)
    if dims is None or not all(isinstance(getattr(d, "value", None), int) for d in dims):
        return None
    shape = [int(d.value) for d in dims]
    rank = len(shape)
    plan = output_plan(ctx, shape, inputs, attrs)
    if plan is None:
        return None
    scales, sizes = plan
    if 0 in sizes or 0 in shape:
        raise ctx.fail(f"Resize from shape {shape} to {sizes}: empty tensors are not "
                       "supported")
    if sizes == shape:
        return x  # ORT copies the input when the shape does not change, whatever the scales
    coord, nearest = _modes(ctx, attrs)
    roi = [0.0] * rank + [1.0] * rank
    if coord == "tf_crop_and_resize":
        roi = _roi(inputs, attrs, rank)
        if roi is None:
            return None
    out, inside = x, np.ones([1] * rank, dtype=bool)
    for axis, (n, m) in enumerate(zip(shape, sizes, strict=True)):
        idx = source_indices(n, m, scales[axis], coord, nearest, (roi[axis], roi[rank + axis]),
                             rank)
        if np.array_equal(idx, np.arange(n)):
            continue
        axis_shape = [1] * rank
        axis_shape[axis] = m
        inside = inside & (idx >= 0).reshape(axis_shape)
        index = relax.const(np.maximum(idx, 0), "int64")
        out = ctx.bb.normalize(relax.op.take(out, index, axis=axis))
    if not inside.all():  # tf_crop_and_resize: the extrapolation value outside the roi
        fill = relax.const(float(attrs.get("extrapolation_value", 0.0)), str(x.ty.dtype))
        out = ctx.bb.normalize(relax.op.where(relax.const(inside), out, fill))
    return out
