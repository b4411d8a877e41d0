"""Symbolic dimensions on the TorchScript path: ``from_torch(scripted, inputs, dynamic=...)``.

A TorchScript graph computes shapes with ``aten::size`` and int arithmetic; with static
inputs the importer folds them in PyTorch. Here the inputs' ``dynamic`` axes are
``tirx.Var(name, "int64")`` (one var per dimension name, shared by every axis of that name),
so a size of such an axis is a ``PrimExpr`` (a *dim*), int arithmetic on dims builds
``PrimExpr`` s, and the shape ops whose arguments are dims (``view``/``reshape``, ``slice``,
``expand``, ``arange``, ``zeros_like``, ``embedding``'s flattening) are emitted as Relax ops
whose shapes hold those ``PrimExpr`` s. :data:`CONVERTERS` take precedence over
:mod:`.aten`'s converters when (and only when) the module has a symbolic dim, and hand
anything without a dim back to them.

A slice whose end is a dim is assumed in bounds (``x[:, :seq]`` of a ``[1, 64]`` buffer is
``[1, seq]``); the bound that makes it so (``seq ≤ 64``) is the caller's ``bounds=``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import tvm
from tvm import relax, tirx

from ...backend.dims import IMPLICIT_ATTR, LOWER_ATTR, UPPER_ATTR
from ...qnn.dims import dims_equal, product
from . import aten
from .errors import TorchImportError, UnsupportedForm
from .symbolic import DynamicAxes, _check_dynamic
from .types import SCALAR_TYPES, TORCH_TO_RELAX

Converter = Callable[[Any, Any, list], Any]
CONVERTERS: dict[str, Converter] = {}
op = relax.op

#: an ``end`` at or above this is "to the end" (TorchScript's ``INT64_MAX`` default)
_TO_END = 2**62


def is_dim(value: Any) -> bool:
    """Whether ``value`` is a symbolic size (an integer ``PrimExpr``, not a Relax tensor)."""
    return isinstance(value, tvm.ir.Expr) and isinstance(getattr(value, "ty", None),
                                                         tvm.ir.PrimType)


def has_dim(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(has_dim(v) for v in value)
    return is_dim(value)


def input_shapes(inputs: Sequence[torch.Tensor], names: Sequence[str],
                 dynamic: DynamicAxes) -> list[list[int | tirx.Var]]:
    """Each input's shape with ``dynamic``'s axes as ``tirx.Var`` s (one per name)."""
    _check_dynamic(dynamic, names)
    dims: dict[str, tirx.Var] = {}
    shapes = []
    for name, x in zip(names, inputs, strict=True):
        shape: list[int | tirx.Var] = list(x.shape)
        for axis, dim in dynamic.get(name, {}).items():
            axis = int(axis)
            if not -x.dim() <= axis < x.dim():
                raise TorchImportError(f"dynamic['{name}'] names axis {axis}; the input has "
                                       f"rank {x.dim()}")
            shape[axis] = dims.setdefault(dim, tirx.Var(dim, "int64"))
        shapes.append(shape)
    return shapes


def with_bounds(mod: tvm.IRModule, dim_names: Sequence[str],
                bounds: Mapping[str, int] | None,
                implicit: Mapping[str, int] | None = None) -> tvm.IRModule:
    """``mod`` whose ``main`` has lower bound 1 for every dim, ``bounds`` as upper bounds and
    ``implicit`` (bounds the import assumed) as ``tvm_qdq.implicit_bounds``, checked at run
    time like the user's."""
    bounds = dict(bounds or {})
    unknown = sorted(set(bounds) - set(dim_names))
    if unknown:
        raise TorchImportError(f"bounds= names unknown dimension(s) {unknown}; the symbolic "
                               f"dimensions are {sorted(dim_names)}")
    func = mod["main"].with_attr(LOWER_ATTR, {n: 1 for n in dim_names})
    if bounds:
        func = func.with_attr(UPPER_ATTR, {n: int(b) for n, b in bounds.items()})
    if implicit:
        func = func.with_attr(IMPLICIT_ATTR, {n: int(b) for n, b in implicit.items()})
    functions = {gv: (func if gv.name_hint == "main" else f) for gv, f in mod.functions.items()}
    return tvm.IRModule(functions, attrs=mod.attrs)


def register(*kinds: str) -> Callable[[Converter], Converter]:
    return aten.register(*kinds, table=CONVERTERS)


def _fallback(imp, node, args) -> Any:
    kind = node.kind()
    base = kind[:-1] if kind.endswith("_") and not kind.endswith("__") else kind
    converter = aten.CONVERTERS.get(kind) or aten.CONVERTERS.get(base)
    if converter is None:
        raise UnsupportedForm("")
    return converter(imp, node, args)


# --- int arithmetic on sizes ---------------------------------------------------------------------


def _scalar_op(fn: Callable[[Any, Any], Any]) -> Converter:
    def convert(imp, node, args):
        a, b = args[0], args[1]
        if has_dim([a, b]) and not any(isinstance(v, relax.Expr) and not is_dim(v)
                                       for v in (a, b)):
            return fn(a, b)
        return _fallback(imp, node, args)
    return convert


register("aten::add")(_scalar_op(lambda a, b: a + b))
register("aten::sub")(_scalar_op(lambda a, b: a - b))
register("aten::mul")(_scalar_op(lambda a, b: a * b))
register("aten::floordiv")(_scalar_op(tirx.floordiv))
register("prim::min")(_scalar_op(tirx.min))
register("prim::max")(_scalar_op(tirx.max))


