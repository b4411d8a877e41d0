"""Exact float64 form of the integer pass's int64 rounding shifts (a Relax rewrite).

The integer pass requantizes with an int64 fixed-point chain (``S`` = shift)::

    v = Σ_i int64(x_i) · M_i + B                       (x_i: narrower integers, M_i, B constant)
    q = v >> S;  r = v - (q << S)
    out = q + (r > 2^(S-1) or (r == 2^(S-1) and q & 1 == 1))

i.e. ``out = rhe(v / 2^S)``, ``v / 2^S`` rounded half to even: about 15 int64 vector ops per
8 lanes. When every partial sum of ``v`` is an integer of magnitude below 2^53 (proved here
by interval arithmetic: the ranges of the ``x_i`` come from their dtypes, from the weights of
the conv2d / matmul producing them, and from exact integer ops in between), the same value is
computed exactly in float64::

    out = int64(nearbyint(Σ_i float64(x_i) · (M_i · 2^-S) + B · 2^-S))

Every float64 operation is exact: ``M_i · 2^-S`` and ``B · 2^-S`` are binary scalings of
integers below 2^53; each product ``x_i · M_i · 2^-S`` and each partial sum is an integer
below 2^53 times 2^-S, hence representable (a fused multiply-add rounds once, to the same
representable value); ``nearbyint`` rounds half to even like ``rhe``. So the rewrite
changes no bit of the result (the int64 ``v`` of the original cannot wrap either, since
``|v| < 2^53``). Chains whose bound cannot be proved are left as they are.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

#: Exact integer range of float64.
FLOAT64_EXACT = 2**53

_ITEMS = object  # numpy dtype of exact (Python int) interval bounds


def _dtype_range(dtype: str) -> tuple[int, int] | None:
    if dtype.startswith("uint"):
        return 0, 2 ** int(dtype[4:]) - 1
    if dtype.startswith("int"):
        bits = int(dtype[3:])
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if dtype == "bool":
        return 0, 1
    return None


def _ty(expr: relax.Expr):
    return expr.ty if hasattr(expr, "ty") else expr.struct_info


def _dtype(expr: relax.Expr) -> str:
    ty = _ty(expr)
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else ""


def _const(expr: relax.Expr) -> np.ndarray | None:
    if isinstance(expr, tvm.ir.Constant) and hasattr(expr.value, "numpy"):
        return expr.value.numpy()
    return None


def _exact(a: np.ndarray) -> np.ndarray:
    """Integer array ``a`` as exact Python integers (object array)."""
    return _obj(np.asarray(a).astype(np.int64))


def _obj(a) -> np.ndarray:
    """``a`` as an array of Python ints (exact arithmetic, no overflow)."""
    if not isinstance(a, np.ndarray):
        return np.array(int(a), dtype=_ITEMS)
    return a if a.dtype == _ITEMS else np.array(a.tolist(), dtype=_ITEMS).reshape(a.shape)


_MAX = np.frompyfunc(max, 2, 1)
_MIN = np.frompyfunc(min, 2, 1)
_ABS = np.frompyfunc(abs, 1, 1)


def _max(a, b) -> np.ndarray:
    return _obj(_MAX(_obj(a), _obj(b)))


def _min(a, b) -> np.ndarray:
    return _obj(_MIN(_obj(a), _obj(b)))


def _abs(a) -> np.ndarray:
    return _obj(_ABS(_obj(a)))


def _exact_or_int64(w: np.ndarray, scale: int) -> np.ndarray:
    """``w`` as int64 when every sum of ``|w| · scale`` over its last axis fits int64 (fast),
    else as exact Python integers."""
    most = int(np.abs(w.astype(np.int64)).max()) if w.size else 0
    if most * scale * max(w.shape[-1], 1) < 2**62:
        return w.astype(np.int64)
    return _exact(w)


Interval = tuple[np.ndarray, np.ndarray]


def _fit(interval: Interval, dtype: str) -> Interval | None:
    """``interval`` if it fits ``dtype`` (no wrap-around), else the dtype's full range."""
    rng = _dtype_range(dtype)
    if rng is None:
        return None
    lo, hi = interval
    if np.all(lo >= rng[0]) and np.all(hi <= rng[1]):
        return interval
    return np.array(rng[0], _ITEMS), np.array(rng[1], _ITEMS)


