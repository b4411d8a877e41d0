"""Float ``com.microsoft`` ops that ORT's transformer optimizer writes into saved models.

Each converter follows ONNX Runtime's CPU kernel (1.32, reference session, graph
optimizations off) and emits the Relax ops the rest of tvm-qdq already handles, so the
integer pass and the x86 fast paths apply unchanged:

* ``FusedMatMul(A, B)`` = ``alpha · op(A) @ op(B)`` → ``R.permute_dims`` + ``R.matmul``
  (+ ``R.multiply`` by ``alpha`` when ``alpha ≠ 1``: MLAS scales the finished sum);
* ``SkipLayerNormalization`` / ``SkipSimplifiedLayerNormalization`` = (RMS) LayerNorm of
  ``v = (input + skip) + bias`` → ``R.add`` and :func:`ort_skip_norm_te` (ORT's scalar
  one-pass loop: Welford mean/variance, resp. a sequential sum of squares; bit-identical
  to ORT, every output);
* ``SimplifiedLayerNormalization`` (RMS norm) → :func:`ort_rms_norm_te`, ORT's 8-lane FMA
  sum of squares (the MLAS kernel of its LayerNormalization) for rows of ≥ 16, its scalar
  loop for shorter rows (bit-identical to ORT);
* ``Gelu`` / ``BiasGelu`` = ``x · Φ(x)`` (erf) → ``R.nn.gelu`` (x86: vectorized erf of
  ``fast_math.py``);
* ``FastGelu`` = ``½v · (1 + tanh(v·(C·v² + B)))`` (tanh approximation, ``v = x + bias``)
  and ``QuickGelu`` = ``x · sigmoid(alpha · x)``, both as ``x · 1/(1 + e^{−z})`` with
  ``R.exp`` (x86: fast_math's vector exp; TVM's tanh / sigmoid call libm per element).

ORT evaluates erf, tanh and the logistic with its own MLAS polynomials, so the GELU family
agrees to a few float32 ulps, not bit for bit (measured in ``tests/test_contrib_float_ops.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from tvm import relax, te, tirx

from ...relax_utils import constant, partial_shape, static_shape
from .context import ConvertContext
from .layer_norm import VAR_LANES
from .shapes import static_dims

#: FastGelu's constants as ORT's kernel spells them (float32): √(2/π) and 0.044715·√(2/π).
FAST_GELU_B = 0.7978845608028654
FAST_GELU_C = 0.035677408136300125
#: Shortest row ORT's vectorized (MLAS) RMS norm takes; shorter rows run its scalar loop.
MLAS_MIN_ROW = 16
#: Largest finite float32.
FLT_MAX = float(np.finfo(np.float32).max)


def _input(inputs: list, i: int) -> relax.Expr | None:
    """The ``i``-th input, or None when it is absent (empty name or past the end)."""
    return inputs[i] if len(inputs) > i else None


def _is_float32(*exprs: relax.Expr | None) -> bool:
    return all(e is None or str(e.ty.dtype) == "float32" for e in exprs)


def _f32(value: float) -> relax.Constant:
    return constant(value, "float32")


# --- FusedMatMul -----------------------------------------------------------------------------


def _matrix_operand(bb: relax.BlockBuilder, x: relax.Expr, trans: bool,
                    trans_batch: bool) -> relax.Expr:
    """``x`` as the ``[batch..., rows, cols]`` operand ORT's MatMul helper reads.

    ``transBatch`` means the matrix's leading axis is axis 0 (``[M, B..., K]``), so the
    operand is ``x`` permuted by ``[1, ..., r-2, 0, r-1]``; with ``trans`` as well the
    stored matrix is ``K × M`` (``[K, B..., M]``): ``[1, ..., r-2, r-1, 0]``. ``trans``
    alone swaps the last two axes. Rank-1 operands are never transposed (ORT ignores it).
    """
    rank = len(x.ty.shape.values)
    if rank < 2 or not (trans or trans_batch):
        return x
    middle = list(range(1, rank - 1))
    if trans_batch:
        perm = [*middle, rank - 1, 0] if trans else [*middle, 0, rank - 1]
    else:
        perm = [*range(rank - 2), rank - 1, rank - 2]
    if perm == list(range(rank)):
        return x
    return bb.emit(relax.op.permute_dims(x, perm))


def convert_fused_matmul(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """FusedMatMul(A, B) = ``alpha · op(A) @ op(B)`` with numpy batch broadcasting.

    ``op`` applies ``transA``/``transB`` (last two axes) and ``transBatchA``/``transBatchB``
    (see :func:`_matrix_operand`). MLAS computes ``alpha · Σ_k a·b`` (the sum first), so a
    separate multiply by the float32 ``alpha`` follows the plain ``R.matmul`` — which the
    integer pass's matmul rule sees, transposes of dequantized operands included."""
    a, b = inputs[0], inputs[1]
    if not _is_float32(a, b):
        raise ctx.fail(f"float32 only, got {a.ty.dtype} × {b.ty.dtype}")
    bb = ctx.bb
    a = _matrix_operand(bb, a, bool(attrs.get("transA", 0)), bool(attrs.get("transBatchA", 0)))
    b = _matrix_operand(bb, b, bool(attrs.get("transB", 0)), bool(attrs.get("transBatchB", 0)))
    y = relax.op.matmul(a, b)
    alpha = float(np.float32(attrs.get("alpha", 1.0)))
    if alpha == 1.0:
        return y
    return relax.op.multiply(bb.emit(y), _f32(alpha))


