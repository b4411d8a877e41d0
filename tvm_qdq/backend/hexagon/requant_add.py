"""``requantize="fixed"``: the integer Add's int64 fixed-point sum becomes int32 HVX lanes.

The Add rule (``tvm_qdq.qnn.ops.add_integer``) emits ``y = saturate(round(Σ_i x_i · r_i) +
zp)`` as int64 code with ``K_i = r_i · 2^S`` (``S`` up to 40)::

    T = Σ_i astype(x_i, int64) · K_i;  F = T >> S;  R = F + astype(round_up(T - F << S), int64)
    [R = R + zp];  y = astype(clip(R, qmin, qmax), container)

HVX has no 64-bit lanes, so the kernel stayed scalar. :func:`fixed_point_add` replaces the
chain by a ``tq_hx_add`` kernel computing :func:`tvm_qdq.qnn.fixed_point.add_fixed` (int32
``M_i`` with 16-bit halves, one rounding shift, round half up: within 1 LSB of the exact sum;
the bound on ``|x_i|`` comes from the integer type ``x_i`` was shifted from).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, tirx

from ...qnn.fixed_point import FixedPointSum, plan_fixed_point_sum
from .requant import (
    ELEMWISE,
    INT_TYPES,
    _const,
    _dtype,
    _is_op,
    _prim,
    _shape,
    high_word_narrow_te,
    pick,
)


def add_te(shapes: list[tuple[int, ...]], dtypes: list[str], mult_shapes: list[tuple],
           zp_shape: tuple, out_shape: tuple[int, ...], fp: FixedPointSum, qmin: int,
           qmax: int, out: str) -> list[te.Tensor]:
    """TE of ``clip(((Σ_i h(x_i << L_i, M_i) + 2^(s-1)) >> s) + zp, qmin, qmax)``."""
    def dims(shape):
        return [tirx.IntImm("int64", d) for d in shape]

    xs = [te.placeholder(dims(s), d, name=f"x{i}") for i, (s, d) in
          enumerate(zip(shapes, dtypes, strict=True))]
    ms = [te.placeholder(dims(s), "int32", name=f"M{i}") for i, s in enumerate(mult_shapes)]
    zp = te.placeholder(dims(zp_shape), "int32", name="zp")

    def body(*idx):
        total = None
        for x, m, pre in zip(xs, ms, fp.pre_shifts, strict=True):
            value = pick(x, idx).astype("int32")
            if pre:
                value = value << tirx.const(pre, "int32")
            term = high_word_narrow_te(value, pick(m, idx))
            total = term if total is None else total + term
        y = (total + tirx.const(1 << (fp.shift - 1), "int32")) >> tirx.const(fp.shift, "int32")
        y = y + pick(zp, idx)
        y = tirx.max(tirx.min(y, tirx.const(qmax, "int32")), tirx.const(qmin, "int32"))
        return y.astype(out)

    y = te.compute(dims(out_shape), body, name="tq_hx_add")
    return [*xs, *ms, zp, y]


def _range_of(value, lookup) -> tuple[int, int] | None:
    """Value range of an integer expression: a cast of a narrow tensor, minus a constant."""
    value = lookup(value)
    if _is_op(value, "relax.subtract"):
        inner, zp = _range_of(value.args[0], lookup), _const(value.args[1])
        if inner is None or zp is None:
            return None
        return inner[0] - int(np.max(zp)), inner[1] - int(np.min(zp))
    if _is_op(value, "relax.astype"):
        return _range_of(value.args[0], lookup)
    dtype = tvm.DataType(_dtype(value))
    if dtype.type_code == tvm.DataTypeCode.UINT:
        return 0, 2**dtype.bits - 1
    return -(2 ** (dtype.bits - 1)), 2 ** (dtype.bits - 1) - 1


def _signed_bits(lo: int, hi: int) -> int:
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi < 2 ** (bits - 1)):
        bits += 1
    return bits


@relax.expr_functor.mutator
class _AddRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.report: list[dict] = []

    def _value(self, expr):
        if isinstance(expr, relax.Var):
            bound = self.lookup_binding(expr)
            if bound is not None:
                return bound
        return expr

    def _op(self, expr, name: str):
        value = self._value(expr)
        return value if _is_op(value, name) else None

    def _terms(self, total) -> list | None:
        """``[(x_i, K_i)]`` of ``Σ_i astype(x_i, int64) · K_i``."""
        add = self._op(total, "relax.add")
        if add is not None:
            left, right = self._terms(add.args[0]), self._terms(add.args[1])
            return None if left is None or right is None else left + right
        mul = self._op(total, "relax.multiply")
        cast = self._op(mul.args[0], "relax.astype") if mul is not None else None
        k = _const(mul.args[1]) if mul is not None else None
        if cast is None or k is None or _dtype(cast.args[0]) not in INT_TYPES:
            return None
        return [(cast.args[0], k)]

    def _match(self, call: relax.Call):
        clip = self._op(call.args[0], "relax.clip")
        if clip is None or _dtype(clip.args[0]) != "int64":
            return None
        qmin, qmax = _prim(clip.args[1]), _prim(clip.args[2])
        rounded, zp = clip.args[0], np.zeros((), np.int64)
        add_zp = self._op(rounded, "relax.add")
        if add_zp is not None and _const(add_zp.args[1]) is not None:
            zp, rounded = _const(add_zp.args[1]), add_zp.args[0]
        final = self._op(rounded, "relax.add")
        floor = self._op(final.args[0], "relax.right_shift") if final is not None else None
        shift = _const(floor.args[1]) if floor is not None else None
        if shift is None or qmin is None or qmax is None:
            return None
        terms = self._terms(floor.args[0])
        if not terms:
            return None
        return terms, int(shift), zp, int(qmin), int(qmax)

    def visit_call_(self, call: relax.Call):  # noqa: D102 - visitor hook
        call = super().visit_call_(call)
        if not _is_op(call, "relax.astype") or _dtype(call.args[0]) != "int64":
            return call
        out = str(call.attrs.dtype)
        found = self._match(call) if out in INT_TYPES else None
        if found is None:
            return call
        terms, shift, zp, qmin, qmax = found
        ranges = [_range_of(x, self._value) for x, _ in terms]
        bits = [_signed_bits(*r) for r in ranges]
        ratios = [k.astype(np.float64) / 2.0**shift for _, k in terms]
        fp = plan_fixed_point_sum(ratios, bits)
        if fp is None:
            self.report.append({"op": "add", "fixed": False, "bits": bits})
            return call
        xs = [x for x, _ in terms]
        func = te.create_prim_func(add_te(
            [_shape(x) for x in xs], [_dtype(x) for x in xs], [r.shape for r in ratios],
            zp.shape, _shape(call), fp, qmin, qmax, out))
        func = func.with_attrs({"op_pattern": ELEMWISE, "global_symbol": "tq_hx_add",
                                "tirx.noalias": True})
        gvar = self.builder_.add_func(func, "tq_hx_add")
        self.builder_.update_func(gvar, func.with_attr("global_symbol", gvar.name_hint))
        args = [*xs, *(relax.const(m) for m in fp.multipliers),
                relax.const(np.asarray(zp).astype(np.int32))]
        self.report.append({"op": "add", "fixed": True, "shift": fp.shift, "bits": bits,
                            "error_bound": fp.error_bound})
        return relax.call_tir(gvar, args, relax.TensorType(list(_shape(call)), out))


def fixed_point_add(mod: tvm.IRModule) -> tuple[tvm.IRModule, list[dict]]:
    """Rewrite the int64 Add sums of every Relax function (see the module docstring)."""
    rewriter = _AddRewriter(mod)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    new = rewriter.builder_.get()
    return relax.transform.DeadCodeElimination()(new), rewriter.report
