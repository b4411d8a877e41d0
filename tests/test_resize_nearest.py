"""Nearest Resize (tvm_qdq/frontend/onnx/resize.py) against ONNX Runtime, bit for bit.

Every coordinate transformation mode × every nearest mode, ``scales`` (integral and
fractional ``size · scale``) and ``sizes``, ranks 3–5, opset-18 ``axes`` and
``keep_aspect_ratio_policy``, ``tf_crop_and_resize`` with extrapolation, opset 10; float
tensors and QDQ-quantized ones (which must stay integer: ``R.take`` on the integer values).
A nearest Resize copies input elements, so every comparison is exact.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tvm_qdq
from tvm_qdq.frontend.onnx.resize import source_indices
from tvm_qdq.testing import fuzz
from tvm_qdq.testing.oracle import assert_single_op_contract, run_ort

ORT_REF = fuzz.ORT_REFERENCE_LEVEL  # graph optimizations off: every node as written
COORDS = ["half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners",
          "half_pixel_symmetric", "tf_crop_and_resize"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]

#: (input shape, scales or None, sizes or None, roi for tf_crop_and_resize)
CASES = [
    ([1, 2, 7, 7], [1, 1, 1, 0.5], None, [0, 0, 0.1, -0.2, 1, 1, 0.9, 1.2]),  # 7·0.5 → 3
    ([1, 2, 4, 5], [1, 1, 2, 1.5], None, [0, 0, 0, 0, 1, 1, 1, 1]),
    ([1, 1, 12, 9], [1, 1, 0.6, 0.4], None, [0, 0, -0.2, 0.25, 1, 1, 1.2, 0.6]),  # near-ties
    ([2, 1, 1, 4], [1, 1, 3, 0.7], None, [0, 0, 0, 0.1, 1, 1, 1, 0.9]),  # size-1 axis
    ([1, 2, 4, 4], None, [1, 2, 1, 9], [0, 0, 0.25, -0.2, 1, 1, 0.6, 1.2]),  # output size 1
    ([1, 3, 5], [1, 1, 1.25], None, [0, 0, -0.2, 1, 1, 1.2]),  # rank 3
    ([1, 1, 3, 4, 2], None, [1, 1, 5, 2, 3], [0, 0, 0, 0.1, 0, 1, 1, 1, 0.9, 1]),  # rank 5
    ([1, 1, 3, 4], [1, 1, 1.25, 1], None, [0, 0, 0, 0, 1, 1, 1, 1]),  # same shape: a copy
]


def _const(name: str, values, dtype) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype), name)


def _resize_node(i: int, x: str, inits: list, scales, sizes, roi, opset: int = 19,
                 **attrs) -> onnx.NodeProto:
    """Resize node ``i``; at opset 11–12 ``roi`` and ``scales`` are required inputs (empty
    tensors when unused)."""
    ins = [x, "", "", ""]
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize" or opset < 13:
        used = attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize"
        inits.append(_const(f"roi{i}", roi if used else [], np.float32))
        ins[1] = f"roi{i}"
    if scales is not None or opset < 13:
        inits.append(_const(f"scales{i}", scales if scales is not None else [], np.float32))
        ins[2] = f"scales{i}"
    if scales is None:
        inits.append(_const(f"sizes{i}", sizes, np.int64))
        ins[3] = f"sizes{i}"
    while ins[-1] == "":
        ins.pop()
    return helper.make_node("Resize", ins, [f"y{i}"], name=f"resize{i}", mode="nearest",
                            **attrs)


def _float_model(coord: str, opset: int = 19) -> tuple[onnx.ModelProto, dict]:
    """Every nearest mode × every case as separate outputs of one model (one compile)."""
    nodes, inits, inputs, feeds, outputs = [], [], [], {}, []
    rng = np.random.default_rng(0)
    for c, (shape, scales, sizes, roi) in enumerate(CASES):
        name = f"x{c}"
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        feeds[name] = rng.normal(0, 3, shape).astype(np.float32)
        for nearest in NEAREST:
            i = len(nodes)
            extra = {"extrapolation_value": -7.5} if coord == "tf_crop_and_resize" else {}
            nodes.append(_resize_node(i, name, inits, scales, sizes, roi, opset,
                                      nearest_mode=nearest, coordinate_transformation_mode=coord,
                                      **extra))
            outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "resize", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=9)
    return model, feeds


@pytest.mark.parametrize("coord", COORDS)
def test_float_resize_matches_ort_for_every_nearest_mode(coord: str) -> None:
    model, feeds = _float_model(coord)
    expected = run_ort(model, feeds, optimization_level=ORT_REF)
    actual = tvm_qdq.compile(model).run(feeds)
    for out, a, e in zip(model.graph.output, actual, expected, strict=True):
        assert_single_op_contract(a, e, exact=True, name=out.name)


@pytest.mark.parametrize(("coord", "nearest"), list(itertools.product(COORDS, NEAREST)))
def test_source_indices_match_ort_on_many_lengths(coord: str, nearest: str) -> None:
    """The index table alone (no compile) for lengths 1–12 and 11 scales, against ORT on an
    ``arange`` input: covers near-ties (scale 0.6, 0.7, 1.1, 1.7, 2.2 ...)."""
    nodes, inits, outputs, tables = [], [], [], []
    for n, s in itertools.product(range(1, 13), [0.4, 0.6, 0.7, 0.75, 1.1, 1.25, 1.3, 1.5,
                                                 1.7, 2.2, 3.0]):
        m = int(np.float32(s) * np.float32(n))
        if m == 0 or m == n:
            continue
        i = len(nodes)
        x = f"x{n}"
        roi = [0, 0, -0.2, 1, 1, 1.2]
        nodes.append(_resize_node(i, x, inits, [1, 1, s], None, roi, nearest_mode=nearest,
                                  coordinate_transformation_mode=coord,
                                  **({"extrapolation_value": -1.0}
                                     if coord == "tf_crop_and_resize" else {})))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
        tables.append(source_indices(n, m, s, coord, nearest, (-0.2, 1.2), rank=3))
    inputs = [helper.make_tensor_value_info(f"x{n}", TensorProto.FLOAT, [1, 1, n])
              for n in range(1, 13)]
    model = helper.make_model(helper.make_graph(nodes, "idx", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    feeds = {f"x{n}": np.arange(n, dtype=np.float32).reshape(1, 1, n) for n in range(1, 13)}
    expected = run_ort(model, feeds, optimization_level=ORT_REF)
    for table, e in zip(tables, expected, strict=True):
        np.testing.assert_array_equal(table, e.reshape(-1).astype(np.int64))


def _qdq_model(coord: str, x_type: int, y_type: int) -> tuple[onnx.ModelProto, dict]:
    """``Q → DQ → Resize → Q`` for every case (first nearest mode cycled), 8/16-bit."""
    np_types = {TensorProto.UINT8: np.uint8, TensorProto.INT8: np.int8,
                TensorProto.UINT16: np.uint16, TensorProto.INT16: np.int16}
    inits = [_const("xs", 0.05, np.float32), _const("xz", 3, np_types[x_type]),
             _const("ys", 0.02, np.float32), _const("yz", 5, np_types[y_type])]
    nodes, inputs, outputs, feeds = [], [], [], {}
    rng = np.random.default_rng(1)
    for c, (shape, scales, sizes, roi) in enumerate(CASES):
        x = f"x{c}"
        inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, shape))
        feeds[x] = rng.normal(0, 3, shape).astype(np.float32)
        nodes += [helper.make_node("QuantizeLinear", [x, "xs", "xz"], [f"q{c}"]),
                  helper.make_node("DequantizeLinear", [f"q{c}", "xs", "xz"], [f"d{c}"])]
        extra = {"extrapolation_value": -0.77} if coord == "tf_crop_and_resize" else {}
        node = _resize_node(c, f"d{c}", inits, scales, sizes, roi,
                            nearest_mode=NEAREST[c % 4], coordinate_transformation_mode=coord,
                            **extra)
        node.output[0] = f"r{c}"
        nodes += [node, helper.make_node("QuantizeLinear", [f"r{c}", "ys", "yz"], [f"y{c}"])]
        outputs.append(helper.make_tensor_value_info(f"y{c}", y_type, None))
    graph = helper.make_graph(nodes, "qresize", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)],
                              ir_version=10)
    return model, feeds


@pytest.mark.parametrize("coord", COORDS)
def test_quantized_resize_is_integer_and_matches_ort(coord: str) -> None:
    """Integer in, integer out: the takes run on the quantized values (requantized u8 → i16);
    the extrapolation value -0.77 is off the input grid and quantized on the output's."""
    model, feeds = _qdq_model(coord, TensorProto.UINT8, TensorProto.INT16)
    compiled = tvm_qdq.compile(model)
    assert compiled.report.float_ops == [], compiled.report.float_ops
    expected = run_ort(model, feeds, optimization_level=ORT_REF)
    # Requantizing u8 (0.05) → i16 (0.02) multiplies by 2.5: odd codes are exact ties, which
    # ORT's float32 DQ → Q rounds either way.  Measured exact share per output: 72.2 % (13 of
    # 18, the lowest) to 100 %.
    for out, a, e in zip(model.graph.output, compiled.run(feeds), expected, strict=True):
        assert_single_op_contract(a, e, min_frac_exact=13 / 18, name=out.name)