class _Analysis:
    """Value intervals and bound values of one dataflow block's vars."""

    def __init__(self) -> None:
        self.values: dict[relax.Var, relax.Expr] = {}
        self.ranges: dict[relax.Var, Interval | None] = {}

    # -- structure -----------------------------------------------------------------------------

    def call(self, expr: relax.Expr, op: str) -> relax.Call | None:
        """The call of ``op`` that ``expr`` is (or that the var ``expr`` is bound to)."""
        if isinstance(expr, relax.Var):
            expr = self.values.get(expr)
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and \
                expr.op.name == op:
            return expr
        return None

    def scalar(self, expr: relax.Expr) -> int | None:
        value = _const(expr)
        if value is None or value.size != 1 or not np.issubdtype(value.dtype, np.integer):
            return None
        return int(value.reshape(()))

    # -- intervals -----------------------------------------------------------------------------

    def interval(self, expr: relax.Expr) -> Interval | None:
        value = _const(expr)
        if value is not None:
            if not np.issubdtype(value.dtype, np.integer):
                return None
            return _exact(value), _exact(value)
        if isinstance(expr, relax.Var) and expr in self.ranges:
            return self.ranges[expr]
        rng = _dtype_range(_dtype(expr))
        return None if rng is None else (np.array(rng[0], _ITEMS), np.array(rng[1], _ITEMS))

    def record(self, var: relax.Var, value: relax.Expr) -> None:
        self.values[var] = value
        try:
            self.ranges[var] = self._interval_of_value(var, value)
        except (ValueError, TypeError, AttributeError, IndexError):
            self.ranges[var] = self.interval_default(var)

    def interval_default(self, var: relax.Var) -> Interval | None:
        rng = _dtype_range(_dtype(var))
        return None if rng is None else (np.array(rng[0], _ITEMS), np.array(rng[1], _ITEMS))

    def _interval_of_value(self, var: relax.Var, value: relax.Expr) -> Interval | None:
        dtype = _dtype(var)
        if _dtype_range(dtype) is None or not isinstance(value, relax.Call) or \
                not isinstance(value.op, tvm.ir.Op):
            return self.interval_default(var)
        op = value.op.name
        args = list(value.args)
        if op == "relax.astype":
            inner = self.interval(args[0])
            return self.interval_default(var) if inner is None else _fit(inner, dtype)
        if op in ("relax.add", "relax.subtract", "relax.multiply"):
            a, b = self.interval(args[0]), self.interval(args[1])
            if a is None or b is None:
                return self.interval_default(var)
            if op == "relax.add":
                out = (a[0] + b[0], a[1] + b[1])
            elif op == "relax.subtract":
                out = (a[0] - b[1], a[1] - b[0])
            else:
                cands = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
                out = (_min(_min(cands[0], cands[1]), _min(cands[2], cands[3])),
                       _max(_max(cands[0], cands[1]), _max(cands[2], cands[3])))
            return _fit(out, dtype)
        if op == "relax.clip":
            inner = self.interval(args[0])
            lo, hi = self.scalar(args[1]), self.scalar(args[2])
            if inner is None or lo is None or hi is None:
                return self.interval_default(var)
            return _fit((_max(inner[0], lo), _min(inner[1], hi)), dtype)
        if op == "relax.nn.conv2d":
            return self._conv2d(var, value)
        if op == "relax.matmul":
            return self._matmul(var, value)
        return self.interval_default(var)

    def _scalar_interval(self, expr: relax.Expr) -> tuple[int, int] | None:
        iv = self.interval(expr)
        if iv is None:
            return None
        return min(_obj(iv[0]).reshape(-1).tolist()), max(_obj(iv[1]).reshape(-1).tolist())

    def _conv2d(self, var: relax.Var, call: relax.Call) -> Interval | None:
        attrs = call.attrs
        w = _const(call.args[1])
        x = self._scalar_interval(call.args[0])
        if w is None or x is None or str(attrs.data_layout) != "NCHW" or \
                str(attrs.kernel_layout) != "OIHW" or (
                    attrs.out_layout is not None and str(attrs.out_layout) != "NCHW"):
            return self.interval_default(var)
        lo, hi = min(x[0], 0), max(x[1], 0)  # zero padding
        wf = _exact_or_int64(w.reshape(w.shape[0], -1), max(-lo, hi))
        low = np.minimum(wf * lo, wf * hi).sum(axis=1)
        high = np.maximum(wf * lo, wf * hi).sum(axis=1)
        shape = (1, w.shape[0], 1, 1)
        return _fit((_obj(low).reshape(shape), _obj(high).reshape(shape)), _dtype(var))

    def _matmul(self, var: relax.Var, call: relax.Call) -> Interval | None:
        b = _const(call.args[1])
        a = self._scalar_interval(call.args[0])
        ndim = len(_ty(var).shape.values) if _ty(var).shape is not None else 0
        if b is None or b.ndim != 2 or a is None or ndim < 2:
            return self.interval_default(var)
        bf = _exact_or_int64(b, max(-a[0], a[1], 0))
        low = np.minimum(bf * a[0], bf * a[1]).sum(axis=0)
        high = np.maximum(bf * a[0], bf * a[1]).sum(axis=0)
        shape = (1,) * (ndim - 1) + (b.shape[1],)
        return _fit((_obj(low).reshape(shape), _obj(high).reshape(shape)), _dtype(var))

    # -- the rounding shift --------------------------------------------------------------------

    def match_rounding_shift(self, value: relax.Expr) -> tuple[relax.Expr, int] | None:
        """``(v, S)`` when ``value`` is ``rhe(v / 2^S)`` written as the integer pass does."""
        add = self.call(value, "relax.add")
        if add is None or _dtype(add) != "int64":
            return None
        for q, up in (add.args, add.args[::-1]):
            shift = self.call(q, "relax.right_shift")
            cast = self.call(up, "relax.astype")
            if shift is None or cast is None or _dtype(cast.args[0]) != "bool":
                continue
            v, s = shift.args[0], self.scalar(shift.args[1])
            if s is None or not 1 <= s <= 62 or _dtype(v) != "int64":
                continue
            if self._is_round_up(cast.args[0], q, v, s):
                return v, s
        return None

    def _is_round_up(self, cond: relax.Expr, q: relax.Expr, v: relax.Expr, s: int) -> bool:
        """``cond`` is ``r > h or (r == h and q & 1 == 1)`` with ``r = v - (q << s)``,
        ``h = 2^(s-1)``."""
        half = 1 << (s - 1)
        lor = self.call(cond, "relax.logical_or")
        if lor is None:
            return False
        for gt, land in (lor.args, lor.args[::-1]):
            greater = self.call(gt, "relax.greater")
            both = self.call(land, "relax.logical_and")
            if greater is None or both is None or self.scalar(greater.args[1]) != half:
                continue
            r = greater.args[0]
            if not self._is_remainder(r, q, v, s):
                continue
            for eq_r, eq_odd in (both.args, both.args[::-1]):
                e1 = self.call(eq_r, "relax.equal")
                e2 = self.call(eq_odd, "relax.equal")
                if e1 is None or e2 is None:
                    continue
                if not (e1.args[0].same_as(r) and self.scalar(e1.args[1]) == half):
                    continue
                band = self.call(e2.args[0], "relax.bitwise_and")
                if band is not None and self.scalar(e2.args[1]) == 1 and \
                        band.args[0].same_as(q) and self.scalar(band.args[1]) == 1:
                    return True
        return False

    def _is_remainder(self, r: relax.Expr, q: relax.Expr, v: relax.Expr, s: int) -> bool:
        sub = self.call(r, "relax.subtract")
        if sub is None or not sub.args[0].same_as(v):
            return False
        lsh = self.call(sub.args[1], "relax.left_shift")
        return lsh is not None and lsh.args[0].same_as(q) and self.scalar(lsh.args[1]) == s

    def linear_form(self, expr: relax.Expr, depth: int = 0
                    ) -> tuple[list[tuple[relax.Expr, np.ndarray]], np.ndarray] | None:
        """``expr`` (int64) as ``Σ int64(src) · coef + const`` with constant ``coef``/``const``
        (exact integers), or None."""
        value = _const(expr)
        if value is not None:
            return ([], _exact(value)) if np.issubdtype(value.dtype, np.integer) else None
        if depth > 16:
            return None
        one = np.array(1, _ITEMS)
        zero = np.array(0, _ITEMS)
        cast = self.call(expr, "relax.astype")
        if cast is not None and _dtype(cast) == "int64":
            src = cast.args[0]
            rng = _dtype_range(_dtype(src))
            if rng is not None and _dtype(src) != "bool" and (
                    rng[1] < 2**63 and rng[0] >= -(2**63)):
                inner = _const(src)
                if inner is not None:
                    return [], _exact(inner)
                offset = self.constant_offset(src)
                if offset is not None:  # src = base + offset without wrap-around
                    return [(offset[0], one)], offset[1]
                return [(src, one)], zero
        for op in ("relax.add", "relax.subtract", "relax.multiply"):
            call = self.call(expr, op)
            if call is None or _dtype(call) != "int64":
                continue
            a = self.linear_form(call.args[0], depth + 1)
            b = self.linear_form(call.args[1], depth + 1)
            if a is None or b is None:
                return None
            if op == "relax.add":
                return a[0] + b[0], a[1] + b[1]
            if op == "relax.subtract":
                return a[0] + [(s, -c) for s, c in b[0]], a[1] - b[1]
            if a[0] and b[0]:
                return None
            (terms, const), factor = (a, b[1]) if not b[0] else (b, a[1])
            return [(s, c * factor) for s, c in terms], const * factor
        if _dtype(expr) == "int64":
            return [(expr, one)], zero
        return None

    def constant_offset(self, expr: relax.Expr) -> tuple[relax.Expr, np.ndarray] | None:
        """``(base, c)`` when ``expr`` is ``base ± constant c`` computed in ``expr``'s integer
        dtype and provably without wrap-around (so ``int64(expr) = int64(base) + c``); casts
        to the same dtype are looked through."""
        same = self.call(expr, "relax.astype")
        if same is not None and _dtype(same) == _dtype(same.args[0]):
            return self.constant_offset(same.args[0])
        for op, sign in (("relax.add", 1), ("relax.subtract", -1)):
            call = self.call(expr, op)
            if call is None:
                continue
            base, c = call.args
            value = _const(c)
            if value is None and op == "relax.add":
                base, c = c, base
                value = _const(c)
            if value is None or not np.issubdtype(value.dtype, np.integer) or \
                    _const(base) is not None or _dtype(base) != _dtype(call):
                return None
            rng, iv = _dtype_range(_dtype(call)), self.interval(base)
            if rng is None or iv is None:
                return None
            shift = _exact(value) * sign
            lo, hi = _obj(iv[0] + shift), _obj(iv[1] + shift)
            if min(lo.reshape(-1).tolist()) < rng[0] or max(hi.reshape(-1).tolist()) > rng[1]:
                return None
            try:
                np.broadcast_shapes(np.shape(shift), tuple(
                    int(d) for d in _ty(call).shape.values))
            except (ValueError, TypeError, AttributeError):
                return None
            return base, shift
        return None

    def bound(self, terms: list[tuple[relax.Expr, np.ndarray]], const: np.ndarray
              ) -> int | None:
        """Largest ``Σ |src| · |coef| + |const|`` over the elements (None: unbounded)."""
        total = _abs(const)
        for src, coef in terms:
            iv = self.interval(src)
            if iv is None:
                return None
            total = _obj(total + _max(_abs(iv[0]), _abs(iv[1])) * _abs(coef))
        return int(max(total.reshape(-1).tolist()))