# --- layer norms ------------------------------------------------------------------------------


def ort_rms_norm_te(x: te.Tensor, gamma: te.Tensor, epsilon: float,
                    stats: bool = False) -> te.Tensor | list[te.Tensor]:
    """RMS norm over the last axis of ``x`` (float32 ``[..., n]``) in ORT 1.32's CPU order.

    ``Σ x²`` in ``VAR_LANES`` = 8 lanes, lane ``j`` one FMA chain ``acc = fma(x, x, acc)``
    over ``x[8k + j]``, lanes combined as ``((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))``;
    of the ``n mod 8`` trailing elements, when there are ≥ 4 the first four are added as
    rounded products and the rest as FMAs (the tail of :mod:`.layer_norm`'s variance);
    ``inv = 1 / sqrt(Σ/n + ε)``; ``y = (x · inv) · γ``. Returns ``y`` or ``[y, inv]``.

    Rows shorter than ``MLAS_MIN_ROW`` = 16 take ORT's scalar loop instead (the simplified
    form of :func:`ort_skip_norm_te`: sequential ``Σ x²``, ``y = (x / σ) · γ``). Measured
    bit-identical to ORT for every row length 3..33 and 37, 45, 64, 100, 101, 103. The
    leading dimensions may be symbolic; ``n`` must be static.
    """
    shape = _te_dims(x)
    lead, n = tuple(shape[:-1]), int(shape[-1])
    if n < MLAS_MIN_ROW:
        y, _, inv_std = ort_skip_norm_te(x, gamma, None, epsilon, simplified=True)
        return [y, inv_std] if stats else y
    f32 = "float32"
    n_lanes = n // VAR_LANES
    lanes = None
    if n_lanes:
        k = te.reduce_axis((0, n_lanes), "k8")

        def square_lane(*i):
            v = x[(*i[:-1], k * VAR_LANES + i[-1])]
            return te.sum(v * v, axis=k)  # acc + v·v: one FMA per step

        lanes = te.compute((*lead, VAR_LANES), square_lane, name="rms_lanes")

    def inv_of_row(*r):
        acc = tirx.const(0.0, f32)
        if lanes is not None:
            s = [lanes[(*r, j)] + lanes[(*r, j + 4)] for j in range(4)]
            acc = (s[0] + s[2]) + (s[1] + s[3])
        h = VAR_LANES * n_lanes
        if n - h >= 4:
            for j in range(4):
                v = x[(*r, h + j)]
                acc = acc + tirx.max(v * v, tirx.const(0.0, f32))  # rounded product, no FMA
            h += 4
        for j in range(h, n):
            v = x[(*r, j)]
            acc = acc + v * v  # FMA
        mean_square = acc / tirx.const(float(n), f32)
        return tirx.const(1.0, f32) / tirx.sqrt(mean_square + tirx.const(epsilon, f32))

    inv = te.compute(lead, inv_of_row, name="rms_inv_std")
    y = te.compute(tuple(shape), lambda *i: (x[i] * inv[i[:-1]]) * gamma[i[-1]],
                   name="rms_out")
    return [y, inv] if stats else y


