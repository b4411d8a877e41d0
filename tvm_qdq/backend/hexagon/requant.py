"""``requantize="fixed"``: the requantize ops become fixed-point integer kernels.

The integer pass emits every requantize as one ``tvm_qdq.requantize``
(:mod:`tvm_qdq.qnn.integer_ops`)::

    y = out_dtype(clip(rhe(float64(t) · m [+ c]) + zp, qmin, qmax)),   t = x - zp_in

(``t`` the integer accumulator, ``m = s_in / s_out`` a constant, per tensor or per channel;
``c`` a bias off the accumulator grid, see ``relay_passes/rules/elementwise.py``).
:func:`fixed_point_requantize` legalizes each one into a ``call_tir`` to a
``tq_hx_requantize`` PrimFunc computing the multiplier + shift form of
:mod:`tvm_qdq.qnn.fixed_point` (round half up, at most 1 LSB from the float formula). The
PrimFunc is marked broadcast-fusable, so ``FuseOps`` fuses it into the conv / matmul kernel
it follows; its narrow form is int32 lane arithmetic (HVX ``vmpye``/``vmpyo`` for the high
word), where the float chain was scalar IEEE double code (qemu-hexagon has no HVX float).

An op whose multiplier has no fixed-point form within the error bound (see
:func:`~tvm_qdq.qnn.fixed_point.plan_fixed_point`) gets its default float64 form
(:mod:`tvm_qdq.qnn.legalize`) and is reported (``fixed: false``) where it is legalized. Other
float64 → integer casts of the module are not requantizes and are not reported: e.g. PyTorch
dynamic quantization's run-time zero point ``int32(clip(round(qmin - lo / scale)))``
(:mod:`tvm_qdq.frontend.torch.dynamic`).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, tirx

from ...qnn.fixed_point import FixedPoint, plan_fixed_point
from ...qnn.integer_ops import Requantize, register
from ...qnn.legalize import emit_requantize, shifted_input
from ...relax_utils import static_shape

#: ``op_pattern`` kElemWise: ``FuseOps`` fuses it into the output-elementwise-fusable kernel
#: it follows (its constant multiplier operands broadcast).
ELEMWISE = 0


def _is_op(expr, name: str) -> bool:
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and \
        expr.op.name == name


def _bits(dtype: str) -> int:
    return tvm.DataType(dtype).bits


def pick(tensor: te.Tensor, idx) -> tirx.PrimExpr:
    """``tensor`` at output index ``idx`` with numpy broadcasting (right-aligned, size-1 dims
    read at 0)."""
    dims = tensor.shape
    tail = idx[len(idx) - len(dims):] if dims else []
    return tensor[tuple(i if int(d) != 1 else tirx.IntImm("int64", 0)
                        for i, d in zip(tail, dims, strict=True))]


def high_word_narrow_te(x: tirx.PrimExpr, mult: tirx.PrimExpr) -> tirx.PrimExpr:
    """``a·c + ((a·d) >> 16) + ((b·c) >> 16)`` in int32 (``fixed_point.high_word_narrow``)."""
    sixteen, low16 = tirx.const(16, "int32"), tirx.const(0xFFFF, "int32")
    a, b = x >> sixteen, x & low16
    c, d = mult >> sixteen, mult & low16
    return a * c + ((a * d) >> sixteen) + ((b * c) >> sixteen)


def requantize_te(shape: tuple[int, ...], acc: str, mult_shape: tuple[int, ...],
                  zp_shape: tuple[int, ...], fp: FixedPoint, qmin: int, qmax: int,
                  out: str) -> list[te.Tensor]:
    """TE of ``y = clip(((h(clip(t, ±C) << L, M) + 2^(s-1)) >> s) + zp, qmin, qmax)`` (the
    forms of ``h`` are in :mod:`tvm_qdq.qnn.fixed_point`)."""
    t = te.placeholder([tirx.IntImm("int64", d) for d in shape], acc, name="t")
    mult = te.placeholder([tirx.IntImm("int64", d) for d in mult_shape], "int32", name="M")
    zp = te.placeholder([tirx.IntImm("int64", d) for d in zp_shape], "int32", name="zp")
    off = None if fp.offset is None else te.placeholder(
        [tirx.IntImm("int64", d) for d in fp.offset.shape], "int32", name="c")
    work = "int64" if fp.wide else "int32"

    def body(*idx):
        wide_in = "int64" if fp.wide or acc == "int64" else "int32"
        x = t[idx].astype(wide_in)
        if fp.clamp is not None:
            x = tirx.max(tirx.min(x, tirx.const(fp.clamp, wide_in)),
                         tirx.const(-fp.clamp, wide_in))
        x = x.astype(work)
        if fp.pre_shift:
            x = x << tirx.const(fp.pre_shift, work)
        if fp.wide:
            m64 = pick(mult, idx).astype("int64")
            high = (x >> tirx.const(32, "int64")) * m64
            low = (x & tirx.const(0xFFFFFFFF, "int64")) * m64
            h = high + (low >> tirx.const(32, "int64"))
        else:
            h = high_word_narrow_te(x, pick(mult, idx))
        if off is not None:
            h = h + pick(off, idx).astype(work)
        y = (h + tirx.const(1 << (fp.shift - 1), work)) >> tirx.const(fp.shift, work)
        if fp.wide:
            y = tirx.max(tirx.min(y, tirx.const(2**31 - 1, "int64")),
                         tirx.const(-(2**31), "int64")).astype("int32")
        y = y + pick(zp, idx)
        y = tirx.max(tirx.min(y, tirx.const(qmax, "int32")), tirx.const(qmin, "int32"))
        return y.astype(out)

    y = te.compute(t.shape, body, name="tq_hx_requantize")
    return [t, mult, zp, y] if off is None else [t, mult, zp, off, y]


def _prim_func(tensors: list[te.Tensor]) -> tirx.PrimFunc:
    func = te.create_prim_func(tensors)
    return func.with_attrs({"op_pattern": ELEMWISE, "global_symbol": "tq_hx_requantize",
                            "tirx.noalias": True})


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.report: list[dict] = []
        self.cache: dict = {}
        self.function = ""  # name of the Relax function being rewritten (for the report)

    def visit_call_(self, call: relax.Call):  # noqa: D102 - visitor hook
        call = super().visit_call_(call)
        rq = Requantize.of(call)
        if rq is None:
            return call
        zp, acc, out = rq.zero_point_out, rq.work_dtype, rq.out_dtype
        fp = plan_fixed_point(rq.multiplier, max(32, _bits(acc)), zp, rq.qmin, rq.qmax,
                              rq.offset)
        if fp is None:
            self.report.append({"fixed": False, "function": self.function,
                                "shape": list(static_shape(call)),
                                "why": "no fixed-point form within the error bound"})
            return emit_requantize(self.builder_, rq)
        t = shifted_input(self.builder_, rq)
        shape = static_shape(t)
        m = rq.multiplier
        key = (shape, acc, m.shape, zp.shape, fp.shift, fp.pre_shift, fp.clamp, fp.wide,
               None if fp.offset is None else fp.offset.shape, rq.qmin, rq.qmax, out)
        if key not in self.cache:
            tensors = requantize_te(shape, acc, m.shape, zp.shape, fp, rq.qmin, rq.qmax, out)
            func = _prim_func(tensors)
            gvar = self.builder_.add_func(func, "tq_hx_requantize")
            self.builder_.update_func(gvar, func.with_attr("global_symbol", gvar.name_hint))
            self.cache[key] = gvar
        args = [t, relax.const(fp.multiplier.astype(np.int32)),
                relax.const(zp.astype(np.int32))]
        if fp.offset is not None:
            args.append(relax.const(fp.offset))
        self.report.append({"fixed": True, "wide": fp.wide, "shift": fp.shift,
                            "pre_shift": fp.pre_shift, "error_bound": fp.error_bound})
        return relax.call_tir(self.cache[key], args, relax.TensorType(list(shape), out))


def fixed_point_requantize(mod: tvm.IRModule) -> tuple[tvm.IRModule, list[dict]]:
    """Legalize the requantize ops of every Relax function (see the module docstring);
    returns the module and one report entry per op (``fixed``: the fixed-point kernel, or
    the float64 form)."""
    register()
    rewriter = _Rewriter(mod)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            rewriter.function = str(gvar.name_hint)
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    new = relax.transform.DeadCodeElimination()(rewriter.builder_.get())
    return new, rewriter.report
