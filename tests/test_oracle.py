"""Unit tests of the ONNX Runtime oracle (:mod:`tvm_qdq.testing.oracle`) and of the ONNX
backend node cases (:mod:`tvm_qdq.testing.backend_cases`) it is checked against."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph, NotImplemented

from tvm_qdq.testing.backend_cases import NodeCase, node_cases
from tvm_qdq.testing.exact_share import ExactShareRecorder
from tvm_qdq.testing.oracle import (
    Agreement,
    agreement,
    assert_model_contract,
    assert_single_op_contract,
    lsb_diff,
    output_qparams,
    output_quant_info,
    run_ort,
)

# --------------------------------------------------------------------------------------------
# lsb_diff
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint8, np.int16, np.int32])
def test_lsb_diff_integer_does_not_wrap(dtype: type) -> None:
    info = np.iinfo(dtype)
    a = np.array([info.min, info.max, 5], dtype=dtype)
    e = np.array([info.max, info.min, 3], dtype=dtype)
    d = lsb_diff(a, e, scale=None)
    assert d.dtype == np.int64
    span = int(info.max) - int(info.min)
    np.testing.assert_array_equal(d, [span, span, 2])


def test_lsb_diff_uint64_and_int4() -> None:
    big = np.array([2**64 - 1, 0], dtype=np.uint64)
    d = lsb_diff(big, big[::-1].copy())
    assert d.dtype == np.uint64
    np.testing.assert_array_equal(d, [2**64 - 1, 2**64 - 1])
    a = np.array([-8, 7, 0], dtype=ml_dtypes.int4)
    e = np.array([7, -8, 1], dtype=ml_dtypes.int4)
    np.testing.assert_array_equal(lsb_diff(a, e), [15, 15, 1])


def test_lsb_diff_integer_ignores_scale_and_rejects_float_actual() -> None:
    e = np.array([1, 2], dtype=np.int8)
    np.testing.assert_array_equal(lsb_diff(e + 1, e, scale=0.5, zero_point=3), [1, 1])
    with pytest.raises(TypeError):
        lsb_diff(e.astype(np.float32), e)


def test_lsb_diff_float_per_tensor() -> None:
    scale = np.float32(0.05)
    q = np.arange(-5, 5, dtype=np.int32)
    e = (q * scale).astype(np.float32)
    a = ((q + np.array([0, 1, -1, 2, 0, 0, 0, 0, 3, 0])) * scale).astype(np.float32)
    d = lsb_diff(a, e, scale, zero_point=np.int8(7))
    assert d.dtype == np.float64
    np.testing.assert_allclose(d, [0, 1, 1, 2, 0, 0, 0, 0, 3, 0], atol=1e-5)
    with pytest.raises(ValueError, match="scale is required"):
        lsb_diff(a, e)
    with pytest.raises(ValueError, match="positive"):
        lsb_diff(a, e, scale=0.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        lsb_diff(a[:3], e)


def test_lsb_diff_per_axis_scale_broadcasts_on_the_right_axis() -> None:
    rng = np.random.default_rng(0)
    e = rng.standard_normal((2, 3, 4)).astype(np.float32)
    scale_c = np.array([0.1, 0.2, 0.4], dtype=np.float32)
    # one step of each channel's own scale, on channel axis 1 (the ONNX default)
    a = e + scale_c.reshape(1, 3, 1)
    np.testing.assert_allclose(lsb_diff(a, e, scale_c), 1.0, rtol=1e-5)
    np.testing.assert_allclose(lsb_diff(a, e, scale_c, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(lsb_diff(a, e, scale_c, axis=-2), 1.0, rtol=1e-5)
    scale_w = np.array([0.1, 0.2, 0.4, 0.8], dtype=np.float32)
    b = e + 2 * scale_w  # broadcasts on the last axis
    np.testing.assert_allclose(lsb_diff(b, e, scale_w, axis=-1), 2.0, rtol=1e-5)
    np.testing.assert_allclose(lsb_diff(b, e, scale_w, axis=2), 2.0, rtol=1e-5)
    with pytest.raises(ValueError, match="per-axis"):
        lsb_diff(b, e, scale_w)  # length 4 does not fit axis 1 (size 3)


def test_lsb_diff_blocked_scale() -> None:
    e = np.zeros((3, 4), dtype=np.float32)
    scale = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    a = np.repeat(scale, 2, axis=1)  # exactly one step everywhere
    np.testing.assert_allclose(lsb_diff(a, e, scale), 1.0)
    np.testing.assert_allclose(lsb_diff(a, e, scale, axis=1, block_size=2), 1.0)
    # partial last block: 5 columns, block size 2 -> 3 blocks
    e5 = np.zeros((1, 5), dtype=np.float32)
    s5 = np.array([[1.0, 2.0, 4.0]], dtype=np.float32)
    a5 = np.array([[1.0, 1.0, 2.0, 2.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(lsb_diff(a5, e5, s5, block_size=2), 1.0)


def test_lsb_diff_nan_inf() -> None:
    e = np.array([np.nan, np.inf, 1.0, 1.0, -np.inf], dtype=np.float32)
    a = np.array([np.nan, np.inf, np.nan, 1.5, -np.inf], dtype=np.float32)
    np.testing.assert_array_equal(lsb_diff(a, e, 0.5), [0, 0, np.inf, 1, 0])


def test_lsb_diff_float8_counts_codes() -> None:
    f8 = ml_dtypes.float8_e4m3fn
    e = np.array([1.0, 1.0, 448.0, -2.0, 0.0], dtype=f8)
    # 1.125 is the next e4m3 value after 1.0; 416 is the one before 448; -0 == 0
    a = np.array([1.125, 1.25, 416.0, -2.0, -0.0], dtype=f8)
    np.testing.assert_array_equal(lsb_diff(a, e), [1, 2, 1, 0, 0])
    f5 = ml_dtypes.float8_e5m2  # numpy reports kind "f" for this one
    e5 = np.array([1.0, np.inf, 57344.0], dtype=f5)
    a5 = np.array([1.25, np.inf, np.inf], dtype=f5)
    np.testing.assert_array_equal(lsb_diff(a5, e5), [1, 0, 1])
    f4 = ml_dtypes.float4_e2m1fn
    np.testing.assert_array_equal(
        lsb_diff(np.array([6.0, -0.5], dtype=f4), np.array([4.0, 0.5], dtype=f4)), [1, 2]
    )


# --------------------------------------------------------------------------------------------
# agreement and the contracts
# --------------------------------------------------------------------------------------------


def _quantized_pair(
    n: int = 1000, bumps: dict[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Expected ``(q - zp) * s`` values and an actual copy with ``bumps`` {index: LSB} added."""
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, size=n)
    a_q = q.copy()
    for i, k in (bumps or {}).items():
        a_q[i] += k
    s = np.float32(0.0123)
    return (a_q * s).astype(np.float32), (q * s).astype(np.float32)


