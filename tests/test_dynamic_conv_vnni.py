"""ConvInteger with a run-time activation zero point on the VNNI path.

``y[o] = Σ_k (x_k - zx) · (w[o, k] - zw[o])`` with ``zx`` computed at run time (a graph input,
or DynamicQuantizeLinear's zero point) is built as ``conv(pad(x, zx), w') - zx · Σ_k w'[o, k]``
(``w' = w - zw``): the uint8 activation stays uint8, so the conv is a ``vpdpbusd`` kernel (or
the depthwise kernel), and the int32 accumulators are bit-identical to ORT's ConvInteger and to
the former ``conv(int16(x) - zx, w')`` form. Cases: strides, pads, dilation, groups (dense
block-diagonal and depthwise), 1-D and 2-D, int8 weights and uint8 weights with a zero point,
``zx`` in {0, 1, 128, 255}.
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
from tvm_qdq.testing.numpy_reference import conv_integer as conv_integer_ref
from tvm_qdq.testing.oracle import run_ort

TARGET = resolve_target("x86")
pytestmark = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")

# (input shape, out channels, kernel, strides, pads, dilations, group, weight dtype, wz,
#  expected kernel kind)
CASES = [
    ((1, 16, 12, 10), 32, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "uint8", 120, "vnni_conv2d"),
    ((1, 24, 11, 9), 40, (3, 3), (2, 2), (1, 0, 2, 1), (1, 1), 1, "uint8", 7, "vnni_conv2d"),
    ((2, 16, 13, 13), 16, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1, "int8", 0, "vnni_conv2d"),
    ((1, 32, 8, 8), 48, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "uint8", 200, "vnni_conv2d"),
    ((1, 16, 10, 10), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4, "int8", 0, "vnni_conv2d"),
    ((1, 32, 14, 14), 32, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 32, "uint8", 131, "depthwise"),
    ((1, 16, 9, 9), 16, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 16, "int8", 0, "depthwise"),
    ((1, 20, 40), 32, (3,), (1,), (1, 1), (1,), 1, "uint8", 128, "vnni_conv2d"),
    ((1, 16, 33), 24, (5,), (3,), (2, 0), (2,), 1, "int8", 0, "vnni_conv2d"),
    ((1, 16, 30), 16, (3,), (1,), (1, 1), (1,), 16, "uint8", 99, "depthwise"),
]
ZERO_POINTS = [0, 1, 128, 255]


def _case_id(case) -> str:
    shape, o, k, s, _, d, g, wdt, wz, _ = case
    return f"{len(k)}d-c{shape[1]}o{o}k{k[0]}s{s[0]}d{d[0]}g{g}-{wdt}z{wz}"


def _weights(case, rng: np.random.Generator) -> np.ndarray:
    shape, o, k, _, _, _, g, wdt, _, _ = case
    info = np.iinfo(wdt)
    return rng.integers(info.min, int(info.max) + 1, size=(o, shape[1] // g, *k)).astype(wdt)


def _conv_integer_model(case, w: np.ndarray, dynamic: bool) -> onnx.ModelProto:
    """``ConvInteger(x, w, zx, zw)`` with ``zx`` a uint8 graph input (``dynamic=False``: x is
    a uint8 input too), or ``DynamicQuantizeLinear(x_float) → ConvInteger`` (``dynamic``)."""
    shape, _, _, strides, pads, dilations, group, wdt, wz, _ = case
    inits = [numpy_helper.from_array(w, "w")]
    conv_inputs = ["xq", "w", "xz"]
    if wz:
        inits.append(numpy_helper.from_array(np.array(wz, dtype=wdt), "wz"))
        conv_inputs.append("wz")
    nodes = [helper.make_node("ConvInteger", conv_inputs, ["y"], strides=list(strides),
                              pads=list(pads), dilations=list(dilations), group=group)]
    if dynamic:
        nodes.insert(0, helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]))
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    else:
        inputs = [helper.make_tensor_value_info("xq", TensorProto.UINT8, shape),
                  helper.make_tensor_value_info("xz", TensorProto.UINT8, [])]
    graph = helper.make_graph(nodes, "conv_integer", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _lowered(model: onnx.ModelProto) -> tuple[relax.VirtualMachine, LoweringReport, str]:
    integer = legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86")
    report = LoweringReport()
    lowered = lower_integer_kernels(integer, TARGET, report=report)
    executable = tvm.compile(lowered, TARGET)
    return relax.VirtualMachine(executable, tvm.cpu()), report, asm_of(executable)


def _former_path(x: np.ndarray, zx: int, w: np.ndarray, wz: int, case) -> np.ndarray:
    """The former build: ``conv(int16(x) - zx, w - zw)`` into int32 (TVM's own kernels)."""
    shape, _, k, strides, pads, dilations, group, _, _, _ = case
    spatial = len(k)
    op = relax.op.nn.conv1d if spatial == 1 else relax.op.nn.conv2d
    layouts = ("NCW", "OIW") if spatial == 1 else ("NCHW", "OIHW")
    w_shift = w.astype(np.int16) - np.int16(wz)
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(shape, "uint8"))
    zv = relax.Var("zx", relax.TensorType([], "uint8"))
    with bb.function("main", [xv, zv]):
        with bb.dataflow():
            shifted = bb.emit(relax.op.subtract(relax.op.astype(xv, "int16"),
                                                relax.op.astype(zv, "int16")))
            y = bb.emit_output(bb.emit(op(shifted, relax.const(w_shift), strides=list(strides),
                                          padding=list(pads), dilation=list(dilations),
                                          groups=group, data_layout=layouts[0],
                                          kernel_layout=layouts[1], out_dtype="int32")))
        bb.emit_func_output(y)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), TARGET), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(np.uint8(zx))).numpy()


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_runtime_zero_point_conv_is_vnni_and_exact(case) -> None:
    rng = np.random.default_rng(CASES.index(case))
    shape, _, k, strides, pads, dilations, group, _, wz, kind = case
    w = _weights(case, rng)
    model = _conv_integer_model(case, w, dynamic=False)
    vm, report, asm = _lowered(model)
    assert [kr["kind"] for kr in report.kernels] == [kind], report.to_json()
    assert not [s for s in report.skipped if s["op"].startswith("conv")], report.to_json()
    if kind == "vnni_conv2d":
        assert "vpdpbusd" in asm
    attrs = dict(strides=list(strides), pads=list(pads), dilations=list(dilations), group=group)
    for zx in ZERO_POINTS:
        x = rng.integers(0, 256, size=shape).astype(np.uint8)
        got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(np.uint8(zx))).numpy()
        want = run_ort(model, {"xq": x, "xz": np.array(zx, np.uint8)})[0]
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, _former_path(x, zx, w, wz, case))
        ref = conv_integer_ref(x, w, zx, wz, **attrs)
        np.testing.assert_array_equal(got, ref.astype(np.int32))


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[5], CASES[7]], ids=_case_id)
def test_dynamic_quantize_linear_feeds_the_vnni_conv(case) -> None:
    """DynamicQuantizeLinear → ConvInteger: inputs whose zero point is 0 (all ≥ 0), 255 (all
    ≤ 0) and in between; the int32 result equals ORT's."""
    rng = np.random.default_rng(3)
    shape, kind = case[0], case[-1]
    w = _weights(case, rng)
    model = _conv_integer_model(case, w, dynamic=True)
    vm, report, asm = _lowered(model)
    assert [kr["kind"] for kr in report.kernels] == [kind], report.to_json()
    if kind == "vnni_conv2d":
        assert "vpdpbusd" in asm
    base = rng.normal(0, 1, size=shape).astype(np.float32)
    for x in (np.abs(base), -np.abs(base), base + 0.4, np.zeros(shape, np.float32)):
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        want = run_ort(model, {"x": x},
                       optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)[0]
        np.testing.assert_array_equal(got, want)
