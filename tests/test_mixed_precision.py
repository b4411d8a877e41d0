"""Mixed uint8/uint16 precision: conversion chains, 16-bit regions, exactness at the limits.

Models come from ORT's QNN mixed-precision flow (``get_qnn_qdq_config(init_overrides=...)``,
com.microsoft Q/DQ): the seeds' example graph with ``Op4_out`` promoted to uint16, a CNN and
a transformer encoder with one promoted region. Oracle: ORT with optimizations off.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import tvm_qdq
from tvm_qdq.testing.ir import float_compute_calls, float_conversion_chains
from tvm_qdq.testing.mixed_models import MIXED_CASES, mixed_case
from tvm_qdq.testing.models import random_feeds
from tvm_qdq.testing.oracle import (
    MIN_FRAC_EXACT,
    assert_model_contract,
    assert_single_op_contract,
    output_qparams,
    run_ort,
)

REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


@pytest.mark.parametrize("case", sorted(MIXED_CASES))
def test_mixed_model_is_integer_and_meets_contract(case: str) -> None:
    model = mixed_case(case)
    assert any(n.domain == "com.microsoft" and n.op_type == "QuantizeLinear"
               for n in model.graph.node)
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    assert float_compute_calls(mod) == []
    # Every Q(DQ(.)) conversion chain became an integer requantize.
    assert float_conversion_chains(mod) == 0
    assert float_conversion_chains(tvm_qdq.from_onnx(model)) > 0
    records = tvm_qdq.pass_report(mod).integer
    chains = {r.detail for r in records if r.outcome == "requantize"}
    assert "uint8 per-tensor → uint16 per-tensor" in chains
    assert "uint16 per-tensor → uint8 per-tensor" in chains or case == "seeds_op4_u16"
    compiled = tvm_qdq.compile(mod)
    params = output_qparams(model)
    feeds = random_feeds(model, seed=1)
    actual = compiled.run(feeds)
    for out, got, want in zip(model.graph.output, actual,
                              run_ort(model, feeds, optimization_level=REFERENCE), strict=True):
        assert_model_contract(got, want, *params[out.name], name=f"{case}/{out.name}")


def test_seeds_graph_promotes_op4_region() -> None:
    """Op4 and Op5 run in uint16; Op2's output and Op3's are converted up, Op5's back down."""
    model = mixed_case("seeds_op4_u16")
    inits = {i.name: i.data_type for i in model.graph.initializer}
    q_type = {n.input[0]: inits[n.input[2]] for n in model.graph.node
              if n.op_type == "QuantizeLinear"}
    assert q_type["Op4_out"] == TensorProto.UINT16
    assert q_type["Op5_out"] == TensorProto.UINT16
    assert q_type["Op2_out_convert_QuantizeLinear_Input"] == TensorProto.UINT16
    assert q_type["Op5_out_DequantizeLinear_Output"] == TensorProto.UINT8


