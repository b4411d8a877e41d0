"""The numpy references of :mod:`tvm_qdq.testing.numpy_reference` (the oracle for QOperator
nodes ONNX Runtime has no kernel for) against ONNX Runtime where it has one, against naive
loops written from the operator definitions, and on rounding / saturation edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import TensorProto

from tvm_qdq.testing.numpy_reference import (
    conv_integer,
    qlinear_matmul,
    requantize_accumulator,
    run_single_node,
)
from tvm_qdq.testing.oracle import assert_single_op_contract, run_ort
from tvm_qdq.testing.qop_graphs import single_node_model

f32 = np.float32


def _rand(rng: np.random.Generator, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def _qlinear_conv(seed: int, x_shape: tuple[int, ...], out_ch: int, kernel: tuple[int, ...],
                  x_type: type, per_channel: bool, bias: bool, **attrs):
    rng = np.random.default_rng(seed)
    group = int(attrs.get("group", 1))
    x = _rand(rng, x_type, x_shape)
    w = rng.integers(-40, 41, (out_ch, x_shape[1] // group, *kernel)).astype(np.int8)
    ws = rng.uniform(0.004, 0.012, out_ch).astype(f32) if per_channel else f32(0.008)
    wz = np.zeros(out_ch, np.int8) if per_channel else np.int8(0)
    zx = x_type(128) if x_type is np.uint8 else x_type(-3)
    k = int(np.prod(w.shape[1:]))
    inputs = [("x", x, False), ("x_scale", f32(0.02), True), ("x_zero_point", zx, True),
              ("w", w, True), ("w_scale", ws, True), ("w_zero_point", wz, True),
              ("y_scale", f32(0.02 * 0.008 * 60 * np.sqrt(k)), True),  # 3σ ≈ 100 codes
              ("y_zero_point", x_type(100) if x_type is np.uint8 else x_type(-7), True)]
    if bias:
        inputs.append(("B", rng.integers(-2000, 2001, out_ch).astype(np.int32), True))
    return single_node_model("QLinearConv", inputs, kernel_shape=list(kernel), **attrs), {"x": x}


def _qlinear_matmul(seed: int, a_shape: tuple[int, ...], b_shape: tuple[int, ...],
                    per_column: bool):
    rng = np.random.default_rng(seed)
    a = _rand(rng, np.uint8, a_shape)
    b = rng.integers(-60, 61, b_shape).astype(np.int8)
    n = b_shape[-1]
    bs = rng.uniform(0.004, 0.012, n).astype(f32) if per_column else f32(0.008)
    bz = rng.integers(-5, 6, n).astype(np.int8) if per_column else np.int8(2)
    inputs = [("a", a, False), ("a_scale", f32(0.02), True), ("a_zero_point", np.uint8(125), True),
              ("b", b, True), ("b_scale", bs, True), ("b_zero_point", bz, True),
              ("y_scale", f32(0.02 * 0.008 * 80 * np.sqrt(a_shape[-1])), True),
              ("y_zero_point", np.uint8(128), True)]
    return single_node_model("QLinearMatMul", inputs), {"a": a}


def _conv_integer(seed: int, **attrs):
    rng = np.random.default_rng(seed)
    x = _rand(rng, np.uint8, (1, 4, 9, 9))
    inputs = [("x", x, False), ("w", _rand(rng, np.int8, (6, 4, 3, 3)), True),
              ("x_zero_point", np.uint8(131), True), ("w_zero_point", np.int8(3), True)]
    return single_node_model("ConvInteger", inputs, kernel_shape=[3, 3], **attrs), {"x": x}


ORT_CASES = {
    "qlinearconv_u8_per_tensor_bias_pads": lambda: _qlinear_conv(
        1, (1, 8, 9, 9), 8, (3, 3), np.uint8, False, True, pads=[1, 0, 2, 1]),
    "qlinearconv_s8_per_channel_group2_stride2": lambda: _qlinear_conv(
        2, (2, 8, 10, 10), 6, (3, 3), np.int8, True, True, group=2, strides=[2, 2]),
    "qlinearconv_u8_depthwise_dilation2_nobias": lambda: _qlinear_conv(
        3, (1, 8, 10, 10), 8, (3, 3), np.uint8, True, False, group=8, dilations=[2, 2],
        pads=[2, 2, 2, 2]),
    "qlinearconv_1d_s8_stride2": lambda: _qlinear_conv(
        4, (1, 6, 21), 10, (5,), np.int8, False, True, strides=[2], pads=[2, 1]),
    "qlinearmatmul_2d_per_column": lambda: _qlinear_matmul(5, (5, 48), (48, 16), True),
    "qlinearmatmul_3d_batched_b": lambda: _qlinear_matmul(6, (2, 4, 32), (2, 32, 12), False),
    "convinteger_pads_strides": lambda: _conv_integer(7, pads=[1, 1, 0, 2], strides=[2, 1]),
}


@pytest.mark.parametrize("name", list(ORT_CASES))
def test_reference_equals_ort_where_ort_has_a_kernel(name: str) -> None:
    model, feeds = ORT_CASES[name]()
    (want,) = run_ort(model, feeds)
    (got,) = run_single_node(model, feeds)
    if want.dtype != np.int32:
        # The case must exercise the range, not saturate to a constant.
        assert len(np.unique(want)) >= 16 and np.mean(np.isin(want, (0, 255, -128, 127))) < 0.2
    assert_single_op_contract(got, want, exact=True, name=name)


def _naive_conv2d(x, w, zx, zw, strides, pads, dilations, group) -> np.ndarray:
    """Direct six-fold loop over the ConvInteger definition (zero point as the pad value)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.full((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), zx, np.int64)
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    oh = (xp.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (xp.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, m, oh, ow), np.int64)
    mg = m // group
    for b, o, i, j in itertools.product(range(n), range(m), range(oh), range(ow)):
        g = o // mg
        total = 0
        for ci, u, v in itertools.product(range(cg), range(kh), range(kw)):
            xv = int(xp[b, g * cg + ci, i * strides[0] + u * dilations[0],
                        j * strides[1] + v * dilations[1]])
            total += (xv - zx) * (int(w[o, ci, u, v]) - int(zw[o]))
        out[b, o, i, j] = total
    return out


