"""Hexagon depthwise conv on HVX (channels on the vector lanes, ``backend/hexagon/depthwise.py``):
bit-exact with a numpy reference under qemu-hexagon, alone and with its fused requantize
epilogue (fixed point and float64), on strides 1 / 2, 3×3 / 5×5 windows, channel counts that
are not a multiple of the vector, asymmetric padding, uint8 / int8 / uint16 activations."""

from __future__ import annotations

import numpy as np
import pytest
from tvm import relax

import tvm_qdq
from tvm_qdq.backend.hexagon import DEBIAN_PACKAGES, missing_tools
from tvm_qdq.backend.hexagon.depthwise import (
    DepthwiseSpec,
    pack_depthwise_weight,
    rows_fill_vectors,
)
from tvm_qdq.qnn.fixed_point import plan_fixed_point, requantize_fixed
from tvm_qdq.qnn.integer_ops import Requantize

MISSING = missing_tools()
needs_toolchain = pytest.mark.skipif(
    bool(MISSING), reason=f"Hexagon toolchain missing: {', '.join(MISSING)} "
    f"(apt-get install -y {' '.join(DEBIAN_PACKAGES)})")

RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535)}


def depthwise_reference(x: np.ndarray, w: np.ndarray, strides: tuple[int, int],
                        padding: tuple[int, int, int, int]) -> np.ndarray:
    """``Σ_{kh,kw} x_pad[n, c, oh·sh + kh, ow·sw + kw] · w[c, 0, kh, kw]`` in int64
    (``x_pad``: ``x`` with zeros around it, top/left/bottom/right)."""
    pt, pl, pb, pr = padding
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    _, _, kh, kw = w.shape
    sh, sw = strides
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], x.shape[1], oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            out += window * w[None, :, 0, i, j, None, None].astype(np.int64)
    return out