# ----------------------------------------------------------------------------------------------
# Float requantize with the saturation moved onto the integer input
# ----------------------------------------------------------------------------------------------
#
# The integer pass requantizes an integer ``d`` (a conv / matmul accumulator) in float64::
#
#     out = qtype(clip(R(d), qlo, qhi)),   R(d) = rhe(F(d)) [+ z],   F(d) = float64(d) · m [+ c]
#
# (``m > 0``, ``c``, ``z`` constants per channel, ``z`` integer). ``F`` is monotone
# nondecreasing in ``d`` whether the multiply-add is fused or not (each float64 rounding is
# monotone), hence so is ``R``. With per-channel integers ``a_lo ≤ a_hi`` such that
# ``R(a_lo) = qlo`` (or ``a_lo`` = the least value ``d`` takes and ``R(a_lo) ≥ qlo``) and
# ``R(a_hi) = qhi`` (or ``a_hi`` = the largest ``d`` and ``R(a_hi) ≤ qhi``), both checked under
# both semantics of the multiply-add::
#
#     out = qtype(int32(R(min(max(d, a_lo), a_hi))))
#
# exactly: for ``d < a_lo``, ``R(d) ≤ R(a_lo) = qlo`` so the old clip gives ``qlo``; symmetric
# above ``a_hi``; in between ``qlo ≤ R(d) ≤ qhi`` and the clip did nothing. The float clip goes
# away (the int32 clip of ``d`` is two cheap integer ops per vector) and the rounding plus
# conversion become one instruction (``lrint``, see :func:`lrint_casts`).


