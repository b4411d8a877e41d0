"""ORT's CPU float arithmetic, reproduced: MLAS's logistic and tanh, separately rounded products.

ORT's CPU kernels for ONNX ``Sigmoid`` and ``Tanh`` (``activations.cc``) call
``MlasComputeLogistic`` / ``MlasComputeTanh``; ``QLinearSigmoid``'s table and the LSTM gates
use the same routines. On x86 with FMA3 they are rational approximations whose Horner steps
are fused multiply-adds, all in float32:

* logistic: ``v = clamp(x, -18, 18)``, ``y = v·P(v²) / Q(v²) + 0.5``, ``max(y, 0)``
  (``P`` of degree 4 in ``v²``, ``Q`` of degree 5);
* tanh: ``v = clamp(x, -9, 9)``, ``y = v·P(v²) / Q(v²)`` (``P`` of degree 6, ``Q`` of 3).

Two forms of each are here: Relax expressions (:func:`mlas_logistic`, :func:`mlas_tanh`),
whose ``a·b + c`` steps LLVM contracts into FMAs on x86 as MLAS does, and numpy references
(:func:`logistic_f32`, :func:`tanh_f32`) that evaluate the same steps with exactly rounded
FMAs (:func:`fma_f32`), for compile-time tables.

ORT never fuses two separate nodes on its reference path, so an ONNX ``Mul`` feeding an
``Add`` is a rounded product, then a rounded sum; :func:`rounded` keeps such a product from
being contracted into an FMA by LLVM.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

FLT_MAX = float(np.finfo(np.float32).max)

# MLAS's logistic constants (logistic.cpp): odd numerator in x, even denominator, |x| ≤ 18.
LOGISTIC_P = (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05,
              8.51377133304701e-03, 2.48287947061529e-01)
LOGISTIC_Q = (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06,
              1.70198817374094e-03, 1.16817656904453e-01, 9.93151921023180e-01)
LOGISTIC_RANGE = 18.0
# MLAS's tanh constants (tanh.cpp), |x| ≤ 9.
TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
          5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
          4.89352455891786e-03)
TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
          4.89352518554385e-03)
TANH_RANGE = 9.0


def f32(value: float) -> relax.Expr:
    """A float32 scalar constant."""
    return relax.const(np.float32(value), "float32")


def rounded(product: relax.Expr) -> relax.Expr:
    """``max(p, -FLT_MAX)``: a float32 product kept separately rounded.

    LLVM contracts ``a·b + c`` into ``fma(a, b, c)`` in TVM's x86 build; it cannot contract
    ``max(a·b, m) + c``. The value is ``p`` itself for every finite or ``+inf``/NaN product;
    only a product that overflows to ``-inf`` becomes ``-FLT_MAX``.
    """
    return relax.op.maximum(product, f32(-FLT_MAX))


def _horner(x2: relax.Expr, coeffs: tuple[float, ...]) -> relax.Expr:
    """``((c0·x² + c1)·x² + c2)…``: each step ``a·b + c`` (one FMA on x86)."""
    acc = relax.op.add(relax.op.multiply(x2, f32(coeffs[0])), f32(coeffs[1]))
    for c in coeffs[2:]:
        acc = relax.op.add(relax.op.multiply(acc, x2), f32(c))
    return acc


def mlas_logistic(x: relax.Expr) -> relax.Expr:
    """MLAS's logistic (FMA3 kernel): ``v = clamp(x, ±18)``, ``max(v·P(v²)/Q(v²) + 0.5, 0)``."""
    v = relax.op.minimum(relax.op.maximum(x, f32(-LOGISTIC_RANGE)), f32(LOGISTIC_RANGE))
    v2 = relax.op.multiply(v, v)
    p = relax.op.multiply(_horner(v2, LOGISTIC_P), v)
    y = relax.op.add(relax.op.divide(p, _horner(v2, LOGISTIC_Q)), f32(0.5))
    return relax.op.maximum(y, f32(0.0))


def mlas_tanh(x: relax.Expr) -> relax.Expr:
    """MLAS's tanh (FMA3 kernel): ``v = clamp(x, ±9)``, ``(v·P(v²)) / Q(v²)`` (no final clamp)."""
    v = relax.op.minimum(relax.op.maximum(x, f32(-TANH_RANGE)), f32(TANH_RANGE))
    v2 = relax.op.multiply(v, v)
    return relax.op.divide(relax.op.multiply(v, _horner(v2, TANH_P)), _horner(v2, TANH_Q))


# --- numpy references ---------------------------------------------------------------------

def fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``fma(a, b, c)`` of float32 arrays: ``a·b + c`` rounded once to float32 (half to even).

    ``a·b`` is exact in float64 (24 + 24 bits < 53); ``s = fl64(a·b + c)`` and its exact error
    ``e`` (Knuth's TwoSum) give the exact sum ``s + e``. ``s`` rounded to odd (moved one
    float64 ulp towards ``e`` when ``e ≠ 0`` and its last bit is even) keeps the sticky
    information, and since 53 ≥ 24 + 2 the float64 → float32 rounding of the odd-rounded
    value equals the single rounding of the exact sum.
    """
    p = np.asarray(a, np.float32).astype(np.float64) * np.asarray(b, np.float32).astype(np.float64)
    c64 = np.asarray(c, np.float32).astype(np.float64)
    with np.errstate(all="ignore"):
        s = p + c64
        bp = s - p
        e = (p - (s - bp)) + (c64 - bp)
        even = (s.view(np.int64) & 1) == 0
        nudge = (e != 0) & even & np.isfinite(s)
        s = np.where(nudge, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)
        return s.astype(np.float32)


def _horner_f32(x2: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    acc = fma_f32(x2, np.float32(coeffs[0]), np.float32(coeffs[1]))
    for c in coeffs[2:]:
        acc = fma_f32(acc, x2, np.float32(c))
    return acc


def logistic_f32(x: np.ndarray) -> np.ndarray:
    """:func:`mlas_logistic` in numpy, float32 step by step with exact FMAs."""
    v = np.clip(np.asarray(x, np.float32), np.float32(-LOGISTIC_RANGE),
                np.float32(LOGISTIC_RANGE))
    v2 = v * v
    p = _horner_f32(v2, LOGISTIC_P) * v
    y = p / _horner_f32(v2, LOGISTIC_Q) + np.float32(0.5)
    return np.maximum(y, np.float32(0.0)).astype(np.float32)


def tanh_f32(x: np.ndarray) -> np.ndarray:
    """:func:`mlas_tanh` in numpy, float32 step by step with exact FMAs."""
    v = np.clip(np.asarray(x, np.float32), np.float32(-TANH_RANGE), np.float32(TANH_RANGE))
    v2 = v * v
    return ((v * _horner_f32(v2, TANH_P)) / _horner_f32(v2, TANH_Q)).astype(np.float32)
