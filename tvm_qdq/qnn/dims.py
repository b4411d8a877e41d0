"""Partial shapes for the integer pass and the QNN builders.

A dimension is an ``int`` when it is known at compile time and a symbolic ``PrimExpr`` (the
``seq`` variable of ``main``'s parameters, ``batch * seq``, ...) otherwise
(:func:`tvm_qdq.relax_utils.partial_shape`). Symbolic dimensions are compared by proof
(``tvm.sym.Analyzer.can_prove_equal``): two dims are equal when they are the same int or
provably the same expression; a symbolic dim and an int are never provably equal.

Rules that need a dimension as an integer (a window count, a channel count) get it through
:func:`static_dims`, which raises :class:`NeedsStaticDim` for a symbolic one.

The upper bounds of a function's symbolic dims (:class:`DimBounds`) are the user's, the
function attribute ``tir_var_upper_bound`` ({name: int}), and the ones the pass assumes to
keep an int32 accumulator exact, recorded as ``tvm_qdq.implicit_bounds`` ({name: int}) and
checked at run time like the user's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import tvm
import tvm.sym
from tvm import relax

from ..errors import TvmQdqError
from ..relax_utils import Dim, is_static

#: Function attribute holding the user's upper bounds of symbolic dims (TVM's own name).
UPPER_BOUND_ATTR = "tir_var_upper_bound"
#: Function attribute holding the bounds the integer pass assumed ({name: int}).
IMPLICIT_BOUND_ATTR = "tvm_qdq.implicit_bounds"


class NeedsStaticDim(TvmQdqError, NotImplementedError):
    """A rule or builder needs a dimension as an integer (or a known shape) and it is
    symbolic (or unknown)."""

    def __init__(self, what: str, axis: int | None = None, dim: Dim | None = None) -> None:
        self.what, self.axis, self.dim = what, axis, dim
        found = "its shape is unknown (only its rank is)" if axis is None else \
            f"axis {axis} is the symbolic size '{dim}'"
        super().__init__(f"{what} needs a static dim: {found}. Fix that input dimension with "
                         "shapes= to compile this op to integers.")


def is_static_shape(shape) -> bool:
    return shape is not None and all(is_static(d) for d in shape)


def static_dims(shape, axes, what: str) -> list[int]:
    """``shape[axis]`` for each of ``axes`` as ints; :class:`NeedsStaticDim` for a symbolic
    one (``what`` names the op that needs it)."""
    dims = []
    for axis in axes:
        dim = shape[axis]
        if not is_static(dim):
            raise NeedsStaticDim(what, axis % len(shape), dim)
        dims.append(int(dim))
    return dims


def dims_equal(a: Dim, b: Dim) -> bool:
    """``a == b`` for ints, provably equal for symbolic dims (an int and a symbolic dim are
    never provably equal)."""
    if is_static(a) and is_static(b):
        return int(a) == int(b)
    if is_static(a) or is_static(b):
        return False
    return bool(tvm.sym.Analyzer().can_prove_equal(a, b))


def shapes_equal(a, b) -> bool:
    """Same rank and :func:`dims_equal` per dimension (None, an unknown shape, equals
    nothing)."""
    if a is None or b is None:
        return False
    return len(a) == len(b) and all(dims_equal(x, y) for x, y in zip(a, b, strict=True))


def broadcast_shapes(*shapes) -> tuple[Dim, ...]:
    """numpy's broadcasting of partial shapes: a 1 takes the other dim, equal dims stay;
    static shapes give exactly ``np.broadcast_shapes``. ``ValueError`` when two dims are
    neither 1 nor provably equal."""
    if all(is_static_shape(s) for s in shapes):
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(rank):
        dim: Dim = 1
        for s in shapes:
            d = s[i - rank + len(s)] if i - rank + len(s) >= 0 else 1
            if is_static(d) and int(d) == 1:
                continue
            if is_static(dim) and int(dim) == 1:
                dim = d
            elif not dims_equal(dim, d):
                raise ValueError(f"shapes {shapes} do not broadcast (axis {i}: {dim} vs {d})")
        out.append(int(dim) if is_static(dim) else dim)
    return tuple(out)


def product(dims) -> Dim:
    """``Π dims``: an int when every dim is static, else a simplified PrimExpr."""
    if all(is_static(d) for d in dims):
        return math.prod(int(d) for d in dims)
    total = 1
    for d in dims:
        total = total * d
    return tvm.sym.Analyzer().simplify(total)


def _int_map(attrs, key: str) -> dict[str, int]:
    if attrs is None or key not in attrs:
        return {}
    return {str(k): int(v) for k, v in attrs[key].items()}


@dataclass
class DimBounds:
    """Upper bounds of one function's symbolic dims: ``upper`` given by the user,
    ``implicit`` assumed by the pass (see the module docstring); ``symbols`` are the
    symbolic vars of the function's parameters by name."""

    symbols: dict[str, tvm.tirx.Var] = field(default_factory=dict)
    upper: dict[str, int] = field(default_factory=dict)
    implicit: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def of(func: relax.Function) -> DimBounds:
        symbols = {str(v.name): v for v in relax.analysis.defined_symbolic_vars(func)}
        return DimBounds(symbols, _int_map(func.attrs, UPPER_BOUND_ATTR),
                         _int_map(func.attrs, IMPLICIT_BOUND_ATTR))

    def user_max(self, expr: Dim) -> int | None:
        """Largest value of ``expr`` when every symbolic dim in it has a user bound (dims are
        at least 1), else None."""
        if is_static(expr):
            return int(expr)
        analyzer = tvm.sym.Analyzer()
        for name, var in self.symbols.items():
            upper = self.upper.get(name)
            if upper is not None:
                analyzer.bind(var, tvm.ir.Range(1, upper + 1))
        bound = analyzer.const_int_bound(expr)
        if bound.max_value >= tvm.sym.ConstIntBound.POS_INF:
            return None
        return int(bound.max_value)

    def assume(self, var: tvm.tirx.Var, bound: int) -> int:
        """Record ``var ≤ bound`` as an implicit bound (the smallest one assumed wins);
        returns the bound in force."""
        name = str(var.name)
        self.implicit[name] = min(bound, self.implicit.get(name, bound))
        return self.implicit[name]

    def attach(self, func: relax.Function) -> relax.Function:
        """``func`` with its implicit bounds as the attribute ``tvm_qdq.implicit_bounds``."""
        if not self.implicit:
            return func
        return func.with_attr(IMPLICIT_BOUND_ATTR,
                              {k: tvm.tirx.IntImm("int64", v) for k, v in self.implicit.items()})
