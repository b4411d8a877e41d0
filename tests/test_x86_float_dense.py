"""x86 float32 dense / conv kernels (``float_kernels.py``, ``schedules/float_dense.py``): a
float ``R.matmul`` or conv with a constant weight, built through the real path
(``lower_integer_kernels`` → the VM), against numpy; a float ONNX CNN against ORT's reference
path and against TVM's own conv loops.

Reference: the sum the kernel's docstring states, ``acc = fma(a[k], w[k], acc)`` for ``k``
increasing from ``acc = 0``, emulated in numpy (the float64 product of two float32 values is
exact; ``float32(product + acc)`` then rounds once more than an FMA only when the float64
sum is itself inexact and lands on a float32 half-way point, which these inputs never hit),
so the results must be equal bit for bit; and, independent of the order, within the
recursive-summation bound ``K · 2^-24 · Σ_k |a_k · w_k|`` of the float64 product.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import helper, numpy_helper
from tvm import relax

import tvm_qdq
from tvm_qdq.backend.vm import build_vm
from tvm_qdq.backend.x86 import LoweringReport, has_vnni, kernel_selection, lower_integer_kernels
from tvm_qdq.backend.x86.backend import build_options
from tvm_qdq.backend.x86.float_kernels import compress_dense_weight, pack_dense_weight
from tvm_qdq.backend.x86.schedules.float_dense import dense_tile
from tvm_qdq.targets import resolve_target

TARGET = resolve_target("x86")
pytestmark = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")

RNG = np.random.default_rng(14)


def _run(a: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None
         ) -> tuple[np.ndarray, LoweringReport]:
    """``a @ w (+ bias)`` through ``lower_integer_kernels`` and the VM."""
    return _lower_and_run(_dense_module(a.shape, w, bias), a)


def _dense_module(shape: tuple[int, ...], w: np.ndarray, bias: np.ndarray | None
                  ) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("a", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, relax.const(w)))
            if bias is not None:
                y = bb.emit(relax.op.add(y, relax.const(bias)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _lower_and_run(mod: tvm.IRModule, x: np.ndarray) -> tuple[np.ndarray, LoweringReport]:
    report = LoweringReport()
    with build_options():
        lowered = lower_integer_kernels(mod, TARGET, report=report)
        vm = relax.VirtualMachine(build_vm(lowered, TARGET), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy(), report


def _fma_sum(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``Σ_k a[..., k] · w[k, :]`` in float32, ``k`` increasing, one rounding per step."""
    a64, w64 = a.astype(np.float64), w.astype(np.float64)
    acc = np.zeros((*a.shape[:-1], w.shape[1]), np.float32)
    for k in range(a.shape[-1]):
        acc = (a64[..., k, None] * w64[k] + acc.astype(np.float64)).astype(np.float32)
    return acc


def _check(a: np.ndarray, w: np.ndarray, y: np.ndarray, bias: np.ndarray | None) -> None:
    expected = _fma_sum(a, w)
    if bias is not None:
        expected = expected + bias
    np.testing.assert_array_equal(y, expected)
    exact = a.astype(np.float64) @ w.astype(np.float64) + (0 if bias is None else bias)
    bound = a.shape[-1] * 2.0**-24 * (np.abs(a.astype(np.float64)) @ np.abs(w)) + \
        np.abs(exact) * 2.0**-24
    assert np.all(np.abs(y - exact) <= bound)


@pytest.mark.parametrize("shape, n", [
    ((32, 384), 128),        # the tile divides rows and columns
    ((5, 33), 48),           # 5 rows (1-row tiles), 3 column vectors, odd K
    ((2, 7, 19), 80),        # batch dimension, 14 rows, 5 column vectors
    ((1, 12, 64), 16),       # one column vector
    ((3, 1), 32),            # K = 1 (every column is one value: stored as int8 · scale)
    ((96, 200), 384),        # large enough for the parallel panel loop
])
@pytest.mark.parametrize("with_bias", [False, True])
def test_float_dense_matches_the_stated_fma_sum(shape, n, with_bias) -> None:
    a = RNG.standard_normal(shape).astype(np.float32)
    w = RNG.standard_normal((shape[-1], n)).astype(np.float32)
    bias = RNG.standard_normal(n).astype(np.float32) if with_bias else None
    y, report = _run(a, w, bias)
    assert [k["kind"] for k in report.kernels] == ["float_dense"]
    assert report.kernels[0]["int8_weight"] == (shape[-1] == 1)
    assert list(report.schedules.values()) == ["float_dense"]
    _check(a, w, y, bias)


