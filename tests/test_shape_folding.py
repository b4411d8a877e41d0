"""Static shape folding: shape arithmetic of PyTorch-style exports becomes constants at import.

Small synthetic graphs with the patterns real exports use: ``Shape → Gather → Unsqueeze →
Concat → Reshape``, a ``Slice`` whose end comes from ``Shape``, ``Range`` of a dimension (with
T5's float relative-position arithmetic), each with symbolic input dimensions fixed by
``shapes=``. Compiled outputs are compared with ORT's reference path (optimizations off); the
folded model itself is compared with the original in ORT, bit for bit.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import tvm_qdq
from tvm_qdq.frontend.onnx.shape_folding import MAX_FOLDED_BYTES, fold_shape_arithmetic
from tvm_qdq.frontend.onnx.shapes import InputShapeError, with_static_inputs
from tvm_qdq.testing.oracle import run_ort

ORT_REF = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def _const(name: str, value, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _model(nodes, inputs, outputs, inits, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid("com.microsoft", 1)])
    return model


def _qdq(src: str, dst: str, scale: float = 0.05, zp: int = 0) -> tuple[list, list]:
    """``src → QuantizeLinear → DequantizeLinear → dst`` (int8) and its parameters."""
    nodes = [helper.make_node("QuantizeLinear", [src, f"{dst}_s", f"{dst}_z"], [f"{dst}_q"]),
             helper.make_node("DequantizeLinear", [f"{dst}_q", f"{dst}_s", f"{dst}_z"], [dst])]
    inits = [_const(f"{dst}_s", scale, np.float32), _const(f"{dst}_z", zp, np.int8)]
    return nodes, inits


def _reshape_model(qdq_domain: str = "") -> onnx.ModelProto:
    """x[batch, 4, 6] → QDQ → Reshape(x, Concat(Shape(x, end=1),
    Unsqueeze(max(Shape(x)[2] / 2, 2)), [-1])) → QDQ → y (MiniLM's and T5's reshape targets).
    With ``qdq_domain="com.microsoft"`` the first Q/DQ are contrib ops, whose output shape
    onnx's inference does not know."""
    qin, qin_inits = _qdq("x", "xd")
    for node in qin:
        node.domain = qdq_domain
    qout, qout_inits = _qdq("r", "y")
    nodes = qin + [
        helper.make_node("Shape", ["xd"], ["lead"], start=0, end=1),
        helper.make_node("Shape", ["xd"], ["sh"]),
        helper.make_node("Gather", ["sh", "two"], ["c"], axis=0),
        helper.make_node("Div", ["c", "two"], ["half"]),
        helper.make_node("Max", ["half", "two"], ["clamped"]),
        helper.make_node("Unsqueeze", ["clamped", "axes0"], ["c1"]),
        helper.make_node("Concat", ["lead", "c1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["xd", "target"], ["r"]),
    ] + qout
    inits = qin_inits + qout_inits + [_const("two", 2), _const("axes0", [0]),
                                      _const("minus1", [-1])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 6])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def _slice_model() -> onnx.ModelProto:
    """YOLO's head: a Slice whose end is ``(Shape(x)[2] + 1) / 2``, quantized after it."""
    qin, qin_inits = _qdq("x", "xd")
    qout, qout_inits = _qdq("sl", "y", 0.05, 3)
    nodes = qin + [
        helper.make_node("Shape", ["xd"], ["sh"]),
        helper.make_node("Gather", ["sh", "two"], ["n"], axis=0),
        helper.make_node("Add", ["n", "one"], ["n1"]),
        helper.make_node("Div", ["n1", "two"], ["end"]),
        helper.make_node("Slice", ["xd", "start", "end", "two"], ["sl"]),
    ] + qout
    inits = qin_inits + qout_inits + [_const("two", [2]), _const("one", [1]),
                                      _const("start", [1])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "n"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def _range_model() -> onnx.ModelProto:
    """T5's relative-position buckets from ``Range(0, Shape(ids)[1])``: ``rel = j - i``,
    ``bucket = where(|rel| < 4, |rel|, min(4 + int(log(|rel|/4) / log(4) * 4), 7))``, an int8
    bias table gathered by bucket, dequantized and added to the embedded ids."""
    qout, qout_inits = _qdq("sum", "y", 0.1)
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Shape", ["ids"], ["sh"]),
        helper.make_node("Gather", ["sh", "one"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "one"], ["pos"]),
        helper.make_node("Unsqueeze", ["pos", "axes0"], ["row"]),
        helper.make_node("Unsqueeze", ["pos", "axes1"], ["col"]),
        helper.make_node("Sub", ["row", "col"], ["rel"]),
        helper.make_node("Abs", ["rel"], ["arel"]),
        helper.make_node("Less", ["arel", "four"], ["near"]),
        helper.make_node("Cast", ["arel"], ["frel"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["frel", "four_f"], ["ratio"]),
        helper.make_node("Log", ["ratio"], ["lg"]),
        helper.make_node("Div", ["lg", "log4"], ["lgn"]),
        helper.make_node("Mul", ["lgn", "four_f"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["iscaled"], to=TensorProto.INT64),
        helper.make_node("Add", ["iscaled", "four"], ["far0"]),
        helper.make_node("Min", ["far0", "seven"], ["far"]),
        helper.make_node("Where", ["near", "arel", "far"], ["bucket"]),
        helper.make_node("Gather", ["table", "bucket"], ["bias_q"], axis=0),
        helper.make_node("DequantizeLinear", ["bias_q", "table_s", "table_z"], ["bias"]),
        helper.make_node("Cast", ["ids"], ["fids"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["bias", "fids"], ["sum"]),
    ] + qout
    inits = qout_inits + [
        _const("zero", 0), _const("one", 1), _const("four", 4), _const("seven", 7),
        _const("axes0", [0]), _const("axes1", [1]), _const("four_f", 4.0, np.float32),
        _const("log4", np.log(np.float32(4.0)), np.float32),
        _const("table", rng.integers(-100, 100, (8,)), np.int8),
        _const("table_s", 0.03, np.float32), _const("table_z", 0, np.int8),
    ]
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "seq"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def _op_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


CASES = {
    "reshape": (_reshape_model, {"x": [3, 4, 6]}, "x"),
    "after_contrib_op": (lambda: _reshape_model("com.microsoft"), {"x": [3, 4, 6]}, "x"),
    "slice_end": (_slice_model, {"x": [1, 3, 10]}, "x"),
    "range": (_range_model, {"ids": [1, 12]}, "ids"),
}


def _feeds(name: str, shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if name == "range":
        return {"ids": rng.integers(0, 20, shapes["ids"]).astype(np.int64)}
    return {k: rng.uniform(-3, 3, v).astype(np.float32) for k, v in shapes.items()}


@pytest.mark.parametrize("case", sorted(set(CASES) - {"after_contrib_op"}))
def test_shape_arithmetic_folds_to_constants_bit_identical_in_ort(case):
    build, shapes, _ = CASES[case]
    model = with_static_inputs(build(), shapes)
    folded = fold_shape_arithmetic(model)
    assert "Shape" not in _op_types(folded) and "Range" not in _op_types(folded)
    # Q/DQ are never folded, nor is anything reading the graph input at run time
    for op in ("QuantizeLinear", "DequantizeLinear"):
        assert _op_types(folded).count(op) == _op_types(model).count(op)
    feeds = _feeds(case, shapes)
    for a, b in zip(run_ort(model, feeds, optimization_level=ORT_REF),
                    run_ort(folded, feeds, optimization_level=ORT_REF), strict=True):
        np.testing.assert_array_equal(a, b)


def test_shape_after_a_contrib_op_folds_during_conversion():
    """onnx's inference does not know com.microsoft ops, so the pre-pass leaves the Shape of
    their output; the importer folds it (and the arithmetic on it) once Relax knows it."""
    model = with_static_inputs(_reshape_model("com.microsoft"), {"x": [3, 4, 6]})
    assert "Shape" in _op_types(fold_shape_arithmetic(model))
    mod = tvm_qdq.from_onnx(model)
    assert "reshape" in str(mod["main"]) and "shape_of" not in str(mod["main"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_computed_shapes_compile_and_match_ort(case):
    build, shapes, _ = CASES[case]
    model = build()
    feeds = _feeds(case, shapes)
    compiled = tvm_qdq.compile(model, target="x86", shapes=shapes)
    (out,) = compiled.run(feeds)
    (ref,) = run_ort(with_static_inputs(model, shapes), feeds, optimization_level=ORT_REF)
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out, ref)  # every output is on the final Q's grid: exact


@pytest.mark.parametrize("case", ["reshape", "after_contrib_op"])
def test_symbolic_input_without_shapes_stays_symbolic(case):
    """Without ``shapes=`` the input keeps its ``batch`` dimension; the static parts of the
    shape arithmetic (``Shape(x)[2] / 2``) still fold, so the reshape target is
    ``(batch, 3, 8)``."""
    build, _, input_name = CASES[case]
    main = tvm_qdq.from_onnx(build())["main"]
    assert [str(p.ty) for p in main.params] == ['R.Tensor((batch, 4, 6), dtype="float32")']
    assert str(main.ret_ty) == 'R.Tensor((batch, 3, 8), dtype="float32")'


def test_data_dependent_shape_is_a_named_error_not_a_crash():
    """NonZero's length depends on the data: the Q converter says which input of which node
    has no static shape instead of failing inside a converter."""
    qout, inits = _qdq("f", "y")
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]),
             helper.make_node("Cast", ["nz"], ["f"], to=TensorProto.FLOAT)] + qout
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    with pytest.raises(InputShapeError, match=r"\(QuantizeLinear\): the shape of input 0 is not "
                                              "known at import time"):
        tvm_qdq.from_onnx(model)


def test_weight_transforms_and_large_values_are_not_folded():
    """A weight-only ``Cast(int8 W) · scale`` and a constant DQ stay in the graph (weights are
    not rewritten); a shape-derived value above ``MAX_FOLDED_BYTES`` stays computed at run
    time, its ``Shape`` input still folded. The caller's model is left untouched."""
    side = int(np.sqrt(MAX_FOLDED_BYTES / 4)) + 8
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Cast", ["w8"], ["wf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["wf", "ws"], ["w"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w2"]),
        helper.make_node("Add", ["w", "w2"], ["wsum"]),
        helper.make_node("MatMul", ["x", "wsum"], ["mm"]),
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("ConstantOfShape", ["sh"], ["ones"],
                         value=numpy_helper.from_array(np.ones(1, np.float32))),
        helper.make_node("Add", ["mm", "ones"], ["y"]),
    ]
    inits = [_const("w8", rng.integers(-127, 128, (side, side)), np.int8),
             _const("wq", rng.integers(-127, 128, (side, side)), np.int8),
             _const("ws", 0.01, np.float32), _const("wz", 0, np.int8)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [side, side])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    before = model.SerializeToString()
    folded = fold_shape_arithmetic(model)
    assert model.SerializeToString() == before
    assert _op_types(folded) == ["Cast", "Mul", "DequantizeLinear", "Add", "MatMul",
                                 "ConstantOfShape", "Add"]
    sh = next(i for i in folded.graph.initializer if i.name == "sh")
    assert numpy_helper.to_array(sh).tolist() == [side, side]


def test_nothing_to_fold_returns_the_model_itself():
    model = with_static_inputs(_reshape_model(), {"x": [1, 4, 6]})
    del model.graph.node[2:10]  # drop the shape arithmetic and the Reshape
    model.graph.node[2].input[0] = "xd"
    assert fold_shape_arithmetic(model) is model


def test_float_computation_on_small_constants_is_left_alone():
    """Only shape-derived values and integer results fold: a small weight-only dequantization
    ``Cast(int8 W) · scale`` stays for the converters and the integer pass."""
    nodes = [helper.make_node("Cast", ["w8"], ["wf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["wf", "ws"], ["w"]),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    inits = [_const("w8", np.arange(16).reshape(4, 4), np.int8), _const("ws", 0.5, np.float32)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    assert fold_shape_arithmetic(model) is model


def test_tvm_converter_failing_on_a_runtime_shape_is_a_named_error():
    """A slice end read from a graph input is data: the slice has no static shape, and TVM's
    Reshape converter fails on it (MiniLM's failure before folding); the error names the node
    and the input instead of TVM's internal check."""
    nodes = [helper.make_node("Slice", ["x", "start", "n", "axis"], ["sl"]),
             helper.make_node("Reshape", ["sl", "target"], ["y"], name="flat")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 4]),
                           helper.make_tensor_value_info("n", TensorProto.INT64, [1])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                   [_const("start", [0]), _const("axis", [0]), _const("target", [-1, 2])])
    with pytest.raises(InputShapeError, match=r"node 'flat' \(Reshape\): the shape of input 0 "
                                              "is not known at import time"):
        tvm_qdq.from_onnx(model)