def _te_dims(t: te.Tensor) -> list:
    """The dims of a TE tensor: ints where static, the symbolic expression elsewhere."""
    return [int(d) if isinstance(d, tirx.IntImm) else d for d in t.shape]


def _vector(ctx: ConvertContext, p: relax.Expr | None, n: int) -> relax.Expr | None:
    """A scale/bias of ``n`` float32 values as a 1-D tensor (None passes through)."""
    if p is None:
        return None
    shape = static_shape(p)
    if shape is None or math.prod(shape) != n or not _is_float32(p):
        raise ctx.fail(f"scale/bias must hold {n} float32 values, "
                       f"got {shape and list(shape)} {p.ty.dtype}")
    return p if len(shape) == 1 else ctx.bb.emit(relax.op.reshape(p, [n]))


def _norm_axis(ctx: ConvertContext, shape: tuple[int, ...], axis: int) -> int:
    ndim = len(shape)
    axis = axis + ndim if axis < 0 else axis
    if not 0 <= axis < ndim:
        raise ctx.fail(f"axis {axis} out of range for rank {ndim}")
    return axis


def _row_stat(bb: relax.BlockBuilder, stat: relax.Expr, shape: tuple[int, ...],
              axis: int) -> relax.Expr:
    """A per-row statistic reshaped to ORT's ``[rows..., 1, ..., 1]`` output shape."""
    return bb.emit(relax.op.reshape(stat, [*shape[:axis]] + [1] * (len(shape) - axis)))


def _skip_sum(ctx: ConvertContext, inputs: list, bias_index: int) -> tuple[relax.Expr, int]:
    """``v = (input + skip) + bias`` in float32 (ORT's order; ``skip`` broadcasts over the
    leading axes as ORT's ``offset % skip_size`` does) and the hidden size."""
    x, skip = inputs[0], inputs[1]
    bias = _input(inputs, bias_index)
    shape = static_dims(x, ctx.label, 0, axes=[-1], why="the hidden size")
    if not _is_float32(x, skip, bias):
        raise ctx.fail("needs float32 input, skip and bias")
    v = ctx.bb.emit(relax.op.add(x, skip))
    if bias is not None:
        v = ctx.bb.emit(relax.op.add(v, bias))
    return v, shape[-1]


def _outputs(ctx: ConvertContext, by_position: dict[int, relax.Expr],
             fill: relax.Expr) -> relax.Expr:
    """The node's outputs as a Relax tuple (absent optional outputs get ``fill``)."""
    count = len(ctx.onnx_node.output)
    if count == 1:
        return by_position[0]
    return relax.Tuple([by_position.get(i, fill) for i in range(count)])


