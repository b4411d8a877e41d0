"""Integer conv1d on x86: the same VNNI kernels as conv2d (a 1-D map is a 2-D map of height 1).

* Kernel level: an integer Relax ``conv1d`` (strides, pads, dilation, groups; u8/s8
  activations; with and without a requantize epilogue) lowers to ``vnni_conv2d`` (grouped:
  block-diagonal weight; depthwise: the vectorized kernel), ``vpdpbusd`` is in the assembly and
  the result equals an int64 numpy conv1d.
* Model level: a QDQ model (u8 activations, s8 per-channel weights, int32 biases) of
  Whisper-style front-end conv1d layers compiled with ``tvm_qdq.compile(..., "x86")``: every
  conv is a kernel (none skipped), no ``R.nn.conv1d`` is left, and the output meets the ORT
  contract against ORT's reference path.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_qdq
from tvm_qdq.backend.legalize_signedness import legalize_signedness
from tvm_qdq.backend.x86 import LoweringReport, asm_of, has_vnni, lower_integer_kernels
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.oracle import assert_model_contract, output_qparams, run_ort

TARGET = resolve_target("x86")
pytestmark = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")

RNG = np.random.default_rng(11)


def _conv1d_ref(x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int],
                dilation: int, groups: int) -> np.ndarray:
    """``y[n, o, t] = Σ_{c, k} x[n, g·C/G + c, t·stride + k·dilation - pl] · w[o, c, k]``
    (``g = o // (O/G)``, zero padding), in int64."""
    n, c, width = x.shape
    o, cg, kw = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), pads))
    ow = (width + sum(pads) - dilation * (kw - 1) - 1) // stride + 1
    og = o // groups
    out = np.zeros((n, o, ow), np.int64)
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og].astype(np.int64)
        for k in range(kw):
            patch = xs[:, :, k * dilation:k * dilation + stride * (ow - 1) + 1:stride]
            out[:, g * og:(g + 1) * og] += np.einsum("nct,oc->not", patch, ws[:, :, k])
    return out


CASES = [
    # (N, C, W), O, KW, stride, pads, dilation, groups, x dtype, expected kernel kind
    ((1, 16, 40), 32, 3, 1, (1, 1), 1, 1, "uint8", "vnni_conv2d"),
    ((1, 80, 64), 48, 3, 2, (1, 1), 1, 1, "uint8", "vnni_conv2d"),
    ((2, 12, 33), 20, 5, 3, (2, 0), 2, 1, "int8", "vnni_conv2d"),
    ((1, 16, 30), 24, 3, 1, (0, 2), 1, 4, "uint8", "vnni_conv2d"),
    ((1, 32, 50), 32, 5, 2, (2, 2), 1, 32, "uint8", "depthwise"),
]


