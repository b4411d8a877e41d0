"""One hand-written QDQ graph per integer rule of ``relay_passes``, compiled and run.

Every case is ``input → Q → DQ → op → Q → DQ → output`` with weights and biases as
``DequantizeLinear`` of integer initializers, the way ORT's quantizer writes them (int8 weights
per tensor or per channel, int32 biases with scale ``s_x · s_w`` and zero point 0).  Output
parameters come from a float run of the same graph (:mod:`tvm_qdq.testing.qdq_graphs`).

For each case two tests share one compiled model:

* ``test_matches_ort``: every output within 1 LSB of ONNX Runtime and ≥ 99.9 % of the elements
  exactly equal (single-op contract; measured 100 % on every case, ORT 1.32, 2026-12-07);
* ``test_goes_integer``: the op is in ``report.integer`` with outcome ``"integer"`` and no
  float op is left (``report.float_ops`` is empty); data movement ops fold their quantize.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import tvm_qdq
from tvm_qdq.testing.oracle import assert_single_op_contract, output_quant_info, run_ort
from tvm_qdq.testing.qdq_graphs import QP, QdqGraph, make_qdq_model

CONV2D = "relax.nn.conv2d"
CONV1D = "relax.nn.conv1d"
MATMUL = "relax.matmul"
ADD = "relax.add"
MUL = "relax.multiply"
CONCAT = "relax.concat"


# --------------------------------------------------------------------------------------------
# Parameter and value helpers
# --------------------------------------------------------------------------------------------

_RANGES: dict[type, tuple[int, int]] = {
    np.uint8: (0, 255),
    np.int8: (-128, 127),
    np.uint16: (0, 65535),
}


def act_qp(dtype: type = np.uint8, zero_point: int | None = None, bound: float = 3.0) -> QP:
    """Activation parameters whose range covers at least ``[-bound, bound]``.

    The default zero point is the type's midpoint (128 for uint8, 0 for int8, 32768 for uint16).
    """
    qmin, qmax = _RANGES[dtype]
    zp = (qmin + qmax + 1) // 2 if zero_point is None else zero_point
    scale = bound / min(qmax - zp, zp - qmin)
    return QP(np.float32(scale), zp, dtype)


def int8_weights(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Symmetric int8 weights in ``[-127, 127]`` (what ORT's quantizer produces)."""
    return np.random.default_rng(seed).integers(-127, 128, shape).astype(np.int8)


def weight_qp(seed: int, channels: int | None, axis: int = 0) -> QP:
    """int8 weight parameters, zero point 0: per tensor (``channels=None``) or per channel."""
    rng = np.random.default_rng(seed)
    if channels is None:
        return QP(np.float32(0.01), 0, np.int8)
    scale = rng.uniform(0.004, 0.02, channels).astype(np.float32)
    return QP(scale, np.zeros(channels, np.int8), np.int8, axis)


def bias_real(seed: int, channels: int) -> np.ndarray:
    """Float bias values, magnitude comparable to the outputs."""
    return np.random.default_rng(seed).normal(0.0, 1.0, channels)