def ort_skip_norm_te(v: te.Tensor, gamma: te.Tensor, beta: te.Tensor | None, epsilon: float,
                     simplified: bool) -> list[te.Tensor]:
    """ORT 1.32's SkipLayerNorm / SkipSimplifiedLayerNorm row arithmetic on ``v`` (float32
    ``[..., n]``, already ``(input + skip) + bias``) → ``[y, mean, inv_std]``.

    One sequential pass per row, float32, no FMA (ORT's scalar C++ loop):

    * LayerNorm: Welford's recurrence over ``h = 0..n-1``: ``δ = v_h − μ``,
      ``μ += δ / (h + 1)``, ``M2 += δ · (v_h − μ)``; ``σ = sqrt(M2/n + ε)``;
      ``y = ((v − μ) / σ) · γ + β`` (two roundings: product, then sum);
    * simplified: ``S = Σ_h v_h·v_h`` in order, ``σ = sqrt(S/n + ε)``, ``y = (v / σ) · γ``,
      ``μ = 0``;

    and ``inv_std = 1 / σ``. The recurrence is a reduction along the last axis with the
    combiner ``(c, μ, M2) ⊕ (1, v, 0)``, run in order (the x86 row schedule keeps each row's
    order). LLVM would contract ``M2 + δ·δ'``, ``S + v·v`` and ``t·γ + β`` into FMAs: the
    products go through ``max(p, 0)`` (``p ≥ 0``: ``δ`` and ``v − μ`` share their sign),
    resp. ``max(p, −FLT_MAX)`` (equal to ``p`` unless ``p = −∞``), which LLVM cannot fold.
    The leading dimensions may be symbolic; ``n`` must be static.
    """
    shape = _te_dims(v)
    lead, n = tuple(shape[:-1]), int(shape[-1])
    f32 = "float32"
    zero = tirx.const(0.0, f32)
    k = te.reduce_axis((0, n), "k")
    if simplified:
        total = te.compute(
            lead, lambda *r: te.sum(tirx.max(v[(*r, k)] * v[(*r, k)], zero), axis=k),
            name="skip_norm_square_sum")
        mean = te.compute(lead, lambda *r: zero, name="skip_norm_mean")
    else:
        def combine(acc, item):
            count = acc[0] + item[0]
            delta = item[1] - acc[1]
            mu = acc[1] + delta / count
            return count, mu, acc[2] + tirx.max(delta * (item[1] - mu), zero)

        welford = te.comm_reducer(combine, lambda *dtypes: (zero, zero, zero), name="welford")
        _, mean, total = te.compute(
            lead, lambda *r: welford((tirx.const(1.0, f32), v[(*r, k)], zero), axis=k),
            name="skip_norm_welford")
    std = te.compute(
        lead, lambda *r: tirx.sqrt(total[r] / tirx.const(float(n), f32)
                                   + tirx.const(epsilon, f32)), name="skip_norm_std")

    def out(*i):
        row = i[:-1]
        if simplified:
            return (v[i] / std[row]) * gamma[i[-1]]
        t = (v[i] - mean[row]) / std[row]
        if beta is None:
            return t * gamma[i[-1]]
        scaled = tirx.max(t * gamma[i[-1]], tirx.const(-FLT_MAX, f32))  # rounded product
        return scaled + beta[i[-1]]

    y = te.compute(tuple(shape), out, name="skip_norm_out")
    inv = te.compute(lead, lambda *r: tirx.const(1.0, f32) / std[r], name="skip_norm_inv_std")
    return [y, mean, inv]


def _convert_skip_norm(ctx: ConvertContext, inputs: list, attrs: dict,
                       simplified: bool) -> relax.Expr:
    """Skip(Simplified)LayerNormalization → (output[, mean[, inv_std_var[,
    input_skip_bias_sum]]]) with :func:`ort_skip_norm_te`; ``mean`` and ``inv_std_var`` have
    shape ``[..., 1]``."""
    bb = ctx.bb
    v, n = _skip_sum(ctx, inputs, 3 if simplified else 4)
    shape = partial_shape(v)
    gamma = _vector(ctx, inputs[2], n)
    beta = None if simplified else _vector(ctx, _input(inputs, 3), n)
    epsilon = float(np.float32(attrs.get("epsilon", 1e-12)))
    args = [v, gamma] + ([beta] if beta is not None else [])

    def build(*t: te.Tensor) -> list[te.Tensor]:
        return ort_skip_norm_te(t[0], t[1], t[2] if beta is not None else None, epsilon,
                                simplified)

    name = "skip_simplified_layer_norm" if simplified else "skip_layer_norm"
    result = bb.emit_te(build, *args, primfunc_name_hint=name)
    y = bb.emit(relax.TupleGetItem(result, 0))
    axis = len(shape) - 1
    return _outputs(ctx, {
        0: y,
        1: _row_stat(bb, relax.TupleGetItem(result, 1), shape, axis),
        2: _row_stat(bb, relax.TupleGetItem(result, 2), shape, axis),
        3: v,
    }, y)


