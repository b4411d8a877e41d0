"""PyTorch dynamic quantization (``quantized::linear_dynamic`` and friends) as Relax.

The numerics are those of PyTorch's fbgemm kernels, used by the default ``x86`` and
``fbgemm`` quantized engines (``PackedLinearWeight::apply_dynamic_impl``):

1. ``[lo, hi] = [min(min(x), 0), max(max(x), 0)]`` over the whole input tensor;
2. :func:`choose_qparams_reference` (ATen's ``quant_utils::ChooseQuantizationParams``,
   ``qmin = 0``, ``qmax = 255``, halved to ``[0, 127]`` when ``reduce_range``):
   ``scale = (hi - lo) / (qmax - qmin)`` in float64, replaced by 0.1 when its float32 value is 0
   or has an infinite reciprocal, raised to ``6.1e-5`` (stretching ``lo``/``hi`` by the same
   factor) when smaller; ``zp = nearbyint(qmin - lo / scale)`` or ``nearbyint(qmax - hi /
   scale)`` (whichever adds the smaller terms), clamped to ``[qmin, qmax]``;
3. activation quantization as fbgemm's ``QuantizeAvx2`` (``LEGACY``):
   ``q = clamp(nearbyint(fma(x, float32(1 / float32(scale)), zp)), 0, 255)`` in uint8;
4. ``acc[.., n] = Σ_k (q_k - zp) · (W[n, k] - zw[n])`` exact in int32 (the integer GEMM
   ``q @ W'ᵀ`` minus the correction ``zp · Σ_k W'[n, k]``);
5. ``y = fma(float32(acc), float32(s_x · s_w[n]), bias[n])`` (``ReQuantizeForFloat``), then
   ``max(y, 0)`` for the ReLU-fused op.

Steps 2–3 use float64 where fbgemm relies on double precision or on a fused multiply-add: a
float32 product is exact in float64, so rounding the float64 ``x · inv + zp`` (and
``acc · m + bias``) to float32 once reproduces the FMA. Measured against the installed
PyTorch on random inputs, the quantized activations and integer accumulators are identical
and the outputs equal bit for bit (see ``tests/test_torch_dynamic.py``).

``quantized::linear_dynamic_fp16``: the weight is stored as float16 and the product is float32
(``y = x @ float32(W16)ᵀ + bias``), as fbgemm's fp16 GEMM computes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from ...dtypes import QTYPES
from ...qnn.ops import const, matmul_integer_const, shape_of

QMIN, QMAX = 0, 255
SMALL_SCALE_THRESHOLD = np.float32(6.1e-5)


@dataclass(frozen=True)
class DynamicLinearWeights:
    """What ``quantized::linear_unpack`` returns, as numpy.

    ``weight`` int8 ``[N, K]``; ``scale``/``zero_point`` 0-d (per tensor) or ``[N]`` (per
    output channel); ``bias`` float32 ``[N]`` or None.
    """

    weight: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    bias: np.ndarray | None

    @property
    def per_channel(self) -> bool:
        return self.scale.ndim == 1

    @classmethod
    def from_packed(cls, packed) -> DynamicLinearWeights:
        """Unpack a ``LinearPackedParamsBase`` script object holding a qint8 weight."""
        import torch

        w, b = torch.ops.quantized.linear_unpack(packed)
        if w.dtype != torch.qint8:
            raise TypeError(f"expected a qint8 weight, got {w.dtype}")
        if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            if int(w.q_per_channel_axis()) != 0:
                raise ValueError("per-channel weight quantized along axis "
                                 f"{w.q_per_channel_axis()} (expected 0, the output channel)")
            scale = w.q_per_channel_scales().numpy().astype(np.float32)
            zp = w.q_per_channel_zero_points().numpy().astype(np.int64)
        else:
            scale = np.asarray(w.q_scale(), np.float32)
            zp = np.asarray(w.q_zero_point(), np.int64)
        bias = None if b is None else b.detach().numpy().astype(np.float32)
        return cls(w.int_repr().numpy().astype(np.int8), scale, zp, bias)


# --------------------------------------------------------------------------------------------
# numpy references (what the Relax below computes)


def choose_qparams_reference(x_min: float, x_max: float,
                             reduce_range: bool) -> tuple[np.float32, int]:
    """ATen's ``ChooseQuantizationParams`` for uint8 (no sparsity / power-of-two options)."""
    qmin, qmax = (QMIN // 2, QMAX // 2) if reduce_range else (QMIN, QMAX)
    lo = min(np.float32(x_min), np.float32(0.0))
    hi = max(np.float32(x_max), np.float32(0.0))
    scale = (float(hi) - float(lo)) / (qmax - qmin)
    with np.errstate(divide="ignore", over="ignore"):
        if np.float32(scale) == 0 or np.isinf(np.float32(1.0) / np.float32(scale)):
            scale = 0.1
    if scale < float(SMALL_SCALE_THRESHOLD):
        org = np.float32(scale)
        scale = float(SMALL_SCALE_THRESHOLD)
        if lo == 0:
            hi = np.float32(SMALL_SCALE_THRESHOLD * np.float32(qmax - qmin))
        elif hi == 0:
            lo = np.float32(-SMALL_SCALE_THRESHOLD * np.float32(qmax - qmin))
        else:
            amp = np.float32(SMALL_SCALE_THRESHOLD / org)
            lo, hi = np.float32(lo * amp), np.float32(hi * amp)
    from_min, from_max = qmin - float(lo) / scale, qmax - float(hi) / scale
    err_min = abs(qmin) - abs(float(lo) / scale)
    err_max = abs(qmax) - abs(float(hi) / scale)
    initial = from_min if err_min < err_max else from_max
    zp = int(np.clip(np.rint(initial), qmin, qmax))
    return np.float32(scale), zp


def quantize_reference(x: np.ndarray, scale: np.float32, zero_point: int) -> np.ndarray:
    """``clamp(nearbyint(fma(x, 1/scale, zp)), 0, 255)`` as uint8 (fbgemm ``QuantizeAvx2``)."""
    inv = np.float32(np.float32(1.0) / np.float32(scale))
    t = (x.astype(np.float64) * np.float64(inv) + zero_point).astype(np.float32)
    return np.clip(np.rint(t), QMIN, QMAX).astype(np.uint8)


def linear_dynamic_reference(x: np.ndarray, w: DynamicLinearWeights, reduce_range: bool,
                             relu: bool = False) -> np.ndarray:
    """numpy ``quantized::linear_dynamic`` (fbgemm numerics, see the module docstring)."""
    x = np.asarray(x, np.float32)
    scale, zp = choose_qparams_reference(x.min(), x.max(), reduce_range)
    q = quantize_reference(x, scale, zp).astype(np.int64)
    w_shift = w.weight.astype(np.int64) - np.asarray(w.zero_point).reshape(-1, 1)
    acc = (q - zp) @ w_shift.T
    m = (scale * w.scale).astype(np.float32)
    y = acc.astype(np.float32).astype(np.float64) * m.astype(np.float64)
    if w.bias is not None:
        y = y + w.bias.astype(np.float64)
    y = y.astype(np.float32)
    return np.maximum(y, np.float32(0)) if relu else y


# --------------------------------------------------------------------------------------------
# Relax builders


def _f64(v: float) -> relax.Expr:
    return const(v, "float64")


def _f32(v: float) -> relax.Expr:
    return const(v, "float32")


def choose_qparams(bb: relax.BlockBuilder, x: relax.Expr,
                   reduce_range: bool) -> tuple[relax.Expr, relax.Expr]:
    """Runtime ``(scale float32 0-d, zero point int32 0-d)`` of ``x`` per
    :func:`choose_qparams_reference` (every branch of ATen's code as a ``where``)."""
    op = relax.op
    qmin, qmax = (QMIN // 2, QMAX // 2) if reduce_range else (QMIN, QMAX)
    span = qmax - qmin
    lo = bb.emit(op.minimum(bb.emit(op.min(x)), _f32(0.0)), "qnn_dyn_min")
    hi = bb.emit(op.maximum(bb.emit(op.max(x)), _f32(0.0)), "qnn_dyn_max")
    lo64, hi64 = bb.emit(op.astype(lo, "float64")), bb.emit(op.astype(hi, "float64"))
    scale = bb.emit(op.divide(op.subtract(hi64, lo64), _f64(float(span))))
    # float32(scale) == 0 or 1 / float32(scale) == inf  →  0.1
    recip = bb.emit(op.divide(_f32(1.0), op.astype(scale, "float32")))
    scale = bb.emit(op.where(op.isinf(recip), _f64(0.1), scale))
    # scale < 6.1e-5  →  6.1e-5, stretching lo / hi (float32 arithmetic, as ATen)
    thr = float(SMALL_SCALE_THRESHOLD)
    small = bb.emit(op.less(scale, _f64(thr)))
    amp = bb.emit(op.divide(_f32(thr), op.astype(scale, "float32")))
    lo_is_0 = bb.emit(op.equal(lo, _f32(0.0)))
    hi_is_0 = bb.emit(op.equal(hi, _f32(0.0)))
    stretched = float(np.float32(SMALL_SCALE_THRESHOLD * np.float32(span)))
    lo_small = op.where(lo_is_0, lo, op.where(hi_is_0, _f32(-stretched), op.multiply(lo, amp)))
    hi_small = op.where(lo_is_0, _f32(stretched), op.where(hi_is_0, hi, op.multiply(hi, amp)))
    lo = bb.emit(op.astype(op.where(small, lo_small, lo), "float64"))
    hi = bb.emit(op.astype(op.where(small, hi_small, hi), "float64"))
    scale = bb.emit(op.where(small, _f64(thr), scale))
    # zero point from the end point whose terms are smaller, nudged to an integer
    lo_q = bb.emit(op.divide(lo, scale))
    hi_q = bb.emit(op.divide(hi, scale))
    err_min = op.subtract(_f64(abs(qmin)), op.abs(lo_q))
    err_max = op.subtract(_f64(abs(qmax)), op.abs(hi_q))
    initial = op.where(op.less(err_min, err_max), op.subtract(_f64(qmin), lo_q),
                       op.subtract(_f64(qmax), hi_q))
    zp = bb.emit(op.astype(op.clip(op.round(bb.emit(initial)), qmin, qmax), "int32"),
                 "qnn_dyn_zero_point")
    scale32 = bb.emit(op.astype(scale, "float32"), "qnn_dyn_scale")
    return scale32, zp


def quantize_activation(bb: relax.BlockBuilder, x: relax.Expr, scale: relax.Expr,
                        zero_point: relax.Expr) -> relax.Var:
    """``q = clamp(nearbyint(float32(x · float32(1/scale) + zp)), 0, 255)`` as uint8, the
    multiply-add exact in float64 and rounded once (fbgemm's FMA)."""
    op = relax.op
    inv = bb.emit(op.astype(op.divide(_f32(1.0), scale), "float64"))
    t = op.add(op.multiply(op.astype(x, "float64"), inv), op.astype(zero_point, "float64"))
    t = op.round(op.astype(t, "float32"))
    return bb.emit(op.astype(op.clip(t, QMIN, QMAX), "uint8"), "qnn_dyn_quantize")


def linear_dynamic(bb: relax.BlockBuilder, x: relax.Expr, w: DynamicLinearWeights,
                   reduce_range: bool, relu: bool = False) -> relax.Var:
    """``quantized::linear_dynamic`` / ``linear_relu_dynamic`` on a float32 ``x`` ``[.., K]``.

    Emits: runtime qparams of ``x`` → uint8 ``x_q`` → ``R.matmul(x_q, W'ᵀ (int8 [K, N]),
    out_dtype=int32) - zp · Σ_k W'[k, n]`` → ``fma(float32(acc), float32(s_x · s_w), bias)``.
    """
    op = relax.op
    if tuple(shape_of(x))[-1] != w.weight.shape[1]:
        raise ValueError(f"input has {shape_of(x)[-1]} features, the weight "
                         f"{w.weight.shape[1]}")
    scale, zp = choose_qparams(bb, x, reduce_range)
    q = quantize_activation(bb, x, scale, zp)
    w_shift = (w.weight.astype(np.int64) - np.asarray(w.zero_point).reshape(-1, 1)).T
    acc, acc_dtype, _ = matmul_integer_const(bb, q, QTYPES["uint8"], zp, w_shift, "int32")
    m = bb.emit(op.multiply(scale, const(w.scale, "float32")), "qnn_dyn_out_scale")
    acc32 = op.astype(acc, "float32")
    if w.bias is not None:
        y = op.add(op.multiply(op.astype(acc32, "float64"), op.astype(m, "float64")),
                   const(w.bias, "float64"))
        y = op.astype(y, "float32")
    else:
        y = op.multiply(acc32, m)
    if relu:
        y = op.maximum(y, _f32(0.0))
    return bb.emit(y, "qnn_dyn_dequantize")


def linear_fp16(bb: relax.BlockBuilder, x: relax.Expr, weight: np.ndarray,
                bias: np.ndarray | None, relu: bool = False) -> relax.Var:
    """``quantized::linear_dynamic_fp16``: ``y = x @ float32(W16)ᵀ + bias`` (``W16`` is the
    float16 weight ``[N, K]``, kept as a float16 constant in the IR)."""
    op = relax.op
    w16 = const(np.ascontiguousarray(weight.astype(np.float16).T), "float16")
    w = bb.emit(op.astype(w16, "float32"), "qnn_fp16_weight")
    y = op.matmul(x, w, out_dtype="float32")
    if bias is not None:
        y = op.add(y, const(bias.astype(np.float32), "float32"))
    if relu:
        y = op.maximum(y, _f32(0.0))
    return bb.emit(y, "qnn_linear_fp16")
