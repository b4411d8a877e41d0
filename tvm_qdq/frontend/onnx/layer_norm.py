"""ONNX LayerNormalization computed in ONNX Runtime's CPU order of operations (float32).

Quantized transformers re-quantize every LayerNorm output, and an output that falls within
1e-5 LSB of a rounding tie is decided by the float32 rounding of the normalization itself;
one flipped LSB early in a transformer is amplified by the layers after it. So tvm-qdq
computes the float32 LayerNorm as ORT's CPU kernel does, operation for operation, rather
than as TVM's ``R.nn.layer_norm`` (single-pass float32 Σx and Σx², ``x·rsqrt(var + ε)``).

**What ORT computes** (1.32.0, x86-64 with AVX2/FMA; measured against the installed build —
the kernel in the binary, not the portable ``ComputeJob`` of
``onnxruntime/core/providers/cpu/nn/layer_norm_impl.cc``, which accumulates in float32 in
one pass). For one row ``x[0..n)`` with scale ``γ`` and bias ``β``:

1. ``mean``: ``x`` widened to float64, summed in 4 lanes (lane ``j`` takes
   ``x[4k + j]``, ``k`` increasing), lanes combined as ``(l0 + l2) + (l1 + l3)``, the
   ``n mod 4`` trailing elements added in order, divided by ``n`` in float64, rounded to
   float32.
2. ``var`` (two-pass, float32): ``d = x − mean``; ``Σ d²`` in 8 lanes, each lane one FMA
   chain ``acc = fma(d, d, acc)`` over ``x[8k + j]``; lanes combined as
   ``((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))``; of the ``r = n mod 8`` trailing
   elements, when ``r ≥ 4`` the first four are added as rounded products ``acc + fl(d²)``
   and the rest as FMAs (all ``r`` as FMAs when ``r ≤ 3``); then ``var = Σ / n``.
3. ``inv = 1 / sqrt(var + ε)`` (float32 ``sqrt`` and division, ``ε`` as float32).
4. ``y = fma((x − mean) · inv, γ, β)`` (``(x − mean) · inv · γ`` without bias).

The optional outputs ``Mean`` and ``InvStdDev`` are the float32 ``mean`` and ``inv``.
Rows shorter than 8 take another ORT path (not reproduced: same formula, a few ulps apart).

The TE function below is that arithmetic. LLVM contracts ``a · b + c`` into one FMA in
TVM's x86 build, which gives steps 2 and 4 their FMAs; the four rounded products of step 2
go through ``max(d², 0)`` (equal to ``d²``) so that no FMA is formed there. The two lane
sums are reductions along the last axis of ``[rows, lanes, k]``, so the x86 row-reduction
schedule applies as it does to TVM's layer norm.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import relax, te, tirx

from ...relax_utils import partial_shape
from .context import ConvertContext
from .shapes import known_shape, static_dims

#: Lanes of ORT's float64 sum (one AVX2 register of float64).
MEAN_LANES = 4
#: Lanes of ORT's float32 sum of squares (one AVX2 register of float32).
VAR_LANES = 8


def _row(idx: tuple, *tail) -> tuple:
    """Index of the row ``idx`` extended by ``tail``."""
    return (*idx, *tail)


def ort_layer_norm_te(x: te.Tensor, gamma: te.Tensor, beta: te.Tensor | None, epsilon: float,
                      stats: bool = False) -> te.Tensor | list[te.Tensor]:
    """LayerNorm over the last axis of ``x`` (float32, ``[..., n]``) in ORT's order (module
    docstring); ``gamma``/``beta`` are ``[n]``. Returns ``y``, or ``[y, mean, inv]`` (both
    of shape ``x.shape[:-1]``) when ``stats``. The leading dimensions may be symbolic; ``n``
    must be static."""
    shape = [int(s) if isinstance(s, tirx.IntImm) else s for s in x.shape]
    lead, n = tuple(shape[:-1]), int(shape[-1])
    f32, f64 = "float32", "float64"
    n_mean, n_var = n // MEAN_LANES, n // VAR_LANES

    lanes4 = None
    if n_mean:
        k4 = te.reduce_axis((0, n_mean), "k4")
        lanes4 = te.compute(
            (*lead, MEAN_LANES),
            lambda *i: te.sum(x[_row(i[:-1], k4 * MEAN_LANES + i[-1])].astype(f64), axis=k4),
            name="ln_mean_lanes")

    def mean_of_row(*r):
        total = tirx.const(0.0, f64)
        if lanes4 is not None:
            total = ((lanes4[_row(r, 0)] + lanes4[_row(r, 2)])
                     + (lanes4[_row(r, 1)] + lanes4[_row(r, 3)]))
        for h in range(MEAN_LANES * n_mean, n):
            total = total + x[_row(r, h)].astype(f64)
        return (total / tirx.const(float(n), f64)).astype(f32)

    mean = te.compute(lead, mean_of_row, name="ln_mean")

    lanes8 = None
    if n_var:
        k8 = te.reduce_axis((0, n_var), "k8")

        def square_lane(*i):
            d = x[_row(i[:-1], k8 * VAR_LANES + i[-1])] - mean[i[:-1]]
            return te.sum(d * d, axis=k8)  # acc + d·d: one FMA per step

        lanes8 = te.compute((*lead, VAR_LANES), square_lane, name="ln_var_lanes")

    def inv_std_of_row(*r):
        acc = tirx.const(0.0, f32)
        if lanes8 is not None:
            s = [lanes8[_row(r, j)] + lanes8[_row(r, j + 4)] for j in range(4)]
            acc = (s[0] + s[2]) + (s[1] + s[3])
        h = VAR_LANES * n_var
        if n - h >= 4:
            for j in range(4):
                d = x[_row(r, h + j)] - mean[r]
                acc = acc + tirx.max(d * d, tirx.const(0.0, f32))  # rounded product
            h += 4
        for j in range(h, n):
            d = x[_row(r, j)] - mean[r]
            acc = acc + d * d  # FMA
        var = acc / tirx.const(float(n), f32)
        return tirx.const(1.0, f32) / tirx.sqrt(var + tirx.const(epsilon, f32))

    inv = te.compute(lead, inv_std_of_row, name="ln_inv_std")

    def out(*i):
        t = (x[i] - mean[i[:-1]]) * inv[i[:-1]]
        return t * gamma[i[-1]] + beta[i[-1]] if beta is not None else t * gamma[i[-1]]

    y = te.compute(tuple(shape), out, name="ln_out")
    return [y, mean, inv] if stats else y


def convert_layer_norm(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr | None:
    """LayerNormalization(X, Scale[, B]) over axes ``axis..rank-1`` in ORT's float32 order.

    The normalized axes are flattened to one of length ``n`` (scale and bias must hold
    ``n`` values each); the leading axes may be symbolic, the normalized ones must be static
    (named error otherwise). Float32 only (other types, unknown shapes and broadcast scales
    are left to TVM's converter)."""
    x = inputs[0]
    gamma = inputs[1] if len(inputs) > 1 else None
    beta = inputs[2] if len(inputs) > 2 else None
    shape = partial_shape(x)
    if shape is None or gamma is None or str(x.ty.dtype) != "float32":
        return None
    if int(attrs.get("stash_type", 1)) != 1:
        return None
    ndim = len(shape)
    axis = int(attrs.get("axis", -1))
    axis = axis + ndim if axis < 0 else axis
    if not 0 <= axis < ndim:
        raise ctx.fail(f"axis {attrs.get('axis')} out of range for rank {ndim}")
    static_dims(x, ctx.label, 0, axes=range(axis, ndim), why="the normalized axes")
    n = math.prod(shape[axis:])
    for param in (gamma, beta):
        if param is None:
            continue
        p_shape = known_shape(param)
        if p_shape is None or math.prod(p_shape) != n or str(param.ty.dtype) != "float32":
            return None
    epsilon = float(np.float32(attrs.get("epsilon", 1e-5)))
    bb = ctx.bb
    rows = shape[:axis]
    flat = x if axis == ndim - 1 else bb.emit(relax.op.reshape(x, [*rows, n]))
    g = gamma if len(known_shape(gamma)) == 1 else bb.emit(relax.op.reshape(gamma, [n]))
    b = None
    if beta is not None:
        b = beta if len(known_shape(beta)) == 1 else bb.emit(relax.op.reshape(beta, [n]))
    outputs = [o for o in ctx.onnx_node.output]
    stats = any(outputs[1:])
    args = [flat, g] + ([b] if b is not None else [])

    def build(*tensors):
        return ort_layer_norm_te(tensors[0], tensors[1], tensors[2] if b is not None else None,
                                 epsilon, stats)

    result = bb.emit_te(build, *args, primfunc_name_hint="layer_norm")
    if not stats:
        return result if axis == ndim - 1 else relax.op.reshape(result, shape)
    y = bb.emit(relax.TupleGetItem(result, 0))
    keep = [*rows] + [1] * (ndim - axis)
    return relax.Tuple([
        y if axis == ndim - 1 else bb.emit(relax.op.reshape(y, shape)),
        bb.emit(relax.op.reshape(relax.TupleGetItem(result, 1), keep)),
        bb.emit(relax.op.reshape(relax.TupleGetItem(result, 2), keep)),
    ])
