"""numpy references of the QNN ops (the math the Relax builders must reproduce)."""

from __future__ import annotations

import numpy as np

from ..dtypes import QType


def quantize(x: np.ndarray, scale, zero_point, qtype: QType) -> np.ndarray:
    """``q = saturate(round_half_even(x / s) + zp)`` (float32 division, as ORT)."""
    q = np.rint(x.astype(np.float32) / np.float32(scale)) + np.asarray(zero_point, np.float64)
    return np.clip(q, qtype.qmin, qtype.qmax).astype(qtype.container)


def dequantize(q: np.ndarray, scale, zero_point) -> np.ndarray:
    """``x = (q - zp) · s`` in float32."""
    return ((q.astype(np.int64) - np.asarray(zero_point, np.int64)).astype(np.float32)
            * np.float32(scale))


def requantize(q: np.ndarray, s_in, zp_in, s_out, zp_out, qtype: QType) -> np.ndarray:
    """``saturate(round_half_even((q - zp_in) · s_in / s_out) + zp_out)`` in float64."""
    multiplier = np.asarray(s_in, np.float64) / np.asarray(s_out, np.float64)
    shifted = (q.astype(np.int64) - np.asarray(zp_in, np.int64)).astype(np.float64)
    y = np.rint(shifted * multiplier) + np.asarray(zp_out, np.float64)
    return np.clip(y, qtype.qmin, qtype.qmax).astype(qtype.container)


def matmul_integer(a: np.ndarray, za, b: np.ndarray, zb) -> np.ndarray:
    """Exact ``Σ_k (a - za)(b - zb)`` in int64."""
    return (a.astype(np.int64) - np.asarray(za, np.int64)) @ (
        b.astype(np.int64) - np.asarray(zb, np.int64))