def _module(x_type: relax.TensorType, w: np.ndarray, strides, padding,
            requantize: Requantize | None = None):
    """An integer Relax module: one depthwise conv2d (int32), optionally requantized."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", x_type)
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w), strides=strides,
                                           padding=padding, groups=w.shape[0],
                                           out_dtype="int32"))
            if requantize is not None:
                y = bb.emit(Requantize(y, *requantize).call())
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get().with_attrs({"tvm_qdq.stage": "integer"})


#: (channels, height, width, window, strides, padding top/left/bottom/right, activation)
SHAPES = [
    (40, 9, 11, 3, (1, 1), (1, 1, 1, 1), "uint8"),
    (70, 10, 10, 5, (2, 2), (2, 2, 2, 2), "uint8"),
    (130, 8, 7, 3, (2, 2), (0, 1, 1, 0), "uint8"),
    (16, 12, 12, 5, (1, 1), (2, 2, 2, 2), "int8"),
    (24, 6, 6, 3, (1, 2), (1, 1, 1, 1), "uint16"),
]


@needs_toolchain
@pytest.mark.parametrize("shape", SHAPES, ids=[f"c{s[0]}_k{s[3]}_s{s[4][0]}{s[4][1]}_{s[6]}"
                                               for s in SHAPES])
def test_depthwise_kernel_bit_exact_with_numpy(shape) -> None:
    c, h, w, k, strides, padding, act = shape
    rng = np.random.default_rng(c)
    weight = rng.integers(-128, 128, size=(c, 1, k, k)).astype(np.int8)
    weight[0] = 127
    weight[1 % c] = -128
    mod = _module(relax.TensorType([1, c, h, w], act), weight, strides, padding)
    hexagon = tvm_qdq.compile(mod, "hexagon")
    (report,) = [r for r in hexagon.meta["notes"]["kernels"] if r.get("depthwise")]
    assert report["hvx"] and report["product"] == ("int32" if act == "uint16" else "int16")
    (symbol,) = hexagon.meta["symbols"]
    assert hexagon.meta["notes"]["schedules"][symbol].startswith("depthwise"), \
        hexagon.meta["notes"]["schedules"]
    lo, hi = RANGES[act]
    for seed in (1, 2):
        x = np.random.default_rng(seed).integers(lo, hi, size=(1, c, h, w),
                                                 endpoint=True).astype(act)
        x[0, :, 0, :] = hi  # extreme products on the padded border
        (got,) = hexagon.run({"x": x})
        want = depthwise_reference(x, weight, strides, padding)
        assert got.dtype == np.int32 and got.shape == want.shape
        np.testing.assert_array_equal(got.astype(np.int64), want)


@needs_toolchain
def test_depthwise_requantize_epilogue_bit_exact() -> None:
    """The fused requantize epilogue, run on whole channel vectors before the transpose:
    ``requantize="fixed"`` equals the numpy fixed-point reference of the exact accumulator,
    ``"float"`` equals the x86 build."""
    c, k, strides, padding = 96, 3, (2, 2), (1, 1, 1, 1)
    rng = np.random.default_rng(7)
    weight = rng.integers(-128, 128, size=(c, 1, k, k)).astype(np.int8)
    m = rng.uniform(2e-4, 2e-3, size=(1, c, 1, 1))
    zp = np.array(3, np.int64)
    mod = _module(relax.TensorType([1, c, 14, 14], "uint8"), weight, strides, padding,
                  (np.zeros((), np.int64), m, zp, 0, 255, "uint8"))
    fixed = tvm_qdq.compile(mod, "hexagon")
    floating = tvm_qdq.compile(mod, "hexagon", requantize="float")
    x86 = tvm_qdq.compile(mod, "x86")
    for build in (fixed, floating):
        (symbol,) = build.meta["symbols"]
        assert "1 epilogue vectorized" in build.meta["notes"]["schedules"][symbol]
    plan = plan_fixed_point(m, 32, zp.reshape(1, 1, 1, 1), 0, 255)
    for seed in (1, 2):
        x = np.random.default_rng(seed).integers(0, 256, size=(1, c, 14, 14)).astype(np.uint8)
        acc = depthwise_reference(x, weight, strides, padding).astype(np.int32)
        (got,) = fixed.run({"x": x})
        np.testing.assert_array_equal(got, requantize_fixed(acc, plan, zp.reshape(1, 1, 1, 1),
                                                            0, 255))
        np.testing.assert_array_equal(floating.run({"x": x})[0], x86.run({"x": x})[0])


def test_depthwise_weight_pack_is_channels_last() -> None:
    spec = DepthwiseSpec(n=1, c=70, h=8, w=8, o=70, kh=3, kw=5, strides=(1, 1),
                         padding=(1, 2, 1, 2), dilation=(1, 1), act="uint8", product="int16")
    w = np.arange(70 * 15).reshape(70, 1, 3, 5).astype(np.int16) % 255 - 127
    packed = pack_depthwise_weight(w, spec)
    assert packed.shape == (3, 5, spec.cv) and spec.cv % 64 == 0 and spec.cv >= 70
    np.testing.assert_array_equal(packed[:, :, :70], w[:, 0].transpose(1, 2, 0))
    assert not packed[:, :, 70:].any()


def test_row_form_kept_where_rows_fill_vectors() -> None:
    """int32 products (uint16 activations) with few channels, unit stride and rows of 32·k
    outputs keep the NCHW row-vectorized conv; int16 products, strided or short rows and many
    channels take the channel form."""
    def spec(c, w, stride, product="int32"):
        return DepthwiseSpec(n=1, c=c, h=w, w=w, o=c, kh=3, kw=3, strides=(stride, stride),
                             padding=(1, 1, 1, 1), dilation=(1, 1), act="uint16",
                             product=product)

    assert rows_fill_vectors(spec(16, 32, 1))
    assert not rows_fill_vectors(spec(16, 32, 1, "int16"))
    assert not rows_fill_vectors(spec(16, 32, 2))
    assert not rows_fill_vectors(spec(32, 112, 1))
    assert not rows_fill_vectors(spec(96, 64, 1))
