"""Symbolic dimensions of a compiled model: their bounds and the run-time check of them.

A symbolic dimension is a ``tirx.Var`` in the tensor types of ``main``'s parameters; every
input that declares the same name has the same size there in one run. Its valid sizes are
``lower ≤ size ≤ upper`` with ``upper`` the user's bound (``main``'s ``tir_var_upper_bound``,
which TVM's memory planning also reads) and ``implicit`` the bound the integer pass assumed
to keep an int32 accumulation exact (``tvm_qdq.implicit_bounds``); ``lower`` is
``tir_var_lower_bound``. :func:`bind_dims` checks a run's input shapes against them before
the model runs, so a size the compiled code cannot take is a named error, not TVM's
``storage allocation failure`` or a wrong answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import tvm

from ..errors import DimensionBoundError, DimensionMismatchError

#: Function attributes of ``main`` that hold bounds by dim name.
UPPER_ATTR = "tir_var_upper_bound"
LOWER_ATTR = "tir_var_lower_bound"
IMPLICIT_ATTR = "tvm_qdq.implicit_bounds"


class ShapedSpec(Protocol):
    """What :func:`bind_dims` reads of an input spec (:class:`.base.TensorSpec`)."""

    name: str
    shape: list


def _int_map(value) -> dict[str, int]:
    return {str(k): int(v) for k, v in value.items()} if value is not None else {}


@dataclass(frozen=True)
class DimBounds:
    """Bounds of a model's symbolic dimensions by name (missing name: unbounded)."""

    upper: dict[str, int] = field(default_factory=dict)
    lower: dict[str, int] = field(default_factory=dict)
    implicit: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {"upper": dict(self.upper), "lower": dict(self.lower),
                "implicit": dict(self.implicit)}

    @classmethod
    def from_dict(cls, data: Mapping | None) -> DimBounds:
        data = data or {}
        return cls(_int_map(data.get("upper")), _int_map(data.get("lower")),
                   _int_map(data.get("implicit")))


def function_bounds(func: tvm.relax.Function) -> DimBounds:
    """The bounds recorded in the attributes of ``func`` (``main``)."""
    attrs = func.attrs
    if attrs is None:
        return DimBounds()

    def read(key: str) -> dict[str, int]:
        return _int_map(attrs[key]) if key in attrs else {}

    return DimBounds(read(UPPER_ATTR), read(LOWER_ATTR), read(IMPLICIT_ATTR))


def is_dim_name(dim) -> bool:
    """Whether a spec dimension is a symbolic dimension's name (not a size, not an
    expression of names such as an output's ``seq * 2``)."""
    return isinstance(dim, str) and dim.isidentifier()


def has_symbolic_dims(specs: Sequence[ShapedSpec]) -> bool:
    """Whether any spec has a dimension that is not a fixed size."""
    return any(not isinstance(d, int) for s in specs for d in s.shape)


def symbolic_dims(specs: Sequence[ShapedSpec]) -> dict[str, list[str]]:
    """Input name → the names of its symbolic dimensions (inputs with none left out)."""
    found = {s.name: [str(d) for d in s.shape if not isinstance(d, int)] for s in specs}
    return {name: dims for name, dims in found.items() if dims}


def _check_bound(name: str, axis: int, dim: str, size: int, bounds: DimBounds) -> None:
    lower = bounds.lower.get(dim)
    if lower is not None and size < lower:
        raise DimensionBoundError(name, axis, dim, size, lower, "is below the lower bound",
                                  "the model was compiled for sizes from that bound up")
    upper = bounds.upper.get(dim)
    if upper is not None and size > upper:
        raise DimensionBoundError(
            name, axis, dim, size, upper, f"exceeds bounds['{dim}'] =",
            f"recompile with a larger bound, e.g. bounds={{'{dim}': {size}}}")
    implicit = bounds.implicit.get(dim)
    if implicit is not None and size > implicit:
        raise DimensionBoundError(
            name, axis, dim, size, implicit,
            "exceeds the implicit bound the compile assumed (the length of a static table "
            "sliced by this dimension, such as position embeddings, or the largest size for "
            "which the integer kernels' int32 accumulation over it is exact) =",
            f"if the model supports that size, recompile with an explicit bound, e.g. "
            f"bounds={{'{dim}': {size}}}, so the integer pass chooses its accumulators for it")


def bind_dims(specs: Sequence[ShapedSpec], shapes: Sequence[Sequence[int]],
              bounds: DimBounds) -> dict[str, int]:
    """Each symbolic dimension's size in this run (name → size), read from the first input
    that declares it. ``shapes`` are the inputs' shapes in ``specs``' order, of the right
    rank. Raises :class:`DimensionMismatchError` when one name has two sizes and
    :class:`DimensionBoundError` when a size is outside its bounds."""
    sizes: dict[str, int] = {}
    seen: dict[str, tuple[str, int, int]] = {}
    for spec, shape in zip(specs, shapes, strict=True):
        for axis, (dim, size) in enumerate(zip(spec.shape, shape, strict=True)):
            if not is_dim_name(dim):
                continue
            size = int(size)
            if dim in sizes:
                if sizes[dim] != size:
                    raise DimensionMismatchError(dim, seen[dim], (spec.name, axis, size))
                continue
            _check_bound(spec.name, axis, dim, size, bounds)
            sizes[dim] = size
            seen[dim] = (spec.name, axis, size)
    return sizes
