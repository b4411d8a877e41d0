"""x86 VNNI kernels (tvm_qdq.backend.x86): exact against numpy, vpdpbusd in the assembly,
whole models bit-identical to the default build and within the ORT contract.

Every kernel is built through the real path (a Relax ``conv2d``/``matmul`` with a constant
weight → ``lower_integer_kernels`` → ``tvm.compile``), with and without a fused requantize
epilogue, and compared with an int64 numpy reference: the integer results must be equal
(the epilogue is float32 arithmetic done identically in numpy).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from tvm import relax

import tvm_qdq
from tvm_qdq.backend.x86 import LoweringReport, asm_of, has_vnni, lower_integer_kernels
from tvm_qdq.backend.x86 import kernels as K
from tvm_qdq.backend.x86.amx import without_amx
from tvm_qdq.backend.x86.schedules.vnni import row_tile_factors, valid_row_tiles
from tvm_qdq.qnn.integer_ops import RequantizeSum
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.models import quantized_model, random_feeds
from tvm_qdq.testing.oracle import assert_model_contract, output_qparams, run_ort

TARGET = without_amx(resolve_target("x86"))  # the VNNI kernels (AMX: test_x86_amx.py)
pytestmark = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")

RNG = np.random.default_rng(7)


# ----------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------


def _conv_ref(x: np.ndarray, w: np.ndarray, strides, padding, dilation, groups) -> np.ndarray:
    """NCHW/OIHW integer conv in int64 (padding with 0)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    pt, pl, pb, pr = padding
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - dilation[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + pl + pr - dilation[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, o, oh, ow), np.int64)
    og = o // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og].astype(np.int64)
        for i in range(kh):
            for j in range(kw):
                h0, w0 = i * dilation[0], j * dilation[1]
                patch = xs[:, :, h0:h0 + strides[0] * (oh - 1) + 1:strides[0],
                           w0:w0 + strides[1] * (ow - 1) + 1:strides[1]]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out


def _requantize_ref(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, zp: float
                    ) -> np.ndarray:
    value = (acc + bias).astype(np.int32).astype(np.float32) * mult
    return np.clip(np.round(value) + np.float32(zp), 0, 255).astype(np.uint8)


def _random(shape, dtype: str) -> np.ndarray:
    info = np.iinfo(dtype)
    return RNG.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)


# ----------------------------------------------------------------------------------------------
# Relax builders
# ----------------------------------------------------------------------------------------------


def _build(make_body, inputs: list[tuple[str, tuple, str]]):
    bb = relax.BlockBuilder()
    params = [relax.Var(name, relax.TensorType(shape, dtype)) for name, shape, dtype in inputs]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(make_body(bb, *params))
        bb.emit_func_output(out)
    mod = bb.get()
    report = LoweringReport()
    lowered = lower_integer_kernels(mod, TARGET, report=report)
    executable = tvm.compile(lowered, TARGET)
    return relax.VirtualMachine(executable, tvm.cpu()), report, executable


def _epilogue(bb, acc, bias, mult, zp: float, channel_axis: int, rank: int):
    shape = [1] * rank
    shape[channel_axis] = -1
    b = relax.const(bias.reshape(shape).astype(np.int32), "int32")
    m = relax.const(mult.reshape(shape).astype(np.float32), "float32")
    y = bb.emit(relax.op.add(acc, b))
    y = bb.emit(relax.op.multiply(relax.op.astype(y, "float32"), m))
    y = bb.emit(relax.op.add(relax.op.round(y), relax.const(zp, "float32")))
    return bb.emit(relax.op.astype(relax.op.clip(y, 0, 255), "uint8"))


