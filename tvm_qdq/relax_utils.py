"""Small Relax helpers shared by the frontend, the passes and the backends (one copy each).

Every helper reads a Relax expression's type (``expr.ty``, or ``struct_info`` on objects
that only carry that) and answers ``None`` instead of raising when the answer is not static.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def ty(expr: relax.Expr):
    """The Relax type of ``expr``."""
    return expr.ty if hasattr(expr, "ty") else expr.struct_info


def is_prim_value(expr: relax.Expr) -> bool:
    """Whether ``expr`` is a scalar value (a TIR expression such as a symbolic size passed to a
    kernel: in TVM 0.27 it is an argument of its own, ``R.prim_value`` returns it unchanged)."""
    return isinstance(getattr(expr, "ty", None), tvm.ir.PrimType)


def tensor_dtype(expr: relax.Expr) -> str | None:
    """Element type of a tensor-typed ``expr`` (``"uint8"``, ...), None for other types."""
    dtype = getattr(ty(expr), "dtype", None)
    return None if dtype is None else str(dtype)


Dim = int | tvm.ir.Expr


def partial_shape(expr: relax.Expr) -> tuple[Dim, ...] | None:
    """Dimensions of a tensor-typed ``expr``: an int where the dimension is a known integer,
    the symbolic ``PrimExpr`` (e.g. a ``seq`` variable) where it is not; None when the
    shape itself is unknown (only the rank, or nothing, is known)."""
    t = ty(expr)
    if not isinstance(t, relax.TensorType) or t.shape is None:
        return None
    values = getattr(t.shape, "values", None)
    if values is None:
        return None
    return tuple(int(d) if isinstance(d, tvm.tirx.IntImm) else d for d in values)


def static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    """Dimensions of a tensor-typed ``expr`` when all are known integers, else None."""
    shape = partial_shape(expr)
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return shape


def is_static(dim: Dim) -> bool:
    """Whether a dimension from :func:`partial_shape` is a known integer."""
    return isinstance(dim, int)


def constant_value(expr: relax.Expr) -> np.ndarray | None:
    """The value of a Relax constant as numpy, None for anything else."""
    if isinstance(expr, tvm.ir.Constant) and hasattr(expr.value, "numpy"):
        return expr.value.numpy()
    return None


def constant(values, dtype: str) -> relax.Constant:
    """A Relax constant with an exact dtype (0-d for scalars)."""
    return relax.const(np.asarray(values).astype(dtype), dtype)


def remap_vars(expr: relax.Expr, mapping: dict) -> relax.Expr:
    """``expr`` with each var replaced by its image in ``mapping``, one level deep (the
    arguments of a call or tuple in A-normal form)."""
    if isinstance(expr, relax.Var):
        return mapping.get(expr, expr)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([remap_vars(f, mapping) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(remap_vars(expr.tuple_value, mapping), expr.index)
    if isinstance(expr, relax.Call):
        return relax.Call(expr.op, [remap_vars(a, mapping) for a in expr.args], expr.attrs,
                          expr.ty_args)
    return expr


@relax.expr_functor.mutator
class SubstituteVars(relax.PyExprMutator):
    """Replaces vars by expressions at every use site, at any depth."""

    def __init__(self, mapping: dict) -> None:
        super().__init__()
        self.mapping = mapping

    def visit_var_(self, op: relax.Var) -> relax.Expr:
        return self.mapping.get(op, op)

    def visit_dataflow_var_(self, op: relax.DataflowVar) -> relax.Expr:
        return self.mapping.get(op, op)


def conv_pad_width(padding: list[int], spatial: int) -> list[int]:
    """Conv padding (all befores, then all afters) as ``nn.pad``'s width per axis
    ``[N_before, N_after, C_before, C_after, d1_before, d1_after, ...]``."""
    width = [0, 0, 0, 0]
    for i in range(spatial):
        width += [padding[i], padding[spatial + i]]
    return width