def test_agreement_summary() -> None:
    a, e = _quantized_pair(bumps={3: 1, 10: -2, 500: 1})
    ag = agreement(a, e, np.float32(0.0123))
    assert isinstance(ag, Agreement)
    assert ag.n == 1000
    assert ag.max_lsb == pytest.approx(2.0, abs=1e-4)
    assert ag.worst_index == (10,)
    assert ag.frac_within_1 == pytest.approx(0.999)
    assert ag.frac_exact == pytest.approx(0.997)  # 3 of 1000 elements moved
    assert ag.top1_equal is None
    assert "99.7000% exact, 99.9000% of 1000 within 1 LSB" in str(ag)


def test_agreement_empty() -> None:
    ag = agreement(np.zeros((0, 3), np.int8), np.zeros((0, 3), np.int8))
    assert (ag.max_lsb, ag.frac_within_1, ag.n, ag.worst_index) == (0.0, 1.0, 0, None)
    assert ag.frac_exact == 1.0


def test_frac_exact_counts_float_rounding_of_the_same_code_as_exact() -> None:
    # A dequantized float output off by float32 rounding only (far below 1 LSB) is exact;
    # an integer output is exact only where equal.
    a, e = _quantized_pair()
    noisy = (a.astype(np.float64) * (1 + 1e-7)).astype(np.float32)
    assert agreement(noisy, e, np.float32(0.0123)).frac_exact == 1.0
    q = np.arange(-50, 50, dtype=np.int8)
    assert agreement(q + np.int8(1), q).frac_exact == 0.0
    assert agreement(q, q).frac_exact == 1.0


def test_single_op_contract_passes_within_one_lsb() -> None:
    a, e = _quantized_pair(bumps={0: 1})  # one near-tie in 1000: 99.9 % exact
    ag = assert_single_op_contract(a, e, np.float32(0.0123))
    assert ag.max_lsb == pytest.approx(1.0, abs=1e-4)
    assert ag.frac_exact == pytest.approx(0.999)
    q = np.array([0, 255, 17], dtype=np.uint8)
    assert_single_op_contract(q, q, exact=True)
    # A measured lower exact share (an op whose reference rounds ties in float32) is passed.
    assert_single_op_contract(np.array([1, 254, 17], np.uint8), q, min_frac_exact=0.0)


