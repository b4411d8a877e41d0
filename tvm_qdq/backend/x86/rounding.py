"""x86 legalization of the integer-IR requantize ops (:mod:`tvm_qdq.qnn.integer_ops`).

``tvm_qdq.requantize_sum`` is ``rhe(v / 2^S)`` of the int64 sum ``v = Σ_i (x_i - zp_i) · K_i``
(``S`` = shift); its default int64 form (:mod:`tvm_qdq.qnn.legalize`) is about 15 int64
vector ops per 8 lanes. When every partial sum of ``v`` is an integer of magnitude below 2^53
(proved here by interval arithmetic: the ranges of the ``x_i`` come from their dtypes, from
the weights of the conv2d / matmul producing them, and from exact integer ops in between),
the same value is computed exactly in float64::

    out = int64(nearbyint(Σ_i float64(x_i) · (K_i · 2^-S) + B · 2^-S)),   B = -Σ_i zp_i · K_i

(a constant ``x_i`` goes into ``B``). Every float64 operation is exact: ``K_i · 2^-S`` and
``B · 2^-S`` are binary scalings of integers below 2^53; each product and each partial sum
is an integer below 2^53 times 2^-S, hence representable (a fused multiply-add rounds once,
to the same representable value); ``nearbyint`` rounds half to even like ``rhe``. So the
form changes no bit of the result. Sums whose bound cannot be proved keep the int64 form.

``tvm_qdq.requantize`` gets its saturation moved onto the integer input when the bounds can
be proved (:func:`saturate_before_requantize`), else its default float64 form.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import tvm
from tvm import relax

from ...qnn.dims import broadcast_shapes
from ...qnn.integer_ops import Requantize, RequantizeSum, op_name, register
from ...qnn.legalize import emit_requantize, emit_requantize_sum, finish_sum, shifted_input
from ...qnn.ops import zero_point_free_type
from ...relax_utils import SubstituteVars, constant_value, partial_shape, tensor_dtype, ty

#: Exact integer range of float64.
FLOAT64_EXACT = 2**53

_ITEMS = object  # numpy dtype of exact (Python int) interval bounds


def _dtype_range(dtype: str | None) -> tuple[int, int] | None:
    if dtype is None:
        return None
    if dtype.startswith("uint"):
        return 0, 2 ** int(dtype[4:]) - 1
    if dtype.startswith("int"):
        bits = int(dtype[3:])
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if dtype == "bool":
        return 0, 1
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
    """Value intervals of one dataflow block's vars."""

    def __init__(self) -> None:
        self.ranges: dict[relax.Var, Interval | None] = {}

    def scalar(self, expr: relax.Expr) -> int | None:
        value = constant_value(expr)
        if value is None or value.size != 1 or not np.issubdtype(value.dtype, np.integer):
            return None
        return int(value.reshape(()))

    # -- intervals -----------------------------------------------------------------------------

    def interval(self, expr: relax.Expr) -> Interval | None:
        value = constant_value(expr)
        if value is not None:
            if not np.issubdtype(value.dtype, np.integer):
                return None
            return _exact(value), _exact(value)
        if isinstance(expr, relax.Var) and expr in self.ranges:
            return self.ranges[expr]
        rng = _dtype_range(tensor_dtype(expr))
        return None if rng is None else (np.array(rng[0], _ITEMS), np.array(rng[1], _ITEMS))

    def record(self, var: relax.Var, value: relax.Expr) -> None:
        try:
            self.ranges[var] = self._interval_of_value(var, value)
        except (ValueError, TypeError, AttributeError, IndexError):
            self.ranges[var] = self.interval_default(var)

    def interval_default(self, var: relax.Var) -> Interval | None:
        rng = _dtype_range(tensor_dtype(var))
        return None if rng is None else (np.array(rng[0], _ITEMS), np.array(rng[1], _ITEMS))

    def _interval_of_value(self, var: relax.Var, value: relax.Expr) -> Interval | None:
        dtype = tensor_dtype(var)
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
        w = constant_value(call.args[1])
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
        return _fit((_obj(low).reshape(shape), _obj(high).reshape(shape)), tensor_dtype(var))

    def _matmul(self, var: relax.Var, call: relax.Call) -> Interval | None:
        b = constant_value(call.args[1])
        a = self._scalar_interval(call.args[0])
        ndim = len(ty(var).shape.values) if ty(var).shape is not None else 0
        if b is None or b.ndim != 2 or a is None or ndim < 2:
            return self.interval_default(var)
        bf = _exact_or_int64(b, max(-a[0], a[1], 0))
        low = np.minimum(bf * a[0], bf * a[1]).sum(axis=0)
        high = np.maximum(bf * a[0], bf * a[1]).sum(axis=0)
        shape = (1,) * (ndim - 1) + (b.shape[1],)
        return _fit((_obj(low).reshape(shape), _obj(high).reshape(shape)), tensor_dtype(var))

    # -- the bound of a sum --------------------------------------------------------------------

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


