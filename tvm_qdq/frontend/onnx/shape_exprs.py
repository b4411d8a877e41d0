"""Shape arithmetic on symbolic dimensions, kept as Relax shape values during conversion.

With a symbolic input dimension, ``Shape(x)`` is ``R.shape([batch, seq, 384])`` and a
dimension taken from it is a prim value ``seq``. PyTorch exports compute reshape targets,
slice ends and ranges from such values (``Gather → Add → Div → Unsqueeze → Concat``); TVM's
converters of the arithmetic ops refuse shape values. :func:`fold_symbolic` evaluates the
integer arithmetic here instead, on ``tirx`` expressions: a 0-d result is a prim value, a 1-D
result an ``R.shape``, so the reshape or slice reading it gets a symbolic shape that later
converters and passes can follow (``(batch, seq, 12, 32)`` rather than an unknown shape).
TVM's importer lets only some ops read an ``R.shape``; for other consumers a 1-D value is
handed on as ``R.shape_to_tensor(R.shape([...]))``, which the arithmetic here still reads.

Semantics follow ONNX on int64 values: ``Add``/``Sub``/``Mul``/``Neg`` exact, ``Div``
truncates toward zero (``truncdiv``), ``Max``/``Min`` elementwise, numpy broadcasting between
a scalar and a
1-D value; ``Unsqueeze``/``Squeeze`` switch between 0-d and one element; ``Concat`` joins
1-D values; ``Cast`` to int64 (or int32: dimensions are far below 2³¹) and ``Identity`` keep
the value.

:func:`as_tensors` is the fallback for other ops: shape values become int64 tensors, as
TVM's converters expect.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
import tvm
from tvm import relax, tirx

from .context import constant_value

#: A shape value: its elements and whether it is 0-d.
_Value = tuple[list[tvm.ir.Expr], bool]

_BINARY: dict[str, Callable[[tvm.ir.Expr, tvm.ir.Expr], tvm.ir.Expr]] = {
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Div": tirx.truncdiv,
    "Max": tirx.max,
    "Min": tirx.min,
}

#: Ops TVM's importer lets read an ``R.shape`` (it refuses one as input of any other op
#: before a converter runs).
TAKES_SHAPE = frozenset({
    "Reshape", "Resize", "ConstantOfShape", "Gather", "Slice", "Shape", "Expand", "Concat",
    "Equal", "Where", "Cast", "CastLike", "Squeeze",
})
#: TVM converters that read shape values themselves (``R.shape`` / prim value inputs).
READS_SHAPE_VALUES = TAKES_SHAPE | {"Unsqueeze", "Split", "Tile", "Range", "Trilu",
                                    "Identity"}


def _is_shape_value(expr) -> bool:
    return isinstance(expr, relax.ShapeExpr) or tensor_form(expr) is not None or (
        tvm.ir.is_prim_expr(expr) and not isinstance(expr, tirx.IntImm))


def tensor_form(expr) -> relax.ShapeExpr | None:
    """The ``R.shape`` of a 1-D shape value held as ``R.shape_to_tensor(R.shape([...]))``
    (:func:`as_value`), None for anything else."""
    if (isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.shape_to_tensor"
            and isinstance(expr.args[0], relax.ShapeExpr)):
        return expr.args[0]
    return None


def as_value(shape: relax.ShapeExpr, consumers) -> relax.Expr:
    """A 1-D shape value for ``consumers``: the ``R.shape`` itself when every consumer takes
    one (:data:`TAKES_SHAPE`), else the int64 tensor ``R.shape_to_tensor(R.shape)`` (an
    unbound call, which :func:`fold_symbolic` still reads as a shape value)."""
    return shape if shape_allowed(consumers) else relax.op.shape_to_tensor(shape)


def _value(expr) -> _Value | None:
    """The elements of a shape value or a small integer constant (int64 expressions)."""
    expr = tensor_form(expr) or expr
    if isinstance(expr, relax.ShapeExpr):
        return list(expr.values), False
    if tvm.ir.is_prim_expr(expr):
        if isinstance(expr, tirx.IntImm):
            return [tirx.IntImm("int64", int(expr.value))], True
        return [expr if str(expr.ty) == "int64" else tirx.Cast("int64", expr)], True
    value = constant_value(expr)
    if value is None or value.dtype.kind not in "iu" or value.ndim > 1 or value.size > 64:
        return None
    return [tirx.IntImm("int64", int(v)) for v in value.reshape(-1)], value.ndim == 0


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _evaluate(node: onnx.NodeProto, values: list[_Value]) -> _Value | None:
    op = node.op_type
    if op in _BINARY and len(values) == 2:
        (a, a0), (b, b0) = values
        if len(a) != len(b) and 1 not in (len(a), len(b)):
            return None
        n = max(len(a), len(b))
        a, b = (a * n if len(a) == 1 else a), (b * n if len(b) == 1 else b)
        return [_BINARY[op](x, y) for x, y in zip(a, b, strict=True)], a0 and b0
    if op == "Neg" and len(values) == 1:
        return [-e for e in values[0][0]], values[0][1]
    if op in ("Identity", "Cast") and len(values) == 1:
        to = _attr(node, "to", onnx.TensorProto.INT64)
        return values[0] if op == "Identity" or to in (onnx.TensorProto.INT64,
                                                         onnx.TensorProto.INT32) else None
    if op == "Unsqueeze" and values[0][1]:
        return values[0][0], False
    if op == "Squeeze" and not values[0][1] and len(values[0][0]) == 1:
        return values[0][0], True
    if op == "Concat" and all(not zero_d for _, zero_d in values):
        return [e for elements, _ in values for e in elements], False
    return None


def shape_allowed(consumers) -> bool:
    """Whether every consumer op accepts an ``R.shape`` input (:data:`TAKES_SHAPE`)."""
    return all(op in TAKES_SHAPE for op in consumers)


def fold_symbolic(node: onnx.NodeProto, inputs: list, consumers) -> relax.Expr | None:
    """The value of an ai.onnx integer-arithmetic node on shape values (at least one input
    a symbolic ``R.shape`` or prim value, the others small integer constants), as a prim
    value (0-d) or a 1-D shape value for ``consumers`` (:func:`as_value`); None when the
    node is not such arithmetic."""
    present = [x for x in inputs if x is not None]
    if not present or not any(_is_shape_value(x) for x in present):
        return None
    if node.op_type in ("Unsqueeze", "Squeeze") and len(present) > 1:
        present = present[:1]  # the axes: a 0-d value has one place to go, one element one
    values = [_value(x) for x in present]
    if any(v is None for v in values):
        return None
    result = _evaluate(node, values)  # type: ignore[arg-type]
    if result is None:
        return None
    analyzer = tvm.sym.Analyzer()
    elements = [analyzer.simplify(e) for e in result[0]]
    return elements[0] if result[1] else as_value(relax.ShapeExpr(elements), consumers)


def as_tensors(bb: relax.BlockBuilder, inputs: list) -> list:
    """``inputs`` with each shape value made an int64 tensor (1-D for ``R.shape``, 0-d for a
    prim value), for converters that read tensors only. The list is changed in place (TVM's
    converters index past its end)."""
    for i, x in enumerate(inputs):
        if tensor_form(x) is not None:
            continue  # already an int64 tensor
        if isinstance(x, relax.ShapeExpr):
            inputs[i] = bb.normalize(relax.op.shape_to_tensor(x))
        elif _is_shape_value(x):
            inputs[i] = bb.normalize(relax.op.reshape(
                relax.op.shape_to_tensor(relax.ShapeExpr([_value(x)[0][0]])), ()))
    return inputs


__all__ = ["READS_SHAPE_VALUES", "as_tensors", "as_value", "fold_symbolic", "tensor_form"]
