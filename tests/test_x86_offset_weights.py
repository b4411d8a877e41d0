"""The x86 offset form of uint8 weights with a zero point (``tvm_qdq.backend.x86.kernels``).

``w' = w - zw`` spans ``[-255, 255]``; per output channel ``w' = w'' + b[o]`` with ``w''``
int8, so ``Σ_k u_k · w'[o, k] = Σ_k u_k · w''[o, k] + b[o] · Σ_k u_k``: one int8 term and a
window-sum kernel (one extra 16-channel block) instead of two int8 terms. The results must be
bit-identical to ORT's ConvInteger / MatMulInteger and to an int64 numpy reference, and the
lowering report must show one VNNI kernel with one weight term. Cases: per-tensor and
per-channel zero points, padding, strides, dilation, a conv1d, int8 activations, an int64
accumulator, a fused requantize epilogue, batched matmuls; the fallbacks (a single 16-channel
block, sums that could overflow int32) keep the int8 terms.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tvm
from tvm import relax

import tvm_qdq
from tvm_qdq.backend.legalize_signedness import legalize_signedness
from tvm_qdq.backend.x86 import LoweringReport, asm_of, has_vnni, lower_integer_kernels
from tvm_qdq.backend.x86 import kernels as K
from tvm_qdq.backend.x86.kernel_selection import offset_form
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.numpy_reference import conv_integer as conv_integer_ref
from tvm_qdq.testing.oracle import run_ort
from tvm_qdq.testing.qop_graphs import single_node_model

TARGET = resolve_target("x86")
VNNI = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")


def _compile(mod: tvm.IRModule) -> tuple[relax.VirtualMachine, LoweringReport, str]:
    report = LoweringReport()
    lowered = lower_integer_kernels(mod, TARGET, report=report)
    executable = tvm.compile(lowered, TARGET)
    return relax.VirtualMachine(executable, tvm.cpu()), report, asm_of(executable)


def _lowered_onnx(model: onnx.ModelProto) -> tuple[relax.VirtualMachine, LoweringReport, str]:
    return _compile(legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86"))


def _assert_one_offset_kernel(report: LoweringReport, kind: str) -> None:
    """One VNNI kernel in the report, in the offset form with one int8 weight term."""
    kernels = [k for k in report.kernels if k["kind"] == kind]
    assert len(kernels) == 1, report.to_json()
    assert kernels[0]["offset_form"] and kernels[0]["weight_terms"] == 1, report.to_json()


# ----------------------------------------------------------------------------------------------
# ConvInteger
# ----------------------------------------------------------------------------------------------

# (input shape, out channels, kernel, strides, pads, dilations, weight zero point)
CONV_CASES = [
    ((1, 16, 12, 10), 32, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 120),
    ((1, 24, 11, 9), 40, (3, 3), (2, 2), (1, 0, 2, 1), (1, 1), 7),
    ((2, 8, 13, 13), 48, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 0),
    ((1, 32, 8, 8), 64, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 255),
    ((1, 20, 40), 33, (3,), (1,), (1, 1), (1,), 60),
    ((1, 16, 33), 24, (5,), (3,), (2, 0), (2,), 201),
    # per output channel zero points (ORT's ConvInteger rejects them: numpy reference only)
    ((1, 16, 10, 11), 48, (3, 3), (2, 1), (1, 1, 1, 1), (1, 1), None),
    ((1, 12, 30), 40, (3,), (2,), (1, 1), (1,), None),
]


def _conv_id(case) -> str:
    shape, o, k, s, _, d, wz = case
    return f"{len(k)}d-c{shape[1]}o{o}k{k[0]}s{s[0]}d{d[0]}-z{'pc' if wz is None else wz}"


def _conv_integer_model(case, w: np.ndarray, wz: np.ndarray) -> onnx.ModelProto:
    """``ConvInteger(xq, w, xz, wz)`` with uint8 ``xq`` and ``xz`` graph inputs, a uint8 weight
    and its zero point (scalar or per output channel)."""
    shape, _, _, strides, pads, dilations, _ = case
    inputs = [("xq", np.zeros(shape, np.uint8), False), ("w", w, True),
              ("xz", np.uint8(0), False), ("wz", wz, True)]
    return single_node_model("ConvInteger", inputs, strides=list(strides), pads=list(pads),
                             dilations=list(dilations))


@VNNI
@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv_integer_uint8_weights_take_the_offset_form(case) -> None:
    """ConvInteger with uint8 weights and a per-tensor or per-channel zero point: one
    offset-form VNNI conv, bit-identical to ORT (per tensor) and to the numpy reference for
    activation zero points 0..255."""
    rng = np.random.default_rng(CONV_CASES.index(case))
    shape, o, k, strides, pads, dilations, zero_point = case
    w = rng.integers(0, 256, size=(o, shape[1], *k)).astype(np.uint8)
    wz = np.uint8(zero_point) if zero_point is not None else \
        rng.integers(0, 256, size=o).astype(np.uint8)
    model = _conv_integer_model(case, w, np.asarray(wz))
    vm, report, asm = _lowered_onnx(model)
    _assert_one_offset_kernel(report, "vnni_conv2d")
    assert "vpdpbusd" in asm
    attrs = dict(strides=list(strides), pads=list(pads), dilations=list(dilations))
    for zx in (0, 1, 128, 255):
        x = rng.integers(0, 256, size=shape).astype(np.uint8)
        got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(np.uint8(zx))).numpy()
        if zero_point is not None:
            want = run_ort(model, {"xq": x, "xz": np.array(zx, np.uint8)})[0]
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, conv_integer_ref(x, w, zx, wz, **attrs))


def _conv_module(shape: tuple, w: np.ndarray, in_dtype: str, out_dtype: str, pad: int,
                 epilogue: tuple[np.ndarray, float] | None = None) -> tvm.IRModule:
    """``conv2d(x, w)`` (stride 1, ``pad`` on every side) into ``out_dtype``; with
    ``epilogue = (m, zp)`` requantized to uint8 as ``clip(round(float32(acc) · m[o]) + zp)``."""
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(shape, in_dtype))
    with bb.function("main", [xv]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(xv, relax.const(w), padding=[pad] * 4,
                                           out_dtype=out_dtype))
            if epilogue is not None:
                m = relax.const(epilogue[0].reshape(1, -1, 1, 1), "float32")
                y = bb.emit(relax.op.multiply(relax.op.astype(y, "float32"), m))
                y = bb.emit(relax.op.add(relax.op.round(y), relax.const(epilogue[1], "float32")))
                y = bb.emit(relax.op.astype(relax.op.clip(y, 0, 255), "uint8"))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _per_channel_shifted_weight(rng: np.random.Generator, o: int, c: int, k: int) -> np.ndarray:
    """``w - zw[o]`` of uint8 weights with per-channel zero points (among them 0 and 255: the
    ranges ``[0, 255]`` and ``[-255, 0]``), int16."""
    w = rng.integers(0, 256, size=(o, c, k, k)).astype(np.int64)
    zw = rng.integers(0, 256, size=o)
    zw[:2] = (0, 255)
    return (w - zw.reshape(-1, 1, 1, 1)).astype(np.int16)


@VNNI
@pytest.mark.parametrize(("in_dtype", "out_dtype", "epilogue"), [
    ("uint8", "int32", False), ("uint8", "int32", True), ("int8", "int32", False),
    ("uint8", "int64", False)])
def test_per_channel_offsets_are_exact(in_dtype: str, out_dtype: str, epilogue: bool) -> None:
    """Per-channel zero points (a different offset per output channel), padding, int8
    activations (the window sums of ``x + 128``, padded with 128), an int64 accumulator and a
    fused requantize epilogue: equal to the int64 reference."""
    rng = np.random.default_rng(11)
    shape, o = (2, 12, 9, 7), 40
    w = _per_channel_shifted_weight(rng, o, shape[1], 3)
    info = np.iinfo(in_dtype)
    x = rng.integers(info.min, int(info.max) + 1, size=shape).astype(in_dtype)
    m = (rng.random(o) * 2e-3).astype(np.float32)
    mod = _conv_module(shape, w, in_dtype, out_dtype, 1, (m, 5.0) if epilogue else None)
    vm, report, _ = _compile(mod)
    _assert_one_offset_kernel(report, "vnni_conv2d")
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    ref = conv_integer_ref(x, w, pads=[1, 1, 1, 1])
    if epilogue:
        scaled = ref.astype(np.int32).astype(np.float32) * m.reshape(1, -1, 1, 1)
        ref = np.clip(np.round(scaled) + np.float32(5.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(got, ref.astype(got.dtype))


# ----------------------------------------------------------------------------------------------
# MatMulInteger
# ----------------------------------------------------------------------------------------------


@VNNI
@pytest.mark.parametrize(("a_shape", "n", "per_column"), [
    ((6, 40), 48, False), ((2, 5, 64), 33, True), ((1, 30), 96, True)])
def test_matmul_integer_uint8_weights_take_the_offset_form(a_shape: tuple, n: int,
                                                           per_column: bool) -> None:
    """MatMulInteger with a constant uint8 ``B`` and a per-tensor or per-column zero point: one
    offset-form VNNI matmul (the window sums are ``Σ_k a[m, k]`` per row), equal to ORT."""
    rng = np.random.default_rng(n)
    b = rng.integers(0, 256, size=(a_shape[-1], n)).astype(np.uint8)
    bz = rng.integers(0, 256, size=n).astype(np.uint8) if per_column else np.uint8(9)
    model = single_node_model("MatMulInteger", [
        ("a", np.zeros(a_shape, np.uint8), False), ("b", b, True), ("az", np.uint8(0), False),
        ("bz", np.asarray(bz), True)])
    vm, report, asm = _lowered_onnx(model)
    _assert_one_offset_kernel(report, "vnni_matmul")
    assert "vpdpbusd" in asm
    for az in (0, 77, 255):
        a = rng.integers(0, 256, size=a_shape).astype(np.uint8)
        got = vm["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(np.uint8(az))).numpy()
        want = run_ort(model, {"a": a, "az": np.array(az, np.uint8)})[0]
        np.testing.assert_array_equal(got, want)
        ref = (a.astype(np.int64) - az) @ (b.astype(np.int64) - bz.astype(np.int64))
        np.testing.assert_array_equal(got, ref)


# ----------------------------------------------------------------------------------------------
# When the offset form applies
# ----------------------------------------------------------------------------------------------


def test_channel_offsets_make_every_row_int8() -> None:
    """``b[o]`` is the value nearest 0 that brings row ``o`` into ``[-128, 127]``."""
    rows = np.array([[-255, 0], [0, 255], [-5, 100], [-200, 50], [0, 0]], np.int64)
    offsets = K.channel_offsets(rows)
    np.testing.assert_array_equal(offsets, [-127, 128, 0, -72, 0])
    shifted = rows - offsets[:, None]
    assert shifted.min() >= -128 and shifted.max() <= 127
    assert K.channel_offsets(np.array([[-128, 128]], np.int64)) is None


def test_offset_form_only_where_it_is_cheaper_and_exact() -> None:
    """Chosen for uint8/int8 activations when ``⌈O/16⌉ + 1 < terms · ⌈O/16⌉`` and the int32
    bound holds; int8 weights, one 16-channel block with two terms, uint16 activations, rows
    spanning more than 255 and a reduction too long for int32 keep the int8 terms."""
    rng = np.random.default_rng(5)
    u8 = rng.integers(0, 256, size=(32, 8, 3, 3))
    u8[:, 0, 0, :2] = (0, 255)
    w = u8 - 100  # [-100, 155]: 2 terms
    assert offset_form(w, 0, "uint8") is not None
    assert offset_form(w, 0, "int8") is not None
    assert offset_form(w, 0, "uint16") is None
    assert offset_form(w[:16], 0, "uint8") is None  # 2 blocks either way
    assert offset_form(u8 - 255, 0, "uint8") is not None  # 3 terms: cheaper even for ...
    assert offset_form((u8 - 255)[:16], 0, "uint8") is not None  # ... one block
    assert offset_form(rng.integers(-128, 128, size=(32, 8, 3, 3)), 0, "uint8") is None
    assert offset_form(rng.integers(-255, 256, size=(32, 8, 3, 3)), 0, "uint8") is None
    wide = np.full((32, 40000), 255)
    wide[:, 0] = 0
    assert offset_form(wide, 0, "uint8") is None  # 255 · K · b[o] ≥ 2^31
    assert offset_form(wide[:, :1000].T, 1, "uint8") is not None  # matmul: columns
