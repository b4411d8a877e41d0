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


def requantize_codes(q: np.ndarray, zp_in, multiplier, zp_out, qmin: int, qmax: int,
                     dtype: str, offset=None) -> np.ndarray:
    """``tvm_qdq.requantize``: ``saturate(rhe(float64(q - zp_in) · m [+ c]) + zp_out)``, with
    ``q - zp_in`` in int32 (int64 for int64 / uint32 ``q``) and one float64 rounding per
    operation, as the compiled float64 form computes it."""
    work = np.int64 if q.dtype in (np.int64, np.uint32) else np.int32
    shifted = q.astype(work) - np.asarray(zp_in).astype(work)
    f = shifted.astype(np.float64) * np.asarray(multiplier, np.float64)
    if offset is not None:
        f = f + np.asarray(offset, np.float64)
    f = np.rint(f) + np.asarray(zp_out).astype(np.float64)
    return np.clip(f, np.float64(qmin), np.float64(qmax)).astype(dtype)


def requantize(q: np.ndarray, s_in, zp_in, s_out, zp_out, qtype: QType) -> np.ndarray:
    """``saturate(round_half_even((q - zp_in) · s_in / s_out) + zp_out)`` in float64."""
    multiplier = np.asarray(s_in, np.float64) / np.asarray(s_out, np.float64)
    return requantize_codes(q, zp_in, multiplier, zp_out, qtype.qmin, qtype.qmax,
                            qtype.container)


def requantize_sum_codes(terms: list[tuple[np.ndarray, np.ndarray]], multipliers: list,
                         shift: int, zp_out, qmin: int, qmax: int, dtype: str) -> np.ndarray:
    """``tvm_qdq.requantize_sum``: ``saturate(rhe(Σ_i (x_i - zp_i) · K_i / 2^S) + zp_out)`` in
    exact int64 arithmetic (``terms`` are ``(x_i, zp_i)``, ``multipliers`` the ``K_i``)."""
    total = sum((x.astype(np.int64) - np.asarray(zp, np.int64)) * np.asarray(k, np.int64)
                for (x, zp), k in zip(terms, multipliers, strict=True))
    floor = total >> np.int64(shift)
    rest = total - (floor << np.int64(shift))
    half = np.int64(1 << (shift - 1))
    up = (rest > half) | ((rest == half) & ((floor & 1) == 1))
    y = floor + up.astype(np.int64) + np.asarray(zp_out, np.int64)
    return np.clip(y, qmin, qmax).astype(dtype)


def matmul_integer(a: np.ndarray, za, b: np.ndarray, zb) -> np.ndarray:
    """Exact ``Σ_k (a - za)(b - zb)`` in int64."""
    return (a.astype(np.int64) - np.asarray(za, np.int64)) @ (
        b.astype(np.int64) - np.asarray(zb, np.int64))