#: Most distinct (m, c, z) parameter sets a requantize may have (per channel, not per element).
MAX_CHANNELS = 8192
_NARROW = ("uint8", "int8", "uint16", "int16")


def _shifted_interval(analysis: _Analysis, rq: Requantize) -> Interval | None:
    """The interval of ``x - zp_in`` in the op's work type (the input of its float64 form)."""
    work = rq.work_dtype
    iv = analysis.interval(rq.value)
    if tensor_dtype(rq.value) != work:
        iv = _full(work) if iv is None else _fit(iv, work)
    if np.any(rq.zero_point_in != 0):
        zp = _exact(rq.zero_point_in)
        iv = _full(work) if iv is None else _fit((iv[0] - zp, iv[1] - zp), work)
    return iv


def _full(dtype: str) -> Interval:
    lo, hi = _dtype_range(dtype)
    return np.array(lo, _ITEMS), np.array(hi, _ITEMS)


def _saturation_rows(analysis: _Analysis, rq: Requantize):
    """``(pshape, rows)``: per parameter set the :func:`saturation_bounds` of ``rq``, or None
    when one cannot be proved (or the op is not a narrow requantize of an int32 value)."""
    rng = _dtype_range(rq.out_dtype)
    if rq.out_dtype not in _NARROW or rq.work_dtype != "int32" or \
            rq.qmin < rng[0] or rq.qmax > rng[1]:
        return None
    m = rq.multiplier
    c = np.zeros((), np.float64) if rq.offset is None else rq.offset
    z = rq.zero_point_out.astype(np.float64)
    shape = partial_shape(rq.value)  # symbolic dims: the parameters must not vary along them
    if shape is None:
        return None
    try:
        pshape = np.broadcast_shapes(m.shape, c.shape, z.shape)
        broadcast_shapes(shape, pshape)
    except ValueError:
        return None
    if len(pshape) > len(shape) or int(np.prod(pshape)) > MAX_CHANNELS:
        return None
    iv = _shifted_interval(analysis, rq)
    if iv is None:
        return None
    dlo = min(_obj(iv[0]).reshape(-1).tolist())
    dhi = max(_obj(iv[1]).reshape(-1).tolist())
    mb, cb, zb = (np.broadcast_to(a, pshape).reshape(-1) for a in (m, c, z))
    rows = []
    for mi, ci, zi in zip(mb.tolist(), cb.tolist(), zb.tolist(), strict=True):
        bounds = saturation_bounds(mi, ci, int(zi), rq.qmin, rq.qmax, dlo, dhi)
        if bounds is None:
            return None
        rows.append(bounds)
    return pshape, rows


