"""Graph input dimensions: static, or symbolic by name, with optional upper bounds.

A model may declare a dimension as symbolic (``dim_param``, e.g. ``"batch"``) or leave it
unnamed. Such a dimension stays symbolic: one ``tirx.Var(name, "int64")`` per name, shared by
every input declaring it; an unnamed dimension ``i`` of input ``x`` is named ``x_dim{i}``.
``shapes={"x": [1, None, 384]}`` (to ``from_onnx`` / ``compile``) fixes some dimensions (an
int) and keeps others symbolic (``None`` keeps the model's name, a str names it);
``bounds={"seq": 512}`` gives upper bounds by dimension name. An input with no shape at all
(unknown rank) is refused up front with an error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from tvm import relax, tirx

from ...errors import TvmQdqError
from ...relax_utils import Dim, partial_shape


class InputShapeError(TvmQdqError, ValueError):
    """A graph input has no shape (or ``shapes=``/``bounds=`` contradict the model), or a
    node's input shape is not known at import time where its converter needs it."""


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
    """The error for a node input whose shape is not known at import time (not even as an
    expression of the symbolic input dimensions): it depends on data, or on a computation of
    the sizes the importer does not follow. ``cause``: what failed because of it (a
    converter's own error), if anything."""
    return InputShapeError(
        f"{where}: the shape of input {index} is not known at import time "
        f"({_shape_text(expr)}): it is computed at run time (tvm-qdq follows shapes computed "
        "from the graph input sizes, static or symbolic, through Shape/Gather/Concat/"
        "integer arithmetic/Range/Slice; data-dependent shapes are not supported, and "
        "fixing the input sizes with shapes={...} folds other size computations)"
        + (f"; the converter failed with {cause}" if cause else ""))


def symbolic_dims_error(where: str, index: int, expr: relax.Expr, axes: Sequence[int],
                        why: str = "", cause: str = "") -> InputShapeError:
    """The error for a converter that needs dimensions ``axes`` of its input ``index``
    static while they are symbolic (computed from symbolic graph input dimensions)."""
    dims = partial_shape(expr) or ()
    names = sorted({str(v) for a in axes if a < len(dims) for v in _free_vars(dims[a])})
    need = ", ".join(str(a) for a in axes)
    return InputShapeError(
        f"{where} needs dimension(s) {need} of input {index} static"
        + (f" ({why})" if why else "")
        + f", but its shape is {_shape_text(expr)}, symbolic in {names}: this op cannot be "
        "compiled for a range of sizes; fix those dimensions with shapes={...} (or --shape) "
        "if they are constant in your use"
        + (f"; the converter failed with {cause}" if cause else ""))


def _free_vars(dim: Dim) -> list[tirx.Var]:
    if isinstance(dim, int):
        return []
    return list(tirx.analysis.undefined_vars(dim, []))


def static_dims(expr: relax.Expr, where: str, index: int = 0,
                axes: Sequence[int] | None = None, why: str = "") -> tuple[Dim, ...]:
    """``partial_shape(expr)`` with the dimensions ``axes`` (every one when None; negative
    counts from the back) checked static: ints there, symbolic ``PrimExpr`` elsewhere.
    Raises :func:`dynamic_shape_error` when the shape is unknown, and
    :func:`symbolic_dims_error` naming ``where``, the input and ``why`` when a needed
    dimension is symbolic."""
    dims = partial_shape(expr)
    if dims is None:
        raise dynamic_shape_error(where, index, expr)
    wanted = range(len(dims)) if axes is None else [a % max(len(dims), 1) for a in axes]
    bad = [a for a in wanted if not isinstance(dims[a], int)]
    if bad:
        raise symbolic_dims_error(where, index, expr, bad, why)
    return dims


def static_shape(expr: relax.Expr, where: str, index: int = 0,
                 why: str = "") -> tuple[int, ...]:
    """The static shape of ``expr`` (every dimension an int), or a named error: see
    :func:`static_dims`."""
    return tuple(int(d) for d in static_dims(expr, where, index, None, why))


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