def _float_rhe_fused(a: int, m: float, c: float) -> int:
    """``rhe(fl(a · m + c))`` with one rounding (fused multiply-add), exactly."""
    from fractions import Fraction

    value = float(Fraction(a) * Fraction(m) + Fraction(c))  # correctly rounded
    return int(round(value))


def _float_rhe_separate(a: int, m: float, c: float) -> int:
    """``rhe(fl(fl(a · m) + c))`` (two roundings)."""
    return int(round(float(np.float64(a) * np.float64(m) + np.float64(c))))


def _rounded(a: int, m: float, c: float, z: int) -> tuple[int, int]:
    return _float_rhe_fused(a, m, c) + z, _float_rhe_separate(a, m, c) + z


def saturation_bounds(m: float, c: float, z: int, qlo: int, qhi: int, dlo: int, dhi: int
                      ) -> tuple[int, int, float, float] | None:
    """``(a_lo, a_hi, m', c')`` for one channel (see the section comment), or None.

    ``m', c'`` are ``m, c`` except for a channel saturated for every ``d`` in ``[dlo, dhi]``:
    then ``m' = 0``, ``c' = q - z`` with ``q`` its constant output (``0 · d + c'`` is exactly
    ``c'``), and ``a_lo = a_hi = 0``.
    """
    if not (np.isfinite(m) and np.isfinite(c)) or m < 0 or dlo > dhi:
        return None
    if max(_rounded(dhi, m, c, z)) <= qlo:
        return 0, 0, 0.0, float(qlo - z)
    if min(_rounded(dlo, m, c, z)) >= qhi:
        return 0, 0, 0.0, float(qhi - z)
    if m == 0:
        return None

    def search(target: int) -> int | None:
        guess = (target - z - c) / m
        if not np.isfinite(guess):
            return None
        base = int(np.clip(np.floor(guess), dlo, dhi))
        for a in sorted(range(base - 3, base + 4), key=lambda v: abs(v - base)):
            if dlo <= a <= dhi and _rounded(a, m, c, z) == (target, target):
                return a
        return None

    low, high = _rounded(dlo, m, c, z), _rounded(dhi, m, c, z)
    a_lo = dlo if min(low) >= qlo else search(qlo)
    a_hi = dhi if max(high) <= qhi else search(qhi)
    if a_lo is None or a_hi is None or a_lo > a_hi:
        return None
    if min(_rounded(a_lo, m, c, z)) < qlo or max(_rounded(a_hi, m, c, z)) > qhi:
        return None
    return a_lo, a_hi, m, c


