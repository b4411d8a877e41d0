"""Folding an elementwise chain of one 8-bit tensor into one lookup table
(``relay_passes/rules/lut_fold.py``).

The fold evaluates the emitted integer ops on all 256 codes, so the compiled model must be
bit-identical with and without it; the chain must end as one ``take`` indexed by the 8-bit
tensor itself. Cases: MiniLM's GELU tail (uint8), a sigmoid × constant chain on int8 (the
``wrap`` index), and two chains that must not fold (a per-channel constant; a 16-bit input).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import relax

import tvm_qdq
from relay_passes.registry import OUTPUT_RULES
from relay_passes.rules import lut_fold
from tvm_qdq.compile import from_onnx, to_integer
from tvm_qdq.testing.oracle import run_ort

REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
_ONNX_TYPES = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8,
               np.uint16: TensorProto.UINT16}


@contextlib.contextmanager
def fold_disabled() -> Iterator[None]:
    """The output rules without :func:`lut_fold.fold_lookup` (today's unfolded chains)."""
    saved = {name: OUTPUT_RULES[name] for name in lut_fold.FOLDED_RULES if name in OUTPUT_RULES}
    try:
        for name, rule in saved.items():
            OUTPUT_RULES[name] = getattr(rule, "unfolded", rule)
        yield
    finally:
        OUTPUT_RULES.update(saved)


def _scalar(name: str, dtype: int, value) -> onnx.TensorProto:
    return helper.make_tensor(name, dtype, [], [value])


class _Graph:
    """A QDQ graph built step by step: every op's output is quantized (Q → DQ)."""

    def __init__(self, dtype: type, scale: float, zero_point: int) -> None:
        self.dtype = _ONNX_TYPES[dtype]
        self.nodes = [helper.make_node("DequantizeLinear", ["x", "x_s", "x_z"], ["x_dq"])]
        self.inits = [_scalar("x_s", TensorProto.FLOAT, scale),
                      _scalar("x_z", self.dtype, zero_point)]

    def constant(self, name: str, value: float, scale: float, code: int) -> str:
        """``DQ(code)`` with ``scale`` (a constant QDQ operand, as ORT's quantizer writes)."""
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s",
                                                                f"{name}_z"], [name]))
        self.inits += [_scalar(f"{name}_q", self.dtype, code),
                       _scalar(f"{name}_s", TensorProto.FLOAT, scale),
                       _scalar(f"{name}_z", self.dtype, code - round(value / scale))]
        return name

    def op(self, op: str, args: list[str], name: str, scale: float | None = None,
           zero_point: int = 0) -> str:
        raw = f"{name}_raw" if scale is not None else name
        self.nodes.append(helper.make_node(op, args, [raw]))
        if scale is None:
            return name
        self.nodes += [
            helper.make_node("QuantizeLinear", [raw, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
            helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"],
                             [name])]
        self.inits += [_scalar(f"{name}_s", TensorProto.FLOAT, scale),
                       _scalar(f"{name}_z", self.dtype, zero_point)]
        return name

    def model(self, shape: list[int], output: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("x", self.dtype, shape)],
            [helper.make_tensor_value_info(f"{output}_q", self.dtype, shape)], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def gelu_model(shape: list[int]) -> onnx.ModelProto:
    """MiniLM's GELU tail ``x · (Erf(x/√2) + 1) · 0.5`` with its real quantization."""
    g = _Graph(np.uint8, 0.13275132, 102)
    g.inits.append(_scalar("sqrt2", TensorProto.FLOAT, math.sqrt(2.0)))
    one = g.constant("one", 1.0, 1 / 255, 255)
    half = g.constant("half", 0.5, 1 / 510, 255)
    g.op("Div", ["x_dq", "sqrt2"], "div")
    g.op("Erf", ["div"], "erf", 2 / 255, 128)
    g.op("Add", ["erf", one], "add", 2 / 255, 0)
    g.op("Mul", ["x_dq", "add"], "mul", 0.16101992, 2)
    g.op("Mul", ["mul", half], "out", 0.08050996, 2)
    return g.model(shape, "out")


def swish_s8_model(shape: list[int]) -> onnx.ModelProto:
    """int8 ``t · sigmoid(t) · 1.5 - 0.25`` with ``t = xᵀ`` (square ``x``): a lookup, a
    product and two constant operands on an int8 tensor computed in the graph."""
    g = _Graph(np.int8, 0.05, -3)
    g.op("Transpose", ["x_dq"], "t", 0.05, -3)
    g.op("Sigmoid", ["t"], "sig", 1 / 256, -128)
    g.op("Mul", ["t", "sig"], "swish", 0.03, -10)
    g.op("Mul", ["swish", g.constant("k", 1.5, 0.0118, 127)], "scaled", 0.045, -20)
    g.op("Sub", ["scaled", g.constant("b", 0.25, 0.0118, 21)], "out", 0.05, 0)
    return g.model(shape, "out")


def _lookups(model: onnx.ModelProto) -> list[relax.Call]:
    """The ``take`` calls of the integer module."""
    mod = to_integer(from_onnx(model))
    found: list[relax.Call] = []

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) \
                and expr.op.name == "relax.take":
            found.append(expr)

    relax.analysis.post_order_visit(mod["main"], visit)
    return found