@pytest.mark.parametrize("epilogue", [False, True], ids=["acc", "epi"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0][1]}x{c[1]}-k{c[2]}s{c[3]}g{c[6]}")
def test_integer_conv1d_reaches_the_kernels(case, epilogue: bool) -> None:
    shape, o, kw, stride, pads, dilation, groups, x_dtype, kind = case
    info = np.iinfo(x_dtype)
    x = RNG.integers(info.min, int(info.max) + 1, size=shape).astype(x_dtype)
    w = RNG.integers(-127, 128, size=(o, shape[1] // groups, kw)).astype(np.int8)
    mult = (RNG.random(o) * 1e-4).astype(np.float32)

    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(shape, x_dtype))
    with bb.function("main", [xv]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv1d(xv, relax.const(w), strides=stride, padding=pads,
                                           dilation=dilation, groups=groups, out_dtype="int32"))
            if epilogue:  # requantize-like float epilogue with a per-channel multiplier
                m = relax.const(mult.reshape(1, -1, 1), "float32")
                y = bb.emit(relax.op.multiply(relax.op.astype(y, "float32"), m))
                y = bb.emit(relax.op.astype(relax.op.clip(relax.op.round(y), -128, 127), "int8"))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    report = LoweringReport()
    lowered = lower_integer_kernels(bb.get(), TARGET, report=report)
    assert [k["kind"] for k in report.kernels] == [kind], report.to_json()
    assert report.skipped == []
    assert "R.nn.conv1d" not in lowered["main"].script(show_meta=False)
    executable = tvm.compile(lowered, TARGET)
    got = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    ref = _conv1d_ref(x, w, stride, pads, dilation, groups)
    if epilogue:
        ref = np.clip(np.round(ref.astype(np.int32).astype(np.float32)
                               * mult.reshape(1, -1, 1)), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(got, ref)
    if kind == "vnni_conv2d":
        assert "vpdpbusd" in asm_of(executable)


# ----------------------------------------------------------------------------------------------
# A QDQ model: Whisper-style front end (conv1d k3 → Relu → conv1d k3 stride 2), plus dilation
# and groups
# ----------------------------------------------------------------------------------------------


def _qdq_conv1d_model(c_in: int = 40, width: int = 96, seed: int = 0) -> onnx.ModelProto:
    """u8 activations (per-tensor), s8 per-channel weights, int32 biases on the ``s_x·s_w``
    grid, the layout ORT's ``quantize_static`` writes."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def tensor(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def qdq(x: str, scale: float, zp: int, name: str) -> str:
        tensor(f"{name}_s", np.float32(scale))
        tensor(f"{name}_z", np.uint8(zp))
        nodes.append(helper.make_node("QuantizeLinear", [x, f"{name}_s", f"{name}_z"],
                                      [f"{name}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"],
                                      [f"{name}_dq"]))
        return f"{name}_dq"

    def conv(x: str, s_x: float, c: int, o: int, k: int, name: str, **attrs) -> str:
        groups = attrs.get("group", 1)
        w = rng.normal(0, 1 / np.sqrt(c // groups * k), size=(o, c // groups, k))
        s_w = (np.abs(w).reshape(o, -1).max(axis=1) / 127).astype(np.float32)
        w_q = np.clip(np.rint(w / s_w[:, None, None]), -127, 127).astype(np.int8)
        b = rng.normal(0, 0.1, size=o)
        b_q = np.rint(b / (np.float32(s_x) * s_w)).astype(np.int32)
        tensor(f"{name}_w", w_q)
        tensor(f"{name}_ws", s_w)
        tensor(f"{name}_wz", np.zeros(o, np.int8))
        tensor(f"{name}_b", b_q)
        tensor(f"{name}_bs", (np.float32(s_x) * s_w).astype(np.float32))
        tensor(f"{name}_bz", np.zeros(o, np.int32))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_w", f"{name}_ws", f"{name}_wz"],
                                      [f"{name}_wdq"], axis=0))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_b", f"{name}_bs", f"{name}_bz"],
                                      [f"{name}_bdq"], axis=0))
        nodes.append(helper.make_node("Conv", [x, f"{name}_wdq", f"{name}_bdq"], [name], **attrs))
        return name

    s0, s1, s2, s3 = 0.02, 0.03, 0.025, 0.04
    x = qdq("x", s0, 128, "in")
    y = conv(x, s0, c_in, 64, 3, "conv1", pads=[1, 1])
    nodes.append(helper.make_node("Relu", [y], ["relu1"]))
    y = qdq("relu1", s1, 0, "a1")
    y = conv(y, s1, 64, 64, 3, "conv2", pads=[1, 1], strides=[2])
    y = qdq(y, s2, 120, "a2")
    y = conv(y, s2, 64, 48, 3, "conv3", pads=[2, 2], dilations=[2], group=4)
    y = qdq(y, s3, 128, "a3")
    y = conv(y, s3, 48, 48, 5, "conv4", pads=[2, 2], group=48)
    tensor("out_s", np.float32(0.05))
    tensor("out_z", np.uint8(128))
    nodes.append(helper.make_node("QuantizeLinear", [y, "out_s", "out_z"], ["out"]))
    graph = helper.make_graph(
        nodes, "conv1d_front_end",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, width])],
        [helper.make_tensor_value_info("out", TensorProto.UINT8, [1, 48, width // 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def test_qdq_conv1d_model_uses_vnni_and_meets_the_contract() -> None:
    model = _qdq_conv1d_model()
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    report = tvm_qdq.pass_report(integer)
    convs = [r for r in report.integer if r.op == "relax.nn.conv1d"]
    assert len(convs) == 4 and all(r.outcome == "integer" for r in convs), report.to_json()
    assert not any(f["compute"] for f in report.float_ops), report.float_ops
    lowering = LoweringReport()
    lowered = lower_integer_kernels(legalize_signedness(integer, "x86"), TARGET, report=lowering)
    kinds = sorted(k["kind"] for k in lowering.kernels)
    assert kinds == ["depthwise", "vnni_conv2d", "vnni_conv2d", "vnni_conv2d"], lowering.to_json()
    assert lowering.skipped == [], lowering.skipped
    assert "R.nn.conv1d" not in lowered["main"].script(show_meta=False)
    # channels-last from the input quantize to the output: one transpose in, one out
    transposes = [f for f in lowering.schedules if "transpose" in f]
    assert len(transposes) == 2, transposes
    executable = tvm.compile(lowered, TARGET)
    assert "vpdpbusd" in asm_of(executable)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    compiled = tvm_qdq.compile(model, "x86", tuning_db=False)
    scale, zero_point = output_qparams(model)["out"]
    for seed in (1, 2):
        x = np.random.default_rng(seed).normal(0, 1.0, size=(1, 40, 96)).astype(np.float32)
        expected = run_ort(model, {"x": x},
                           optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)[0]
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        assert_model_contract(got, expected, scale, zero_point, name=f"conv1d/{seed}")
        np.testing.assert_array_equal(compiled.run({"x": x})[0], got)
