"""Kernel operands whose symbolic shapes are spelled in simplified form.

A kernel emitted with ``call_te`` before ``LegalizeOps`` keeps the operand shapes it was built
from, e.g. ``(w - 1) // 2 + 1 + 2`` as Relax infers ``R.nn.pad`` of a ``(w - 1) // 2 + 1``
wide map. Legalization re-derives that producer's shape in simplified form,
``(w - 1) // 2 + 3``, and FuseTIR, which matches a PrimFunc's parameter shapes against its
arguments' term by term (constants must be equal), then refuses the fused call even though the
two sizes are equal. :func:`canonical_operand` binds such an operand to its simplified shape
with ``R.match_cast`` (an equality of two equal sizes, checked at run time), so the kernel's
parameters and its argument keep one spelling through legalization and fusion.
"""

from __future__ import annotations

import tvm_ffi
from tvm import relax, sym, tirx

from ..relax_utils import ty


def simplified_shape(sinfo: relax.TensorType) -> list[tirx.PrimExpr] | None:
    """``sinfo``'s shape with each symbolic dimension simplified, or None when every dimension
    is already in simplified form (or the shape is unknown)."""
    shape = sinfo.shape
    if not isinstance(shape, relax.ShapeExpr):
        return None
    analyzer = sym.Analyzer()
    dims, changed = [], False
    for dim in shape.values:
        new = dim if isinstance(dim, tirx.IntImm | tirx.Var) else analyzer.simplify(dim)
        changed = changed or not tvm_ffi.structural_equal(new, dim)
        dims.append(new)
    return dims if changed else None


def canonical_operand(bb: relax.BlockBuilder, expr: relax.Expr) -> relax.Expr:
    """``expr``, or ``R.match_cast(expr, simplified shape)`` when one of its symbolic
    dimensions is not in simplified form (see the module docstring)."""
    sinfo = ty(expr)
    if not isinstance(sinfo, relax.TensorType):
        return expr
    dims = simplified_shape(sinfo)
    if dims is None:
        return expr
    return bb.match_cast(expr, relax.TensorType(dims, sinfo.dtype, sinfo.vdevice))
