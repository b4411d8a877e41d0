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
    its float64 form (see the module docstring); returns (module, number rewritten). The
    replaced int64 bindings are left dead (run ``DeadCodeElimination`` afterwards)."""
    bb = relax.BlockBuilder()
    counter = [0]
    names = []
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            _rewrite_function(bb, gvar.name_hint, func, counter)
            names.append(gvar.name_hint)
    if counter[0] == 0:
        return mod, 0
    out = bb.get()
    for gvar, func in mod.functions.items():
        if gvar.name_hint not in names:
            out[gvar.name_hint] = func
    if mod.attrs is not None:
        out = out.with_attrs(dict(mod.attrs))
    return relax.transform.DeadCodeElimination()(out), counter[0]