CONV_CASES = [
    # (N, C, H, W), O, (KH, KW), strides, padding, dilation, groups, x dtype, w range, out
    ((1, 16, 12, 12), 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "uint8", 127, "int32"),
    ((1, 3, 10, 10), 16, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, "uint8", 127, "int32"),
    ((1, 16, 9, 9), 32, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, "uint8", 127, "int32"),
    ((1, 16, 8, 8), 40, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, "uint8", 127, "int32"),
    ((2, 8, 7, 7), 10, (3, 3), (1, 1), (2, 1, 0, 2), (2, 2), 1, "uint8", 127, "int32"),
    ((1, 12, 6, 6), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "int8", 127, "int32"),
    ((1, 8, 6, 6), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "uint16", 127, "int32"),
    ((1, 8, 6, 6), 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "uint16", 127, "int64"),
    ((1, 8, 6, 6), 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "uint8", 255, "int32"),
    ((1, 16, 10, 10), 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 16, "uint8", 127, "int32"),
    ((1, 16, 9, 9), 16, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 16, "int8", 127, "int32"),
    # depthwise large enough for the parallel schedule (padded copy per chunk of rows)
    ((1, 32, 64, 64), 32, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 32, "uint8", 127, "int32"),
    ((1, 48, 57, 57), 48, (5, 5), (2, 2), (1, 1, 2, 2), (1, 1), 48, "uint8", 127, "int32"),
]


def _with_epilogue(cases: list, out_index: int) -> list:
    """(case, epilogue) pairs; the requantize epilogue only for int32 accumulators."""
    return [pytest.param(c, e, id=f"{'-'.join(map(str, c[:2]))}-{c[-3]}-{'epi' if e else 'acc'}")
            for c in cases for e in (False, True) if not e or c[out_index] == "int32"]