def saturate_before_requantize(bb: relax.BlockBuilder, rq: Requantize, found) -> relax.Expr:
    """``rq`` with its saturation moved onto the integer input (see the section comment),
    its last op returned unemitted; ``found`` is its :func:`_saturation_rows`."""
    pshape, rows = found
    m = rq.multiplier
    c = np.zeros((), np.float64) if rq.offset is None else rq.offset
    z = rq.zero_point_out.astype(np.float64)
    d = shifted_input(bb, rq)
    dtype = rq.work_dtype
    lows, highs, ms, cs = zip(*rows, strict=True)
    lo = relax.const(np.array(lows, dtype).reshape(pshape), dtype)
    hi = relax.const(np.array(highs, dtype).reshape(pshape), dtype)
    mb, cb = (np.broadcast_to(a, pshape).reshape(-1) for a in (m, c))
    if not (np.array_equal(np.array(ms), mb) and np.array_equal(np.array(cs), cb)):
        m = np.array(ms, np.float64).reshape(pshape)  # saturated channels: m' = 0, c' = q - z
        c = np.array(cs, np.float64).reshape(pshape)
    x = relax.op.astype(relax.op.minimum(relax.op.maximum(d, lo), hi), "float64")
    if not np.all(m == 1.0):
        x = relax.op.multiply(x, relax.const(m, "float64"))
    if np.any(c != 0):
        x = relax.op.add(x, relax.const(c, "float64"))
    q = relax.op.astype(relax.op.round(x), "int32")
    if np.any(z != 0):
        q = relax.op.add(q, relax.const(z.astype(np.int32), "int32"))
    return relax.op.astype(q, rq.out_dtype)


def _float_rounding(terms, const: np.ndarray, s: int) -> relax.Expr:
    """``int64(nearbyint(Σ float64(src) · coef · 2^-s + const · 2^-s))`` (see module doc)."""
    scale = 2.0 ** -s
    total = None
    for src, coef in terms:
        c = np.asarray(coef).astype(np.float64) * scale
        term = relax.op.astype(src, "float64")
        if not (c.size == 1 and float(c.reshape(())) == 1.0):
            term = relax.op.multiply(term, relax.const(c, "float64"))
        total = term if total is None else relax.op.add(total, term)
    cf = np.asarray(const).astype(np.float64) * scale
    if total is None:
        total = relax.const(cf, "float64")
    elif np.any(cf != 0):
        total = relax.op.add(total, relax.const(cf, "float64"))
    return relax.op.astype(relax.op.round(total), "int64")


def float_sum(bb: relax.BlockBuilder, analysis: _Analysis, rs: RequantizeSum, get
              ) -> relax.Expr | None:
    """``rs`` in the float64 form of the module docstring, its last op returned unemitted;
    None (nothing emitted) when the bound 2^53 cannot be proved.

    ``Σ_i (x_i - zp_i) · K_i = Σ_i w_i · K_i + B`` with ``w_i = x_i`` widened to the type of
    ``x_i - zp_i`` (no wrap-around) and ``B = -Σ_i zp_i · K_i`` (a constant ``x_i`` adds
    ``x_i · K_i`` to ``B``); the bound is ``max Σ_i |w_i| · |K_i| + |B|``."""
    one = np.array(1, _ITEMS)
    const = None
    runtime = []  # (x_i, its widened type, coefficient, interval)
    for (x, zp), k in zip(rs.terms, rs.multipliers, strict=True):
        coef = _exact(k)
        values = constant_value(x)
        if values is not None:
            part = _exact(values) * coef
        else:
            work = zero_point_free_type(tensor_dtype(x), zp)
            iv = analysis.interval(x)
            runtime.append((x, work, one * coef, _full(work) if iv is None else _fit(iv, work)))
            part = (-_exact(zp) if np.any(zp != 0) else np.array(0, _ITEMS)) * coef
        const = part if const is None else const + part
    total = _abs(const)
    for _, _, coef, iv in runtime:
        total = _obj(total + _max(_abs(iv[0]), _abs(iv[1])) * _abs(coef))
    if int(max(total.reshape(-1).tolist())) >= FLOAT64_EXACT:
        return None
    terms = [(bb.emit(relax.op.astype(get(x), work)), coef) for x, work, coef, _ in runtime]
    rounded = bb.emit(_float_rounding(terms, const, rs.shift))
    return finish_sum(bb, rs, rounded)


