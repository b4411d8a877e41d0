"""Integer matmul: activation × constant weight, and activation × activation.

Constant ``B`` (``[K, N]``, per-tensor or per-column parameters), with ``B' = B - zb``:

    acc[.., n] = Σ_k (a_k - za) · B'[k, n] = (a @ B')[.., n] - za · Σ_k B'[k, n]

Two activations (per-tensor): both shifted to signed (``a - za``, ``b - zb``) and multiplied.
The accumulator is int32 when the bound on ``|acc|`` (and on the raw partial sums) is below
2^31, else int64; its scale is ``s_a · s_b`` and its zero point 0.

A symbolic ``K`` (``P·V`` with ``K = seq``) is bounded by the user's upper bound of its dims
(``tir_var_upper_bound``). Without one, a ``K`` that is one symbolic dim gets the largest
value that keeps int32 exact, ``⌊(2^31 - 1) / (max|a - za| · max|b - zb|)⌋`` (33025 for
u8 × u8), as an implicit bound (:class:`~tvm_qdq.qnn.dims.DimBounds`) checked at run time,
unless that is below :data:`MIN_IMPLICIT_BOUND` (16-bit operands): then the accumulator is
int64, exact for every ``K``.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvm_qdq.qnn.ops import (
    INT32_LIMIT,
    accumulator_for,
    accumulator_params,
    matmul_integer_const,
    shift_to_signed,
)

from ..qtensor import QTensor, RewriteContext
from ..registry import forward_rule


def _matmul_const(ctx: RewriteContext, a: QTensor, b: QTensor) -> QTensor | None:
    if b.ndim != 2 or b.params.axis not in (None, 1):
        return None
    b_shift = b.const.astype(np.int64) - b.params.broadcast(b.params.zero_point, 2)
    value, acc, b_dtype = matmul_integer_const(ctx.bb, a.value, a.params.qtype,
                                               int(a.params.zero_point), b_shift)
    axis = a.ndim - 1 if b.params.axis == 1 else None
    ctx.record("relax.matmul", str(value.name), "integer",
               f"{a.params.qtype.name}×{b_dtype} (const) → {acc}")
    return QTensor(value, accumulator_params(a.params.scale * b.params.scale, axis, acc))


#: Smallest implicit bound of a symbolic ``K`` worth assuming; below it the accumulator is
#: int64 (no bound).
MIN_IMPLICIT_BOUND = 1024


def _largest_k(ctx: RewriteContext, k, per_k: int) -> int | None:
    """Largest value of the reduced dim ``k`` the accumulator must hold ``per_k · k`` for:
    ``k`` itself when static, the user's bound, else an implicit bound keeping int32 exact
    (module docstring); None when ``k`` is unbounded (int64)."""
    largest = ctx.dims.user_max(k)
    if largest is not None:
        return largest
    implicit = INT32_LIMIT // per_k
    if not isinstance(k, tvm.tirx.Var) or implicit < MIN_IMPLICIT_BOUND:
        return None
    return ctx.dims.assume(k, implicit)


def _matmul_dynamic(ctx: RewriteContext, a: QTensor, b: QTensor) -> QTensor | None:
    if not (a.params.per_tensor and b.params.per_tensor):
        return None
    za, zb = int(a.params.zero_point), int(b.params.zero_point)
    a_max = max(abs(a.params.qtype.qmin - za), abs(a.params.qtype.qmax - za))
    b_max = max(abs(b.params.qtype.qmin - zb), abs(b.params.qtype.qmax - zb))
    k = _largest_k(ctx, a.shape[-1], a_max * b_max)
    acc = "int64" if k is None else accumulator_for(a_max * b_max * k)
    a_s = shift_to_signed(ctx.bb, a.value, a.params)
    b_s = shift_to_signed(ctx.bb, b.value, b.params)
    if acc == "int64":
        a_s, b_s = ctx.emit(relax.op.astype(a_s, "int64")), ctx.emit(relax.op.astype(b_s, "int64"))
    value = ctx.emit(relax.op.matmul(a_s, b_s, out_dtype=acc), "qnn_matmul")
    ctx.record("relax.matmul", str(value.name), "integer",
               f"{a.params.qtype.name}×{b.params.qtype.name} (activations) → {acc}")
    return QTensor(value, accumulator_params(a.params.scale * b.params.scale, None, acc))


@forward_rule("relax.matmul")
def matmul(ctx: RewriteContext, call) -> QTensor | None:
    a, b = ctx.qtensor(call.args[0]), ctx.qtensor(call.args[1])
    if a is None or b is None or not a.params.per_tensor:
        return None
    if b.const is not None and b.ndim == 2:
        return _matmul_const(ctx, a, b)
    return _matmul_dynamic(ctx, a, b)
