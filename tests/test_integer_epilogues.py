"""Conv/MatMul on dequantized inputs are integer whatever follows them.

The pattern of QDQ detectors exported by non-ORT quantizers: float weight initializers go
through ``QuantizeLinear → DequantizeLinear`` at run time, scales and zero points are
``Constant`` nodes (powers of two), biases stay float, and the convs are followed by
``LeakyRelu → Q``, ``x · Sigmoid(x) → Q`` (SiLU) or nothing at all (a float head).

* The weight's ``QuantizeLinear`` of a constant is folded at compile time to integer codes;
* the conv/matmul becomes an int32 accumulator; a float consumer reads
  ``float32(float64(acc) · s_x · s_w)``, the accumulator dequantized once (the float bias,
  activation and the next ``QuantizeLinear`` are its fused epilogue on x86);
* with power-of-two scales ORT's float32 conv of the dequantized operands is exact too, so the
  outputs are bit-identical to ORT's reference path; with arbitrary scales they differ by
  ORT's float32 summation rounding (measured here: a few float32 ulp of the conv output).
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
from tvm_qdq.backend.x86 import LoweringReport, has_vnni, lower_integer_kernels
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.oracle import run_ort

TARGET = resolve_target("x86")
ALPHA = 0.1015625  # LeakyRelu slope (26/256, as such exporters write 0.1)


def detector_model(pow2: bool = True, seed: int = 0, hw: int = 16) -> onnx.ModelProto:
    """``x → Q/DQ → Conv → LeakyRelu → Q/DQ → Conv(stride 2, per-channel weight) → SiLU →
    Q/DQ → {Conv head (float output "head"), Reshape → MatMul (float output "logits")}``.

    Weights are float initializers quantized at run time (``QuantizeLinear`` of the
    initializer), biases float, scales/zero points in ``Constant`` nodes: powers of two when
    ``pow2`` else arbitrary float32 values."""
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def constant(value: np.ndarray, name: str) -> str:
        nodes.append(helper.make_node("Constant", [], [name],
                                      value=numpy_helper.from_array(np.asarray(value), name)))
        return name

    def scale(exp: float, size: int | None = None) -> np.ndarray:
        exps = np.full(size or 1, exp) + (0 if pow2 else rng.uniform(0.05, 0.95, size or 1))
        value = (2.0 ** exps).astype(np.float32)
        return value if size else value.reshape(())

    def qdq(x: str, s: np.ndarray, name: str, axis: int | None = None) -> str:
        s_name = constant(s, f"{name}_scale")
        z_name = constant(np.zeros(s.shape, np.int8), f"{name}_zp")
        kw = {} if axis is None else {"axis": axis}
        nodes.append(helper.make_node("QuantizeLinear", [x, s_name, z_name], [f"{name}_q"], **kw))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", s_name, z_name],
                                      [f"{name}_dq"], **kw))
        return f"{name}_dq"

    def conv(x: str, c_in: int, c_out: int, name: str, per_channel: bool = False,
             **attrs) -> str:
        w = rng.normal(0, 1 / np.sqrt(c_in * 9), (c_out, c_in, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}_w"))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.2, c_out).astype(np.float32),
                                             f"{name}_b"))
        w_scale = scale(-7, c_out) if per_channel else scale(-7)
        w_dq = qdq(f"{name}_w", w_scale, f"{name}_wq", axis=0 if per_channel else None)
        nodes.append(helper.make_node("Conv", [x, w_dq, f"{name}_b"], [name],
                                      pads=[1, 1, 1, 1], **attrs))
        return name

    x = qdq("x", scale(-5), "in")
    y = conv(x, 3, 16, "conv1")
    nodes.append(helper.make_node("LeakyRelu", [y], ["lrelu1"], alpha=ALPHA))
    y = qdq("lrelu1", scale(-4), "a1")
    y = conv(y, 16, 16, "conv2", per_channel=True, strides=[2, 2])
    nodes.append(helper.make_node("Sigmoid", [y], ["sig2"]))
    nodes.append(helper.make_node("Mul", [y, "sig2"], ["silu2"]))
    y = qdq("silu2", scale(-4), "a2")
    conv(y, 16, 4, "head")
    side = hw // 2
    inits.append(numpy_helper.from_array(np.array([1, 16 * side * side], np.int64), "flat"))
    nodes.append(helper.make_node("Reshape", [y, "flat"], ["flat_y"]))
    fc = rng.normal(0, 1 / np.sqrt(16 * side * side), (16 * side * side, 10)).astype(np.float32)
    inits.append(numpy_helper.from_array(fc, "fc_w"))
    nodes.append(helper.make_node("MatMul", [
        "flat_y", qdq("fc_w", scale(-8), "fc_wq")], ["logits"]))
    graph = helper.make_graph(
        nodes, "detector_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, hw, hw])],
        [helper.make_tensor_value_info("head", TensorProto.FLOAT, [1, 4, side, side]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _compute_bindings(mod: tvm.IRModule) -> list[tuple[str, str]]:
    """(op, result dtype) of every conv/matmul left in ``mod``'s main function."""
    found = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and \
                    value.op.name in ("relax.nn.conv2d", "relax.matmul"):
                found.append((value.op.name, str(binding.var.ty.dtype)))
    return found