def test_single_op_contract_fails_a_systematic_one_lsb_bias() -> None:
    # Every element within 1 LSB, but 2 % of them off: not near-ties, a bias.
    a, e = _quantized_pair(bumps={i: 1 for i in range(0, 1000, 50)})
    with pytest.raises(AssertionError, match=r"dq: only 98\.0000% exact \(< 99\.90%"):
        assert_single_op_contract(a, e, np.float32(0.0123), name="dq")
    assert assert_single_op_contract(a, e, np.float32(0.0123), min_frac_exact=0.98).n == 1000
    q = np.arange(0, 200, dtype=np.uint8)
    with pytest.raises(AssertionError, match=r"only 50\.0000% exact"):
        assert_single_op_contract(np.where(q % 2 == 1, q + 1, q).astype(np.uint8), q)


def test_single_op_contract_fails_beyond_one_lsb() -> None:
    a, e = _quantized_pair(bumps={7: 2})
    with pytest.raises(AssertionError, match=r"more than 1 LSB.*max 2 LSB at index \(7,\)"):
        assert_single_op_contract(a, e, np.float32(0.0123), name="dq")


def test_single_op_contract_exact() -> None:
    q = np.array([[0, 255], [17, 3]], dtype=np.uint8)
    r = q.copy()
    r[1, 0] += 1
    with pytest.raises(AssertionError, match=r"not exact: max 1 LSB at index \(1, 0\)"):
        assert_single_op_contract(r, q, exact=True)
    f = np.array([0.5, np.nan], dtype=np.float32)
    assert_single_op_contract(f.copy(), f, exact=True)
    with pytest.raises(AssertionError, match="not exact"):
        assert_single_op_contract(f + np.float32(1e-7), f, exact=True)


def test_single_op_contract_checks_dtype_and_shape() -> None:
    q = np.array([1, 2], dtype=np.uint8)
    with pytest.raises(AssertionError, match="dtype mismatch"):
        assert_single_op_contract(q.astype(np.int8), q)
    assert_single_op_contract(q.astype(np.int32), q, check_dtype=False)
    with pytest.raises(AssertionError, match="shape mismatch"):
        assert_single_op_contract(q[:1], q)


def test_model_contract_thresholds() -> None:
    s = np.float32(0.0123)
    # 1 % of the elements at 2 LSB: allowed
    a, e = _quantized_pair(bumps={i: 2 for i in range(10)})
    ag = assert_model_contract(a, e, s)
    assert ag.frac_within_1 == pytest.approx(0.99)
    # 2 % at 2 LSB: too many outside 1 LSB
    a, e = _quantized_pair(bumps={i: 2 for i in range(20)})
    with pytest.raises(AssertionError, match=r"only 98\.0000% within 1 LSB"):
        assert_model_contract(a, e, s)
    # a single element at 3 LSB: max violated; message names the element
    a, e = _quantized_pair(bumps={42: -3})
    with pytest.raises(AssertionError, match=r"max diff 3 LSB > 2.*at index \(42,\)"):
        assert_model_contract(a, e, s, name="logits")


def test_model_contract_integer_output_without_scale() -> None:
    e = np.arange(200, dtype=np.uint8).reshape(2, 100)
    a = e.copy()
    a[0, 0] += 2
    assert_model_contract(a, e, None)
    a[1, 5] += 3
    with pytest.raises(AssertionError, match=r"at index \(1, 5\)"):
        assert_model_contract(a, e, None)


def test_model_contract_classify() -> None:
    s = 0.5
    e = np.array([[0.0, 1.0, 0.5], [2.0, 1.5, 0.0]], dtype=np.float32)
    assert assert_model_contract(e.copy(), e, s, classify=True).top1_equal is True
    # within 1 LSB everywhere, but row 0 now prefers class 2
    a = np.array([[0.0, 1.0, 1.5], [2.0, 1.5, 0.0]], dtype=np.float32)
    with pytest.raises(AssertionError, match=r"top-1 class differs in 1 row"):
        assert_model_contract(a, e, s, classify=True, min_frac_within_1=0.0)
    assert_model_contract(a, e, s, classify=False, min_frac_within_1=0.0)
    # a tie in actual that includes the expected top class is accepted
    t = np.array([[0.0, 1.0, 1.0], [2.0, 1.5, 0.0]], dtype=np.float32)
    assert assert_model_contract(t, e, s, classify=True, min_frac_within_1=0.0).top1_equal