def _chain_model() -> onnx.ModelProto:
    """x → Q(u8) → DQ feeding three Q/DQ chains: two to the same uint16 params, one to u8'."""
    inits = [
        numpy_helper.from_array(np.float32(0.05), "s8"),
        numpy_helper.from_array(np.uint8(128), "z8"),
        numpy_helper.from_array(np.float32(0.05 / 256), "s16"),
        numpy_helper.from_array(np.uint16(32768), "z16"),
        numpy_helper.from_array(np.float32(0.1), "s8b"),
        numpy_helper.from_array(np.uint8(100), "z8b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s8", "z8"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s8", "z8"], ["xd"], name="dq_in"),
    ]
    outputs = []
    for i, (s, z) in enumerate((("s16", "z16"), ("s16", "z16"), ("s8b", "z8b"))):
        nodes += [
            helper.make_node("QuantizeLinear", ["xd", s, z], [f"c{i}"], name=f"q_{i}"),
            helper.make_node("DequantizeLinear", [f"c{i}", s, z], [f"y{i}"], name=f"dq_{i}"),
        ]
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [2, 64]))
    graph = helper.make_graph(nodes, "chains",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


def test_one_requantize_per_target_type_not_per_consumer() -> None:
    model = _chain_model()
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    requantizes = [r for r in tvm_qdq.pass_report(mod).integer if r.outcome == "requantize"]
    distinct_vars = {r.var for r in requantizes}
    assert len(requantizes) == 3 and len(distinct_vars) == 2  # u16 shared, u8' separate
    x = np.random.default_rng(0).normal(0, 3, (2, 64)).astype(np.float32)
    got = tvm_qdq.compile(mod).run({"x": x})
    want = run_ort(model, {"x": x}, optimization_level=REFERENCE)
    # A chain is one requantize: within 1 LSB of ORT's float round trip (ties may differ:
    # 0.05 → 0.1 halves every step, so ORT's float32 DQ/Q path rounds ties either way; measured
    # 119 of 128 exact there, 128 of 128 for the two uint16 chains).
    for g, w, scale, share in zip(got, want, (0.05 / 256, 0.05 / 256, 0.1),
                                  (MIN_FRAC_EXACT, MIN_FRAC_EXACT, 119 / 128), strict=True):
        assert_single_op_contract(g, w, np.float32(scale), min_frac_exact=share)


@pytest.mark.parametrize(("op", "scale", "zero_point"),
                         [("Sigmoid", 1 / 65536, 0), ("Tanh", 1 / 32768, 32768)])
def test_16bit_sigmoid_tanh_with_ort_fixed_output_params(op: str, scale: float,
                                                        zero_point: int) -> None:
    inits = [
        numpy_helper.from_array(np.float32(8 / 32768), "sx"),
        numpy_helper.from_array(np.uint16(32768), "zx"),
        numpy_helper.from_array(np.float32(scale), "sy"),
        numpy_helper.from_array(np.uint16(zero_point), "zy"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="dq_x"),
        helper.make_node(op, ["xd"], ["f"], name="f"),
        helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["yq"], name="q_y"),
        helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"], name="dq_y"),
    ]
    graph = helper.make_graph(nodes, "lut16",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 1024])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 1024])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    assert tvm_qdq.pass_report(mod).float_ops == []
    x = np.random.default_rng(1).uniform(-9, 9, (4, 1024)).astype(np.float32)
    got = tvm_qdq.compile(mod).run({"x": x})[0]
    want = run_ort(model, {"x": x}, optimization_level=REFERENCE)[0]
    assert_model_contract(got, want, np.float32(scale), zero_point, max_lsb=1.0,
                          min_frac_within_1=1.0, name=op)


def test_u16_activation_matmul_uses_int64_and_is_exact_at_the_limits() -> None:
    """u16 × u16 activations with values at the range limits: int32 would overflow."""
    k = 64
    inits = [
        numpy_helper.from_array(np.float32(1.0), "s"),
        numpy_helper.from_array(np.uint16(0), "z"),
        numpy_helper.from_array(np.float32(65535.0 * 65535.0 * k / 60000.0), "sy"),
        numpy_helper.from_array(np.uint16(0), "zy"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["a", "s", "z"], ["aq"], name="q_a"),
        helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["ad"], name="dq_a"),
        helper.make_node("QuantizeLinear", ["b", "s", "z"], ["bq"], name="q_b"),
        helper.make_node("DequantizeLinear", ["bq", "s", "z"], ["bd"], name="dq_b"),
        helper.make_node("MatMul", ["ad", "bd"], ["m"], name="mm"),
        helper.make_node("QuantizeLinear", ["m", "sy", "zy"], ["yq"], name="q_y"),
    ]
    graph = helper.make_graph(nodes, "limits",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, k]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, 4])],
                              [helper.make_tensor_value_info("yq", TensorProto.UINT16, [4, 4])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    details = [r.detail for r in tvm_qdq.pass_report(mod).integer if r.op == "relax.matmul"]
    assert details and "int64" in details[0]
    a = np.full((4, k), 65535.0, np.float32)
    a[1] = 0.0
    b = np.full((k, 4), 65535.0, np.float32)
    got = tvm_qdq.compile(mod).run({"a": a, "b": b})[0].astype(np.int64)
    exact = np.rint((a.astype(np.float64) @ b.astype(np.float64))
                    / np.float64(np.float32(65535.0 * 65535.0 * k / 60000.0)))
    np.testing.assert_array_equal(got, np.clip(exact, 0, 65535))
    assert got.max() == 60000
