"""LayerNormalization in ONNX Runtime's float32 order (:mod:`tvm_qdq.frontend.onnx.layer_norm`).

Float LayerNorm models of several shapes, axes and epsilons, with and without bias and the
optional Mean / InvStdDev outputs: the x86 build is bit-identical to ORT's CPU kernel
(reference session, graph optimizations disabled) for rows of 8 or more elements — rows
with 0..7 trailing elements past a multiple of 8, so every tail of ORT's 8-lane sum of
squares is covered. Rows shorter than 8 (another ORT path) are within a few ulps.
The x86 row-reduction schedule still applies to the layer norm function.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper

import tvm_qdq
from tvm_qdq.backend.x86 import lower_integer_kernels
from tvm_qdq.backend.x86.lower import LoweringReport
from tvm_qdq.compile import legalize_signedness
from tvm_qdq.targets import resolve_target

TARGET = resolve_target("x86")

#: (shape, axis, epsilon, bias, Mean/InvStdDev outputs)
CASES = [
    ((4, 7, 384), -1, 1e-12, True, False),  # MiniLM rows
    ((2, 16, 768), -1, 1e-12, True, False),
    ((3, 64), -1, 1e-5, False, True),
    ((2, 5, 6, 8), 2, 1e-3, True, True),  # two normalized axes (48 values)
    ((33, 12), -1, 1e-5, True, False),  # n mod 8 = 4: rounded-product tail
    ((17, 13), -1, 1e-5, True, True),  # n mod 8 = 5
    ((16, 100), -1, 1e-6, True, False),
    ((5, 9), 1, 1e-5, True, False),  # n mod 8 = 1: FMA tail
    ((6, 23), -1, 1e-5, False, False),  # n mod 8 = 7
    ((8, 10), -1, 0.1, True, True),  # n mod 8 = 2
]


def _model(shape: tuple, axis: int, eps: float, bias: bool, stats: bool) -> onnx.ModelProto:
    normalized = shape[axis:]
    rng = np.random.default_rng(sum(shape))
    gamma = (1 + 0.3 * rng.standard_normal(normalized)).astype(np.float32)
    beta = (0.2 * rng.standard_normal(normalized)).astype(np.float32)
    names = ["y", "mean", "inv_std"] if stats else ["y"]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]
    inits = [onnx.numpy_helper.from_array(gamma, "gamma")]
    if bias:
        inits.append(onnx.numpy_helper.from_array(beta, "beta"))
    node = helper.make_node("LayerNormalization", ["x", "gamma", "beta"][:2 + bias], names,
                            axis=axis, epsilon=eps)
    graph = helper.make_graph([node], "ln", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(shape))], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _ort(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 ulps (ordered integer representation)."""
    def ordered(v: np.ndarray) -> np.ndarray:
        i = v.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)
    return np.abs(ordered(a) - ordered(b))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"_ax{c[1]}")
def test_bit_identical_to_ort(case: tuple) -> None:
    """Every output (y, and Mean/InvStdDev when asked) equals ORT's bit for bit."""
    model = _model(*case)
    compiled = tvm_qdq.compile(model, "x86")
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal(case[0]) * 3 + 0.5).astype(np.float32)
        got, want = compiled.run({"x": x}), _ort(model, x)
        assert len(got) == len(want)
        for name, g, w in zip(("y", "mean", "inv_std"), got, want, strict=False):
            assert g.shape == w.shape, name
            np.testing.assert_array_equal(g, w, err_msg=f"{case} {name} seed {seed}")


def test_short_rows_within_ulps() -> None:
    """Rows of fewer than 8 values take another ORT path: same formula, a few ulps."""
    model = _model((64, 5), -1, 1e-5, True, False)
    x = np.random.default_rng(3).standard_normal((64, 5)).astype(np.float32)
    got, want = tvm_qdq.compile(model, "x86").run({"x": x})[0], _ort(model, x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_imported_as_ort_order_function() -> None:
    """The converter replaces ``R.nn.layer_norm`` by the ORT-order TE function."""
    mod = tvm_qdq.from_onnx(_model((4, 7, 384), -1, 1e-12, True, False))
    text = mod.script()
    assert "R.nn.layer_norm" not in text
    names = [g.name_hint for g, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert any(n.startswith("layer_norm") for n in names), names


def test_row_reduce_schedule_applies() -> None:
    """The x86 lowering gives the layer norm function the row-reduction schedule."""
    mod = tvm_qdq.from_onnx(_model((2, 16, 384), -1, 1e-12, True, False))
    mod = legalize_signedness(tvm_qdq.to_integer(mod), "x86")
    report = LoweringReport()
    lower_integer_kernels(mod, TARGET, report=report)
    kinds = {k: v for k, v in report.schedules.items() if "layer_norm" in k}
    assert kinds and set(kinds.values()) == {"row_reduce"}, report.schedules


def test_other_types_left_to_tvm() -> None:
    """float64 LayerNorm is not ours: TVM's converter imports it."""
    model = _model((3, 16), -1, 1e-5, True, False)
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    for init in model.graph.initializer:
        init.CopyFrom(onnx.numpy_helper.from_array(
            onnx.numpy_helper.to_array(init).astype(np.float64), init.name))
    assert "R.nn.layer_norm" in tvm_qdq.from_onnx(model).script()