def _codes(dtype: type, shape: list[int], seed: int = 0) -> np.ndarray:
    info = np.iinfo(dtype)
    x = np.random.default_rng(seed).integers(info.min, info.max + 1, shape).astype(dtype)
    n = min(x.size, 256)
    x.reshape(-1)[:n] = np.arange(info.min, info.min + n).astype(dtype)  # every code if room
    return x


@pytest.mark.parametrize(("builder", "dtype"), [(gelu_model, np.uint8),
                                                (swish_s8_model, np.int8)])
def test_fold_is_bit_identical(builder, dtype) -> None:
    """Folded and unfolded compiled models agree bit for bit, on every code."""
    shape = [64, 64]
    model = builder(shape)
    x = _codes(dtype, shape)
    folded = tvm_qdq.compile(model, "x86").run({"x": x})[0]
    with fold_disabled():
        unfolded = tvm_qdq.compile(model, "x86").run({"x": x})[0]
    np.testing.assert_array_equal(folded, unfolded)


@pytest.mark.parametrize(("builder", "index_dtype"), [(gelu_model, "uint8"),
                                                      (swish_s8_model, "int32")])
def test_chain_becomes_one_lookup(builder, index_dtype) -> None:
    """One ``take`` is left; a uint8 input is its index itself (no int32 index tensor)."""
    model = builder([32, 32])
    takes = _lookups(model)
    assert len(takes) == 1, takes
    (take,) = takes
    assert isinstance(take.args[1], relax.Var)
    assert str(take.args[1].ty.dtype) == index_dtype
    assert take.args[0].value.numpy().shape == (256,)
    with fold_disabled():
        assert len(_lookups(model)) > 1  # several tables and a product before the fold


def test_fold_within_one_lsb_of_ort_reference() -> None:
    """The GELU tail vs ORT's reference session: the fold keeps the unfolded agreement."""
    shape = [16, 96]
    model = gelu_model(shape)
    x = _codes(np.uint8, shape, seed=3)
    expected = run_ort(model, {"x": x}, optimization_level=REFERENCE)[0]
    actual = tvm_qdq.compile(model, "x86").run({"x": x})[0]
    assert np.abs(actual.astype(np.int64) - expected).max() <= 1


def test_per_channel_constant_is_not_folded() -> None:
    """``x + b`` with a per-channel constant ``b`` depends on the position: no table."""
    g = _Graph(np.uint8, 0.05, 128)
    b = np.linspace(-1, 1, 8).astype(np.float32)
    g.inits += [helper.make_tensor("b_q", TensorProto.UINT8, [8], np.arange(8) * 30),
                _scalar("b_s", TensorProto.FLOAT, 2 / 210), _scalar("b_z", TensorProto.UINT8, 105)]
    g.nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b"]))
    g.op("Sigmoid", ["x_dq"], "sig", 1 / 256, 0)
    g.op("Add", ["sig", "b"], "out", 0.02, 60)
    model = g.model([4, 8], "out")
    assert b.size == 8
    takes = _lookups(model)
    assert len(takes) == 1 and str(takes[0].args[1].ty.dtype) == "uint8"  # sigmoid alone
    x = _codes(np.uint8, [4, 8])
    with fold_disabled():
        unfolded = tvm_qdq.compile(model, "x86").run({"x": x})[0]
    np.testing.assert_array_equal(tvm_qdq.compile(model, "x86").run({"x": x})[0], unfolded)


def test_sixteen_bit_input_is_not_folded() -> None:
    """A uint16 input would need a 65536-entry table: its chain stays as it was."""
    g = _Graph(np.uint16, 0.001, 32768)
    g.op("Sigmoid", ["x_dq"], "sig", 1 / 65536, 0)
    g.op("Mul", ["x_dq", "sig"], "out", 0.0005, 32768)
    model = g.model([4, 8], "out")
    with fold_disabled():
        unfolded = [str(t.args[1].ty.dtype) for t in _lookups(model)]
    assert [str(t.args[1].ty.dtype) for t in _lookups(model)] == unfolded

