"""``requantize="fixed"``: the integer Add's fixed-point sum becomes int32 HVX lanes.

The Add rule (``tvm_qdq.qnn.ops.add_integer``) emits ``y = saturate(round(Σ_i x_i · r_i) +
zp)`` as one ``tvm_qdq.requantize_sum`` (:mod:`tvm_qdq.qnn.integer_ops`) with
``K_i = r_i · 2^S`` (``S`` up to 40)::

    y = out_dtype(clip(rhe(Σ_i (x_i - zp_i) · K_i / 2^S) + zp, qmin, qmax))

whose default form is int64 code (:mod:`tvm_qdq.qnn.legalize`); HVX has no 64-bit lanes, so
that kernel stays scalar. :func:`fixed_point_add` legalizes the op into a ``tq_hx_add``
kernel computing :func:`tvm_qdq.qnn.fixed_point.add_fixed` (int32 ``M_i`` with 16-bit
halves, one rounding shift, round half up: within 1 LSB of the exact sum) on the
zero-point-free ``x_i - zp_i``, whose bound comes from the operand's value range
(:func:`_range_of`).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, tirx

from ...qnn.fixed_point import FixedPointSum, plan_fixed_point_sum
from ...qnn.integer_ops import RequantizeSum, register
from ...qnn.legalize import emit_requantize_sum, shifted_terms
from ...relax_utils import constant_value, static_shape, tensor_dtype
from .requant import ELEMWISE, _is_op, high_word_narrow_te, pick


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
    """Value range of an integer operand: that of the tensor a cast (or a cast minus a
    constant) was taken of, else its type's (a float source gives no bound: 64 bits)."""
    value = lookup(value)
    if _is_op(value, "relax.subtract"):
        inner, zp = _range_of(value.args[0], lookup), constant_value(value.args[1])
        if inner is None or zp is None:
            return None
        return inner[0] - int(np.max(zp)), inner[1] - int(np.min(zp))
    if _is_op(value, "relax.astype"):
        return _range_of(value.args[0], lookup)
    dtype = tvm.DataType(tensor_dtype(value))
    if dtype.type_code == tvm.DataTypeCode.UINT:
        return 0, 2**dtype.bits - 1
    return -(2 ** (dtype.bits - 1)), 2 ** (dtype.bits - 1) - 1


def _shifted_range(value, zero_point: np.ndarray, lookup) -> tuple[int, int] | None:
    """Value range of ``value - zero_point`` (:func:`_range_of` of ``value``)."""
    found = _range_of(value, lookup)
    if found is None:
        return None
    zp = np.asarray(zero_point, np.int64)
    return found[0] - int(np.max(zp)), found[1] - int(np.min(zp))


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

    def visit_call_(self, call: relax.Call):  # noqa: D102 - visitor hook
        call = super().visit_call_(call)
        rs = RequantizeSum.of(call)
        if rs is None:
            return call
        ranges = [_shifted_range(x, zp, self._value) for x, zp in rs.terms]
        if any(r is None for r in ranges):
            self.report.append({"op": "add", "fixed": False, "why": "operand range unknown"})
            return emit_requantize_sum(self.builder_, rs)
        bits = [_signed_bits(*r) for r in ranges]
        ratios = [k.astype(np.float64) / 2.0**rs.shift for k in rs.multipliers]
        fp = plan_fixed_point_sum(ratios, bits)
        if fp is None:
            self.report.append({"op": "add", "fixed": False, "bits": bits})
            return emit_requantize_sum(self.builder_, rs)
        xs = shifted_terms(self.builder_, rs)
        shape = list(static_shape(call))
        func = te.create_prim_func(add_te(
            [static_shape(x) for x in xs], [tensor_dtype(x) for x in xs],
            [r.shape for r in ratios], rs.zero_point_out.shape, shape, fp, rs.qmin, rs.qmax,
            rs.out_dtype))
        func = func.with_attrs({"op_pattern": ELEMWISE, "global_symbol": "tq_hx_add",
                                "tirx.noalias": True})
        gvar = self.builder_.add_func(func, "tq_hx_add")
        self.builder_.update_func(gvar, func.with_attr("global_symbol", gvar.name_hint))
        args = [*xs, *(relax.const(m) for m in fp.multipliers),
                relax.const(np.asarray(rs.zero_point_out).astype(np.int32))]
        self.report.append({"op": "add", "fixed": True, "shift": fp.shift, "bits": bits,
                            "error_bound": fp.error_bound})
        return relax.call_tir(gvar, args, relax.TensorType(shape, rs.out_dtype))


def fixed_point_add(mod: tvm.IRModule) -> tuple[tvm.IRModule, list[dict]]:
    """Legalize the sum requantize ops of every Relax function (see the module docstring)."""
    register()
    rewriter = _AddRewriter(mod)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    new = rewriter.builder_.get()
    return relax.transform.DeadCodeElimination()(new), rewriter.report