def test_opset10_resize_matches_ort() -> None:
    """Opset 10: (X, scales), asymmetric coordinates, ORT's "simple" rounding (ceil when
    downsampling, truncation otherwise)."""
    nodes, inits, outputs = [], [], []
    for i, scales in enumerate([[1, 1, 2, 3], [1, 1, 0.5, 0.7], [1, 1, 1.5, 0.4]]):
        inits.append(_const(f"s{i}", scales, np.float32))
        nodes.append(helper.make_node("Resize", ["x", f"s{i}"], [f"y{i}"], mode="nearest"))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "r10", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 9])],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)], ir_version=9)
    feeds = {"x": np.random.default_rng(2).normal(0, 1, (1, 2, 7, 9)).astype(np.float32)}
    expected = run_ort(model, feeds, optimization_level=ORT_REF)
    for a, e in zip(tvm_qdq.compile(model).run(feeds), expected, strict=True):
        assert_single_op_contract(a, e, exact=True)


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
def test_opset18_axes_and_aspect_ratio_policy_match_ort(policy: str) -> None:
    inits = [_const("sizes", [5, 3], np.int64), _const("scales", [0.6, 1.7], np.float32)]
    nodes = [
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y0"], mode="nearest",
                         axes=[2, 3], keep_aspect_ratio_policy=policy),
        helper.make_node("Resize", ["x", "", "scales"], ["y1"], mode="nearest",
                         axes=[-1, 2], coordinate_transformation_mode="align_corners"),
    ]
    graph = helper.make_graph(
        nodes, "r18", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 9])],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(2)],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    feeds = {"x": np.random.default_rng(3).normal(0, 1, (1, 2, 7, 9)).astype(np.float32)}
    expected = run_ort(model, feeds, optimization_level=ORT_REF)
    for a, e in zip(tvm_qdq.compile(model).run(feeds), expected, strict=True):
        assert_single_op_contract(a, e, exact=True)


