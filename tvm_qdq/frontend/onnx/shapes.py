"""Static input shapes: tvm-qdq compiles every graph input with a fixed shape.

A model may declare a dimension as symbolic (``dim_param``, e.g. ``"batch"``), leave it
unnamed, or give an input no shape at all. ``shapes={"x": [1, 3, 224, 224]}`` (to
``from_onnx`` / ``compile``) fixes them; without it such an input is refused up front with an
error naming the input and the dimension, instead of a crash deep inside a converter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
from tvm import relax, tirx

from ...errors import TvmQdqError


class InputShapeError(TvmQdqError, ValueError):
    """A graph input has no static shape (or ``shapes=`` contradicts the model), or a node's
    input shape is not known at import time."""


def known_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    """Static shape of a Relax tensor expression; None when its shape is unknown or any
    dimension is symbolic (a value computed at run time)."""
    values = getattr(getattr(getattr(expr, "ty", None), "shape", None), "values", None)
    if values is None or not all(isinstance(v, tirx.IntImm) for v in values):
        return None
    return tuple(int(v) for v in values)


def _shape_text(expr: relax.Expr) -> str:
    ty = getattr(expr, "ty", None)
    values = getattr(getattr(ty, "shape", None), "values", None)
    if values is not None:
        return "[" + ", ".join(str(v) for v in values) + "]"
    ndim = getattr(ty, "ndim", -1)
    return "unknown" if ndim is None or ndim < 0 else f"unknown (rank {ndim})"


def dynamic_shape_error(where: str, index: int, expr: relax.Expr,
                        cause: str = "") -> InputShapeError:
    """The error for a node input whose shape is not static after shape folding: every graph
    input size is fixed by then, so the shape depends on values computed at run time.
    ``cause``: what failed because of it (a converter's own error), if anything."""
    return InputShapeError(
        f"{where}: the shape of input {index} is not known at import time "
        f"({_shape_text(expr)}): it depends on values computed at run time (tvm-qdq folds "
        "shapes computed from the graph input sizes, so pass every input size with "
        "shapes={...} to from_onnx/compile; data-dependent shapes are not supported)"
        + (f"; the converter failed with {cause}" if cause else ""))


def static_shape(expr: relax.Expr, where: str, index: int = 0) -> tuple[int, ...]:
    """``known_shape(expr)``, or :func:`dynamic_shape_error` naming ``where`` and the input."""
    shape = known_shape(expr)
    if shape is None:
        raise dynamic_shape_error(where, index, expr)
    return shape


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    """Declared dims of an input: int (static), str (symbolic name), None (unnamed); or None
    when the input has no shape at all."""
    tensor = vi.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or None)
    return out


def _describe(dims: list[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _override(vi: onnx.ValueInfoProto, dims: list[int | str | None] | None,
              given: Sequence[int]) -> None:
    given = [int(g) for g in given]
    if any(g <= 0 for g in given):
        raise InputShapeError(f"shapes['{vi.name}'] = {given}: dimensions must be positive")
    if dims is not None and len(dims) != len(given):
        raise InputShapeError(f"shapes['{vi.name}'] = {given} has rank {len(given)}, the "
                              f"model declares input '{vi.name}' as {_describe(dims)}")
    for i, (d, g) in enumerate(zip(dims or [], given, strict=False)):
        if isinstance(d, int) and d != g:
            raise InputShapeError(f"shapes['{vi.name}'] = {given}: dimension {i} is fixed to "
                                  f"{d} by the model ({_describe(dims)})")
    shape = vi.type.tensor_type.shape
    shape.Clear()
    for g in given:
        shape.dim.add().dim_value = g


def _refuse(name: str, dims: list[int | str | None] | None) -> InputShapeError:
    if dims is None:
        return InputShapeError(
            f"input '{name}' has no shape: tvm-qdq compiles static shapes; pass "
            f"shapes={{'{name}': [...]}} to from_onnx/compile")
    i = next(k for k, d in enumerate(dims) if not isinstance(d, int))
    what = f"'{dims[i]}'" if dims[i] is not None else "unnamed"
    example = [d if isinstance(d, int) else 1 for d in dims]
    return InputShapeError(
        f"input '{name}' has a dynamic dimension {i} ({what}) in {_describe(dims)}: tvm-qdq "
        f"compiles static shapes; pass shapes={{'{name}': {example}}} (your sizes) to "
        "from_onnx/compile")


def with_static_inputs(model: onnx.ModelProto,
                       shapes: Mapping[str, Sequence[int]] | None = None) -> onnx.ModelProto:
    """``model`` with every graph input's shape static: overridden from ``shapes`` (a copy of
    the model then; the caller's is untouched), else checked. Raises :class:`InputShapeError`
    naming the input and the dimension."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - {vi.name for vi in inputs})
    if unknown:
        raise InputShapeError(f"shapes= names {unknown}, which are not graph inputs "
                              f"(inputs: {[vi.name for vi in inputs]})")
    if shapes:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
        inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    for vi in inputs:
        dims = _dims(vi)
        if vi.name in shapes:
            _override(vi, dims, shapes[vi.name])
        elif dims is None or not all(isinstance(d, int) for d in dims):
            raise _refuse(vi.name, dims)
    return model