@pytest.mark.parametrize(("case", "epilogue"), _with_epilogue(CONV_CASES, -1))
def test_conv2d_is_exact(case, epilogue: bool) -> None:
    shape, o, (kh, kw), strides, padding, dilation, groups, x_dtype, w_max, out_dtype = case
    x = _random(shape, x_dtype)
    w = RNG.integers(-w_max, w_max + 1, size=(o, shape[1] // groups, kh, kw)).astype(
        np.int8 if w_max <= 127 else np.int16)
    bias = RNG.integers(-5000, 5000, size=o)
    mult = (RNG.random(o) * 2e-4).astype(np.float32)

    def body(bb, xv):
        acc = bb.emit(relax.op.nn.conv2d(
            xv, relax.const(w), strides=strides, padding=padding, dilation=dilation,
            groups=groups, out_dtype=out_dtype))
        return _epilogue(bb, acc, bias, mult, 3.0, 1, 4) if epilogue else acc

    vm, report, executable = _build(body, [("x", shape, x_dtype)])
    kinds = {k["kind"] for k in report.kernels}
    assert kinds == ({"depthwise"} if groups > 1 else {"vnni_conv2d"}), report.to_json()
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    ref = _conv_ref(x, w, strides, padding, dilation, groups)
    expected = _requantize_ref(ref, bias.reshape(1, -1, 1, 1), mult.reshape(1, -1, 1, 1), 3.0) \
        if epilogue else ref.astype(out_dtype)
    np.testing.assert_array_equal(got, expected)
    if groups == 1:
        assert "vpdpbusd" in asm_of(executable)


MATMUL_CASES = [
    # a shape, N, a dtype, weight range, out dtype
    ((1, 64), 128, "uint8", 127, "int32"),
    ((1, 16, 64), 64, "uint8", 127, "int32"),
    ((2, 5, 30), 10, "uint8", 127, "int32"),
    ((3, 24), 20, "int8", 127, "int32"),
    ((4, 32), 16, "uint16", 127, "int32"),
    ((4, 32), 48, "uint16", 127, "int64"),
    ((4, 32), 16, "uint8", 255, "int32"),
]


@pytest.mark.parametrize(("case", "epilogue"), _with_epilogue(MATMUL_CASES, -1))
def test_matmul_is_exact(case, epilogue: bool) -> None:
    a_shape, n, a_dtype, w_max, out_dtype = case
    a = _random(a_shape, a_dtype)
    b = RNG.integers(-w_max, w_max + 1, size=(a_shape[-1], n)).astype(
        np.int8 if w_max <= 127 else np.int16)
    bias = RNG.integers(-5000, 5000, size=n)
    mult = (RNG.random(n) * 2e-4).astype(np.float32)

    def body(bb, av):
        acc = bb.emit(relax.op.matmul(av, relax.const(b), out_dtype=out_dtype))
        return _epilogue(bb, acc, bias, mult, 7.0, len(a_shape) - 1, len(a_shape)) \
            if epilogue else acc

    vm, report, executable = _build(body, [("a", a_shape, a_dtype)])
    assert [k["kind"] for k in report.kernels] == ["vnni_matmul"], report.to_json()
    got = vm["main"](tvm.runtime.tensor(a)).numpy()
    ref = a.astype(np.int64) @ b.astype(np.int64)
    expected = _requantize_ref(ref, bias, mult, 7.0) if epilogue else ref.astype(out_dtype)
    np.testing.assert_array_equal(got, expected)
    assert "vpdpbusd" in asm_of(executable)


# ----------------------------------------------------------------------------------------------
# Packing and tiling helpers
# ----------------------------------------------------------------------------------------------


def test_weight_packing_layouts() -> None:
    w = RNG.integers(-255, 256, size=(20, 3, 3, 2)).astype(np.int16)
    terms = K.weight_terms(w)
    assert terms == 3
    parts = K.split_int8(w, terms)
    np.testing.assert_array_equal(parts.astype(np.int64).sum(axis=0), w)
    packed = K.pack_conv_weight(w, terms)
    assert packed.shape == (2, terms, 3, 2, 1, 16, 4)
    o, c, kh, kw = 17, 2, 1, 0
    assert int(packed[o // 16, :, kh, kw, c // 4, o % 16, c % 4].astype(np.int64).sum()) == \
        int(w[o, c, kh, kw])
    b = RNG.integers(-128, 128, size=(10, 20)).astype(np.int8)
    bp = K.pack_matmul_weight(b)
    assert bp.shape == (2, 1, 3, 16, 4)
    assert bp[1, 0, 2, 3, 1] == b[9, 19] and bp[1, 0, 2, 4, 2] == 0  # zero padding


def test_row_tiles_are_rectangles() -> None:
    assert valid_row_tiles([1, 32, 32], 1024) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert 12 not in valid_row_tiles([1, 8, 8]) and 16 in valid_row_tiles([1, 8, 8])
    assert row_tile_factors([1, 8, 8], 16) == [1, 2, 8]
    assert row_tile_factors([2, 16], 4) == [1, 4]


# ----------------------------------------------------------------------------------------------
# Whole models
# ----------------------------------------------------------------------------------------------


def _vm(mod: tvm.IRModule):
    return relax.VirtualMachine(tvm.compile(mod, TARGET), tvm.cpu())


@pytest.mark.parametrize("name", ["resnet_cnn", "mlp", "transformer_encoder"])
def test_model_lowering(name: str) -> None:
    """Every conv/matmul of the u8/s8 model becomes a VNNI kernel (depthwise: vectorized), the
    conv chain stays NHWC (one transpose, at the input), and the output meets the contract
    against ORT's reference path; for the MLP it is also bit-identical to the default build
    (checked for every model and configuration while developing; too slow to build twice
    here)."""
    model = quantized_model(name, "u8s8_perchannel")
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    report = LoweringReport()
    lowered = lower_integer_kernels(integer, TARGET, report=report)
    assert report.skipped == []
    assert report.kernels and all(k["kind"] in ("vnni_conv2d", "vnni_matmul", "depthwise")
                                  for k in report.kernels)
    assert all(kind != "none" for kind in report.schedules.values())
    script = lowered["main"].script(show_meta=False)
    if name == "resnet_cnn":
        transposes = [f for f in report.schedules if "transpose" in f]
        assert transposes == ["fused_quantize_pad_transpose"], transposes
    executable = tvm.compile(lowered, TARGET)
    assert "vpdpbusd" in asm_of(executable)
    assert "R.nn.conv2d" not in script and "R.matmul(" not in script
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out_name = model.graph.output[0].name
    scale, zero_point = output_qparams(model)[out_name]
    default = _vm(integer) if name == "mlp" else None
    for seed in (1, 2) if name != "transformer_encoder" else (1,):
        feeds = random_feeds(model, seed=seed)
        args = [tvm.runtime.tensor(feeds[i.name]) for i in model.graph.input]
        got = vm["main"](*args).numpy()
        expected = run_ort(model, feeds, optimization_level=ort.GraphOptimizationLevel
                           .ORT_DISABLE_ALL)[0]
        assert_model_contract(got, expected, scale, zero_point,
                              classify=name != "transformer_encoder", name=name)
        if default is not None:
            np.testing.assert_array_equal(got, default["main"](*args).numpy())


def test_lowering_without_vnni_keeps_tvm_kernels() -> None:
    """On a CPU without VNNI the matmul stays TVM's (legalized, fused, scheduled)."""
    a = _random((2, 24), "uint8")
    b = RNG.integers(-128, 128, size=(24, 20)).astype(np.int8)
    bb = relax.BlockBuilder()
    av = relax.Var("a", relax.TensorType((2, 24), "uint8"))
    with bb.function("main", [av]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(av, relax.const(b), out_dtype="int32"))
        bb.emit_func_output(out)
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake"})
    report = LoweringReport()
    lowered = lower_integer_kernels(bb.get(), target, report=report)
    assert report.kernels == []
    vm = relax.VirtualMachine(tvm.compile(lowered, target), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(a)).numpy()
    np.testing.assert_array_equal(got, a.astype(np.int64) @ b.astype(np.int64))


def test_generic_kernels_match_default_build() -> None:
    """Elementwise chains with multi-use values (the int64 fixed-point rounding the integer pass
    emits for Add) are fused and scheduled without changing a bit (regression: inlining a
    value read twice, and reverse-inlining into a producer with other readers)."""
    x = RNG.integers(-255, 256, size=(4, 64)).astype(np.int16)
    y = RNG.integers(-255, 256, size=(4, 64)).astype(np.int16)

    def body(bb, xv, yv):
        a = bb.emit(relax.op.multiply(relax.op.astype(xv, "int64"),
                                      relax.const(1310450650880, "int64")))
        b = bb.emit(relax.op.multiply(relax.op.astype(yv, "int64"),
                                      relax.const(899086575245, "int64")))
        s = bb.emit(relax.op.add(a, b))
        q = bb.emit(relax.op.right_shift(s, relax.const(40, "int64")))
        r = bb.emit(relax.op.subtract(s, relax.op.left_shift(q, relax.const(40, "int64"))))
        half = relax.const(1 << 39, "int64")
        up = relax.op.logical_or(
            relax.op.greater(r, half),
            relax.op.logical_and(relax.op.equal(r, half), relax.op.equal(
                relax.op.bitwise_and(q, relax.const(1, "int64")), relax.const(1, "int64"))))
        out = bb.emit(relax.op.add(q, relax.op.astype(up, "int64")))
        return bb.emit(relax.op.astype(relax.op.clip(out, 0, 255), "uint8"))

    inputs = [("x", x.shape, "int16"), ("y", y.shape, "int16")]
    vm, report, _ = _build(body, inputs)
    assert report.kernels == [] and set(report.schedules.values()) == {"generic"}
    args = [tvm.runtime.tensor(x), tvm.runtime.tensor(y)]
    bb = relax.BlockBuilder()
    params = [relax.Var(n, relax.TensorType(s, d)) for n, s, d in inputs]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *params))
        bb.emit_func_output(out)
    np.testing.assert_array_equal(vm["main"](*args).numpy(), _vm(bb.get())["main"](*args).numpy())


def test_nhwc_propagates_through_conv_chains() -> None:
    """conv → requantize → pad(zp) → max pool → conv → residual add → sum: one transpose
    at the input, the rest NHWC, bit-identical to the default build."""
    x = _random((1, 8, 12, 12), "uint8")
    w1 = RNG.integers(-127, 128, size=(16, 8, 3, 3)).astype(np.int8)
    w2 = RNG.integers(-127, 128, size=(16, 16, 3, 3)).astype(np.int8)
    mult = (RNG.random(16) * 3e-4).astype(np.float32)

    def requant(bb, acc, zp):
        return _epilogue(bb, acc, np.zeros(16, np.int64), mult, zp, 1, 4)

    def body(bb, xv):
        a = requant(bb, bb.emit(relax.op.nn.conv2d(xv, relax.const(w1), padding=(1, 1),
                                                   out_dtype="int32")), 5.0)
        p = bb.emit(relax.op.nn.pad(a, [0, 0, 0, 0, 1, 1, 1, 1], "constant", 5.0))
        v = bb.emit(relax.op.nn.max_pool2d(p, (2, 2), (2, 2)))
        c = bb.emit(relax.op.nn.conv2d(v, relax.const(w2), padding=(1, 1), out_dtype="int32"))
        r = bb.emit(relax.op.add(c, relax.op.astype(v, "int32")))
        return bb.emit(relax.op.sum(r, axis=[2, 3], keepdims=False))

    vm, report, _ = _build(body, [("x", x.shape, "uint8")])
    assert [k["kind"] for k in report.kernels] == ["vnni_conv2d", "vnni_conv2d"]
    transposes = [name for name in report.schedules if "transpose" in name]
    assert len(transposes) == 1, report.schedules
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(x.shape, "uint8"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, xv))
        bb.emit_func_output(out)
    arg = tvm.runtime.tensor(x)
    np.testing.assert_array_equal(vm["main"](arg).numpy(), _vm(bb.get())["main"](arg).numpy())


