"""``Slice`` over symbolic dimensions, with begin/end as expressions of those dimensions.

ONNX Slice, per sliced axis of length ``d`` with step 1: ``s = start + d`` if ``start < 0``
else ``start``, ``e`` likewise from ``end``, both clamped to ``[0, d]``; the result has
``max(e - s, 0)`` elements. PyTorch exports slice with ends such as ``INT64_MAX`` ("to the
end") and starts such as ``-seq`` (T5's position bias ``bias[:, :, -seq:, :]``). TVM's
converter keeps those values unclamped on a symbolic axis (length ``seq + 2⁶³ - 1``) or
makes the shape unknown. Here the sign of a start/end is decided with the symbolic input
dimensions known to be in ``[1, bound]`` (``bounds=``, else 2³¹), the clamp is simplified
away where it is provably inactive, and the slice is ``R.strided_slice`` with those
begin/end expressions, so its shape is ``(…, seq, …)``. A clamp of ``±seq + k`` against a
static axis length (``position_ids[:, :seq]`` of a 512-row table) is assumed inactive and
recorded as an implicit bound (``seq <= 512``; the graph is only defined up to it: its
result is added to ``seq``-long tensors). Anything undecidable (a sign that depends on the
sizes, a step other than 1) is left to TVM's converter.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

from ...relax_utils import partial_shape
from .context import ConvertContext, constant_value
from .shape_exprs import tensor_form

#: A constant end at or above this means "to the end" (PyTorch writes INT64_MAX).
_TO_THE_END = 1 << 31


def _ints_or_dims(expr) -> list | None:
    """Elements of a constant 1-D int tensor or of a 1-D shape value (None otherwise)."""
    expr = tensor_form(expr) or expr
    if isinstance(expr, relax.ShapeExpr):
        return [int(v) if isinstance(v, tirx.IntImm) else v for v in expr.values]
    value = constant_value(expr)
    if value is None or value.dtype.kind not in "iu":
        return None
    return [int(v) for v in value.reshape(-1)]


def _analyzer(dims: list, bounds: dict[str, int]) -> tvm.sym.Analyzer:
    """An analyzer knowing each dimension variable in ``dims`` lies in [1, its bound] (2³¹
    without one)."""
    analyzer = tvm.sym.Analyzer()
    for dim in dims:
        if isinstance(dim, int):
            continue
        for var in tirx.analysis.undefined_vars(dim, []):
            extent = bounds.get(var.name, 1 << 31)
            analyzer.bind(var, tvm.ir.Range.from_min_extent(tirx.IntImm("int64", 1),
                                                            tirx.IntImm("int64", extent)))
    return analyzer


def _inbound(expr, dim: int, analyzer: tvm.sym.Analyzer) -> tuple[str, int] | None:
    """For ``expr = ±v + k`` (``v`` one dimension variable) and a static ``dim``: the bound
    ``(v's name, b)`` under which ``0 <= expr <= dim`` holds; None for other forms."""
    free = tirx.analysis.undefined_vars(expr, [])
    if len(free) != 1:
        return None
    v = free[0]
    for sign in (1, -1):
        k = analyzer.simplify(expr - sign * v)
        if isinstance(k, tirx.IntImm):
            k = int(k.value)
            # +v + k <= dim  ⇔ v <= dim - k ;  -v + k >= 0  ⇔ v <= k
            return v.name, dim - k if sign == 1 else k
    return None


def _bound(value, dim, analyzer: tvm.sym.Analyzer, is_end: bool,
           ctx: ConvertContext):
    """The index ``value`` made non-negative and clamped to ``[0, dim]``; None when its sign
    cannot be decided. A clamp of a symbolic index to a static ``dim`` that cannot be proven
    inactive is assumed inactive and recorded as an implicit bound of the dimension (the
    graph is then only defined for sizes up to it, e.g. ``position_ids[:, :seq]`` of a
    512-row table: ``seq <= 512``)."""
    if isinstance(value, int) and value >= _TO_THE_END and is_end:
        return dim
    expr = tirx.IntImm("int64", value) if isinstance(value, int) else value
    if analyzer.can_prove(expr < 0):
        expr = analyzer.simplify(expr + dim)
    elif not analyzer.can_prove(expr >= 0):
        return None
    zero = tirx.IntImm("int64", 0)
    if analyzer.can_prove(expr <= dim) and analyzer.can_prove(expr >= zero):
        return analyzer.simplify(expr)
    if isinstance(dim, tirx.IntImm) and not isinstance(expr, tirx.IntImm):
        bound = _inbound(expr, int(dim.value), analyzer)
        if bound is not None and bound[1] >= 1:
            ctx.assume_bound(*bound)
            return expr
    return analyzer.simplify(tirx.max(tirx.min(expr, dim), zero))


def convert_slice(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """Slice (opset >= 10) of a tensor with a symbolic sliced axis or a symbolic start/end,
    step 1 (module docstring); None to let TVM's converter handle every other case."""
    if ctx.opset < 10 or len(inputs) < 3:
        return None
    x = inputs[0]
    dims = partial_shape(x)
    starts, ends = _ints_or_dims(inputs[1]), _ints_or_dims(inputs[2])
    axes = _ints_or_dims(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
    steps = _ints_or_dims(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else None
    if dims is None or starts is None or ends is None or len(starts) != len(ends):
        return None
    axes = list(range(len(starts))) if axes is None else axes
    if any(not isinstance(a, int) for a in axes) or steps is not None and any(
            s != 1 for s in steps):
        return None
    axes = [a % len(dims) for a in axes]
    symbolic = [not isinstance(dims[a], int) or not isinstance(s, int) or not isinstance(e, int)
                for a, s, e in zip(axes, starts, ends, strict=True)]
    if not any(symbolic):
        return None
    analyzer = _analyzer([*dims, *starts, *ends], ctx.bounds)
    begin, end = [], []
    for axis, start, stop in zip(axes, starts, ends, strict=True):
        dim = dims[axis] if not isinstance(dims[axis], int) else tirx.IntImm("int64", dims[axis])
        b = _bound(start, dim, analyzer, False, ctx)
        e = _bound(stop, dim, analyzer, True, ctx)
        if b is None or e is None:
            return None
        begin.append(b)
        end.append(e)
    return relax.op.strided_slice(x, axes, begin, end, assume_inbound=True)