def _float_const(expr: relax.Expr) -> np.ndarray | None:
    value = _const(expr)
    if value is None or value.dtype != np.float64:
        return None
    return value


def _scalar_bound(expr) -> float | None:
    """The number of a clip bound (a prim value, an immediate or a scalar constant)."""
    if type(expr).__name__ == "PrimValue":
        expr = expr.value
    if hasattr(expr, "value") and isinstance(expr.value, int | float):
        return float(expr.value)
    value = _const(expr) if isinstance(expr, relax.Expr) else None
    return float(value.reshape(())) if value is not None and value.size == 1 else None


def _match_requantize(analysis: _Analysis, value: relax.Expr):
    """``(d, m, c, z, qlo, qhi, out dtype)`` when ``value`` is the float64 requantize of the
    section comment (``astype(clip(R(d)), q)``), else None."""
    out_dtype = _dtype(value)
    cast = analysis.call(value, "relax.astype")
    if cast is None or out_dtype not in ("uint8", "int8", "uint16", "int16"):
        return None
    clip = analysis.call(cast.args[0], "relax.clip")
    if clip is None or _dtype(clip) != "float64":
        return None
    bounds = [_scalar_bound(a) for a in clip.args[1:]]
    if any(b is None for b in bounds):
        return None
    qlo, qhi = bounds
    rng = _dtype_range(out_dtype)
    if qlo != int(qlo) or qhi != int(qhi) or rng is None or qlo < rng[0] or qhi > rng[1]:
        return None
    inner, z = clip.args[0], np.zeros((), np.float64)
    add = analysis.call(inner, "relax.add")
    if add is not None:
        for a, b in (add.args, add.args[::-1]):
            zc = _float_const(b)
            if zc is not None and analysis.call(a, "relax.round") is not None:
                inner, z = a, zc
                break
        else:
            return None
    if np.any(z != np.round(z)):
        return None
    rnd = analysis.call(inner, "relax.round")
    if rnd is None:
        return None
    f, c, m = rnd.args[0], np.zeros((), np.float64), np.ones((), np.float64)
    for op, value in (("relax.add", 0.0), ("relax.multiply", 1.0)):
        call = analysis.call(f, op)
        if call is None:
            continue
        found = [(a, _float_const(b)) for a, b in (call.args, call.args[::-1])
                 if _float_const(b) is not None]
        if not found:
            return None
        f = found[0][0]
        if value == 0.0:
            c = found[0][1]
        else:
            m = found[0][1]
    to_float = analysis.call(f, "relax.astype")
    if to_float is None or _dtype(to_float) != "float64":
        return None
    d = to_float.args[0]
    if _dtype(d) not in ("int32", "int16", "int8", "uint8", "uint16"):
        return None
    return d, m, c, z, int(qlo), int(qhi), out_dtype