def test_resize_to_an_empty_tensor_names_the_node() -> None:
    inits = [_const("scales", [1, 1, 0.2, 1], np.float32)]
    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="shrink", mode="nearest")],
        "r", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    with pytest.raises(tvm_qdq.TvmQdqError, match="'shrink' \\(Resize\\).*empty"):
        tvm_qdq.compile(model)


def test_per_channel_quantized_resize_and_gather_stay_integer() -> None:
    """Per-channel (axis 1) parameters follow ``take`` along the spatial axes: Resize and a
    Gather on W stay integer and equal ORT."""
    inits = [_const("s", [0.05, 0.1, 0.02], np.float32), _const("z", [3, 100, 128], np.uint8),
             _const("sc", [1, 1, 1.5, 0.6], np.float32), _const("idx", [5, 1], np.int64)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], axis=1),
        helper.make_node("Resize", ["d", "", "sc"], ["r"], mode="nearest"),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["y"], axis=1),
        helper.make_node("DequantizeLinear", ["y", "s", "z"], ["yd"], axis=1),
        helper.make_node("Gather", ["yd", "idx"], ["g"], axis=3),
        helper.make_node("QuantizeLinear", ["g", "s", "z"], ["y2"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "pc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 11])],
        [helper.make_tensor_value_info(n, TensorProto.UINT8, None) for n in ("y", "y2")],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)],
                              ir_version=10)
    feeds = {"x": np.random.default_rng(4).normal(0, 3, (1, 3, 5, 11)).astype(np.float32)}
    compiled = tvm_qdq.compile(model)
    assert compiled.report.float_ops == []
    expected = run_ort(model, feeds, optimization_level=ORT_REF)
    for a, e in zip(compiled.run(feeds), expected, strict=True):
        assert_single_op_contract(a, e, exact=True)


def test_opset11_tf_half_pixel_for_nn_matches_ort() -> None:
    """The opset-11 mode ``tf_half_pixel_for_nn`` (``(i + 0.5) / s``), every nearest mode."""
    model, feeds = _float_model("tf_half_pixel_for_nn", opset=11)
    expected = run_ort(model, feeds, optimization_level=ORT_REF)
    actual = tvm_qdq.compile(model).run(feeds)
    for out, a, e in zip(model.graph.output, actual, expected, strict=True):
        assert_single_op_contract(a, e, exact=True, name=out.name)
