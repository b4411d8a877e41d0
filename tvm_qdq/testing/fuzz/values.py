"""Random values of a fuzz graph: integer weights and float feeds (calibration and test)."""

from __future__ import annotations

import numpy as np

from .onnx_types import qrange
from .qparams import DrawnQParams


def weight_values(w: dict, rng: np.random.Generator, shape: list[int]) -> np.ndarray:
    """Integer weight codes: ``uniform`` over the type, ``symmetric`` (``[-qmax, qmax]``),
    ``extreme`` (only ``qmin``/``qmax``) or ``sparse`` (70 % at code 0, or the midpoint of an
    unsigned type)."""
    qmin, qmax = qrange(w["dtype"])
    kind = w.get("values", "uniform")
    if kind == "symmetric" and qmin < 0:
        return rng.integers(-qmax, qmax + 1, shape)
    if kind == "extreme":
        return rng.choice(np.array([qmin, qmax]), shape)
    if kind == "sparse":
        v = rng.integers(qmin, qmax + 1, shape)
        mid = (qmin + qmax + 1) // 2 if qmin == 0 else 0
        return np.where(rng.random(shape) < 0.7, mid, v)
    return rng.integers(qmin, qmax + 1, shape)


def feed_values(feed: dict, shape: tuple[int, ...], rng: np.random.Generator,
                qp: DrawnQParams | None) -> np.ndarray:
    """Input values: ``normal``/``uniform`` of ``std`` (× ``sat`` on test feeds), or with the
    input's parameters known (test feeds) ``grid`` (on the quantization grid), ``ties``
    (exactly half-way between two codes) or ``limits`` (codes at and past the type limits).
    """
    std = float(feed.get("std", 1.0))
    kind = feed.get("kind", "normal")
    if qp is not None and kind in ("grid", "ties", "limits"):
        lo, hi = qrange(qp.dtype)
        s = qp.scale.astype(np.float64).reshape(qp.bshape(len(shape)))
        z = qp.zero_point.astype(np.float64).reshape(qp.bshape(len(shape)))
        if kind == "limits":  # half the codes at or past the type limits
            codes = np.where(rng.random(shape) < 0.5,
                             rng.choice(np.array([lo - 3, lo, lo + 1, hi - 1, hi, hi + 3]),
                                        shape),
                             rng.integers(lo, hi + 1, shape)).astype(np.float64)
        else:
            codes = rng.integers(lo, hi + 1, shape).astype(np.float64)
        if kind == "ties":
            codes = codes + 0.5
        return ((codes - z) * s).astype(np.float32)
    if kind == "uniform":
        values = rng.uniform(-std, std, shape)
    else:
        values = rng.normal(0.0, std, shape)
    if qp is not None:
        values = values * float(feed.get("sat", 1.0))
    return values.astype(np.float32)