#: Most distinct (m, c, z) parameter sets a requantize may have (per channel, not per element).
MAX_CHANNELS = 8192


def saturate_before_requantize(analysis: _Analysis, value: relax.Expr, get
                               ) -> relax.Expr | None:
    """The float64 requantize ``value`` with its saturation moved onto the integer input (see
    the section comment), or None when it is not one or a bound cannot be proved."""
    match = _match_requantize(analysis, value)
    if match is None:
        return None
    d, m, c, z, qlo, qhi, out_dtype = match
    ty = _ty(d)
    try:
        shape = tuple(int(s) for s in ty.shape.values)
        pshape = np.broadcast_shapes(m.shape, c.shape, z.shape)
        np.broadcast_shapes(shape, pshape)
    except (ValueError, TypeError, AttributeError):
        return None
    if len(pshape) > len(shape) or int(np.prod(pshape)) > MAX_CHANNELS:
        return None
    iv = analysis.interval(d)
    if iv is None:
        return None
    dlo = min(_obj(iv[0]).reshape(-1).tolist())
    dhi = max(_obj(iv[1]).reshape(-1).tolist())
    mb, cb, zb = (np.broadcast_to(a, pshape).reshape(-1) for a in (m, c, z))
    rows = []
    for mi, ci, zi in zip(mb.tolist(), cb.tolist(), zb.tolist(), strict=True):
        bounds = saturation_bounds(mi, ci, int(zi), qlo, qhi, dlo, dhi)
        if bounds is None:
            return None
        rows.append(bounds)
    dtype = _dtype(d)
    lows, highs, ms, cs = zip(*rows, strict=True)
    lo = relax.const(np.array(lows, dtype).reshape(pshape), dtype)
    hi = relax.const(np.array(highs, dtype).reshape(pshape), dtype)
    if not (np.array_equal(np.array(ms), mb) and np.array_equal(np.array(cs), cb)):
        m = np.array(ms, np.float64).reshape(pshape)  # saturated channels: m' = 0, c' = q - z
        c = np.array(cs, np.float64).reshape(pshape)
    x = relax.op.astype(relax.op.minimum(relax.op.maximum(get(d), lo), hi), "float64")
    if not np.all(m == 1.0):
        x = relax.op.multiply(x, relax.const(m, "float64"))
    if np.any(c != 0):
        x = relax.op.add(x, relax.const(c, "float64"))
    q = relax.op.astype(relax.op.round(x), "int32")
    if np.any(z != 0):
        q = relax.op.add(q, relax.const(z.astype(np.int32), "int32"))
    return relax.op.astype(q, out_dtype)