# --------------------------------------------------------------------------------------------
# output_qparams
# --------------------------------------------------------------------------------------------


def _qdq_model() -> onnx.ModelProto:
    f32 = TensorProto.FLOAT
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(3, np.int8), "zp"),
        numpy_helper.from_array(np.array([0.5, 0.25], np.float32), "s_c"),
        numpy_helper.from_array(np.array(0.02, np.float32), "s_u16"),
        numpy_helper.from_array(np.array(1000, np.uint16), "zp_u16"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"]),
        helper.make_node("Relu", ["dq"], ["relu"]),
        # per-axis DQ whose zero point comes from a Constant node, seen through an Identity
        helper.make_node(
            "Constant",
            [],
            ["zp_c"],
            value=numpy_helper.from_array(np.array([1, -1], np.int8)),
        ),
        helper.make_node("QuantizeLinear", ["x", "s_c", "zp_c"], ["q_c"], axis=1),
        helper.make_node("DequantizeLinear", ["q_c", "s_c", "zp_c"], ["dq_c_raw"], axis=1),
        helper.make_node("Identity", ["dq_c_raw"], ["dq_c"]),
        # com.microsoft DQ with a uint16 zero point
        helper.make_node(
            "QuantizeLinear", ["x", "s_u16", "zp_u16"], ["q16"], domain="com.microsoft"
        ),
        helper.make_node(
            "DequantizeLinear", ["q16", "s_u16", "zp_u16"], ["dq16"], domain="com.microsoft"
        ),
        # Q without zero point -> uint8 zeros; scale from value_float Constant
        helper.make_node("Constant", [], ["s_k"], value_float=0.3),
        helper.make_node("QuantizeLinear", ["x", "s_k"], ["q_nozp"]),
        # dynamic scale: not known statically
        helper.make_node("ReduceMax", ["x"], ["s_dyn"], keepdims=0),
        helper.make_node("DequantizeLinear", ["q", "s_dyn"], ["dq_dyn"]),
    ]
    outputs = [
        helper.make_tensor_value_info("q", TensorProto.INT8, [2, 2]),
        helper.make_tensor_value_info("dq", f32, [2, 2]),
        helper.make_tensor_value_info("relu", f32, [2, 2]),
        helper.make_tensor_value_info("dq_c", f32, [2, 2]),
        helper.make_tensor_value_info("dq16", f32, [2, 2]),
        helper.make_tensor_value_info("q_nozp", TensorProto.UINT8, [2, 2]),
        helper.make_tensor_value_info("dq_dyn", f32, [2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", f32, [2, 2])], outputs, inits
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def test_output_qparams() -> None:
    model = _qdq_model()
    qp = output_qparams(model)
    assert list(qp) == ["q", "dq", "relu", "dq_c", "dq16", "q_nozp", "dq_dyn"]
    assert qp["relu"] is None and qp["dq_dyn"] is None
    for name in ("q", "dq"):
        s, z = qp[name]
        assert s == np.float32(0.1) and z == 3 and z.dtype == np.int8
    s, z = qp["dq_c"]
    np.testing.assert_array_equal(s, [0.5, 0.25])
    np.testing.assert_array_equal(z, [1, -1])
    s, z = qp["dq16"]
    assert s == np.float32(0.02) and z == 1000 and z.dtype == np.uint16
    s, z = qp["q_nozp"]
    assert s == np.float32(0.3) and z == 0 and z.dtype == np.uint8
    info = output_quant_info(model)
    assert info["dq_c"] is not None and info["dq_c"].axis == 1 and info["dq_c"].float_output
    assert info["q"] is not None and not info["q"].float_output


def test_output_qparams_feed_lsb_diff_through_ort() -> None:
    model = _qdq_model()
    x = np.array([[0.11, -0.52], [1.3, 0.04]], dtype=np.float32)
    outs = dict(zip([o.name for o in model.graph.output], run_ort(model, {"x": x}), strict=True))
    qp = output_qparams(model)
    # DQ(Q(x)) is within half a step of x: 0 or 1 LSB after rounding
    s, z = qp["dq"]
    assert float(lsb_diff(outs["dq"], x, s, z).max()) <= 0.5 + 1e-6
    s, z = qp["dq_c"]
    assert float(lsb_diff(outs["dq_c"], x, s, z, axis=1).max()) <= 0.5 + 1e-6
    s, z = qp["dq16"]
    assert float(lsb_diff(outs["dq16"], x, s, z).max()) <= 0.5 + 1e-6


# --------------------------------------------------------------------------------------------
# run_ort
# --------------------------------------------------------------------------------------------


def _single_node_model(
    node: onnx.NodeProto,
    inputs: list[tuple[str, int, list[int]]],
    outputs: list[tuple[str, int, list[int]]],
    opset: int,
    inits: list[onnx.TensorProto] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs],
        inits or [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_run_ort_plain(tmp_path: Path) -> None:
    f32 = TensorProto.FLOAT
    model = _single_node_model(
        helper.make_node("Add", ["a", "b"], ["c"]),
        [("a", f32, [3]), ("b", f32, [3])],
        [("c", f32, [3])],
        17,
    )
    a = np.array([1, 2, 3], np.float32)
    (c,) = run_ort(model, {"a": a, "b": a}, threads=2)
    np.testing.assert_array_equal(c, 2 * a)
    path = tmp_path / "add.onnx"
    onnx.save(model, path)
    (c,) = run_ort(path, {"a": a, "b": a})
    np.testing.assert_array_equal(c, 2 * a)


def test_run_ort_int4_and_float8_roundtrip() -> None:
    f32 = TensorProto.FLOAT
    x = np.array([[-9.0, -1.2, 0.0, 3.4, 7.0, 100.0]], np.float32)
    for elem, zp in [
        (TensorProto.INT4, np.array(1, ml_dtypes.int4)),
        (TensorProto.UINT4, np.array(2, ml_dtypes.uint4)),
        (TensorProto.FLOAT8E4M3FN, np.array(0, ml_dtypes.float8_e4m3fn)),
        (TensorProto.FLOAT8E5M2, np.array(0, ml_dtypes.float8_e5m2)),
    ]:
        inits = [
            numpy_helper.from_array(np.array(0.5, np.float32), "s"),
            numpy_helper.from_array(zp, "zp"),
        ]
        q_model = _single_node_model(
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"]),
            [("x", f32, [1, 6])],
            [("y", elem, [1, 6])],
            21,
            inits,
        )
        (y,) = run_ort(q_model, {"x": x})
        assert y.dtype == zp.dtype and y.shape == (1, 6)
        # feed the ml_dtypes array back into a DequantizeLinear
        dq_model = _single_node_model(
            helper.make_node("DequantizeLinear", ["y", "s", "zp"], ["z"]),
            [("y", elem, [1, 6])],
            [("z", f32, [1, 6])],
            21,
            inits,
        )
        (z,) = run_ort(dq_model, {"y": y})
        expected = (y.astype(np.float32) - zp.astype(np.float32)) * np.float32(0.5)
        np.testing.assert_array_equal(z, expected)
    # int4 saturates at [-8, 7]: (x / 0.5 + 1) rounded half-to-even then clipped
    (y,) = run_ort(
        _single_node_model(
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"]),
            [("x", f32, [1, 6])],
            [("y", TensorProto.INT4, [1, 6])],
            21,
            [
                numpy_helper.from_array(np.array(0.5, np.float32), "s"),
                numpy_helper.from_array(np.array(1, ml_dtypes.int4), "zp"),
            ],
        ),
        {"x": x},
    )
    np.testing.assert_array_equal(y.astype(np.int8), [[-8, -1, 1, 7, 7, 7]])


# --------------------------------------------------------------------------------------------
# ONNX backend node cases, checked against ONNX Runtime
# --------------------------------------------------------------------------------------------

# QuantizeLinear/DequantizeLinear-28 only add float6 types to version 25; ORT 1.32 has no
# kernels registered for version 28, so the cases are re-expressed at opset 25.
ORT_QDQ_MAX_OPSET = 25
# Element types ORT 1.32 (CPUExecutionProvider) rejects for QuantizeLinear/DequantizeLinear.
ORT_REJECTED = {
    "test_quantizelinear_float4e2m1": "ORT 1.32 CPU has no QuantizeLinear kernel for float4e2m1",
    "test_dequantizelinear_float4e2m1": "ORT 1.32 CPU has no DequantizeLinear kernel for "
    "float4e2m1",
}

QDQ_CASES = node_cases(["QuantizeLinear", "DequantizeLinear"])


def test_qdq_node_cases_collected() -> None:
    names = [c.name for c in QDQ_CASES]
    assert len(names) >= 10 and len(set(names)) == len(names)
    for expected in (
        "test_quantizelinear",
        "test_quantizelinear_axis",
        "test_quantizelinear_int4",
        "test_quantizelinear_blocked_symmetric",
        "test_dequantizelinear",
        "test_dequantizelinear_e4m3fn",
        "test_dequantizelinear_int2",
        "test_dequantizelinear_blocked",
    ):
        assert expected in names
    by_name = {c.name: c for c in QDQ_CASES}
    assert by_name["test_quantizelinear_int4"].outputs[0].dtype == ml_dtypes.int4
    assert by_name["test_dequantizelinear_e4m3fn"].inputs[0].dtype == ml_dtypes.float8_e4m3fn
    for c in QDQ_CASES:
        assert not c.expanded
        assert c.op_type == c.model.graph.node[0].op_type
        assert len(c.inputs) == len(c.model.graph.input)
        assert len(c.outputs) == len(c.model.graph.output)


def test_node_cases_other_quant_ops() -> None:
    cases = node_cases(
        ["QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"]
    )
    names = {c.name for c in cases}
    assert {"test_qlinearconv", "test_matmulinteger", "test_convinteger_with_padding"} <= names
    assert "test_dynamicquantizelinear_expanded" in names
    expanded = {c.name for c in cases if c.expanded}
    assert expanded and all(n.startswith("test_dynamicquantizelinear") for n in expanded)
    no_exp = node_cases(["DynamicQuantizeLinear"], include_expanded=False)
    assert not any(c.expanded for c in no_exp) and len(no_exp) == 3


def test_node_cases_are_fresh_copies() -> None:
    (a,) = [c for c in node_cases(["QuantizeLinear"]) if c.name == "test_quantizelinear"]
    a.inputs[0][:] = 0
    a.model.graph.name = "mutated"
    (b,) = [c for c in node_cases(["QuantizeLinear"]) if c.name == "test_quantizelinear"]
    assert b.model.graph.name == "test_quantizelinear"
    assert b.inputs[0].any()


def _run_case_in_ort(case: NodeCase) -> list[np.ndarray]:
    try:
        return run_ort(case.model, case.feeds())
    except NotImplemented:
        if case.opset <= ORT_QDQ_MAX_OPSET:
            raise
    return run_ort(case.with_opset(ORT_QDQ_MAX_OPSET).model, case.feeds())


@pytest.mark.parametrize("case", QDQ_CASES, ids=[c.name for c in QDQ_CASES])
def test_ort_reproduces_qdq_node_case(case: NodeCase) -> None:
    try:
        outputs = _run_case_in_ort(case)
    except (NotImplemented, InvalidGraph) as err:
        if case.name in ORT_REJECTED:
            pytest.skip(f"{ORT_REJECTED[case.name]} ({type(err).__name__})")
        raise
    assert len(outputs) == len(case.outputs)
    for actual, expected in zip(outputs, case.outputs, strict=True):
        assert_single_op_contract(actual, expected, exact=True, name=case.name)


# --------------------------------------------------------------------------------------------
# exact_share (the measuring plugin's recorder)
# --------------------------------------------------------------------------------------------


def test_exact_share_recorder_records_instead_of_enforcing() -> None:
    recorder = ExactShareRecorder()
    measured = recorder.wrap(assert_single_op_contract)
    recorder.current_test = "tests/x.py::test_biased"
    a, e = _quantized_pair(bumps={i: 1 for i in range(0, 1000, 50)})  # 98 % exact
    measured(a, e, np.float32(0.0123), name="y")
    recorder.current_test = "tests/x.py::test_clean"
    measured(e, e, np.float32(0.0123), name="z")
    with pytest.raises(AssertionError, match="more than 1 LSB"):  # the 1-LSB bound still holds
        measured(*_quantized_pair(bumps={3: 2}), np.float32(0.0123))
    biased, clean = recorder.records
    assert (biased.n, biased.n_exact, biased.frac_within_1) == (1000, 980, 1.0)
    assert clean.n_exact == clean.n == 1000 and not clean.bit_exact_required
    lines = recorder.summary_lines()
    assert lines[0] == "exact share: 2 single-op comparisons, 1 below 100 %"
    assert lines[1:] == ["98.0000%  980 of 1000  tests/x.py::test_biased  y"]