def _feeds(seed: int, hw: int = 16) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(0, 1, (1, 3, hw, hw)).astype(np.float32)}


def _ort_reference(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return run_ort(model, feeds, optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)


def test_convs_before_float_activations_are_integer() -> None:
    """Report: every conv/matmul integer (int32 accumulator), dequantized for its float
    consumers; no float conv/matmul and no run-time QuantizeLinear of a weight left."""
    model = detector_model()
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    report = tvm_qdq.pass_report(integer)
    assert not [f for f in report.float_ops if f["compute"]], report.float_ops
    computes = [r for r in report.integer if r.op in ("relax.nn.conv2d", "relax.matmul")]
    integer_ops = [r for r in computes if r.outcome == "integer"]
    assert len(integer_ops) == 4 and all(r.detail.endswith("→ int32") for r in integer_ops)
    assert sum(r.outcome == "dequantize" for r in computes) == 4, report.to_json()
    assert sorted(_compute_bindings(integer)) == [("relax.matmul", "int32")] + [
        ("relax.nn.conv2d", "int32")] * 3
    # only the activations are quantized at run time (input, LeakyRelu, SiLU)
    script = integer["main"].script(show_meta=False)
    assert script.count("R.quantize(") == 3 and "R.quantize(metadata" not in script


def test_dequantized_accumulator_is_bit_exact_with_power_of_two_scales() -> None:
    """With power-of-two scales ORT's float32 conv/matmul of the dequantized operands is exact
    (products and partial sums are multiples of ``s_x·s_w`` below ``2^24`` of them), and so
    is ``float64(acc)·s_x·s_w``: the default build is bit-identical to ORT's reference path."""
    model = detector_model()
    compiled = tvm_qdq.compile(model, "llvm")
    for seed in (1, 2):
        feeds = _feeds(seed)
        for got, want in zip(compiled.run(feeds), _ort_reference(model, feeds), strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")
@pytest.mark.parametrize("pow2", [True, False], ids=["pow2-scales", "any-scales"])
def test_x86_epilogues_fuse_into_vnni_kernels(pow2: bool) -> None:
    """x86: every conv/matmul is a VNNI kernel whose epilogue holds the dequantize, the float
    bias and the activation (LeakyRelu, SiLU) and the next quantize; the outputs are
    bit-identical to TVM's own kernels on the same integer module and, against ORT's reference
    path, bit-identical with power-of-two scales, otherwise within 8 float32 ulp of the largest
    output (ORT's float32 summation order; measured ≤ 6 ulp) and cosine ≥ 1 - 1e-6."""
    model = detector_model(pow2=pow2)
    integer = legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86")
    lowering = LoweringReport()
    lowered = lower_integer_kernels(integer, TARGET, report=lowering)
    assert sorted(k["kind"] for k in lowering.kernels) == ["vnni_conv2d"] * 3 + ["vnni_matmul"]
    assert lowering.skipped == []
    vnni = [name for name, kind in lowering.schedules.items() if kind == "vnni"]
    assert any("leaky_relu_quantize" in name for name in vnni), lowering.schedules
    # both activation → quantize epilogues (LeakyRelu, SiLU however imported) are fused into
    # their conv kernels: the only quantize outside a VNNI kernel is the input's
    assert sum("quantize" in name for name in vnni) == 2, vnni
    assert sum("quantize" in name for name in lowering.schedules) == 3, lowering.schedules
    vm = relax.VirtualMachine(tvm.compile(lowered, TARGET), tvm.cpu())
    default = relax.VirtualMachine(tvm.compile(integer, TARGET), tvm.cpu())  # TVM's kernels
    for seed in (1, 2):
        feeds = _feeds(seed)
        got = vm["main"](tvm.runtime.tensor(feeds["x"]))
        plain = default["main"](tvm.runtime.tensor(feeds["x"]))
        for out, same, want in zip(got, plain, _ort_reference(model, feeds), strict=True):
            out = out.numpy()
            np.testing.assert_array_equal(out, same.numpy())
            if pow2:
                np.testing.assert_array_equal(out, want)
                continue
            ulp = np.spacing(np.abs(want).max())
            assert np.abs(out - want).max() <= 8 * ulp, (np.abs(out - want).max(), ulp)
            cosine = float(out.ravel() @ want.ravel()) / float(
                np.linalg.norm(out) * np.linalg.norm(want))
            assert cosine >= 1 - 1e-6
