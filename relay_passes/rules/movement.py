"""Data-movement ops run unchanged on integer values with unchanged parameters.

Reshape, permute_dims, squeeze, expand_dims, strided_slice, take, split, flatten, nearest
resize: each output element is some input element, so ``real = (q - zp)·s`` commutes with
the op. Per-axis parameters are followed through permute_dims, reshape (when the axis
survives) and take along another axis (nearest Resize, Gather); other ops need per-tensor
parameters. ``nn.pad`` with a value ``v`` on the input's
grid pads with its code ``round(v / s) + zp`` (exactly ``zp`` for the usual ``v = 0``);
otherwise it is an output rule, ``pad(requantize(x → out), Q_out(v))``, as ORT quantizes the
padded value with the output's parameters. ``concat`` is an output rule: each input is
requantized to the output's parameters, then concatenated.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.dims import dims_equal, product
from tvm_qdq.qnn.ops import const, shape_of

from ..qtensor import QTensor, RewriteContext, scalar_constant
from ..registry import forward_rule, output_rule

SAME_OP = (
    "relax.reshape",
    "relax.squeeze",
    "relax.expand_dims",
    "relax.strided_slice",
    "relax.take",
    "relax.flatten",
    "relax.permute_dims",
    "relax.broadcast_to",
)


def _reshaped_axis(in_shape, out_shape, axis: int) -> int | None:
    """Where ``axis`` lands after a reshape, if it survives as one whole axis: the output
    axis whose size is ``in_shape[axis]`` and whose leading sizes multiply to those before
    ``axis`` (symbolic sizes compared by proof, :func:`~tvm_qdq.qnn.dims.dims_equal`)."""
    if out_shape is None:
        return None
    before = product(in_shape[:axis])
    acc = 1
    for i, dim in enumerate(out_shape):
        if dims_equal(acc, before) and dims_equal(dim, in_shape[axis]):
            return i
        acc = product([acc, dim])
    return None


def _follow_axis(call, q: QTensor, out_shape) -> int | None | bool:
    """New axis of per-axis params after ``call``; False when it cannot be followed."""
    axis = q.params.axis
    if axis is None:
        return None
    name = call.op.name
    if name == "relax.permute_dims":
        axes = call.attrs.axes
        perm = [int(a) for a in axes] if axes is not None else list(range(q.ndim))[::-1]
        return perm.index(axis)
    if name == "relax.reshape":
        new = _reshaped_axis(q.shape, out_shape, axis)
        return False if new is None else new
    if name == "relax.take" and call.attrs.axis is not None:
        taken = int(call.attrs.axis) % q.ndim
        index_rank = len(call.args[1].ty.shape.values)
        if axis == taken:
            return False  # the parameters themselves would need gathering
        return axis if axis < taken else axis + index_rank - 1
    return False


@forward_rule(*SAME_OP)
def same_op(ctx: RewriteContext, call) -> QTensor | None:
    q = ctx.qtensor(call.args[0])
    if q is None:
        return None
    out = relax.Call(call.op, [q.value, *call.args[1:]], call.attrs, call.ty_args)
    value = ctx.emit(out)
    axis = _follow_axis(call, q, shape_of(value))
    if axis is False:
        return None
    params = q.params if axis == q.params.axis else q.params.with_axis(axis)
    folded = None
    if q.const is not None and call.op.name == "relax.permute_dims":
        axes = call.attrs.axes
        folded = np.transpose(q.const, [int(a) for a in axes] if axes is not None else None)
    elif q.const is not None and call.op.name == "relax.reshape":
        folded = q.const.reshape(shape_of(value))
    if folded is not None:
        value = const(folded, str(folded.dtype))
    return QTensor(value, params, folded)


@forward_rule("relax.split")
def split(ctx: RewriteContext, call) -> list[QTensor] | None:
    q = ctx.qtensor(call.args[0])
    if q is None or not q.params.per_tensor:
        return None
    tup = ctx.emit(relax.Call(call.op, [q.value], call.attrs, call.ty_args))
    count = len(tup.ty.fields)
    return [QTensor(ctx.emit(relax.TupleGetItem(tup, i)), q.params) for i in range(count)]


def _pad_fill(value: float, p: QParams) -> int:
    """``Q_p(v) = saturate(round_half_even(float32(v) / float32(s)) + zp)``, as ORT's
    QuantizeLinear computes it (float32 division)."""
    code = np.rint(np.float32(value) / np.float32(p.scale)) + int(p.zero_point)
    return int(np.clip(code, p.qtype.qmin, p.qtype.qmax))


def _on_grid(value: float, p: QParams) -> bool:
    """``v`` is exactly a code of ``p``: ``float32((Q_p(v) - zp) · s) == float32(v)``."""
    code = _pad_fill(value, p)
    back = np.float32(code - int(p.zero_point)) * np.float32(p.scale)
    return bool(back == np.float32(value))


def _integer_pad(ctx: RewriteContext, call, q: relax.Expr, fill: int) -> relax.Var:
    width = [int(w) for w in call.attrs.pad_width]
    return ctx.emit(relax.op.nn.pad(q, width, "constant", fill), "qnn_pad")


@forward_rule("relax.nn.pad")
def pad(ctx: RewriteContext, call) -> QTensor | None:
    """Pad on the input grid: exact when the pad value ``v`` is a code of the input, since
    then ``Q_out(DQ_in(fill)) = Q_out(v)``, which is what ORT computes for the border."""
    q = ctx.qtensor(call.args[0])
    if q is None or not q.params.per_tensor or str(call.attrs.pad_mode) != "constant":
        return None
    value = float(call.attrs.pad_value)
    if not _on_grid(value, q.params):
        return None  # the output rule pads after requantizing (see pad_to_output)
    return QTensor(_integer_pad(ctx, call, q.value, _pad_fill(value, q.params)), q.params)


@output_rule("relax.nn.pad")
def pad_to_output(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    """``Q_out(pad(x, v)) = pad(requantize(x → out), Q_out(v))``: ORT pads in float and
    quantizes the value with the output's parameters, so a value off the input's grid (out
    of its range, or between its codes) is quantized on the output grid, never the input's."""
    q = ctx.qtensor(call.args[0])
    if q is None or not out.per_tensor or str(call.attrs.pad_mode) != "constant":
        return None
    inner = ctx.requantize(q.value, q.params, out)
    value = _integer_pad(ctx, call, inner, _pad_fill(float(call.attrs.pad_value), out))
    ctx.record("relax.nn.pad", str(value.name), "integer",
               "input requantized to output, value quantized with the output parameters")
    return value


