"""Channels-last layout propagation for the x86 kernels (step 2 of :mod:`.lower`, with
:mod:`.kernel_selection`).

The conv kernels read and write NHWC. :class:`LayoutRewriter` re-emits a Relax function
binding by binding and tracks, for each original var, its NCHW (original) and/or NHWC form:
an op whose operands are NHWC and that does not depend on the layout (elementwise,
quantize/dequantize, pad, pooling, spatial reductions, reductions over every axis whose
result does not depend on the element order, concat / split / 1-D ``take`` along an axis,
reshapes of ``1×1`` maps) is re-emitted
on the NHWC forms with its axes permuted, so a conv chain transposes once at its input and
once where a layout-dependent op needs NCHW. Every rewrite is exact (the same values, other
axis order).

A 3-D ``[N, C, W]`` tensor (conv1d's NCW) is the 2-D map ``[N, C, 1, W]``: its NHWC form is
the 4-D ``[N, 1, W, C]`` (the same bytes as NWC), so a conv1d chain stays channels-last
through its epilogues exactly like a conv2d chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tvm
from tvm import relax

from ...relax_utils import (
    SubstituteVars,
    constant_value,
    is_prim_value,
    partial_shape,
    static_shape,
    ty,
)

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)
#: Position of each NCHW axis in NHWC.
_AXIS_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}
#: Position of each NCW axis in the NHWC form of its ``[N, C, 1, W]`` view.
_AXIS_NWC = {0: 0, 1: 3, 2: 2}

_UNARY = {
    "relax.astype", "relax.round", "relax.clip", "relax.floor", "relax.ceil", "relax.negative",
    "relax.abs", "relax.nn.relu", "relax.exp", "relax.sqrt", "relax.rsqrt", "relax.sigmoid",
    "relax.tanh", "relax.erf", "relax.log", "relax.square", "relax.sign", "relax.logical_not",
    "relax.bitwise_not", "relax.trunc", "relax.nn.leakyrelu", "relax.nn.silu", "relax.nn.gelu",
    "relax.nn.gelu_tanh",
}
_NARY = {
    "relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.floor_divide",
    "relax.maximum", "relax.minimum", "relax.power", "relax.equal", "relax.not_equal",
    "relax.less", "relax.less_equal", "relax.greater", "relax.greater_equal",
    "relax.bitwise_and", "relax.bitwise_or", "relax.bitwise_xor", "relax.left_shift",
    "relax.right_shift", "relax.mod", "relax.floor_mod", "relax.where",
    "relax.logical_and", "relax.logical_or",
}
_QDQ = {"relax.quantize", "relax.dequantize"}
_POOL = {"relax.nn.max_pool2d", "relax.nn.avg_pool2d"}
#: Reductions by op name, with the function that re-emits them.
_REDUCE = {"relax.sum": relax.op.sum, "relax.mean": relax.op.mean, "relax.max": relax.op.max,
           "relax.min": relax.op.min, "relax.prod": relax.op.prod}


def as_2d(shape: Sequence[int]) -> list[int]:
    """``[N, C, W]`` (a 1-D map) as the 2-D map ``[N, C, 1, W]`` it equals."""
    n, c, w = shape
    return [n, c, 1, w]


def ints(values) -> list[int]:
    return [int(v) for v in values]


class LayoutRewriter:
    """Re-emits one Relax function into a block builder, tracking for each original var its
    NCHW (``plain``) and/or NHWC form; ops that follow the layout stay NHWC.

    Subclasses lower ops to kernels (:meth:`kernel_handler`: op name → a method returning
    ``(value, layout)``, or None to keep the op as it is).
    """

    def __init__(self, bb: relax.BlockBuilder):
        self.bb = bb
        self.plain: dict[relax.Var, relax.Expr] = {}
        self.nhwc: dict[relax.Var, relax.Expr] = {}
        #: Tuples of 4-D tensors (a split's result) whose fields are all NHWC.
        self.nhwc_tuples: dict[relax.Var, relax.Expr] = {}

    # -- layout bookkeeping --------------------------------------------------------------------

    def get_plain(self, expr: relax.Expr) -> relax.Expr:
        if isinstance(expr, relax.Var):
            if expr in self.plain:
                return self.plain[expr]
            if expr in self.nhwc_tuples:
                fields = relax.Tuple([
                    self.bb.emit(relax.op.permute_dims(
                        self.bb.emit(relax.TupleGetItem(self.nhwc_tuples[expr], i)),
                        NHWC_TO_NCHW))
                    for i in range(len(expr.struct_info.fields))])
                self.plain[expr] = self.bb.emit(fields)
                return self.plain[expr]
            if expr in self.nhwc:
                value = self.bb.emit(relax.op.permute_dims(self.nhwc[expr], NHWC_TO_NCHW))
                shape = partial_shape(expr)
                if shape is not None and len(shape) == 3:  # [N, C, 1, W] → [N, C, W]
                    value = self.bb.emit(relax.op.reshape(value, shape))
                self.plain[expr] = value
                return value
            return expr
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([self.get_plain(f) for f in expr.fields])
        return expr

    def get_nhwc(self, expr: relax.Var) -> relax.Expr:
        if expr in self.nhwc:
            return self.nhwc[expr]
        plain = self.get_plain(expr)
        shape = partial_shape(expr)
        if shape is not None and len(shape) == 3:  # [N, C, W] → [N, C, 1, W]
            plain = self.bb.emit(relax.op.reshape(plain, as_2d(shape)))
        value = self.bb.emit(relax.op.permute_dims(plain, NCHW_TO_NHWC))
        self.nhwc[expr] = value
        return value

    def is_nhwc(self, expr: relax.Expr) -> bool:
        return isinstance(expr, relax.Var) and expr in self.nhwc

    # -- bindings ------------------------------------------------------------------------------

    def visit(self, binding) -> None:
        var = binding.var
        value = binding.value if isinstance(binding, relax.VarBinding) else None
        if isinstance(value, relax.TupleGetItem) and value.tuple_value in self.nhwc_tuples:
            item = relax.TupleGetItem(self.nhwc_tuples[value.tuple_value], value.index)
            self.nhwc[var] = self.bb.emit(item, name_hint=str(var.name))
            return
        if isinstance(value, relax.Call):
            call = value
            op = call.op.name if isinstance(call.op, tvm.ir.Op) else None
            handler = self._handler(op)
            if handler is not None:
                result = handler(var, call)
                if result is not None:
                    value, layout = result
                    new_var = self.bb.emit(value, name_hint=str(var.name))
                    {"nhwc": self.nhwc, "nhwc_tuple": self.nhwc_tuples}.get(
                        layout, self.plain)[var] = new_var
                    return
        self.emit_plain(binding)

    def emit_plain(self, binding) -> None:
        var = binding.var
        if isinstance(binding, relax.VarBinding):
            value = self.substitute(binding.value)
            new_var = self.bb.emit(value, name_hint=str(var.name))
        else:  # MatchCast
            value = self.substitute(binding.value)
            new_var = self.bb.match_cast(value, ty(binding), name_hint=str(var.name))
        self.plain[var] = new_var

    def substitute(self, expr: relax.Expr) -> relax.Expr:
        """``expr`` with every free var replaced by its NCHW (original layout) form."""
        free = relax.analysis.free_vars(expr)
        mapping = {v: self.get_plain(v) for v in free}
        mapping = {k: v for k, v in mapping.items() if not v.same_as(k)}
        if not mapping:
            return expr
        return SubstituteVars(mapping).visit_expr(expr)

    def kernel_handler(self, op: str) -> Callable | None:
        """The handler that lowers ``op`` to a kernel (none here)."""
        del op
        return None

    def _handler(self, op: str | None) -> Callable | None:
        if op is None:
            return None
        if op == "relax.astype":
            return self._astype
        kernel = self.kernel_handler(op)
        if kernel is not None:
            return kernel
        if op in _UNARY or op in _NARY:
            return self._elementwise
        if op in _QDQ:
            return self._qdq
        if op == "relax.nn.pad":
            return self._pad
        if op in _POOL:
            return self._pool
        if op in _REDUCE:
            return self._reduce
        if op == "relax.reshape":
            return self._reshape
        if op == "relax.concat":
            return self._concat
        if op == "relax.split":
            return self._split
        if op == "relax.take":
            return self._take
        return None

    # -- layout-following ops ------------------------------------------------------------------

    def _astype(self, var, call):
        value = constant_value(call.args[0])
        dtype = str(call.attrs.dtype)
        if value is not None and np.issubdtype(value.dtype, np.integer) and (
                dtype.startswith(("int", "uint")) or dtype in ("float32", "float64")):
            # Integer constants: numpy's conversion is TVM's (wrap / round to nearest even);
            # folding here saves FoldConstant one LLVM build per constant.
            return relax.const(value.astype(dtype), dtype), "plain"
        return self._elementwise(var, call)

    def _elementwise(self, var, call):
        args = list(call.args)
        if not any(self.is_nhwc(a) for a in args):
            return None
        out_shape = partial_shape(var)
        if out_shape is None or len(out_shape) not in (3, 4):
            return None
        rank = len(out_shape)
        new_args = []
        for a in args:
            if isinstance(a, relax.Var):
                shape = partial_shape(a)
                if shape is None or (len(shape) != rank and len(shape) != 0):
                    return None
                new_args.append(self.get_nhwc(a) if len(shape) == rank else self.get_plain(a))
            elif isinstance(a, tvm.ir.Constant):
                value = constant_value(a)
                if value is None or value.ndim == 0:
                    new_args.append(a)
                elif value.ndim > rank:
                    return None
                else:
                    full = value.reshape((1,) * (rank - value.ndim) + value.shape)
                    if rank == 3:
                        full = full.reshape(as_2d(full.shape))
                    new_args.append(relax.const(np.ascontiguousarray(
                        full.transpose(NCHW_TO_NHWC)), str(value.dtype)))
            elif isinstance(a, relax.ShapeExpr) or is_prim_value(a):
                new_args.append(a)
            else:
                return None
        return relax.Call(call.op, new_args, call.attrs, call.ty_args), "nhwc"

    def _qdq(self, var, call):
        data = call.args[0]
        rank = len(partial_shape(var) or [])
        if not self.is_nhwc(data) or rank not in (3, 4):
            return None
        axis = int(call.attrs.axis) % rank
        axis = _AXIS_NHWC[axis] if rank == 4 else _AXIS_NWC[axis]
        for p in call.args[1:]:
            shape = static_shape(p)
            if shape is None or len(shape) > 1 or isinstance(p, relax.Var) and p in self.nhwc:
                return None
        fn = relax.op.quantize if call.op.name == "relax.quantize" else relax.op.dequantize
        args = [self.get_nhwc(data), *(self.get_plain(p) for p in call.args[1:])]
        return fn(*args, axis=axis, out_dtype=str(call.attrs.out_dtype)), "nhwc"

    def _pad(self, var, call):
        data = call.args[0]
        if not self.is_nhwc(data) or str(call.attrs.pad_mode) != "constant":
            return None
        width = ints(call.attrs.pad_width)
        if len(width) == 6:  # [N, C, W] as [N, C, 1, W]: nothing added along the unit height
            width = width[:4] + [0, 0] + width[4:]
        if len(width) != 8:
            return None
        pairs = [width[2 * i: 2 * i + 2] for i in range(4)]
        new = [v for i in NCHW_TO_NHWC for v in pairs[i]]
        value = call.args[1] if len(call.args) > 1 else float(call.attrs.pad_value)
        return relax.op.nn.pad(self.get_nhwc(data), new, "constant", value), "nhwc"

    def _pool(self, var, call):
        data = call.args[0]
        attrs = call.attrs
        if not self.is_nhwc(data) or str(attrs.layout) != "NCHW":
            return None
        if attrs.out_layout is not None and str(attrs.out_layout) not in ("NCHW", ""):
            return None
        fn = relax.op.nn.max_pool2d if call.op.name == "relax.nn.max_pool2d" \
            else relax.op.nn.avg_pool2d
        return fn(self.get_nhwc(data), ints(attrs.pool_size), ints(attrs.strides),
                  ints(attrs.padding), ints(attrs.dilation), bool(attrs.ceil_mode),
                  bool(attrs.count_include_pad), layout="NHWC", out_layout="NHWC"), "nhwc"

    def _reduce(self, var, call):
        data = call.args[0]
        attrs = call.attrs
        if not self.is_nhwc(data) or len(partial_shape(data) or []) != 4:
            return None
        axes = [0, 1, 2, 3] if attrs.axis is None else sorted({int(a) % 4 for a in attrs.axis})
        if len(axes) == 4:
            return self._reduce_all(call)
        keep = bool(attrs.keepdims)
        if not keep:
            remaining = [a for a in range(4) if a not in axes]
            in_nhwc = sorted(remaining, key=lambda a: _AXIS_NHWC[a])
            if remaining != in_nhwc:
                return None
        value = _REDUCE[call.op.name](self.get_nhwc(data), [_AXIS_NHWC[a] for a in axes], keep)
        return value, ("nhwc" if keep else "plain")

    def _reduce_all(self, call):
        """A reduction over every axis reads the NHWC form when its result does not depend
        on the order of the elements: max and min, and sum / prod of integers (float sums
        would round in another order)."""
        data = call.args[0]
        exact = call.op.name in ("relax.max", "relax.min") or (
            call.op.name in ("relax.sum", "relax.prod") and "int" in ty(data).dtype)
        if not exact:
            return None
        return _REDUCE[call.op.name](self.get_nhwc(data), None, bool(call.attrs.keepdims)), \
            "plain"

    def _reshape(self, var, call):
        data = call.args[0]
        shape = static_shape(data)
        if not self.is_nhwc(data) or shape is None or len(shape) != 4 or shape[2] != 1 or \
                shape[3] != 1:
            return None
        # [N, C, 1, 1] and [N, 1, 1, C] hold the same bytes in the same order.
        return relax.op.reshape(self.get_nhwc(data), call.args[1]), "plain"

    def _concat(self, var, call):
        """Concatenation along an axis, on the NHWC forms (the axis moved)."""
        fields = call.args[0]
        if not isinstance(fields, relax.Tuple) or len(partial_shape(var) or []) != 4:
            return None
        if not any(self.is_nhwc(f) for f in fields.fields) or not all(
                isinstance(f, relax.Var) and len(partial_shape(f) or []) == 4
                for f in fields.fields):
            return None
        axis = _AXIS_NHWC[int(call.attrs.axis) % 4]
        return relax.op.concat([self.get_nhwc(f) for f in fields.fields], axis), "nhwc"

    def _split(self, var, call):
        """A split along an axis, on the NHWC form: a tuple of NHWC fields."""
        data = call.args[0]
        if not self.is_nhwc(data) or len(partial_shape(data) or []) != 4:
            return None
        sections = call.attrs.indices_or_sections
        sections = int(sections) if isinstance(sections, int | tvm.tirx.IntImm) \
            else ints(sections)
        axis = _AXIS_NHWC[int(call.attrs.axis) % 4]
        return relax.op.split(self.get_nhwc(data), sections, axis), "nhwc_tuple"

    def _take(self, var, call):
        """A gather of whole slices along one axis by a 1-D index (nearest-neighbour resize),
        on the NHWC form."""
        data, indices = call.args[0], call.args[1]
        index_shape = partial_shape(indices)
        if not self.is_nhwc(data) or len(partial_shape(data) or []) != 4 or \
                call.attrs.axis is None or index_shape is None or len(index_shape) != 1:
            return None
        axis = _AXIS_NHWC[int(call.attrs.axis) % 4]
        return relax.op.take(self.get_nhwc(data), self.get_plain(indices), axis,
                             str(call.attrs.mode)), "nhwc"

    # -- kernels -------------------------------------------------------------------------------

def rewrite_module(mod: tvm.IRModule, make_rewriter: Callable[[relax.BlockBuilder],
                                                               LayoutRewriter]) -> tvm.IRModule:
    """Every Relax function of ``mod`` re-emitted by a fresh ``make_rewriter(bb)``; the other
    functions and the module attributes kept."""
    bb = relax.BlockBuilder()
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            _rewrite_function(bb, gvar.name_hint, func, make_rewriter(bb))
    out = bb.get()
    for gvar, func in mod.functions.items():
        if not isinstance(func, relax.Function) and gvar.name_hint not in [
                g.name_hint for g in out.functions]:
            out[gvar] = func  # the same GlobalVar: the rewritten calls still refer to it
    if mod.attrs is not None:
        out = out.with_attrs(dict(mod.attrs))
    return out


def _rewrite_function(bb: relax.BlockBuilder, name: str, func: relax.Function,
                      rw: LayoutRewriter) -> relax.Function:
    attrs = dict(func.attrs) if func.attrs is not None else {}
    params = list(func.params)
    body = func.body
    with bb.function(name, params, attrs=attrs or None, pure=True):
        for block in body.blocks:
            if isinstance(block, relax.DataflowBlock):
                with bb.dataflow():
                    outputs = []
                    for binding in block.bindings:
                        rw.visit(binding)
                        if not isinstance(binding.var, relax.DataflowVar):
                            outputs.append(binding.var)
                    for var in outputs:
                        value = rw.get_plain(var)
                        rw.plain[var] = bb.emit_output(value, name_hint=str(var.name))
            else:
                for binding in block.bindings:
                    rw.emit_plain(binding)
        result = rw.substitute(body.body)
        bb.emit_func_output(result)
    return bb.get()[name]