def _legalize(bb: relax.BlockBuilder, analysis: _Analysis | None, value: relax.Expr, get,
              counter: list[int]) -> relax.Expr | None:
    """The x86 form of a requantize op ``value`` (an original binding), its last op returned
    unemitted; None when ``value`` is no such op. ``analysis`` is None outside dataflow
    blocks (default forms only)."""
    rq = Requantize.of(value)
    if rq is not None:
        new = replace(rq, value=get(rq.value))
        if analysis is not None:
            found = _saturation_rows(analysis, rq)
            if found is not None:
                counter[1] += 1
                return saturate_before_requantize(bb, new, found)
        return emit_requantize(bb, new)
    rs = RequantizeSum.of(value)
    if rs is None:
        return None
    if analysis is not None:
        found = float_sum(bb, analysis, rs, get)
        if found is not None:
            counter[0] += 1
            return found
    return emit_requantize_sum(bb, replace(rs, terms=tuple((get(x), zp) for x, zp in rs.terms)))


def _rewrite_function(bb: relax.BlockBuilder, name: str, func: relax.Function,
                      counter: list[int]) -> relax.Function:
    attrs = dict(func.attrs) if func.attrs is not None else {}
    remap: dict[relax.Var, relax.Expr] = {}

    def get(expr: relax.Expr) -> relax.Expr:
        if isinstance(expr, relax.Var):
            return remap.get(expr, expr)
        if not relax.analysis.free_vars(expr):
            return expr
        return SubstituteVars(remap).visit_expr(expr)

    with bb.function(name, list(func.params), attrs=attrs or None, pure=True):
        for block in func.body.blocks:
            analysis = _Analysis()
            ctx = bb.dataflow() if isinstance(block, relax.DataflowBlock) else None
            if ctx is not None:
                ctx.__enter__()
            for binding in block.bindings:
                var = binding.var
                if not isinstance(binding, relax.VarBinding):
                    remap[var] = bb.match_cast(get(binding.value), ty(binding),
                                               name_hint=str(var.name))
                    continue
                value = binding.value
                analysis.record(var, value)
                new_value = _legalize(bb, analysis if ctx is not None else None, value, get,
                                      counter)
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
    """Legalize every requantize op of ``mod``'s Relax functions for x86: sums in their exact
    float64 form when provable (see the module docstring), requantizes with their saturation
    on the integer input when provable (see :func:`saturate_before_requantize`), the rest in
    their default forms (:mod:`tvm_qdq.qnn.legalize`); returns (module, number of sums in
    float64 form). Every function keeps its GlobalVar."""
    if not _has_integer_ops(mod):
        return mod, 0
    register()
    bb = relax.BlockBuilder()
    counter = [0, 0]
    names = []
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            _rewrite_function(bb, gvar.name_hint, func, counter)
            names.append(gvar.name_hint)
    built = bb.get()
    out = tvm.IRModule({gvar: built[gvar.name_hint] if gvar.name_hint in names else func
                        for gvar, func in mod.functions.items()})
    if mod.attrs is not None:
        out = out.with_attrs(dict(mod.attrs))
    if counter[0] == 0 and counter[1] == 0:
        return out, 0
    return relax.transform.DeadCodeElimination()(out), counter[0]


def _has_integer_ops(mod: tvm.IRModule) -> bool:
    found = []

    def visit(expr) -> None:
        if op_name(expr) is not None:
            found.append(expr)

    for func in mod.functions.values():
        if isinstance(func, relax.Function) and not found:
            relax.analysis.post_order_visit(func, visit)
    return bool(found)