@register("aten::Int", "aten::ScalarImplicit")
def _int(imp, node, args):
    return args[0] if is_dim(args[0]) else _fallback(imp, node, args)


# --- shapes ---------------------------------------------------------------------------------------


@register("aten::size")
def _size(imp, node, args):
    shape = imp.shape(args[0])
    return shape[args[1]] if len(args) > 1 else shape


@register("aten::numel")
def _numel(imp, node, args):
    return product(imp.shape(args[0]))


@register("aten::view", "aten::reshape")
def _reshape(imp, node, args):
    x, sizes = args[0], list(args[1])
    shape = imp.shape(x)
    if not has_dim(shape) and not has_dim(sizes):
        return _fallback(imp, node, args)
    if -1 in [s for s in sizes if isinstance(s, int)]:
        known = product([s for s in sizes if not (isinstance(s, int) and s == -1)])
        rest = tirx.floordiv(product(shape), known)
        sizes = [rest if isinstance(s, int) and s == -1 else s for s in sizes]
    return imp.emit(op.reshape(x, sizes))


@register("aten::slice")
def _slice(imp, node, args):
    x = imp.expr(args[0])
    shape = imp.shape(x)
    dim = aten._axis(args[1] if len(args) > 1 else 0, len(shape))
    start = args[2] if len(args) > 2 and args[2] is not None else 0
    end = args[3] if len(args) > 3 and args[3] is not None else shape[dim]
    step = args[4] if len(args) > 4 else 1
    if isinstance(end, int) and end >= _TO_END:
        end = shape[dim]
    if not has_dim([shape[dim], start, end]):
        return _fallback(imp, node, [x, *args[1:]])
    if any(isinstance(v, int) and v < 0 for v in (start, end)) or step != 1:
        raise UnsupportedForm("a slice of a symbolic dimension with a negative index or a "
                              "step")
    if dims_equal(start, 0) and dims_equal(end, shape[dim]):
        return x
    if isinstance(shape[dim], int) and isinstance(end, tirx.Var):
        # [:seq] of a static-length table (positions): in bounds only while seq ≤ its length
        name = str(end.name)
        imp.implicit_bounds[name] = min(shape[dim], imp.implicit_bounds.get(name, shape[dim]))
    return imp.emit(op.strided_slice(x, axes=[dim], begin=[start], end=[end],
                                     assume_inbound=True))


@register("aten::expand")
def _expand(imp, node, args):
    x, sizes = args[0], list(args[1])
    shape = imp.shape(x)
    if not has_dim(shape) and not has_dim(sizes):
        return _fallback(imp, node, args)
    lead = len(sizes) - len(shape)
    target = [shape[i - lead] if isinstance(s, int) and s == -1 else s
              for i, s in enumerate(sizes)]
    same = len(target) == len(shape) and all(map(dims_equal, target, shape))
    return x if same else imp.emit(op.broadcast_to(x, target))


@register("aten::expand_as")
def _expand_as(imp, node, args):
    x, other = args
    target = imp.shape(other)
    if isinstance(x, relax.Expr):
        shape = imp.shape(x)
        if len(shape) == len(target) and all(map(dims_equal, shape, target)):
            return x
    return imp.emit(op.broadcast_to(imp.expr(x), target))


@register("aten::zeros_like", "aten::ones_like", "aten::full_like")
def _like(imp, node, args):
    x = args[0]
    shape = imp.shape(x)
    if not has_dim(shape):
        return _fallback(imp, node, args)
    kind = node.kind()
    fill = args[1] if kind == "aten::full_like" else (0 if kind == "aten::zeros_like" else 1)
    dt_arg = aten._named(node, args, "dtype")
    dtype = (TORCH_TO_RELAX[SCALAR_TYPES[dt_arg]] if isinstance(dt_arg, int)
             else str(x.ty.dtype))
    return imp.emit(op.full(shape, relax.const(np.asarray(fill).astype(dtype), dtype), dtype))


@register("aten::arange")
def _arange(imp, node, args):
    numbers = [a for a in args if isinstance(a, int | float) or is_dim(a)]
    if not has_dim(numbers):
        return _fallback(imp, node, args)
    dt_arg = aten._named(node, args, "dtype")
    dtype = TORCH_TO_RELAX[SCALAR_TYPES[dt_arg]] if isinstance(dt_arg, int) else "int64"
    start, end, step = (0, numbers[0], 1) if len(numbers) == 1 else (
        numbers[0], numbers[1], numbers[2] if len(numbers) > 2 else 1)
    return imp.emit(op.arange(start, end, step, dtype=dtype))


@register("aten::embedding")
def _embedding(imp, node, args):
    weight, indices = imp.expr(args[0]), imp.expr(args[1], "int32")
    shape = imp.shape(indices)
    if not has_dim(shape):
        return _fallback(imp, node, args)
    flat = imp.emit(op.reshape(indices, [product(shape)]))
    rows = imp.emit(op.take(weight, flat, axis=0))
    return imp.emit(op.reshape(rows, [*shape, imp.shape(weight)[-1]]))


__all__ = ["CONVERTERS", "has_dim", "input_shapes", "is_dim", "with_bounds"]