def _float_rounding(terms, const: np.ndarray, s: int, get) -> relax.Expr:
    """``int64(nearbyint(Σ float64(src) · coef · 2^-s + const · 2^-s))`` (see module doc)."""
    scale = 2.0 ** -s
    total = None
    for src, coef in terms:
        c = np.asarray(coef).astype(np.float64) * scale
        term = relax.op.astype(get(src), "float64")
        if not (c.size == 1 and float(c.reshape(())) == 1.0):
            term = relax.op.multiply(term, relax.const(c, "float64"))
        total = term if total is None else relax.op.add(total, term)
    cf = np.asarray(const).astype(np.float64) * scale
    if total is None:
        total = relax.const(cf, "float64")
    elif np.any(cf != 0):
        total = relax.op.add(total, relax.const(cf, "float64"))
    return relax.op.astype(relax.op.round(total), "int64")


@relax.expr_functor.mutator
class _Substitute(relax.PyExprMutator):
    def __init__(self, mapping: dict) -> None:
        super().__init__()
        self.mapping = mapping

    def visit_var_(self, op: relax.Var) -> relax.Expr:
        return self.mapping.get(op, op)

    def visit_dataflow_var_(self, op: relax.DataflowVar) -> relax.Expr:
        return self.mapping.get(op, op)


def _rewrite_function(bb: relax.BlockBuilder, name: str, func: relax.Function,
                      counter: list[int]) -> relax.Function:
    attrs = dict(func.attrs) if func.attrs is not None else {}
    remap: dict[relax.Var, relax.Expr] = {}

    def get(expr: relax.Expr) -> relax.Expr:
        if isinstance(expr, relax.Var):
            return remap.get(expr, expr)
        if not relax.analysis.free_vars(expr):
            return expr
        return _Substitute(remap).visit_expr(expr)

    with bb.function(name, list(func.params), attrs=attrs or None, pure=True):
        for block in func.body.blocks:
            analysis = _Analysis()
            ctx = bb.dataflow() if isinstance(block, relax.DataflowBlock) else None
            if ctx is not None:
                ctx.__enter__()
            for binding in block.bindings:
                var = binding.var
                if not isinstance(binding, relax.VarBinding):
                    remap[var] = bb.match_cast(get(binding.value), _ty(binding),
                                               name_hint=str(var.name))
                    continue
                value = binding.value
                analysis.record(var, value)
                new_value = None
                match = analysis.match_rounding_shift(value)
                if match is not None and ctx is not None:
                    form = analysis.linear_form(match[0])
                    if form is not None:
                        bound = analysis.bound(*form)
                        if bound is not None and bound < FLOAT64_EXACT:
                            new_value = _float_rounding(form[0], form[1], match[1], get)
                            counter[0] += 1
                if new_value is None and ctx is not None:
                    new_value = saturate_before_requantize(analysis, value, get)
                    if new_value is not None:
                        counter[1] += 1
                if new_value is None:
                    new_value = get(value)
                if ctx is not None and not isinstance(var, relax.DataflowVar):
                    remap[var] = bb.emit_output(new_value, name_hint=str(var.name))
                else:
                    remap[var] = bb.emit(new_value, name_hint=str(var.name))
            if ctx is not None:
                ctx.__exit__(None, None, None)
        bb.emit_func_output(get(func.body.body))
    return bb.get()[name]


def exact_float_rounding(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Rewrite every provably exact int64 rounding shift of ``mod``'s Relax functions into
    its float64 form (see the module docstring) and move the saturation of float64
    requantizes onto their integer input (see :func:`saturate_before_requantize`); returns
    (module, number of rounding shifts rewritten). Every function keeps its GlobalVar."""
    bb = relax.BlockBuilder()
    counter = [0, 0]
    names = []
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            _rewrite_function(bb, gvar.name_hint, func, counter)
            names.append(gvar.name_hint)
    if counter[0] == 0 and counter[1] == 0:
        return mod, 0
    built = bb.get()
    out = tvm.IRModule({gvar: built[gvar.name_hint] if gvar.name_hint in names else func
                        for gvar, func in mod.functions.items()})
    if mod.attrs is not None:
        out = out.with_attrs(dict(mod.attrs))
    return relax.transform.DeadCodeElimination()(out), counter[0]