@pytest.mark.parametrize("rows, k, n", [((2, 9), 70, 64), ((64,), 256, 256)])
def test_int8_times_scale_weight_is_stored_compressed_and_gives_the_same_sums(rows, k, n
                                                                              ) -> None:
    q = RNG.integers(-127, 128, (k, n)).astype(np.int8)
    q[0] = 127  # the symmetric grid's end in every column (scale = max|w| / 127)
    q[1, ::3] = -128
    scales = (RNG.random(n) * 0.02 + 0.001).astype(np.float32)
    w = q.astype(np.float32) * scales
    a = RNG.standard_normal((*rows, k)).astype(np.float32)
    y, report = _run(a, w)
    assert report.kernels[0]["int8_weight"]
    assert list(report.schedules.values()) == ["float_dense"]
    _check(a, w, y, None)


def test_compress_dense_weight_is_exact_or_declines() -> None:
    q = RNG.integers(-128, 128, (40, 32)).astype(np.int8)
    q[5] = -128
    scales = (RNG.random(32) * 0.1).astype(np.float32)
    w = q.astype(np.float32) * scales
    w[:, 7] = 0.0  # a column of zeros
    found = compress_dense_weight(w)
    assert found is not None
    np.testing.assert_array_equal(found[0].astype(np.float32) * found[1], w)
    assert compress_dense_weight(RNG.standard_normal((40, 32)).astype(np.float32)) is None
    w[3, 2] = np.nextafter(w[3, 2], np.float32(1))  # one value off the grid
    assert compress_dense_weight(w) is None
    w = q.astype(np.float32) * scales
    w[:, 7] = -0.0  # zeros keep their sign bit
    assert compress_dense_weight(w) is None