def _sum(bb, terms, shift: int, qmin: int = 0, qmax: int = 255, out: str = "uint8"):
    """One ``tvm_qdq.requantize_sum``: ``clip(rhe(Σ (x - zp) · K / 2^shift))`` (no output
    zero point); ``terms`` are ``(x, zp, K)``."""
    op = RequantizeSum(tuple((x, np.asarray(zp, np.int64)) for x, zp, _ in terms),
                       tuple(np.asarray(k, np.int64) for _, _, k in terms), shift,
                       np.zeros((), np.int64), qmin, qmax, out)
    return bb.emit(op.call())


@pytest.mark.parametrize("shift", [3, 28])
def test_rounding_shift_float_form_is_exact(shift: int) -> None:
    """conv → int64 fixed-point requantize (the sum op, with a constant term and a two-input
    residual sum) gets its float64 form on x86 and stays bit-identical to the default form;
    ``shift=3`` makes round-half-to-even ties frequent."""
    x = _random((1, 16, 10, 10), "uint8")
    y = _random((1, 32, 10, 10), "uint8")
    w = RNG.integers(-127, 128, size=(32, 16, 1, 1)).astype(np.int8)
    top = 1 << 29 if shift == 28 else 5
    m1 = RNG.integers(1, top, size=(1, 32, 1, 1)).astype(np.int64)
    m2 = RNG.integers(1, top, size=(1, 32, 1, 1)).astype(np.int64)
    b = RNG.integers(-(1 << 36), 1 << 36, size=(1, 32, 1, 1)).astype(np.int64)
    if shift == 3:
        b = b % 64

    def body(bb, xv, yv):
        acc = bb.emit(relax.op.nn.conv2d(xv, relax.const(w), out_dtype="int32"))
        acc = bb.emit(relax.op.subtract(acc, relax.const(7, "int32")))
        a = _sum(bb, [(acc, 0, m1), (relax.const(b, "int64"), 0, 1)], shift)
        return _sum(bb, [(a, 3, m1), (yv, 0, m2)], shift)

    inputs = [("x", x.shape, "uint8"), ("y", y.shape, "uint8")]
    vm, report, _ = _build(body, inputs)
    assert report.float_roundings == 2
    bb = relax.BlockBuilder()
    params = [relax.Var(n, relax.TensorType(sh, d)) for n, sh, d in inputs]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *params))
        bb.emit_func_output(out)
    args = [tvm.runtime.tensor(x), tvm.runtime.tensor(y)]
    got = vm["main"](*args).numpy()
    np.testing.assert_array_equal(got, _vm(bb.get())["main"](*args).numpy())
    assert 0 < np.count_nonzero(got) < got.size or shift == 3


