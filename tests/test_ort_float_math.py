"""ORT's CPU float arithmetic on the float islands (``tvm_qdq/frontend/onnx/ort_math.py``).

* float32 ``Sigmoid`` / ``Tanh`` are MLAS's rational approximations: the numpy references
  and the compiled x86 code are bit-identical with ORT's reference path over random float32
  bit patterns, a dense ``[-20, 20]`` sweep and the extremes (±0, denormals, ±FLT_MAX, ±inf,
  the clamp points).
* float32 ``Pow`` by 2 or 3 is ORT's product form, bit-identical.
* A float32 ``Mul`` read by an ``Add`` is a rounded product, then a rounded sum, as ORT runs
  the two nodes: bit-identical with ORT, on inputs where one FMA would differ.
* The QDQ unit ``DQ → Sigmoid/Tanh → Q`` still becomes a lookup table, now with MLAS's
  values: exact with ORT on every input code.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import tvm_qdq
from tvm_qdq.frontend.onnx.ort_math import fma_f32, logistic_f32, tanh_f32
from tvm_qdq.testing.oracle import run_ort

REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
EXTREMES = np.array([0.0, -0.0, 1e-45, -1e-45, 1.1754944e-38, -1.1754944e-38, 1e-8, -1e-8,
                     9.0, -9.0, 18.0, -18.0, 18.5, -18.5, 88.7, -88.7, 1e30, -1e30,
                     3.4028235e38, -3.4028235e38, np.inf, -np.inf], np.float32)


def _values(n_random: int, n_sweep: int) -> np.ndarray:
    """Finite random float32 bit patterns, a dense sweep of ``[-20, 20]`` and the extremes."""
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, n_random, dtype=np.uint64).astype(np.uint32).view(np.float32)
    sweep = np.linspace(-20.0, 20.0, n_sweep, dtype=np.float32)
    return np.concatenate([bits[np.isfinite(bits)], sweep, EXTREMES]).astype(np.float32)


def _unary_model(op: str, n: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])], op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _bit_mismatches(got: np.ndarray, want: np.ndarray) -> int:
    return int(np.sum(got.astype(np.float32).view(np.int32) != want.view(np.int32)))


@pytest.mark.parametrize("op, reference", [("Sigmoid", logistic_f32), ("Tanh", tanh_f32)])
def test_numpy_mlas_reference_is_ort(op: str, reference) -> None:
    x = _values(1 << 20, 1 << 20)
    (want,) = run_ort(_unary_model(op, x.size), {"x": x}, optimization_level=REFERENCE)
    assert _bit_mismatches(reference(x), want) == 0


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
def test_compiled_float_sigmoid_tanh_are_ort(op: str) -> None:
    x = _values(1 << 16, 1 << 16)
    model = _unary_model(op, x.size)
    (want,) = run_ort(model, {"x": x}, optimization_level=REFERENCE)
    (got,) = tvm_qdq.compile(model, "x86").run({"x": x})
    assert _bit_mismatches(got, want) == 0


def _pow_model(exponent: float, n: int) -> onnx.ModelProto:
    """``Pow(x, e) + x``: the sum checks that the last product stays separately rounded."""
    graph = helper.make_graph(
        [helper.make_node("Pow", ["x", "e"], ["p"]), helper.make_node("Add", ["p", "x"], ["y"])],
        "pow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])],
        [helper.make_tensor("e", TensorProto.FLOAT, [], [exponent])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("exponent", [2.0, 3.0])
def test_compiled_pow_by_products_is_ort(exponent: float) -> None:
    """``Pow`` with exponent 2 or 3 is ORT's ``x·x`` / ``x·x·x``, no ``powf`` call left."""
    x = _values(1 << 16, 1 << 16)
    x = x[np.abs(x) < 1e12]  # x³ + x finite
    model = _pow_model(exponent, x.size)
    (want,) = run_ort(model, {"x": x}, optimization_level=REFERENCE)
    mod = tvm_qdq.from_onnx(model)
    assert "R.power" not in mod.script()
    (got,) = tvm_qdq.compile(mod, "x86").run({"x": x})
    assert _bit_mismatches(got, want) == 0


def test_pow_other_exponents_stay_power() -> None:
    assert "R.power" in tvm_qdq.from_onnx(_pow_model(2.5, 8)).script()


def test_fma_f32_is_single_rounding() -> None:
    """``fma_f32`` equals the exact ``a·b + c`` (Python fractions) rounded once."""
    from fractions import Fraction
    rng = np.random.default_rng(3)
    a, b, c = (rng.standard_normal(2000).astype(np.float32) for _ in range(3))
    c = -(a * b) + c * np.float32(1e-7)  # cancellation: where double rounding would show
    got = fma_f32(a, b, c)
    for i in range(a.size):
        exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        near = np.float32(float(exact))  # within one float32 step of the correct rounding
        candidates = (np.nextafter(near, np.float32(-np.inf)), near,
                      np.nextafter(near, np.float32(np.inf)))
        best = min(candidates, key=lambda v: (abs(Fraction(float(v)) - exact),
                                              int(np.float32(v).view(np.int32)) & 1))
        assert got[i] == best, (a[i], b[i], c[i])


def test_mul_then_add_is_two_roundings() -> None:
    """``y = a·b + c`` as two ONNX nodes: ORT rounds the product; so does the compiled code."""
    rng = np.random.default_rng(11)
    n = 4096
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    c = (-(a * b) + rng.standard_normal(n).astype(np.float32) * np.float32(1e-6))
    graph = helper.make_graph(
        [helper.make_node("Mul", ["a", "b"], ["p"]), helper.make_node("Add", ["p", "c"], ["y"])],
        "mul_add",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n]) for name in "abc"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"a": a, "b": b, "c": c}
    (want,) = run_ort(model, feeds, optimization_level=REFERENCE)
    assert _bit_mismatches(fma_f32(a, b, c), want) > n // 4  # one FMA would differ here
    (got,) = tvm_qdq.compile(model, "x86").run(feeds)
    assert _bit_mismatches(got, want) == 0


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
@pytest.mark.parametrize("dtype, zero_point", [(TensorProto.UINT8, 128), (TensorProto.INT8, 0)])
def test_qdq_sigmoid_tanh_stay_lookup_tables_exact(op: str, dtype: int, zero_point: int) -> None:
    """``DQ → op → Q``: a lookup table (no float op left), equal to ORT on all 256 codes."""
    np_type = onnx.helper.tensor_dtype_to_np_dtype(dtype)
    info = np.iinfo(np_type)
    out_zp = 0 if op == "Sigmoid" and dtype == TensorProto.UINT8 else zero_point
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
             helper.make_node(op, ["xf"], ["yf"]),
             helper.make_node("QuantizeLinear", ["yf", "so", "zo"], ["y"])]
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.0473]),
             helper.make_tensor("z", dtype, [], [zero_point]),
             helper.make_tensor("so", TensorProto.FLOAT, [], [1.0 / 255 if op == "Sigmoid"
                                                              else 1.0 / 127]),
             helper.make_tensor("zo", dtype, [], [out_zp])]
    graph = helper.make_graph(nodes, "qdq_" + op.lower(),
                              [helper.make_tensor_value_info("x", dtype, [256])],
                              [helper.make_tensor_value_info("y", dtype, [256])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.arange(info.min, info.max + 1).astype(np_type)
    (want,) = run_ort(model, {"x": x}, optimization_level=REFERENCE)
    compiled = tvm_qdq.compile(model, "x86")
    assert not compiled.report.float_ops, compiled.report.float_ops
    (got,) = compiled.run({"x": x})
    np.testing.assert_array_equal(got, want)
