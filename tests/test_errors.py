"""Bad input fails with an error naming the node, the op and the reason."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tvm_qdq

DEFAULT_SCALE = np.float32(0.1)
DEFAULT_ZERO_POINT = np.uint8(128)


def _qdq_model(
    scale: np.ndarray = DEFAULT_SCALE,
    zero_point: np.ndarray = DEFAULT_ZERO_POINT,
    axis: int | None = None,
    x_shape=(1, 4, 3),
    extra_nodes: list | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.asarray(scale), "s"),
             numpy_helper.from_array(np.asarray(zero_point), "zp")]
    kwargs = {} if axis is None else {"axis": axis}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="quant_x", **kwargs),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dequant_x",
                         **kwargs),
    ] + (extra_nodes or [])
    out = "z" if extra_nodes else "y"
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                     helper.make_opsetid("com.example", 1)])
    model.ir_version = 9
    return model


def test_unknown_ops_are_listed_all_at_once() -> None:
    extra = [
        helper.make_node("FancyOp", ["y"], ["a"], name="fancy_1", domain="com.example"),
        helper.make_node("OtherOp", ["a"], ["b"], name="other_1", domain="com.example"),
        helper.make_node("FancyOp", ["b"], ["z"], name="fancy_2", domain="com.example"),
    ]
    with pytest.raises(tvm_qdq.UnsupportedOpsError) as info:
        tvm_qdq.from_onnx(_qdq_model(extra_nodes=extra))
    message = str(info.value)
    for name in ("fancy_1", "other_1", "fancy_2"):
        assert f"'{name}'" in message
    assert "com.example.FancyOp" in message and "com.example.OtherOp" in message
    assert len(info.value.ops) == 3


@pytest.mark.parametrize(
    ("scale", "reason"),
    [(np.float32(0.0), "scale must be finite and > 0"),
     (np.float32(-0.5), "scale must be finite and > 0"),
     (np.float32(np.nan), "scale must be finite and > 0"),
     (np.float32(np.inf), "scale must be finite and > 0")],
    ids=["zero", "negative", "nan", "inf"],
)
def test_bad_scale_names_the_node(scale, reason: str) -> None:
    with pytest.raises(tvm_qdq.InvalidQuantizationError) as info:
        tvm_qdq.from_onnx(_qdq_model(scale=scale))
    assert "'quant_x' (QuantizeLinear)" in str(info.value)
    assert reason in str(info.value)


def test_zero_point_of_wrong_type_names_the_node() -> None:
    with pytest.raises(tvm_qdq.TvmQdqError) as info:
        tvm_qdq.from_onnx(_qdq_model(zero_point=np.float32(3.0)))
    assert "'quant_x'" in str(info.value)


def test_zero_point_type_mismatch_between_input_and_zero_point() -> None:
    inits = [numpy_helper.from_array(np.uint8([1, 2]), "q"),
             numpy_helper.from_array(np.float32(0.5), "s"),
             numpy_helper.from_array(np.int8(1), "zp")]
    node = helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq_bad")
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(tvm_qdq.InvalidQuantizationError) as info:
        tvm_qdq.from_onnx(model)
    assert "'dq_bad' (DequantizeLinear)" in str(info.value)
    assert "must match" in str(info.value)


def test_output_dtype_disagreeing_with_zero_point_names_the_node() -> None:
    model = _qdq_model(zero_point=np.int8(3), opset=21)
    model.graph.node[0].attribute.append(helper.make_attribute("output_dtype",
                                                               TensorProto.UINT8))
    with pytest.raises(tvm_qdq.InvalidQuantizationError) as info:
        tvm_qdq.from_onnx(model)
    assert "'quant_x' (QuantizeLinear)" in str(info.value)
    assert "does not match" in str(info.value)


@pytest.mark.parametrize("axis", [3, -4, 7])
def test_axis_out_of_bounds_names_the_node(axis: int) -> None:
    model = _qdq_model(scale=np.float32([0.1] * 4), zero_point=np.uint8([1] * 4), axis=axis)
    with pytest.raises(tvm_qdq.InvalidQuantizationError) as info:
        tvm_qdq.from_onnx(model)
    assert "'quant_x' (QuantizeLinear)" in str(info.value)
    assert "out of range" in str(info.value)


def test_per_axis_length_mismatch_names_the_node() -> None:
    model = _qdq_model(scale=np.float32([0.1] * 5), zero_point=np.uint8([1] * 5), axis=1)
    with pytest.raises(tvm_qdq.InvalidQuantizationError) as info:
        tvm_qdq.from_onnx(model)
    assert "'quant_x'" in str(info.value) and "5 elements" in str(info.value)


def test_truncated_and_non_onnx_files(tmp_path) -> None:
    bad = tmp_path / "not_onnx.onnx"
    bad.write_bytes(b"\x00\x01garbage that is not a protobuf\xff" * 3)
    with pytest.raises(tvm_qdq.ModelLoadError):
        tvm_qdq.from_onnx(str(bad))
    good = _qdq_model().SerializeToString()
    cut = tmp_path / "truncated.onnx"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(tvm_qdq.ModelLoadError):
        tvm_qdq.from_onnx(str(cut))
    with pytest.raises(tvm_qdq.ModelLoadError, match="not found"):
        tvm_qdq.from_onnx(str(tmp_path / "missing.onnx"))


def test_wrong_feeds_fail_clearly() -> None:
    compiled = tvm_qdq.compile(_qdq_model())
    x = np.zeros((1, 4, 3), np.float32)
    with pytest.raises(tvm_qdq.InputError, match="expected element type float32"):
        compiled.run({"x": x.astype(np.float64)})
    with pytest.raises(tvm_qdq.InputError, match="expected shape"):
        compiled.run({"x": np.zeros((1, 4, 4), np.float32)})
    with pytest.raises(tvm_qdq.InputError, match="missing"):
        compiled.run({"y": x})
    with pytest.raises(tvm_qdq.InputError, match="takes 1 input"):
        compiled.run([x, x])