def test_rounding_shift_unbounded_is_kept() -> None:
    """A sum whose input range cannot be bounded below 2^53 keeps its int64 form."""
    x = RNG.integers(-(1 << 62), 1 << 62, size=(4, 16)).astype(np.int64)

    def body(bb, xv):
        return _sum(bb, [(xv, 0, 1)], 9, -(1 << 40), 1 << 40, "int64")

    vm, report, _ = _build(body, [("x", x.shape, "int64")])
    assert report.float_roundings == 0
    q, r = x >> 9, x & 511
    expected = np.clip(q + ((r > 256) | ((r == 256) & (q & 1 == 1))), -(1 << 40), 1 << 40)
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), expected)


@pytest.mark.parametrize("mode", ["edge", "reflect"])
def test_edge_and_reflect_pad_lower_without_fallback(mode: str) -> None:
    """TVM's ONNX converter emits these pads as PrimFuncs of the module (``replicate_pad``,
    ``mirror_pad``); the x86 lowering must keep them callable (no fallback warning) and the
    integer result must equal ORT's reference path exactly (a pad moves codes only)."""
    import warnings

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.float32(0.1), "s"),
             numpy_helper.from_array(np.uint8(3), "zp"),
             numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "pads")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="x_dq"),
             helper.make_node("Pad", ["xd", "pads"], ["p"], mode=mode, name="pad"),
             helper.make_node("QuantizeLinear", ["p", "s", "zp"], ["y"], name="y_q")]
    graph = helper.make_graph(
        nodes, "pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [None] * 4)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model)
    x = {"x": np.random.default_rng(0).uniform(0, 2, (1, 3, 4, 5)).astype(np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = tvm_qdq.compile(model, target="x86")
    expected = run_ort(model, x, optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    assert np.array_equal(compiled.run(x)[0], expected[0])


# ----------------------------------------------------------------------------------------------
# Kernel roles
# ----------------------------------------------------------------------------------------------


def test_kernel_roles_survive_fusion_and_keep_tuning_keys() -> None:
    """The role annotations of the kernel blocks (``kernel_tags``) survive FuseOps / FuseTIR
    (schedules dispatch on them, not on names), and the tuning key of a fused kernel ignores
    them (the database's keys were computed without annotations)."""
    from tvm import tirx

    from tvm_qdq.backend.kernel_tags import DEPTHWISE, SCRATCH, VNNI, without_tags
    from tvm_qdq.backend.legalize_signedness import legalize_signedness
    from tvm_qdq.backend.tir_blocks import kernel_kinds
    from tvm_qdq.backend.x86.lower import fuse_passes, rewrite_kernels

    model = quantized_model("resnet_cnn", "u8s8_perchannel")
    mod = legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86")
    with TARGET:
        fused = fuse_passes()(rewrite_kernels(mod, TARGET))
    kinds = {g.name_hint: kernel_kinds(f) for g, f in fused.functions.items()
             if isinstance(f, tirx.PrimFunc)}
    assert any(VNNI in k and SCRATCH in k for k in kinds.values()), kinds
    assert any(DEPTHWISE in k for k in kinds.values()), kinds
    for name, func in fused.functions.items():
        if isinstance(func, tirx.PrimFunc) and kinds[name.name_hint]:
            assert not kernel_kinds(without_tags(func))