def test_pack_dense_weight_layout() -> None:
    w = np.arange(3 * 48, dtype=np.float32).reshape(3, 48)
    wp = pack_dense_weight(w)
    assert wp.shape == (3, 3, 16)
    for kk in range(3):
        for col in range(48):
            assert wp[col // 16, kk, col % 16] == w[kk, col]


def test_columns_not_a_multiple_of_16_stay_tvm_matmul() -> None:
    a = RNG.standard_normal((4, 24)).astype(np.float32)
    w = RNG.standard_normal((24, 20)).astype(np.float32)
    y, report = _run(a, w)
    assert not report.kernels
    assert "multiple of 16 columns" in report.skipped[0]["reason"]
    np.testing.assert_allclose(y, a.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


def test_kernel_macs_names_the_float_kernels() -> None:
    with build_options():
        lowered = lower_integer_kernels(_dense_module((2, 5, 24), np.ones((24, 32), np.float32),
                                                      None), TARGET)
    funcs = [f for f in lowered.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert [(int(f.attrs["tvm_qdq.macs"]), str(f.attrs["tvm_qdq.kernel"])) for f in funcs] == \
        [(2 * 5 * 24 * 32, "float_matmul")]


def test_dense_tile_from_the_shape() -> None:
    tile = dense_tile(32, 1536)
    assert (tile.mr, tile.nr, tile.lanes) == (4, 4, 16)
    tile = dense_tile(7, 48)
    assert 7 % tile.mr == 0 and 3 % tile.nr == 0 and tile.mr * tile.nr <= 16


# ----------------------------------------------------------------------------------------------
# Float conv2d (NHWC kernel, same block role and schedule)
# ----------------------------------------------------------------------------------------------


def _run_conv(x: np.ndarray, w: np.ndarray, strides, padding, dilation, groups: int = 1
              ) -> tuple[np.ndarray, LoweringReport]:
    """``relu(conv2d(x, w))`` (NCHW / OIHW) through ``lower_integer_kernels`` and the VM."""
    bb = relax.BlockBuilder()
    v = relax.Var("x", relax.TensorType(x.shape, "float32"))
    with bb.function("main", [v]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(v, relax.const(w), strides=strides,
                                           padding=padding, dilation=dilation, groups=groups))
            out = bb.emit_output(bb.emit(relax.op.nn.relu(y)))
        bb.emit_func_output(out)
    return _lower_and_run(bb.get(), x)


def _conv_fma_sum(x: np.ndarray, w: np.ndarray, strides, padding, dilation) -> np.ndarray:
    """NCHW conv in float32, ``c`` outermost, then ``kh``, ``kw``, one FMA per step."""
    o, c, kh, kw = w.shape
    pt, pl, pb, pr = padding
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))).astype(np.float64)
    oh = (xp.shape[2] - dilation[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (xp.shape[3] - dilation[1] * (kw - 1) - 1) // strides[1] + 1
    acc = np.zeros((x.shape[0], o, oh, ow), np.float32)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                h0, w0 = i * dilation[0], j * dilation[1]
                patch = xp[:, ci, h0:h0 + strides[0] * (oh - 1) + 1:strides[0],
                           w0:w0 + strides[1] * (ow - 1) + 1:strides[1]]
                prod = patch[:, None] * w[None, :, ci, i, j, None, None].astype(np.float64)
                acc = (prod + acc.astype(np.float64)).astype(np.float32)
    return acc


@pytest.mark.parametrize("xshape, o, k, strides, padding, dilation", [
    ((1, 3, 12, 12), 16, 3, (1, 1), (1, 1, 1, 1), (1, 1)),   # first-layer conv, padded
    ((2, 8, 9, 11), 32, 3, (2, 2), (0, 1, 1, 0), (1, 1)),    # stride 2, uneven padding
    ((1, 5, 10, 10), 48, 3, (1, 1), (2, 2, 2, 2), (2, 2)),   # dilation 2
    ((1, 20, 6, 7), 64, 1, (1, 1), (0, 0, 0, 0), (1, 1)),    # 1×1, no scratch copy
])
def test_float_conv_matches_the_stated_fma_sum(xshape, o, k, strides, padding, dilation
                                               ) -> None:
    x = RNG.standard_normal(xshape).astype(np.float32)
    w = RNG.standard_normal((o, xshape[1], k, k)).astype(np.float32)
    y, report = _run_conv(x, w, strides, padding, dilation)
    assert [r["kind"] for r in report.kernels] == ["float_conv"]
    assert "float_dense" in report.schedules.values()
    expected = np.maximum(_conv_fma_sum(x, w, strides, padding, dilation), 0)
    np.testing.assert_array_equal(y, expected)


def test_float_conv_with_an_int8_times_scale_weight() -> None:
    q = RNG.integers(-127, 128, (32, 16, 3, 3)).astype(np.int8)
    q[:, 0, 0, 0] = -127
    scales = (RNG.random(32) * 0.05 + 0.001).astype(np.float32)
    w = q.astype(np.float32) * scales[:, None, None, None]
    x = RNG.standard_normal((1, 16, 14, 14)).astype(np.float32)
    y, report = _run_conv(x, w, (1, 1), (1, 1, 1, 1), (1, 1))
    assert report.kernels[0]["int8_weight"]
    expected = np.maximum(_conv_fma_sum(x, w, (1, 1), (1, 1, 1, 1), (1, 1)), 0)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("o, groups, reason", [(12, 1, "multiple of 16"), (16, 2, "groups")])
def test_float_conv_declined_stays_tvm_conv(o, groups, reason) -> None:
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = RNG.standard_normal((o, 4 // groups, 3, 3)).astype(np.float32)
    y, report = _run_conv(x, w, (1, 1), (0, 0, 0, 0), (1, 1), groups)
    assert not report.kernels and reason in report.skipped[0]["reason"]
    ref = np.zeros_like(y)
    og = o // groups
    for g in range(groups):
        ref[:, g * og:(g + 1) * og] = _conv_fma_sum(
            x[:, g * 4 // groups:(g + 1) * 4 // groups], w[g * og:(g + 1) * og], (1, 1),
            (0, 0, 0, 0), (1, 1))
    np.testing.assert_allclose(y, np.maximum(ref, 0), rtol=1e-5, atol=1e-5)


def test_float_conv1d_is_the_conv2d_of_unit_height() -> None:
    x = RNG.standard_normal((1, 6, 30)).astype(np.float32)
    w = RNG.standard_normal((32, 6, 5)).astype(np.float32)
    bb = relax.BlockBuilder()
    v = relax.Var("x", relax.TensorType(x.shape, "float32"))
    with bb.function("main", [v]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv1d(v, relax.const(w), strides=2, padding=(2, 1)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    y, report = _lower_and_run(bb.get(), x)
    assert [r["kind"] for r in report.kernels] == ["float_conv"]
    expected = _conv_fma_sum(x[:, :, None], w[:, :, None], (1, 2), (0, 2, 0, 1), (1, 1))
    np.testing.assert_array_equal(y, expected[:, :, 0])


# ----------------------------------------------------------------------------------------------
# A float ONNX CNN end to end
# ----------------------------------------------------------------------------------------------


def _float_cnn() -> onnx.ModelProto:
    """Conv (padded, strided, dilated, 1×1, depthwise), relu, max pool, add, sigmoid, global
    average pool and a 10-column Gemm, all float32; outputs the logits and the last conv."""
    rng = np.random.default_rng(3)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32),
                                       name)

    inits = [init("w1", 32, 3, 3, 3), init("b1", 32), init("w2", 32, 32, 3, 3),
             init("w3", 48, 32, 1, 1), init("b3", 48), init("w5", 48, 1, 3, 3),
             init("w4", 16, 48, 3, 3), init("g", 16, 10), init("gb", 10)]
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        node("Relu", ["c1"], ["r1"]),
        node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Add", ["c2", "p1"], ["a1"]),
        node("Conv", ["a1", "w3", "b3"], ["c3"]),
        node("Sigmoid", ["c3"], ["s3"]),
        node("Conv", ["s3", "w5"], ["dw"], group=48, pads=[1, 1, 1, 1]),
        node("Conv", ["dw", "w4"], ["c4"], dilations=[2, 2]),
        node("GlobalAveragePool", ["c4"], ["gp"]),
        node("Flatten", ["gp"], ["f"]),
        node("Gemm", ["f", "g", "gb"], ["y"]),
    ]
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "float_cnn", [helper.make_tensor_value_info("x", f32, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", f32, [1, 10]),
         helper.make_tensor_value_info("c4", f32, [1, 16, 12, 12])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_float_cnn_agrees_with_ort_and_with_tvms_own_conv(monkeypatch) -> None:
    """Four of its convs take the float kernel (the depthwise one and the 10-column Gemm stay
    TVM's): within float32 rounding of ORT's reference path, and bit for bit TVM's own conv
    loop (the same c, kh, kw order of FMAs)."""
    model = _float_cnn()
    x = np.random.default_rng(4).standard_normal((1, 3, 32, 32)).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    expected = ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"]).run(None, {"x": x})
    report = LoweringReport()
    with build_options():
        lower_integer_kernels(tvm_qdq.from_onnx(model), TARGET, report=report)
    assert [k["kind"] for k in report.kernels] == ["float_conv"] * 4
    actual = tvm_qdq.compile(model, "x86").run({"x": x})
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    declined = (None, {"reason": "off"})
    monkeypatch.setattr(kernel_selection, "conv_call", lambda *a, **k: declined)
    monkeypatch.setattr(kernel_selection, "dense_call", lambda *a, **k: declined)
    tvm_loops = tvm_qdq.compile(model, "x86").run({"x": x})
    for got, want in zip(actual, tvm_loops, strict=True):
        np.testing.assert_array_equal(got, want)