@forward_rule("relax.image.resize2d")
def resize_nearest(ctx: RewriteContext, call) -> QTensor | None:
    q = ctx.qtensor(call.args[0])
    if q is None or not q.params.per_tensor or str(call.attrs.method) != "nearest_neighbor":
        return None
    value = ctx.emit(relax.Call(call.op, [q.value, *call.args[1:]], call.attrs, call.ty_args),
                     "qnn_resize")
    return QTensor(value, q.params)


@output_rule("relax.concat")
def concat(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    items = ctx.qtuple(call.args[0])
    if items is None or not out.per_tensor:
        return None
    parts = [ctx.requantize(item.value, item.params, out) for item in items]
    value = ctx.emit(relax.op.concat(parts, axis=int(call.attrs.axis)), "qnn_concat")
    ctx.record("relax.concat", str(value.name), "integer", "inputs requantized to output")
    return value


def _branch(ctx: RewriteContext, expr, out: QParams) -> relax.Expr | None:
    """A ``where`` branch on the output grid: a requantized QTensor, or a float scalar
    constant ``v`` as its code ``Q_out(v)`` (what ORT's QuantizeLinear makes of it)."""
    t = ctx.qtensor(expr)
    if t is not None:
        return ctx.requantize(t.value, t.params, out)
    value = scalar_constant(expr)
    if value is None:
        return None
    return const(_pad_fill(value, out), out.qtype.container)


@output_rule("relax.where")
def where(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    """``Q(where(c, a, b)) = where(c, Q(a), Q(b))`` (selection commutes): tensor branches are
    requantized, a float scalar branch becomes ``Q_out(v)``."""
    if not out.per_tensor:
        return None
    parts = [_branch(ctx, arg, out) for arg in call.args[1:]]
    if any(p is None for p in parts) or all(ctx.qtensor(a) is None for a in call.args[1:]):
        return None
    value = ctx.emit(relax.op.where(call.args[0], *parts), "qnn_where")
    ctx.record("relax.where", str(value.name), "integer", "branches requantized to output")
    return value
