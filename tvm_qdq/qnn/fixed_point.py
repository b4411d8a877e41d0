"""Fixed-point requantize: a real multiplier ``m > 0`` as an int32 multiplier and shifts.

The float requantize ``y = saturate(round_half_even(t · m) + zp)`` (``t`` an integer
accumulator, ``m = s_in / s_out``) becomes integer code::

    t' = clip(t, -C, C) << L                   (clip only when needed, see below)
    h  ≈ t' · M / 2^32                          (high word of the product, see below)
    y  = (h + 2^(s-1)) >> s                     (rounding shift: round half up)
    y  = clip(y + zp, qmin, qmax)

with ``m ≈ M · 2^(L - 32 - s)``: ``M`` an int32 per channel, one pre-shift ``L ≥ 0`` and one
``1 ≤ s ≤ 30`` per tensor, ``s`` as large as the bounds below allow. Two forms of ``h``:

* **narrow** (``|t'| < 2^31``): int32 lanes only, which HVX vectorizes. With 16-bit halves
  ``t' = a · 2^16 + b``, ``M = c · 2^16 + d`` (``a`` signed, ``b, c, d`` unsigned)::

      h = a·c + ((a·d) >> 16) + ((b·c) >> 16)

  every product fits int32; ``h`` is ``floor(t' · M / 2^32)`` minus 0, 1 or 2 (the dropped
  ``b·d / 2^32 < 1`` and two floors). A 64-bit product would be exact but LLVM builds the
  per-channel ``sext(M)`` splat lane by lane on HVX;
* **wide** (int64 accumulators the narrow clip cannot hold): ``t' = a · 2^32 + b`` with ``b``
  the low 32 bits, ``h = a · M + ((b · M) >> 32)``, exactly ``floor(t' · M / 2^32)`` in int64
  (scalar code on HVX).

The clip bound ``C`` is *saturation preserving*: every ``|t| > C`` has ``|t · m| ≥ R`` (``R``
= distance from ``zp`` to the far end of the output range + 2), so the output saturates
whether or not ``t`` was clipped.

Error bound (the contract: at most 1 LSB from the float formula). Rounding ``M`` moves
``t · m`` by at most ``|t'| / 2^(33+s)`` LSB and ``h`` falls short of ``t' · M / 2^32`` by
less than 1 (wide) or 3 (narrow) units of ``2^-s`` LSB, so
``y = round_half_up(t · m + δ)`` with ``|δ| <`` :attr:`FixedPoint.error_bound`, at most
:data:`MAX_ERROR` ``= 1/8`` (else no fixed-point form is returned): ``y``
differs from the float result by at most 1, and only when ``t · m`` lies within ``δ`` of a
half integer (or is an exact tie: half up vs half to even).

Round half up (not half to even) because it is one add and one arithmetic shift per lane;
the ties it changes are already inside the 1-LSB contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT32_MAX = 2**31 - 1
MAX_SHIFT = 30
#: Largest accepted :attr:`FixedPoint.error_bound` (output LSB); beyond it (per-channel
#: multipliers 2^20 apart, ...) the requantize stays float.
MAX_ERROR = 2.0**-3
#: Largest ``|t'|`` of the wide form (``a · M`` and ``b · M`` stay below 2^63).
WIDE_LIMIT = 2**62


@dataclass(frozen=True)
class FixedPoint:
    """Integer parameters of one requantize (the math is in the module docstring)."""

    multiplier: np.ndarray  # int32 M, shaped like the real multiplier
    shift: int  # s
    pre_shift: int  # L
    clamp: int | None  # C, or None when t needs no clip
    wide: bool  # t' needs int64 (scalar code)
    offset: np.ndarray | None = None  # int32 round(c · 2^s) of a real offset c, added to h

    @property
    def error_bound(self) -> float:
        """Bound (output LSB) on ``|δ|``, the deviation before the final rounding."""
        largest = ((self.clamp if self.clamp is not None else INT32_MAX) + 1) << self.pre_shift
        bound = (1 if self.wide else 3) * 2.0 ** -self.shift + largest / 2.0 ** (33 + self.shift)
        return bound + (2.0 ** -(self.shift + 1) if self.offset is not None else 0.0)


def saturation_range(zero_point: np.ndarray, qmin: int, qmax: int) -> int:
    """``R``: once ``|t · m| ≥ R`` the output is ``qmin`` or ``qmax`` whatever the rounding."""
    zp = np.asarray(zero_point, np.int64)
    return int(max(int(qmax - zp.min()), int(zp.max() - qmin))) + 2


def _candidate(m: np.ndarray, shift: int, acc_bits: int, r: int, wide: bool,
               offset: np.ndarray | None = None) -> FixedPoint | None:
    e = math.floor(math.log2(float(m.max())))  # m_max in [2^e, 2^(e+1))
    pre = max(0, shift + 2 + e)  # M_max = m_max · 2^(32+s-L) in [2^30, 2^31) when L > 0
    multiplier = np.rint(m * 2.0 ** (32 + shift - pre))
    if multiplier.max() > INT32_MAX or pre > 60:
        return None
    m_min = float(m.min())
    if wide:
        clamp = min(math.ceil(r / m_min), 2 ** (acc_bits - 1) - 1)
        if (clamp << pre) >= WIDE_LIMIT:
            return None
    elif pre > 0 or acc_bits > 32:
        clamp = 2 ** (31 - pre) - 1 if pre < 31 else 0
        if clamp * m_min < r:  # clipping would change an unsaturated result
            return None
    else:
        clamp = None
    scaled = None
    if offset is not None:
        scaled = np.rint(offset * 2.0**shift)
        if np.abs(scaled).max() >= 2**29:  # |h| < 2^30, h + c·2^s + 2^(s-1) stays int32
            return None
        scaled = scaled.astype(np.int32)
    fp = FixedPoint(multiplier.astype(np.int32), shift, pre, clamp, wide, scaled)
    return fp if fp.error_bound <= MAX_ERROR else None


def plan_fixed_point(multiplier: np.ndarray, acc_bits: int, zero_point: np.ndarray,
                     qmin: int, qmax: int, offset: np.ndarray | None = None
                     ) -> FixedPoint | None:
    """The fixed-point form of ``saturate(round(t · multiplier [+ offset]) + zp)`` for a
    signed ``acc_bits``-bit ``t`` (``offset``: a real per-channel constant, e.g. a bias off
    the accumulator grid, added as ``round(c · 2^s)`` before the rounding shift): the narrow
    form with the largest shift ``s``, else the wide one; None for a multiplier that is not
    finite and positive or whose error bound exceeds :data:`MAX_ERROR`."""
    m = np.asarray(multiplier, np.float64)
    if m.size == 0 or not np.all(np.isfinite(m)) or np.any(m <= 0):
        return None
    r = saturation_range(zero_point, qmin, qmax)
    if offset is not None:
        offset = np.asarray(offset, np.float64)
        if not np.all(np.isfinite(offset)):
            return None
        r += math.ceil(float(np.abs(offset).max(initial=0)))
    for wide in (False, True) if acc_bits > 32 else (False,):
        for shift in range(MAX_SHIFT, 0, -1):
            fp = _candidate(m, shift, max(acc_bits, 32), r, wide, offset)
            if fp is not None:
                return fp
    return None


def high_word(t: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """Wide ``h``: ``floor(t · M / 2^32)`` exactly in int64 for ``|t| < 2^62``, ``0 ≤ M < 2^31``."""
    t = np.asarray(t, np.int64)
    mult = np.asarray(multiplier, np.int64)
    high, low = t >> 32, t & 0xFFFFFFFF
    return high * mult + ((low * mult) >> 32)


def high_word_narrow(t: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """Narrow ``h = a·c + ((a·d) >> 16) + ((b·c) >> 16)`` (16-bit halves; int32 values)."""
    t = np.asarray(t, np.int64)
    mult = np.asarray(multiplier, np.int64)
    a, b = t >> 16, t & 0xFFFF
    c, d = mult >> 16, mult & 0xFFFF
    return a * c + ((a * d) >> 16) + ((b * c) >> 16)


def requantize_fixed(t: np.ndarray, fp: FixedPoint, zero_point, qmin: int,
                     qmax: int) -> np.ndarray:
    """numpy reference of the integer code (bit-exact with the kernels)."""
    t = np.asarray(t).astype(np.int64)
    if fp.clamp is not None:
        t = np.clip(t, -fp.clamp, fp.clamp)
    high = high_word if fp.wide else high_word_narrow
    h = high(t << fp.pre_shift, fp.multiplier)
    if fp.offset is not None:
        h = h + np.asarray(fp.offset, np.int64)
    y = ((h + (1 << (fp.shift - 1))) >> fp.shift) + np.asarray(zero_point, np.int64)
    return np.clip(y, qmin, qmax)


# ----------------------------------------------------------------------------------------------
# Sums: the integer Add ``y = saturate(round(Σ_i x_i · r_i) + zp)``
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedPointSum:
    """``y = clip(((Σ_i h(x_i << L_i, M_i)) + 2^(s-1)) >> s) + zp, qmin, qmax)`` with the
    narrow high word ``h`` of each term (``r_i ≈ M_i · 2^(L_i - 32 - s)``, ``M_i`` int32 of
    either sign, one ``s``); ``x_i`` are signed ``bits_i``-bit values, never clipped."""

    multipliers: tuple[np.ndarray, ...]  # int32 M_i
    pre_shifts: tuple[int, ...]  # L_i
    shift: int  # s
    bits: tuple[int, ...]

    @property
    def error_bound(self) -> float:
        """Bound (output LSB) on the deviation from ``Σ x_i · r_i`` before the rounding."""
        terms = len(self.bits)
        rounding = sum(2.0 ** (b - 1 + pre) for b, pre in zip(self.bits, self.pre_shifts,
                                                               strict=True))
        return 3 * terms * 2.0 ** -self.shift + rounding / 2.0 ** (33 + self.shift)


def _sum_candidate(ratios: list[np.ndarray], bits: list[int], shift: int
                   ) -> FixedPointSum | None:
    mults, pres, reach = [], [], 2.0 ** (shift - 1)
    for r, b in zip(ratios, bits, strict=True):
        e = math.floor(math.log2(float(np.abs(r).max())))
        pre = max(0, shift + 2 + e)
        if b - 1 + pre > 30:  # |x << L| < 2^31
            return None
        m = np.rint(r * 2.0 ** (32 + shift - pre))
        if np.abs(m).max() > INT32_MAX:
            return None
        mults.append(m.astype(np.int32))
        pres.append(pre)
        reach += 2.0 ** (b - 1 + pre) * float(np.abs(m).max()) / 2.0**32 + 1
    if reach >= 2**31:  # Σ h_i + 2^(s-1) must stay int32
        return None
    fp = FixedPointSum(tuple(mults), tuple(pres), shift, tuple(bits))
    return fp if fp.error_bound <= MAX_ERROR else None


def plan_fixed_point_sum(ratios: list[np.ndarray], bits: list[int]) -> FixedPointSum | None:
    """The int32 form of ``round(Σ_i x_i · r_i)`` with the largest common shift, or None
    (a zero or non-finite ratio, or no shift within :data:`MAX_ERROR`)."""
    ratios = [np.asarray(r, np.float64) for r in ratios]
    if any(r.size == 0 or not np.all(np.isfinite(r)) or np.any(r == 0) for r in ratios):
        return None
    for shift in range(MAX_SHIFT, 0, -1):
        fp = _sum_candidate(ratios, list(bits), shift)
        if fp is not None:
            return fp
    return None


def add_fixed(xs: list[np.ndarray], fp: FixedPointSum, zero_point, qmin: int,
              qmax: int) -> np.ndarray:
    """numpy reference of the integer sum (bit-exact with the kernels)."""
    total = sum(high_word_narrow(np.asarray(x, np.int64) << pre, m)
                for x, m, pre in zip(xs, fp.multipliers, fp.pre_shifts, strict=True))
    y = ((total + (1 << (fp.shift - 1))) >> fp.shift) + np.asarray(zero_point, np.int64)
    return np.clip(y, qmin, qmax)