def bias_scale(x: QP, w: QP, factor: float = 1.0) -> np.ndarray:
    """``factor · s_x · s_w`` in float32 (per channel when the weights are)."""
    return (np.float32(factor) * x.scale_array() * w.scale_array()).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One single-op QDQ graph and what the pass must do with it.

    ``inputs`` maps each graph input to (shape, standard deviation of its normal feed);
    ``saturate`` multiplies the test feeds (not the calibration feeds) so values leave the
    calibrated range; ``integer_ops`` must be recorded with outcome ``"integer"`` (with
    ``detail`` contained in the first one's detail, if given); ``folded`` asks every quantize
    to be folded (data movement with unchanged parameters); ``ort_level`` caps ORT's graph
    optimizations for the reference run (None: ORT's default).
    """

    build: Callable[[QdqGraph], None]
    inputs: dict[str, tuple[tuple[int, ...], float]]
    integer_ops: tuple[str, ...] = ()
    detail: str | None = None
    folded: bool = False
    opset: int = 17
    saturate: float = 1.0
    seed: int = 0
    ort_level: ort.GraphOptimizationLevel | None = None


CASES: dict[str, Case] = {}


def case(name: str, inputs: dict[str, tuple[tuple[int, ...], float]], **kwargs) -> Callable:
    """Register the decorated build function as case ``name``."""

    def wrap(build: Callable[[QdqGraph], None]) -> Callable[[QdqGraph], None]:
        assert name not in CASES, name
        CASES[name] = Case(build, inputs, **kwargs)
        return build

    return wrap


# --- Conv ------------------------------------------------------------------------------------


def conv_case(
    name: str,
    x_shape: tuple[int, ...],
    out_ch: int,
    kernel: tuple[int, ...],
    x: QP,
    *,
    per_channel: bool = True,
    bias: bool = True,
    bias_factor: float = 1.0,
    group: int = 1,
    w_uint8: bool = False,
    saturate: float = 1.0,
    opset: int = 17,
    detail: str | None = None,
    **attrs,
) -> None:
    """Register a Conv case: int8 (or asymmetric uint8) weights, optional int32 bias."""
    seed = len(CASES)
    w_shape = (out_ch, x_shape[1] // group, *kernel)
    if w_uint8:
        wq = np.random.default_rng(seed).integers(0, 256, w_shape).astype(np.uint8)
        wp = QP(np.float32(0.01), 118, np.uint8)
    else:
        wq = int8_weights(seed, w_shape)
        wp = weight_qp(seed + 1, out_ch if per_channel else None)
    b = bias_real(seed + 2, out_ch)

    def build(g: QdqGraph) -> None:
        xin = g.input("x", list(x_shape), x)
        inputs = [xin, g.weight("w", wq, wp)]
        if bias:
            inputs.append(g.bias("b", b, bias_scale(x, wp, bias_factor)))
        y = g.node("Conv", inputs, kernel_shape=list(kernel), group=group, **attrs)
        g.output(y, x.dtype)

    op = CONV1D if len(x_shape) == 3 else CONV2D
    case(name, {"x": (x_shape, 1.0)}, integer_ops=(op,), saturate=saturate, opset=opset,
         detail=detail, seed=seed)(build)


U8 = act_qp(np.uint8)
S8 = act_qp(np.int8)
S8_NZ = act_qp(np.int8, zero_point=-20)

conv_case("conv3x3_pad1_u8_pt_bias", (1, 8, 8, 8), 16, (3, 3), U8, per_channel=False,
          pads=[1, 1, 1, 1], saturate=2.5)
conv_case("conv3x3_pad1_s8_pc_nobias", (1, 8, 8, 8), 16, (3, 3), S8, bias=False,
          pads=[1, 1, 1, 1])
conv_case("conv_stride2_u8_pc", (1, 8, 9, 9), 16, (3, 3), U8, pads=[1, 1, 1, 1],
          strides=[2, 2])
conv_case("conv_dilation2_s8nz_pc", (1, 8, 10, 10), 8, (3, 3), S8_NZ, pads=[2, 2, 2, 2],
          dilations=[2, 2])
conv_case("conv_group2_s8nz_pt", (1, 8, 8, 8), 8, (3, 3), S8_NZ, per_channel=False, group=2,
          pads=[1, 1, 1, 1])
conv_case("conv_depthwise_u8_pc", (1, 8, 8, 8), 8, (3, 3), U8, group=8, pads=[1, 1, 1, 1])
conv_case("conv1x1_s8_pt_nobias", (1, 16, 6, 6), 8, (1, 1), S8, per_channel=False, bias=False)
conv_case("conv_asym_pads_u8_pc", (1, 8, 7, 7), 8, (3, 3), U8, pads=[0, 1, 1, 0])
conv_case("conv_u8_weights_zp118", (1, 8, 7, 7), 8, (3, 3), U8, w_uint8=True,
          pads=[1, 1, 1, 1])
conv_case("conv_bias_scale_0p7", (1, 8, 7, 7), 8, (3, 3), U8, bias_factor=0.7,
          pads=[1, 1, 1, 1])
conv_case("conv1d_u8_pc_bias", (1, 8, 20), 16, (3,), U8, pads=[1, 1])
conv_case("conv1d_s8nz_pt_stride2", (1, 8, 21), 8, (5,), S8_NZ, per_channel=False, bias=False,
          pads=[2, 2], strides=[2])
# 16-bit activations: (65535 + 32768) · Σ|w| over 64·9 int8 weights is far beyond 2^31.
conv_case("conv_u16_int64_acc", (1, 64, 6, 6), 8, (3, 3),
          act_qp(np.uint16), pads=[1, 1, 1, 1], opset=21, detail="int64")


# --- MatMul / Gemm ---------------------------------------------------------------------------


def matmul_const_case(name: str, a_shape: tuple[int, ...], n: int, a: QP, per_column: bool,
                      opset: int = 17, detail: str | None = None,
                      ort_level: ort.GraphOptimizationLevel | None = None) -> None:
    """Register ``A @ W`` with a constant ``[K, N]`` int8 weight (per tensor or axis 1)."""
    seed = len(CASES)
    k = a_shape[-1]
    wq = int8_weights(seed, (k, n))
    wp = weight_qp(seed + 1, n if per_column else None, axis=1)

    def build(g: QdqGraph) -> None:
        y = g.node("MatMul", [g.input("a", list(a_shape), a), g.weight("w", wq, wp)])
        g.output(y, a.dtype)

    case(name, {"a": (a_shape, 1.0)}, integer_ops=(MATMUL,), opset=opset, detail=detail,
         seed=seed, ort_level=ort_level)(build)


matmul_const_case("matmul_2d_u8_pt", (4, 32), 16, U8, per_column=False)
matmul_const_case("matmul_2d_s8_pcol", (4, 32), 16, S8, per_column=True)
matmul_const_case("matmul_3d_s8nz_pcol", (1, 8, 32), 16, S8_NZ, per_column=True)
matmul_const_case("matmul_3d_u8_pt", (1, 8, 32), 16, U8, per_column=False)
# 16-bit activations, small K: (65535 + 32768) · Σ|w| over 16 weights stays below 2^31.
# ORT's level-2 optimizations fuse DequantizeLinear(int8 W) + MatMul into MatMulNBits, which
# (accuracy level 4) quantizes the uint16-precision activations to int8 internally: it is up to
# 167 uint16 LSB away from the exact result (and from ORT without that fusion), so the reference
# runs with basic optimizations only.
matmul_const_case("matmul_u16_int32_acc", (1, 8, 16), 8, act_qp(np.uint16), per_column=True,
                  opset=21, detail="int32", ort_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)


@case("matmul_two_activations_u8", {"a": ((1, 4, 8, 16), 1.0), "b": ((1, 4, 16, 8), 1.0)},
      integer_ops=(MATMUL,))
def _matmul_two_activations(g: QdqGraph) -> None:
    a = g.input("a", [1, 4, 8, 16], U8)
    b = g.input("b", [1, 4, 16, 8], act_qp(np.uint8, zero_point=100, bound=2.0))
    g.output(g.node("MatMul", [a, b]), np.uint8)


@case("matmul_two_activations_s8", {"a": ((2, 8, 16), 1.0), "b": ((2, 16, 8), 1.0)},
      integer_ops=(MATMUL,))
def _matmul_two_activations_s8(g: QdqGraph) -> None:
    a = g.input("a", [2, 8, 16], S8)
    b = g.input("b", [2, 16, 8], act_qp(np.int8, bound=2.0))
    g.output(g.node("MatMul", [a, b]), np.int8)


_GEMM_W = int8_weights(100, (16, 32))
_GEMM_WP = weight_qp(101, 16, axis=0)
_GEMM_B = bias_real(102, 16)


@case("gemm_transB_alpha0p5_bias", {"a": ((4, 32), 1.0)}, integer_ops=(MATMUL,))
def _gemm_trans_b(g: QdqGraph) -> None:
    a = g.input("a", [4, 32], U8)
    w = g.weight("w", _GEMM_W, _GEMM_WP)
    c = g.bias("c", _GEMM_B, bias_scale(U8, _GEMM_WP))
    g.output(g.node("Gemm", [a, w, c], transB=1, alpha=0.5), np.uint8)


_GEMM_W0 = int8_weights(103, (32, 16))
_GEMM_WP0 = QP(np.float32(0.008), 0, np.int8)


@case("gemm_transB0_bias", {"a": ((4, 32), 1.0)}, integer_ops=(MATMUL,))
def _gemm_no_trans(g: QdqGraph) -> None:
    a = g.input("a", [4, 32], S8)
    w = g.weight("w", _GEMM_W0, _GEMM_WP0)
    c = g.bias("c", _GEMM_B, bias_scale(S8, _GEMM_WP0))
    g.output(g.node("Gemm", [a, w, c]), np.int8)


# --- Add / Mul / Concat ----------------------------------------------------------------------


@case("add_two_scales_u8", {"a": ((1, 8, 6, 6), 1.0), "b": ((1, 8, 6, 6), 0.5)},
      integer_ops=(ADD,), saturate=2.0)
def _add(g: QdqGraph) -> None:
    a = g.input("a", [1, 8, 6, 6], U8)
    b = g.input("b", [1, 8, 6, 6], act_qp(np.uint8, zero_point=90, bound=1.5))
    g.output(g.node("Add", [a, b]), np.uint8)


@case("add_broadcast_s8", {"a": ((1, 8, 6, 6), 1.0), "b": ((1, 8, 1, 1), 1.0)},
      integer_ops=(ADD,))
def _add_broadcast(g: QdqGraph) -> None:
    a = g.input("a", [1, 8, 6, 6], S8)
    b = g.input("b", [1, 8, 1, 1], act_qp(np.int8, zero_point=10, bound=2.0))
    g.output(g.node("Add", [a, b]), np.int8)


@case("mul_two_u8", {"a": ((1, 8, 6, 6), 1.0), "b": ((1, 8, 6, 6), 1.0)}, integer_ops=(MUL,))
def _mul(g: QdqGraph) -> None:
    a = g.input("a", [1, 8, 6, 6], U8)
    b = g.input("b", [1, 8, 6, 6], act_qp(np.uint8, zero_point=110, bound=2.0))
    g.output(g.node("Mul", [a, b]), np.uint8)


@case("mul_broadcast_s8", {"a": ((1, 8, 6, 6), 1.0), "b": ((1, 1, 6, 6), 1.0)},
      integer_ops=(MUL,))
def _mul_broadcast(g: QdqGraph) -> None:
    a = g.input("a", [1, 8, 6, 6], S8)
    b = g.input("b", [1, 1, 6, 6], act_qp(np.int8, zero_point=-5, bound=2.0))
    g.output(g.node("Mul", [a, b]), np.int8)


# Exact ties: with power-of-two scales ORT's float arithmetic (DQ, op, Q) is exact, so it rounds
# the many exact ties (x.5) half to even, as the integer rules must: a rounding-mode bug fails
# the single-op contract's exact share (tests/test_qoperator_ops.py has the QOperator forms).
P2_U8 = QP(np.float32(2.0**-5), 128, np.uint8)


@case("add_exact_ties_u8", {"a": ((1, 8, 6, 6), 1.0), "b": ((1, 8, 6, 6), 0.5)},
      integer_ops=(ADD,))
def _add_ties(g: QdqGraph) -> None:
    # Ratios 2^-5 / 2^-4 = 0.5 and 2^-6 / 2^-4 = 0.25: about a quarter of the sums are ties.
    a = g.input("a", [1, 8, 6, 6], P2_U8)
    b = g.input("b", [1, 8, 6, 6], QP(np.float32(2.0**-6), 100, np.uint8))
    g.output(g.node("Add", [a, b]), qp=QP(np.float32(2.0**-4), 120, np.uint8))


@case("mul_exact_ties_s8", {"a": ((1, 8, 6, 6), 1.0), "b": ((1, 1, 6, 6), 1.0)},
      integer_ops=(MUL,))
def _mul_ties(g: QdqGraph) -> None:
    # s_a · s_b / s_out = 2^-2 · 2^-2 / 2^-3 = 0.5: every odd product is a tie.  The output zero
    # point is even: ORT's optimized session fuses DQ-Mul-Q into QLinearMul, whose kernel
    # rounds (v + zp) instead of round(v) + zp, so with an odd zero point (3 was tried) every
    # tie rounds the other way (24.7 % of this case; ORT without optimizations agrees exactly).
    a = g.input("a", [1, 8, 6, 6], QP(np.float32(0.25), 0, np.int8))
    b = g.input("b", [1, 1, 6, 6], QP(np.float32(0.25), -5, np.int8))
    g.output(g.node("Mul", [a, b]), qp=QP(np.float32(2.0**-3), 4, np.int8))


@case("concat_axis1_three_scales_u8",
      {"a": ((1, 4, 5, 5), 1.0), "b": ((1, 6, 5, 5), 2.0), "c": ((1, 2, 5, 5), 0.5)},
      integer_ops=(CONCAT,))
def _concat(g: QdqGraph) -> None:
    a = g.input("a", [1, 4, 5, 5], U8)
    b = g.input("b", [1, 6, 5, 5], act_qp(np.uint8, zero_point=100, bound=6.0))
    c = g.input("c", [1, 2, 5, 5], act_qp(np.uint8, zero_point=140, bound=1.5))
    g.output(g.node("Concat", [a, b, c], axis=1), np.uint8)


# --- Pools -----------------------------------------------------------------------------------

_POOL_X = (1, 8, 9, 9)


def pool_case(name: str, op_type: str, relax_op: str, x: QP, same_params: bool,
              **attrs) -> None:
    """Register a pool over ``[1, 8, 9, 9]``; output parameters = input's when ``same_params``."""

    def build(g: QdqGraph) -> None:
        y = g.node(op_type, [g.input("x", list(_POOL_X), x)], **attrs)
        g.output(y, x.dtype, qp=x if same_params else None)

    case(name, {"x": (_POOL_X, 1.0)}, integer_ops=(relax_op,))(build)


pool_case("maxpool_3x3_s2_p1_u8", "MaxPool", "relax.nn.max_pool2d", U8, True,
          kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
pool_case("maxpool_3x3_s2_p1_s8nz", "MaxPool", "relax.nn.max_pool2d", S8_NZ, True,
          kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
pool_case("avgpool_2x2_s2_u8", "AveragePool", "relax.nn.avg_pool2d", U8, False,
          kernel_shape=[2, 2], strides=[2, 2])
pool_case("avgpool_3x3_s1_p1_excl_pad_u8", "AveragePool", "relax.nn.avg_pool2d", U8, False,
          kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0)
pool_case("avgpool_3x3_s1_p1_incl_pad_s8nz", "AveragePool", "relax.nn.avg_pool2d", S8_NZ, False,
          kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1)
# Same power-of-two parameters in and out: sums · 1/4, a tie whenever sum ≡ 2 (mod 4).
pool_case("avgpool_2x2_s2_exact_ties_u8", "AveragePool", "relax.nn.avg_pool2d", P2_U8, True,
          kernel_shape=[2, 2], strides=[2, 2])
pool_case("global_avgpool_u8", "GlobalAveragePool", "relax.mean", U8, False)
pool_case("global_avgpool_s8_same_params", "GlobalAveragePool", "relax.mean", S8, True)


# --- Relu / Clip -----------------------------------------------------------------------------


@case("relu_u8_out_zp128", {"x": ((1, 8, 6, 6), 1.0)}, integer_ops=("relax.nn.relu",))
def _relu_nonzero_zp(g: QdqGraph) -> None:
    # Output parameters = input's (zero point 128): ORT cannot drop the Relu into the Q.
    g.output(g.node("Relu", [g.input("x", [1, 8, 6, 6], U8)]), qp=U8)


@case("relu_s8_out_zp_minus100", {"x": ((1, 8, 6, 6), 1.0)}, integer_ops=("relax.nn.relu",))
def _relu_s8(g: QdqGraph) -> None:
    out = QP(np.float32(3.5 / 227), -100, np.int8)
    g.output(g.node("Relu", [g.input("x", [1, 8, 6, 6], S8)]), qp=out)


@case("relu_u8_out_from_range", {"x": ((1, 8, 6, 6), 1.0)}, integer_ops=("relax.nn.relu",))
def _relu_range(g: QdqGraph) -> None:
    g.output(g.node("Relu", [g.input("x", [1, 8, 6, 6], U8)]), np.uint8)


@case("clip_0_6_u8", {"x": ((1, 8, 6, 6), 4.0)}, integer_ops=("relax.clip",), saturate=1.5)
def _clip(g: QdqGraph) -> None:
    x = g.input("x", [1, 8, 6, 6], act_qp(np.uint8, bound=9.0))
    lo = g.initializer("clip_min", np.array(0.0, np.float32))
    hi = g.initializer("clip_max", np.array(6.0, np.float32))
    g.output(g.node("Clip", [x, lo, hi]), np.uint8)


@case("clip_m1_2p5_s8", {"x": ((1, 8, 6, 6), 2.0)}, integer_ops=("relax.clip",))
def _clip_negative_low(g: QdqGraph) -> None:
    x = g.input("x", [1, 8, 6, 6], act_qp(np.int8, bound=4.0))
    lo = g.initializer("clip_min", np.array(-1.0, np.float32))
    hi = g.initializer("clip_max", np.array(2.5, np.float32))
    g.output(g.node("Clip", [x, lo, hi]), np.int8)


@case("clip_0_6_s8_same_params", {"x": ((1, 8, 6, 6), 4.0)}, integer_ops=("relax.clip",))
def _clip_same(g: QdqGraph) -> None:
    x_qp = act_qp(np.int8, zero_point=-30, bound=8.0)
    x = g.input("x", [1, 8, 6, 6], x_qp)
    lo = g.initializer("clip_min", np.array(0.0, np.float32))
    hi = g.initializer("clip_max", np.array(6.0, np.float32))
    g.output(g.node("Clip", [x, lo, hi]), qp=x_qp)


# Constants on exact ties (power-of-two scales): a bound, pad value or constant operand that
# lands on x.5 codes must round half to even as ORT's QuantizeLinear does (a half-up rounding
# of these compile-time constants is caught only here).
HALF_U8 = QP(np.float32(0.5), 10, np.uint8)


@case("clip_tie_bounds_u8", {"x": ((1, 8, 6, 6), 2.0)}, integer_ops=("relax.clip",))
def _clip_ties(g: QdqGraph) -> None:
    # 0.25 / 0.5 = 0.5 → code 10 (half to even), 3.25 / 0.5 = 6.5 → code 16
    x = g.input("x", [1, 8, 6, 6], HALF_U8)
    lo = g.initializer("clip_min", np.array(0.25, np.float32))
    hi = g.initializer("clip_max", np.array(3.25, np.float32))
    g.output(g.node("Clip", [x, lo, hi]), qp=HALF_U8)


@case("add_const_on_ties_u8", {"x": ((1, 8, 6, 6), 2.0)}, integer_ops=(ADD,))
def _add_const_ties(g: QdqGraph) -> None:
    # A float constant quantized in the graph (folded at compile time): ±0.25, ±0.75, ... /
    # 0.5 are all ties.
    x = g.input("x", [1, 8, 6, 6], HALF_U8)
    c = g.initializer("c", (np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6) - 18) * 0.5
                      + 0.25)
    cq = g.node("QuantizeLinear", [c, g.initializer("c_s", np.array(0.5, np.float32)),
                                   g.initializer("c_zp", np.array(20, np.uint8))])
    cd = g.node("DequantizeLinear", [cq, "c_s", "c_zp"])
    g.output(g.node("Add", [x, cd]), qp=QP(np.float32(0.5), 30, np.uint8))


@case("add_const_out_of_range_u8", {"x": ((1, 8, 6, 6), 2.0)}, integer_ops=(ADD,))
def _add_const_out_of_range(g: QdqGraph) -> None:
    # A float constant quantized in the graph (folded at compile time) with values beyond its
    # range [-10, 117.5]: QuantizeLinear saturates them to codes 0 and 255.
    x = g.input("x", [1, 8, 6, 6], HALF_U8)
    c = g.initializer("c", np.linspace(-60.0, 160.0, 36, dtype=np.float32).reshape(1, 1, 6, 6))
    cq = g.node("QuantizeLinear", [c, g.initializer("c_s", np.array(0.5, np.float32)),
                                   g.initializer("c_zp", np.array(20, np.uint8))])
    cd = g.node("DequantizeLinear", [cq, "c_s", "c_zp"])
    g.output(g.node("Add", [x, cd]), qp=QP(np.float32(1.0), 128, np.uint8))


@case("add_single_const_ties_saturate_u8", {"x": ((1, 8, 6, 6), 4.0)}, integer_ops=(ADD,),
      detail="constant operand")
def _add_single_const(g: QdqGraph) -> None:
    # A single-valued constant operand (the lookup table of constant_operand_table): x + 0.5 is
    # a multiple of 0.5, a tie of the output scale 1.0 for every other input code, and above
    # 5.0 it saturates at code 255 (zero point 250).
    x = g.input("x", [1, 8, 6, 6], QP(np.float32(0.5), 128, np.uint8))
    c = g.weight("c", np.array([11], np.uint8), QP(np.float32(0.5), 10, np.uint8))
    g.output(g.node("Add", [x, c]), qp=QP(np.float32(1.0), 250, np.uint8))


@case("leaky_relu_alpha0p5_ties_u8", {"x": ((1, 8, 6, 6), 8.0)},
      integer_ops=("relax.nn.leakyrelu",))
def _leaky_relu_ties(g: QdqGraph) -> None:
    # Lookup table: a negative input -k · 0.5 maps to -k · 0.25, a tie of the output scale 0.5
    # for odd k.
    hp = QP(np.float32(0.5), 128, np.uint8)
    g.output(g.node("LeakyRelu", [g.input("x", [1, 8, 6, 6], hp)], alpha=0.5), qp=hp)


_TIE_W = np.random.default_rng(7).integers(-3, 4, (8, 4, 1, 1)).astype(np.int8)


@case("conv_bias_off_grid_ties_u8", {"x": ((1, 4, 6, 6), 2.0)}, integer_ops=(CONV2D,))
def _conv_bias_ties(g: QdqGraph) -> None:
    # Bias scale s_x · s_w / 2 with odd codes: acc · s_x·s_w / s_out + b / 2 with s_out = s_x·s_w
    # is an exact tie everywhere (power-of-two scales: ORT's float32 conv is exact).
    x = g.input("x", [1, 4, 6, 6], QP(np.float32(0.5), 128, np.uint8))
    w = g.weight("w", _TIE_W, QP(np.float32(0.5), 0, np.int8))
    b = g.bias("b", (np.arange(8) * 2 - 7) * 0.125, np.float32(0.125))
    y = g.node("Conv", [x, w, b], kernel_shape=[1, 1])
    g.output(y, qp=QP(np.float32(0.25), 128, np.uint8))


# --- Data movement ---------------------------------------------------------------------------


def movement_case(name: str, x_shape: tuple[int, ...], x: QP,
                  body: Callable[[QdqGraph, str], str | list[str]]) -> None:
    """Register ``body(g, x)`` (a data movement op); every output keeps the input's params."""

    def build(g: QdqGraph) -> None:
        outs = body(g, g.input("x", list(x_shape), x))
        for out in [outs] if isinstance(outs, str) else outs:
            g.output(out, qp=x)

    case(name, {"x": (x_shape, 1.0)}, folded=True)(build)


def _i64(g: QdqGraph, name: str, values: list[int]) -> str:
    return g.initializer(name, np.array(values, np.int64))


movement_case("reshape_u8", (1, 8, 4, 4), U8,
              lambda g, x: g.node("Reshape", [x, _i64(g, "shape", [1, 8, 16])]))
movement_case("transpose_s8nz", (1, 8, 4, 5), S8_NZ,
              lambda g, x: g.node("Transpose", [x], perm=[0, 2, 3, 1]))
movement_case("flatten_u8", (1, 8, 3, 3), U8, lambda g, x: g.node("Flatten", [x], axis=1))
movement_case("squeeze_s8", (1, 8, 1, 6), S8,
              lambda g, x: g.node("Squeeze", [x, _i64(g, "axes", [2])]))
movement_case("unsqueeze_u8", (1, 8, 6), U8,
              lambda g, x: g.node("Unsqueeze", [x, _i64(g, "axes", [2])]))
movement_case("slice_steps_u8", (1, 8, 6, 6), U8,
              lambda g, x: g.node("Slice", [x, _i64(g, "starts", [1, 0]),
                                            _i64(g, "ends", [7, 5]), _i64(g, "axes", [1, 3]),
                                            _i64(g, "steps", [2, 1])]))
movement_case("gather_const_indices_s8nz", (1, 8, 5), S8_NZ,
              lambda g, x: g.node("Gather", [x, _i64(g, "indices", [0, 3, -1, 3])], axis=1))
movement_case("split_2_outputs_u8", (1, 8, 4, 4), U8,
              lambda g, x: g.node("Split", [x], num_outputs=2, axis=1))
movement_case("pad_const0_u8", (1, 4, 5, 5), U8,
              lambda g, x: g.node("Pad", [x, _i64(g, "pads", [0, 0, 1, 2, 0, 0, 2, 1])]))
movement_case("pad_const0p5_s8nz", (1, 4, 5, 5), S8_NZ,
              lambda g, x: g.node("Pad", [x, _i64(g, "pads", [0, 0, 1, 2, 0, 0, 2, 1]),
                                          g.initializer("value", np.array(0.5, np.float32))]))


@case("pad_const_tie_u8", {"x": ((1, 4, 5, 5), 2.0)}, integer_ops=("relax.nn.pad",))
def _pad_tie(g: QdqGraph) -> None:
    # The pad value 0.25 is off the grid: ORT quantizes it with the output's parameters,
    # 0.25 / 0.5 = 0.5 → code 10 (half to even).
    x = g.input("x", [1, 4, 5, 5], HALF_U8)
    g.output(g.node("Pad", [x, _i64(g, "pads", [0, 0, 1, 2, 0, 0, 2, 1]),
                            g.initializer("value", np.array(0.25, np.float32))]), qp=HALF_U8)


movement_case("resize_nearest_2x_u8", (1, 4, 4, 4), U8,
              lambda g, x: g.node("Resize", [x, "", g.initializer(
                  "scales", np.array([1, 1, 2, 2], np.float32))], mode="nearest"))


# --------------------------------------------------------------------------------------------
# Compile once per case, run, compare
# --------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A case's QDQ model, its compiled form and both outputs on the test feeds."""

    model: onnx.ModelProto
    compiled: tvm_qdq.Compiled
    actual: list[np.ndarray]
    expected: list[np.ndarray]


def _feeds(c: Case, seed: int, factor: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: (rng.normal(0.0, std, shape) * factor).astype(np.float32)
        for name, (shape, std) in c.inputs.items()
    }


@functools.cache
def prepared(name: str) -> Prepared:
    """Build, compile and run case ``name`` (cached: both tests of a case share it)."""
    c = CASES[name]
    model = make_qdq_model(c.build, _feeds(c, 1000 + c.seed), opset=c.opset)
    feeds = _feeds(c, 2000 + c.seed, c.saturate)
    compiled = tvm_qdq.compile(model, target="x86")
    expected = run_ort(model, feeds, optimization_level=c.ort_level)
    return Prepared(model, compiled, compiled.run(feeds), expected)


@pytest.mark.parametrize("name", list(CASES))
def test_matches_ort(name: str) -> None:
    p = prepared(name)
    infos = output_quant_info(p.model)
    assert len(p.actual) == len(p.expected) == len(p.model.graph.output)
    for out, actual, expected in zip(p.model.graph.output, p.actual, p.expected, strict=True):
        info = infos[out.name]
        assert info is not None
        assert_single_op_contract(actual, expected, info.scale, info.zero_point,
                                  info.axis if info.scale.size > 1 else None, name=out.name)


@pytest.mark.parametrize("name", list(CASES))
def test_goes_integer(name: str) -> None:
    c = CASES[name]
    report = prepared(name).compiled.report
    assert report is not None
    assert report.float_ops == [], f"float ops left: {report.float_ops}"
    for op in c.integer_ops:
        records = [r for r in report.integer if r.op == op]
        assert records and all(r.outcome == "integer" for r in records), (
            f"{op} not integer: {report.integer}"
        )
    if c.detail is not None:
        first = next(r for r in report.integer if r.op == c.integer_ops[0])
        assert c.detail in first.detail, first
    if c.folded:
        quantizes = [r for r in report.integer if r.op == "relax.quantize"]
        assert quantizes and all(r.outcome == "folded" for r in quantizes), report.integer


def test_saturating_feeds_leave_the_calibrated_range() -> None:
    """The ``saturate`` cases really feed values beyond the input's representable range."""
    c = CASES["conv3x3_pad1_u8_pt_bias"]
    x = _feeds(c, 2000 + c.seed, c.saturate)["x"]
    assert np.abs(x).max() > 3.0 * 1.5
    assert np.mean(np.abs(x) > 128 * float(U8.scale)) > 0.05


def test_u16_conv_bound_exceeds_int32() -> None:
    """The 16-bit conv case really needs int64: max|x| · max_o Σ|w[o]| ≥ 2^31."""
    model = prepared("conv_u16_int64_acc").model
    w = next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer
             if t.name == "w_quantized")
    assert 65535 * int(np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(1).max()) >= 2**31


@pytest.mark.parametrize("name", ["add_exact_ties_u8", "mul_exact_ties_s8",
                                  "avgpool_2x2_s2_exact_ties_u8"])
def test_tie_cases_have_exact_ties(name: str) -> None:
    """The exact-tie cases stay meaningful: ≥ 10 % of the values ORT quantizes last
    (``v = op(DQ(...)) / s_out``, exact in float32 here) are ties ``v - floor(v) = 0.5``."""
    c = CASES[name]
    model = prepared(name).model
    producer = {out: node for node in model.graph.node for out in node.output}
    quantize = producer[producer[model.graph.output[0].name].input[0]]
    assert quantize.op_type == "QuantizeLinear"
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(
        quantize.input[0], onnx.TensorProto.FLOAT, None))
    feeds = _feeds(c, 2000 + c.seed, c.saturate)
    value = run_ort(probe, feeds, optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)[-1]
    scale = next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer
                 if t.name == quantize.input[1])
    v = value.astype(np.float64) / float(scale)
    assert np.mean(v - np.floor(v) == 0.5) >= 0.1, np.mean(v - np.floor(v) == 0.5)
