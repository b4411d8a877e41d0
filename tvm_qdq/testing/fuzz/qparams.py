"""Quantization parameters of the fuzz graphs' tensors, chosen from calibrated ranges.

:class:`DrawnQParams` holds concrete parameters (drawn by the generator, not the product's
:class:`tvm_qdq.qnn.params.QParams`) with the exact float64 reference
``q = saturate(round_half_even(x / s) + zp)`` and ``x = (q - zp) · s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .onnx_types import QTYPES, qrange


@dataclass(frozen=True)
class DrawnQParams:
    """Concrete parameters of one quantized tensor (scale/zp 0-d or 1-d along ``axis``)."""

    dtype: str
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None

    @property
    def np_dtype(self) -> Any:
        return QTYPES[self.dtype][0]

    def zp_tensor(self, name: str) -> onnx.TensorProto:
        elem = QTYPES[self.dtype][1]
        values = self.zero_point.astype(np.int64)
        if elem in (TensorProto.INT4, TensorProto.UINT4):
            return helper.make_tensor(name, elem, list(values.shape), values.reshape(-1).tolist())
        return numpy_helper.from_array(values.astype(self.np_dtype), name)

    def bshape(self, ndim: int) -> tuple[int, ...]:
        if self.axis is None or self.scale.ndim == 0:
            return ()
        shape = [1] * ndim
        shape[self.axis] = self.scale.size
        return tuple(shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Exact reference: ``saturate(round_half_even(x / s) + zp)`` in float64."""
        s = self.scale.astype(np.float64).reshape(self.bshape(x.ndim))
        z = self.zero_point.astype(np.float64).reshape(self.bshape(x.ndim))
        lo, hi = qrange(self.dtype)
        return np.clip(np.rint(x.astype(np.float64) / s) + z, lo, hi)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Exact reference: ``(q - zp) · s`` in float64."""
        s = self.scale.astype(np.float64).reshape(self.bshape(q.ndim))
        z = self.zero_point.astype(np.float64).reshape(self.bshape(q.ndim))
        return (q.astype(np.float64) - z) * s


def choose_qparams(q: dict, lo: np.ndarray, hi: np.ndarray) -> DrawnQParams:
    """Parameters for a tensor whose (per-axis) calibrated range is ``[lo, hi]``.

    ``q``: ``dtype``; ``zp`` mode (``calib``: ORT's MinMax asymmetric, ``sym``: symmetric with
    the type's midpoint, ``qmin``/``qmin+1``/``qmax``/``qmax-1``: zero point pinned at or next
    to a type limit with the scale still covering the range where it can, ``mid``); a
    ``factor`` multiplying the scale (< 1 saturates); ``axis`` for per-axis parameters.
    """
    dtype = q["dtype"]
    qmin, qmax = qrange(dtype)
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    mode = q.get("zp", "calib")
    if mode == "calib":
        scale = span / (qmax - qmin)
        zp = np.clip(np.rint(qmin - lo / scale), qmin, qmax)
    elif mode == "sym":
        bound = np.maximum(np.maximum(-lo, hi), 1e-3)
        scale = 2 * bound / (qmax - qmin)
        zp = np.full(lo.shape, (qmin + qmax + 1) // 2, np.float64)
    else:
        # Pinned at (or next to) a limit: the limit on the side the data leaves empty, so
        # the pinned zero point stays meaningful (qmin for mostly positive data, qmax for
        # mostly negative); the scale then covers the range.
        positive = float(np.sum(hi)) >= float(np.sum(-lo))
        if mode in ("qmin", "qmax"):
            mode = "qmin" if positive else "qmax"
        elif mode in ("qmin+1", "qmax-1"):
            mode = "qmin+1" if positive else "qmax-1"
        zp_value = {"qmin": qmin, "qmin+1": qmin + 1, "qmax": qmax, "qmax-1": qmax - 1,
                    "mid": (qmin + qmax + 1) // 2}[mode]
        zp = np.full(lo.shape, zp_value, np.float64)
        up = np.where(qmax > zp, hi / np.maximum(qmax - zp, 1), 0.0)
        down = np.where(zp > qmin, -lo / np.maximum(zp - qmin, 1), 0.0)
        # Cover the side with room; the other side saturates (one or two codes).
        scale = {"qmin": up, "qmin+1": up, "qmax": down, "qmax-1": down}.get(
            mode, np.maximum(up, down))
        scale = np.where(scale > 0, scale, span / (qmax - qmin))
    scale = np.maximum(scale * float(q.get("factor", 1.0)), 1e-30).astype(np.float32)
    return DrawnQParams(dtype, scale, zp.astype(np.int64), q.get("axis"))


def weight_qparams(w: dict, rng: np.random.Generator, shape: list[int]) -> DrawnQParams:
    """Weight parameters: per tensor, per ``axis`` or blocked; scales around 10^exp."""
    dtype = w["dtype"]
    qmin, qmax = qrange(dtype)
    axis, block = w.get("axis"), int(w.get("block", 0))
    if block:
        pshape = list(shape)
        pshape[axis] = -(-shape[axis] // block)
    elif axis is not None:
        pshape = [shape[axis]]
    else:
        pshape = []
    scale = (10.0 ** (w["exp"] + rng.uniform(-0.5, 0.5, pshape))).astype(np.float32)
    mode = w.get("zp", "zero")
    if mode == "zero" and qmin < 0:
        zp = np.zeros(pshape, np.int64)
    elif mode in ("zero", "mid"):
        zp = np.full(pshape, (qmin + qmax + 1) // 2, np.int64)
    elif mode == "random":
        zp = rng.integers(qmin, qmax + 1, pshape)
    else:
        zp = np.full(pshape, {"qmin": qmin, "qmax": qmax}[mode], np.int64)
    return DrawnQParams(dtype, scale, zp, axis)


def calibrated_range(v: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(min(v, 0), max(v, 0))`` over the whole tensor, or per slice along ``axis``."""
    v = np.asarray(v, np.float64)
    if axis is None or v.ndim == 0:
        return np.asarray(v.min(initial=0.0)), np.asarray(v.max(initial=0.0))
    axes = tuple(d for d in range(v.ndim) if d != axis % v.ndim)
    return v.min(axis=axes, initial=0.0), v.max(axis=axes, initial=0.0)