def convert_skip_layer_norm(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """SkipLayerNormalization(input, skip, gamma[, beta[, bias]]): LayerNorm over the last
    axis of ``v = (input + skip) + bias`` in ORT's order (:func:`ort_skip_norm_te`)."""
    return _convert_skip_norm(ctx, inputs, attrs, simplified=False)


def _rms_norm(ctx: ConvertContext, x: relax.Expr, gamma: relax.Expr, axis: int,
              epsilon: float, stats: bool) -> tuple[relax.Expr, relax.Expr | None]:
    """RMS norm of ``x`` over axes ``axis..`` (flattened to one) → (y, inv_std or None)."""
    bb = ctx.bb
    shape = static_dims(x, ctx.label, 0, axes=range(axis, len(partial_shape(x))),
                        why="the normalized axes")
    n = math.prod(shape[axis:])
    flat = x if axis == len(shape) - 1 else bb.emit(relax.op.reshape(x, [*shape[:axis], n]))
    g = _vector(ctx, gamma, n)

    def build(t: te.Tensor, s: te.Tensor):
        return ort_rms_norm_te(t, s, epsilon, stats)

    result = bb.emit_te(build, flat, g, primfunc_name_hint="rms_norm")
    if not stats:
        y = result if axis == len(shape) - 1 else bb.emit(relax.op.reshape(result, shape))
        return y, None
    y = bb.emit(relax.TupleGetItem(result, 0))
    if axis != len(shape) - 1:
        y = bb.emit(relax.op.reshape(y, shape))
    return y, _row_stat(bb, relax.TupleGetItem(result, 1), shape, axis)


def convert_simplified_layer_norm(ctx: ConvertContext, inputs: list,
                                  attrs: dict) -> relax.Expr:
    """SimplifiedLayerNormalization(X, scale) → (Y[, inv_std_var]), ORT's RMS norm:
    ``Y = X · (1/sqrt(mean(X²) + ε)) · scale`` over axes ``axis..rank-1``
    (:func:`ort_rms_norm_te`). float32 only (``stash_type`` 1: float32 statistics)."""
    x, gamma = inputs[0], inputs[1]
    shape = static_dims(x, ctx.label, 0, axes=())
    if not _is_float32(x, gamma):
        raise ctx.fail("needs float32 input and scale")
    if int(attrs.get("stash_type", 1)) != 1:
        raise ctx.fail(f"stash_type {attrs.get('stash_type')} is not supported (float32 only)")
    axis = _norm_axis(ctx, shape, int(attrs.get("axis", -1)))
    epsilon = float(np.float32(attrs.get("epsilon", 1e-5)))
    names = list(ctx.onnx_node.output)
    y, inv = _rms_norm(ctx, x, gamma, axis, epsilon, any(names[1:]))
    return _outputs(ctx, {0: y, 1: inv} if inv is not None else {0: y}, y)


def convert_skip_simplified_layer_norm(ctx: ConvertContext, inputs: list,
                                       attrs: dict) -> relax.Expr:
    """SkipSimplifiedLayerNormalization(input, skip, gamma[, bias]): RMS norm over the last
    axis of ``v = (input + skip) + bias`` in ORT's order (:func:`ort_skip_norm_te`; the
    ``mean`` output is zeros, as ORT writes it)."""
    return _convert_skip_norm(ctx, inputs, attrs, simplified=True)


# --- GELU family ------------------------------------------------------------------------------


def _biased(ctx: ConvertContext, inputs: list) -> relax.Expr:
    """``x + bias`` (float32, bias broadcast along the last axis) or ``x`` without bias."""
    x, bias = inputs[0], _input(inputs, 1)
    if not _is_float32(x, bias):
        raise ctx.fail("float32 input and bias only")
    return x if bias is None else ctx.bb.emit(relax.op.add(x, bias))


def convert_gelu(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """Gelu(X) = ``X · ½(1 + erf(X/√2))`` → ``R.nn.gelu`` (x86: ``fast_math.te_gelu``).
    ORT: ``MlasComputeErf(x·(1/√2))``, then ``½x · (erf + 1)``."""
    return relax.op.nn.gelu(_biased(ctx, inputs[:1]))


def convert_bias_gelu(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """BiasGelu(A, B) = ``Gelu(A + B)`` (erf form; ORT adds the bias in float32 first)."""
    return relax.op.nn.gelu(_biased(ctx, inputs))


def _logistic(bb: relax.BlockBuilder, z: relax.Expr) -> relax.Expr:
    """``1 / (1 + e^{−z})`` with ``R.exp`` (x86: fast_math's vector exp, no libm call;
    TVM's ``R.sigmoid`` / ``R.tanh`` lower to one ``expf`` call per element)."""
    e = bb.emit(relax.op.exp(bb.emit(relax.op.negative(z))))
    return bb.emit(relax.op.divide(_f32(1.0), bb.emit(relax.op.add(_f32(1.0), e))))


def convert_fast_gelu(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """FastGelu(X[, bias]) = ``½v · (1 + tanh(u))`` with ``v = X + bias``,
    ``u = v · ((C·v)·v + B)``, ORT's float32 constants ``B = √(2/π)``,
    ``C = 0.044715·√(2/π)``. ORT evaluates tanh with an MLAS polynomial; here
    ``½(1 + tanh(u)) = 1 / (1 + e^{−2u})``, so ``Y = v · logistic(2u)`` (one vector exp)."""
    bb = ctx.bb
    v = _biased(ctx, inputs)
    cubic = bb.emit(relax.op.multiply(bb.emit(relax.op.multiply(_f32(FAST_GELU_C), v)), v))
    u = bb.emit(relax.op.multiply(v, bb.emit(relax.op.add(cubic, _f32(FAST_GELU_B)))))
    return relax.op.multiply(v, _logistic(bb, bb.emit(relax.op.multiply(u, _f32(2.0)))))


def convert_quick_gelu(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """QuickGelu(X) = ``X · logistic(alpha · X)`` (``alpha`` default 1.702, float32; ORT's
    logistic is an MLAS polynomial, here ``1 / (1 + e^{−z})`` with the vector exp)."""
    x = _biased(ctx, inputs[:1])
    alpha = float(np.float32(attrs.get("alpha", 1.702)))
    scaled = x if alpha == 1.0 else ctx.bb.emit(relax.op.multiply(x, _f32(alpha)))
    return relax.op.multiply(x, _logistic(ctx.bb, scaled))


# (domain, op_type) → converter(ctx, inputs, attrs); merged into the importer's table.
CONVERTERS: dict[tuple[str, str], Callable] = {
    ("com.microsoft", "FusedMatMul"): convert_fused_matmul,
    ("com.microsoft", "SkipLayerNormalization"): convert_skip_layer_norm,
    ("com.microsoft", "SkipSimplifiedLayerNormalization"): convert_skip_simplified_layer_norm,
    ("", "SimplifiedLayerNormalization"): convert_simplified_layer_norm,
    ("com.microsoft", "Gelu"): convert_gelu,
    ("com.microsoft", "BiasGelu"): convert_bias_gelu,
    ("com.microsoft", "FastGelu"): convert_fast_gelu,
    ("com.microsoft", "QuickGelu"): convert_quick_gelu,
}