def test_conv_integer_matches_the_definition_loop() -> None:
    rng = np.random.default_rng(11)
    x = _rand(rng, np.uint8, (2, 4, 7, 6))
    w = _rand(rng, np.uint8, (6, 2, 3, 2))
    zw = rng.integers(100, 160, 6).astype(np.uint8)
    attrs = {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2], "group": 2}
    got = conv_integer(x, w, np.uint8(120), zw, **attrs)
    want = _naive_conv2d(x, w, 120, zw, attrs["strides"], attrs["pads"], attrs["dilations"], 2)
    np.testing.assert_array_equal(got, want)


def test_qlinear_matmul_per_row_a_matches_the_definition_loop() -> None:
    rng = np.random.default_rng(12)
    a = _rand(rng, np.uint8, (4, 16))
    b = _rand(rng, np.int8, (16, 5))
    sa, za = rng.uniform(0.01, 0.03, 4).astype(f32), rng.integers(118, 138, 4).astype(np.uint8)
    sb, zb = rng.uniform(0.004, 0.012, 5).astype(f32), rng.integers(-5, 6, 5).astype(np.int8)
    sy, zy = f32(0.5), np.uint8(130)
    got = qlinear_matmul(a, sa, za, b, sb, zb, sy, zy)
    assert got.dtype == np.uint8
    for m, n in itertools.product(range(4), range(5)):
        acc = sum((int(a[m, k]) - int(za[m])) * (int(b[k, n]) - int(zb[n])) for k in range(16))
        real = acc * float(sa[m]) * float(sb[n]) / float(sy)
        assert got[m, n] == min(255, max(0, round(real) + 130)), (m, n, real)  # half to even


def test_requantize_accumulator_rounds_half_to_even_and_saturates() -> None:
    acc = np.array([1, 3, 5, -1, -3, 7, 1000, -1000], np.int64)
    got = requantize_accumulator(acc, 0.5, np.int8(0), np.int8)
    # 0.5 → 0, 1.5 → 2, 2.5 → 2, -0.5 → 0, -1.5 → -2, 3.5 → 4, then the int8 limits.
    np.testing.assert_array_equal(got, np.array([0, 2, 2, 0, -2, 4, 127, -128], np.int8))
    assert requantize_accumulator(acc, 0.5, np.uint8(10), np.uint8)[3] == 10


def test_per_channel_conv_integer_node_has_no_ort_kernel_but_a_reference() -> None:
    rng = np.random.default_rng(13)
    x = _rand(rng, np.uint8, (1, 3, 5, 5))
    w = _rand(rng, np.uint8, (4, 3, 2, 2))
    zw = np.array([100, 120, 140, 160], np.uint8)
    model = single_node_model("ConvInteger", [("x", x, False), ("w", w, True),
                                              ("x_zero_point", np.uint8(128), True),
                                              ("w_zero_point", zw, True)],
                              kernel_shape=[2, 2], pads=[1, 1, 1, 1])
    with pytest.raises(Exception, match="per-tensor"):
        run_ort(model, {"x": x})
    (got,) = run_single_node(model, {"x": x})
    assert got.dtype == np.int32
    want = _naive_conv2d(x, w, 128, zw, [1, 1], [1, 1, 1, 1], [1, 1], 1)
    np.testing.assert_array_equal(got, want)


def test_unknown_node_is_refused() -> None:
    model = single_node_model("MatMulInteger", [("a", np.zeros((2, 3), np.uint8), False),
                                                ("b", np.zeros((3, 2), np.uint8), True)],
                              (TensorProto.INT32, [2, 2]))
    with pytest.raises(NotImplementedError, match="MatMulInteger"):
        run_single_node(model, {"a": np.zeros((2, 3), np.uint8)})