def _describe(dims: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


# TVM's importer parses a ``dim_param`` as an expression over these operators.
_DIM_OPERATORS = re.compile(r"(\+|-|\*|//|/)")


def dim_names(dim_param: str) -> list[str]:
    """The symbolic names a ``dim_param`` uses (``"seq"`` → ``["seq"]``; TVM's importer also
    reads expressions such as ``"seq+1"``)."""
    tokens = _DIM_OPERATORS.split(dim_param.replace(" ", ""))
    return [t for t in tokens[::2] if t and not t.isdigit()]


def _unnamed_dim(input_name: str, axis: int) -> str:
    """The name of an unnamed dimension: ``{input}_dim{axis}``, with the characters TVM's
    importer would read as arithmetic replaced by ``_``."""
    return re.sub(r"[^0-9A-Za-z_]", "_", f"{input_name}_dim{axis}")


def _resolve(vi: onnx.ValueInfoProto, dims: list[int | str | None] | None,
             given: Sequence[int | str | None] | None) -> list[int | str]:
    """The dims of input ``vi``: the model's, with ``given`` (its ``shapes=`` entry, if any)
    applied; an unnamed symbolic dim gets :func:`_unnamed_dim`."""
    if given is None:
        if dims is None:
            raise InputShapeError(
                f"input '{vi.name}' has no shape (not even its rank): pass its dimensions "
                f"with shapes={{'{vi.name}': [...]}} (ints fix a dimension, None or a name "
                "keeps it symbolic) to from_onnx/compile")
        given = [None] * len(dims)
    given = list(given)
    if dims is not None and len(dims) != len(given):
        raise InputShapeError(f"shapes['{vi.name}'] = {given} has rank {len(given)}, the "
                              f"model declares input '{vi.name}' as {_describe(dims)}")
    out: list[int | str] = []
    for i, g in enumerate(given):
        declared = dims[i] if dims is not None else None
        if g is not None and not isinstance(g, (int, str)) or isinstance(g, bool):
            raise InputShapeError(f"shapes['{vi.name}'] = {given}: dimension {i} must be an "
                                  "int (fixed), a str (a symbolic name) or None")
        if isinstance(g, int) and g <= 0:
            raise InputShapeError(f"shapes['{vi.name}'] = {given}: dimensions must be positive")
        if isinstance(declared, int) and g is not None and g != declared:
            raise InputShapeError(f"shapes['{vi.name}'] = {given}: dimension {i} is fixed to "
                                  f"{declared} by the model ({_describe(dims)})")
        if isinstance(g, str) and (not g or _DIM_OPERATORS.search(g) or g.isdigit()):
            raise InputShapeError(f"shapes['{vi.name}'] = {given}: dimension {i} name '{g}' "
                                  "must be a plain identifier")
        if g is not None:
            out.append(int(g) if isinstance(g, int) else g)
        elif declared is None:
            out.append(_unnamed_dim(vi.name, i))
        else:
            out.append(declared)
    return out


def _write_dims(vi: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    shape = vi.type.tensor_type.shape
    shape.Clear()
    for d in dims:
        if isinstance(d, int):
            shape.dim.add().dim_value = d
        else:
            shape.dim.add().dim_param = d


def _check_bounds(bounds: Mapping[str, int], names: list[str]) -> dict[str, int]:
    unknown = sorted(set(bounds) - set(names))
    if unknown:
        raise InputShapeError(
            f"bounds= names {unknown}, which are not symbolic input dimensions "
            f"(symbolic dimensions: {names or 'none'}; a dimension fixed by shapes= needs no "
            "bound)")
    out: dict[str, int] = {}
    for name, value in bounds.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputShapeError(f"bounds['{name}'] = {value!r}: a bound must be an int >= 1")
        out[name] = int(value)
    return out


@dataclass(frozen=True)
class InputDims:
    """What :func:`with_input_dims` settled: the model to import, the symbolic dimension
    names in order of first appearance, and the upper bounds given for some of them."""

    model: onnx.ModelProto
    names: list[str] = field(default_factory=list)
    bounds: dict[str, int] = field(default_factory=dict)


def with_input_dims(model: onnx.ModelProto,
                    shapes: Mapping[str, Sequence[int | str | None]] | None = None,
                    bounds: Mapping[str, int] | None = None) -> InputDims:
    """Settle every graph input's dimensions: ``shapes`` fixes (int) or names (str) some,
    ``None`` entries and absent inputs keep the model's dims; an unnamed symbolic dim gets a
    name (:func:`_unnamed_dim`). The model is copied when anything changes (the caller's is
    untouched) and returned as it is when every input is already static and nothing is
    given. ``bounds`` (name → upper bound) must name symbolic dimensions present. Raises
    :class:`InputShapeError` naming the input, the dimension or the unknown names."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - {vi.name for vi in inputs})
    if unknown:
        raise InputShapeError(f"shapes= names {unknown}, which are not graph inputs "
                              f"(inputs: {[vi.name for vi in inputs]})")
    declared = [_dims(vi) for vi in inputs]
    resolved = [_resolve(vi, dims, shapes.get(vi.name)) for vi, dims in zip(inputs, declared,
                                                                              strict=True)]
    if any(dims != list(r) for dims, r in zip(declared, resolved, strict=True)):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
        by_name = {vi.name: vi for vi in model.graph.input}
        for vi, dims, r in zip(inputs, declared, resolved, strict=True):
            if dims != r:
                _write_dims(by_name[vi.name], r)
    names: list[str] = []
    for dims in resolved:
        for d in dims:
            for name in ([] if isinstance(d, int) else dim_names(d)):
                if name not in names:
                    names.append(name)
    return InputDims(model, names, _check_bounds(dict(bounds or {}), names))


def with_static_inputs(model: onnx.ModelProto,
                       shapes: Mapping[str, Sequence[int | str | None]] | None = None
                       ) -> onnx.ModelProto:
    """``model`` with ``shapes`` applied (see :func:`with_input_dims`)."""
    return with_input_dims(model, shapes).model
