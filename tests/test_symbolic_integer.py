"""The integer pass on partial shapes: models whose inputs declare symbolic dims (``batch``,
``seq``, an image width) go integer without ``shapes=``.

* The integer module keeps the symbolic dims, and its pass report has the same records
  (op, outcome, detail) as the static import of the same model (``shapes=`` fixed).
* Built with TVM's default schedules (the generic backend) it runs at several sizes from one
  compile within the single-op / model contract against ORT's reference path; the x86 build
  gives the same output as the generic one.
* Accumulators over a symbolic ``K`` (``P·V``, ``K = seq``): the user's bound decides the
  type; without one the pass assumes ``seq ≤ ⌊(2^31 - 1) / (255 · 128)⌋`` for u8 × (u8 - 128)
  operands, the largest ``K`` keeping int32 exact, and records it as ``tvm_qdq.implicit_bounds``.
* A rule that needs a symbolic dim as an integer (an average pool whose padding is not
  counted, over a symbolic width) leaves its op float and the report names the refusal.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_qdq
from relay_passes.rules.matmul import MIN_IMPLICIT_BOUND
from tvm_qdq.backend import registry
from tvm_qdq.backend.base import BuildOptions
from tvm_qdq.backend.x86.rounding import exact_float_rounding
from tvm_qdq.compile import pass_report
from tvm_qdq.qnn.dims import IMPLICIT_BOUND_ATTR, UPPER_BOUND_ATTR
from tvm_qdq.relax_utils import partial_shape
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.models import quantized_model
from tvm_qdq.testing.oracle import (
    assert_model_contract,
    assert_single_op_contract,
    output_quant_info,
    run_ort,
)
from tvm_qdq.testing.qdq_graphs import QP, QdqGraph, make_qdq_model

REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
U8 = QP(np.float32(3.0 / 127), 128, np.uint8)

# --------------------------------------------------------------------------------------------
# An attention block: x[batch, seq, 32] → QDQ MatMul → heads (Shape/Gather/Concat/Reshape) →
# QKᵀ → Softmax → Q(P) · V with K = seq.
# --------------------------------------------------------------------------------------------

D, HEADS = 32, 2
Y_SCALE, Y_ZP = np.float32(0.05), 128
ATTENTION_SIZES = [(1, 8, D), (4, 77, D)]


def attention_model(p_type: type = np.uint8) -> onnx.ModelProto:
    """The attention block with softmax probabilities quantized to ``p_type`` (scale
    ``1/qmax``, zero point 0)."""
    rng = np.random.default_rng(0)
    p_max = np.iinfo(p_type).max
    w = np.clip(np.round(rng.normal(0, 0.2, (D, D)) / 0.01), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(v, n) for n, v in [
        ("w_q", w), ("w_s", np.float32(0.01)), ("w_z", np.int8(0)),
        ("x_s", np.float32(0.02)), ("x_z", np.uint8(128)),
        ("y_s", Y_SCALE), ("y_z", np.uint8(Y_ZP)),
        ("i0", np.array(0, np.int64)), ("i1", np.array(1, np.int64)),
        ("ax0", np.array([0], np.int64)), ("heads", np.array([HEADS, D // HEADS], np.int64)),
        ("p_s", np.float32(1 / p_max)), ("p_z", p_type(0))]]
    node = helper.make_node
    nodes = [
        node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
        node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"]),
        node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"]),
        node("MatMul", ["xd", "wd"], ["y"]),
        node("QuantizeLinear", ["y", "y_s", "y_z"], ["yq"]),
        node("DequantizeLinear", ["yq", "y_s", "y_z"], ["yd"]),
        node("Shape", ["x"], ["sh"]),
        node("Gather", ["sh", "i0"], ["b"], axis=0),
        node("Gather", ["sh", "i1"], ["s"], axis=0),
        node("Unsqueeze", ["b", "ax0"], ["bu"]),
        node("Unsqueeze", ["s", "ax0"], ["su"]),
        node("Concat", ["bu", "su", "heads"], ["newshape"], axis=0),
        node("Reshape", ["yd", "newshape"], ["y4"]),
        node("Transpose", ["y4"], ["yt"], perm=[0, 2, 1, 3]),
        node("Transpose", ["y4"], ["ytt"], perm=[0, 2, 3, 1]),
        node("MatMul", ["yt", "ytt"], ["att"]),
        node("Softmax", ["att"], ["p"], axis=-1),
        node("QuantizeLinear", ["p", "p_s", "p_z"], ["pq"]),
        node("DequantizeLinear", ["pq", "p_s", "p_z"], ["pd"]),
        node("MatMul", ["pd", "yt"], ["ctx"]),
        node("QuantizeLinear", ["ctx", "y_s", "y_z"], ["cq"]),
        node("DequantizeLinear", ["cq", "y_s", "y_z"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                           ["batch", "seq", D])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT,
                                       ["batch", HEADS, "seq", D // HEADS])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _dims(expr) -> list[int | str]:
    return [d if isinstance(d, int) else str(d) for d in partial_shape(expr)]


def _records(mod) -> list[tuple[str, str, str]]:
    return [(r.op, r.outcome, r.detail) for r in pass_report(mod).integer]


def _bounds(func, key: str) -> dict[str, int]:
    attrs = func.attrs
    return {str(k): int(v) for k, v in attrs[key].items()} if key in attrs else {}


@functools.cache
def attention_integer():
    return tvm_qdq.to_integer(tvm_qdq.from_onnx(attention_model()))


#: The x86 build must not fall back to TVM's default schedules (a warning) on symbolic dims.
NO_FALLBACK = pytest.mark.filterwarnings("error:tvm-qdq:UserWarning")


@functools.cache
def attention_builds():
    mod = attention_integer()
    target = resolve_target("x86")
    return (registry.GENERIC.build(mod, target, BuildOptions()),
            tvm_qdq.compile(mod, "x86"))


def test_attention_keeps_symbolic_dims() -> None:
    main = attention_integer()["main"]
    assert _dims(main.params[0]) == ["batch", "seq", D]
    assert _dims(main.body) == ["batch", HEADS, "seq", D // HEADS]


def test_attention_report_is_the_static_report() -> None:
    static = tvm_qdq.to_integer(tvm_qdq.from_onnx(attention_model(), shapes={"x": [1, 8, D]}))
    records = _records(attention_integer())
    assert records == _records(static)
    assert [r[1] for r in records].count("integer") == 3
    assert pass_report(attention_integer()).float_ops == pass_report(static).float_ops


@NO_FALLBACK
@pytest.mark.parametrize("shape", ATTENTION_SIZES)
def test_attention_runs_at_every_size(shape) -> None:
    model = attention_model()
    generic, x86 = attention_builds()
    feeds = {"x": np.random.default_rng(sum(shape)).normal(0, 1, shape).astype(np.float32)}
    expected = run_ort(model, feeds, optimization_level=REFERENCE)[0]
    got = generic.run(feeds)[0]
    assert got.shape == (shape[0], HEADS, shape[1], D // HEADS)
    assert_model_contract(got, expected, Y_SCALE, Y_ZP, name=f"generic {shape}")
    np.testing.assert_array_equal(x86.run(feeds)[0], got)


def _op_counts(mod) -> Counter:
    counts: Counter = Counter()

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            counts[str(expr.op.name)] += 1

    relax.analysis.post_order_visit(mod["main"], visit)
    return counts


def test_x86_rounding_forms_are_the_static_ones() -> None:
    """The x86 legalization of the requantize ops (saturation moved onto the integer input,
    float64 sums) proves the same bounds with symbolic dims as with static ones."""
    static = tvm_qdq.to_integer(tvm_qdq.from_onnx(attention_model(), shapes={"x": [1, 8, D]}))
    symbolic_form = exact_float_rounding(attention_integer())[0]
    assert _op_counts(symbolic_form) == _op_counts(exact_float_rounding(static)[0])
    assert _op_counts(symbolic_form)["relax.minimum"] == 2  # both requantizes saturate first


def test_implicit_bound_keeps_the_pv_accumulator_int32() -> None:
    main = attention_integer()["main"]
    largest = (2**31 - 1) // (255 * 128)  # |P| ≤ 255 (zp 0), |V - 128| ≤ 128
    assert largest == 65793
    assert _bounds(main, IMPLICIT_BOUND_ATTR) == {"seq": largest}
    pv = [r for r in _records(attention_integer()) if r[0] == "relax.matmul"][-1]
    assert pv[2].endswith("→ int32")


@pytest.mark.parametrize(("bound", "acc"), [(512, "int32"), (70000, "int64")])
def test_user_bound_replaces_the_implicit_one(bound: int, acc: str) -> None:
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(attention_model(), bounds={"seq": bound}))
    main = mod["main"]
    assert _bounds(main, UPPER_BOUND_ATTR)["seq"] == bound
    assert IMPLICIT_BOUND_ATTR not in main.attrs
    pv = [r for r in _records(mod) if r[0] == "relax.matmul"][-1]
    assert pv[2].endswith(f"→ {acc}")


def test_16_bit_probabilities_take_int64_rather_than_a_tiny_implicit_bound() -> None:
    """u16 × (u8 - 128) would keep int32 only up to ``seq = 256``: below the smallest
    implicit bound worth assuming, so the accumulator is int64 (exact for every ``seq``)
    unless the user bounds ``seq``."""
    model = attention_model(np.uint16)
    assert (2**31 - 1) // (65535 * 128) == 256 < MIN_IMPLICIT_BOUND
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    assert IMPLICIT_BOUND_ATTR not in mod["main"].attrs
    assert _records(mod)[-2][2] == "uint16×uint8 (activations) → int64"
    bounded = tvm_qdq.to_integer(tvm_qdq.from_onnx(model, bounds={"seq": 256}))
    assert _records(bounded)[-2][2] == "uint16×uint8 (activations) → int32"


# --------------------------------------------------------------------------------------------
# Single-op QDQ graphs with symbolic dims (built static, then their inputs made symbolic)
# --------------------------------------------------------------------------------------------


def symbolic(model: onnx.ModelProto, dims: dict[str, dict[int, str]]) -> onnx.ModelProto:
    """``model`` with the input dims ``dims[input][axis]`` replaced by named symbolic dims and
    output and intermediate shapes inferred again."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        for axis, name in dims.get(value.name, {}).items():
            value.type.tensor_type.shape.dim[axis].dim_param = name
    for value in model.graph.output:
        value.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


@dataclass(frozen=True)
class Case:
    build: Callable[[QdqGraph], None]
    inputs: dict[str, tuple[int, ...]]
    dims: dict[str, dict[int, str]]
    sizes: tuple[dict[str, int], ...]  # symbolic dim name → size, one run each

    def shapes(self, sizes: dict[str, int]) -> dict[str, list[int]]:
        return {name: [sizes.get(self.dims.get(name, {}).get(i), d) for i, d in enumerate(shape)]
                for name, shape in self.inputs.items()}


def _conv(g: QdqGraph) -> None:
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (6, 4, 3, 3)).astype(np.int8)
    wq = QP(rng.uniform(0.004, 0.02, 6).astype(np.float32), np.zeros(6, np.int8), np.int8, 0)
    x = g.input("x", [1, 4, 6, 9], U8)
    b = g.bias("b", rng.normal(0, 1, 6), U8.scale * wq.scale)
    g.output(g.node("Conv", [x, g.weight("w", w, wq), b], pads=[1, 1, 1, 1]), np.uint8)


def _avgpool(pads: list[int]) -> Callable[[QdqGraph], None]:
    def build(g: QdqGraph) -> None:
        g.output(g.node("AveragePool", [g.input("x", [1, 4, 6, 9], U8)], kernel_shape=[2, 2],
                        strides=[1, 1], pads=pads, count_include_pad=0), np.uint8)
    return build


def _add_broadcast(g: QdqGraph) -> None:
    a = g.input("a", [2, 5, 8], U8)
    b = g.input("b", [8], QP(np.float32(0.02), 100, np.uint8))
    g.output(g.node("Add", [a, b]), np.uint8)


def _matmul_per_column_reshape(g: QdqGraph) -> None:
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (16, 8)).astype(np.int8)
    wq = QP(rng.uniform(0.004, 0.02, 8).astype(np.float32), np.zeros(8, np.int8), np.int8, 1)
    y = g.node("MatMul", [g.input("a", [2, 5, 16], U8), g.weight("w", w, wq)])
    flat = g.node("Reshape", [y, g.initializer("shape", np.array([-1, 8], np.int64))])
    g.output(g.node("Relu", [flat]), np.uint8)


WIDTHS = ({"n": 1, "width": 9}, {"n": 2, "width": 17})
ROWS = ({"batch": 1, "seq": 3}, {"batch": 3, "seq": 7})
CASES = {
    "conv_pad1_per_channel": Case(_conv, {"x": (1, 4, 6, 9)}, {"x": {0: "n", 3: "width"}},
                                  WIDTHS),
    "avgpool_no_pad": Case(_avgpool([0, 0, 0, 0]), {"x": (1, 4, 6, 9)},
                           {"x": {0: "n", 3: "width"}}, WIDTHS),
    "add_broadcast": Case(_add_broadcast, {"a": (2, 5, 8), "b": (8,)},
                          {"a": {0: "batch", 1: "seq"}}, ROWS),
    "matmul_per_column_reshape": Case(_matmul_per_column_reshape, {"a": (2, 5, 16)},
                                      {"a": {0: "batch", 1: "seq"}}, ROWS),
}


def _feeds(case: Case, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0, 1, shape).astype(np.float32)
            for name, shape in case.shapes(sizes).items()}


@functools.cache
def case_model(name: str) -> onnx.ModelProto:
    case = CASES[name]
    static = make_qdq_model(case.build, {n: np.random.default_rng(7).normal(0, 1, s)
                                         .astype(np.float32) for n, s in case.inputs.items()})
    return symbolic(static, case.dims)


@pytest.mark.parametrize("name", list(CASES))
def test_rule_keeps_symbolic_dims_and_the_static_report(name: str) -> None:
    case, model = CASES[name], case_model(name)
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    for param, (input_name, axes) in zip(mod["main"].params, case.inputs.items(), strict=False):
        dims = case.dims.get(input_name, {})
        assert _dims(param) == [dims.get(i, d) for i, d in enumerate(axes)], param.ty
    static = tvm_qdq.to_integer(tvm_qdq.from_onnx(model, shapes=case.shapes(case.sizes[0])))
    assert _records(mod) == _records(static)
    assert pass_report(mod).float_ops == [] == pass_report(static).float_ops


@NO_FALLBACK
@pytest.mark.parametrize("name", list(CASES))
def test_rule_runs_at_every_size(name: str) -> None:
    case, model = CASES[name], case_model(name)
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    generic = registry.GENERIC.build(mod, resolve_target("x86"), BuildOptions())
    x86 = tvm_qdq.compile(mod, "x86")
    info = output_quant_info(model)["y"]
    for seed, sizes in enumerate(case.sizes):
        feeds = _feeds(case, sizes, seed)
        expected = run_ort(model, feeds, optimization_level=REFERENCE)[0]
        got = generic.run(feeds)[0]
        assert_single_op_contract(got, expected, info.scale, info.zero_point,
                                  name=f"{name} {sizes}")
        np.testing.assert_array_equal(x86.run(feeds)[0], got)


def _global_avgpool(g: QdqGraph) -> None:
    g.output(g.node("GlobalAveragePool", [g.input("x", [1, 4, 6, 9], U8)]), np.uint8)


@pytest.mark.parametrize(("build", "op"), [
    (_avgpool([1, 1, 1, 1]), "relax.nn.avg_pool2d"),
    (_global_avgpool, "relax.mean"),
])
def test_ops_needing_a_static_width_are_refused_by_name(build, op: str) -> None:
    model = symbolic(make_qdq_model(build, {
        "x": np.random.default_rng(7).normal(0, 1, (1, 4, 6, 9)).astype(np.float32)}),
        {"x": {3: "width"}})
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    refused = [r for r in pass_report(mod).integer if r.op == op]
    assert [r.outcome for r in refused] == ["float"]
    assert "needs a static dim: axis 3 is the symbolic size 'width'" in refused[0].detail
    assert [f["op"] for f in pass_report(mod).float_ops] == [op]
    static = tvm_qdq.to_integer(tvm_qdq.from_onnx(model, shapes={"x": [1, 4, 6, 9]}))
    assert pass_report(static).float_ops == []
    feeds = {"x": np.random.default_rng(8).normal(0, 1, (1, 4, 6, 13)).astype(np.float32)}
    info = output_quant_info(model)["y"]
    got = registry.GENERIC.build(mod, resolve_target("x86"), BuildOptions()).run(feeds)[0]
    assert_single_op_contract(got, run_ort(model, feeds, optimization_level=REFERENCE)[0],
                              info.scale, info.zero_point)


# --------------------------------------------------------------------------------------------
# ConvInteger with a run-time zero point over a symbolic width: the border mask is computed
# --------------------------------------------------------------------------------------------


def conv_integer_model(shape: list[int | str], out_channels: int, pads: list[int]
                       ) -> onnx.ModelProto:
    """``ConvInteger(x, w, zx)`` with uint8 ``x`` and ``zx`` graph inputs (ORT pads ``x`` with
    ``zx``), kernel 3 along each spatial axis."""
    spatial = len(shape) - 2
    w = np.random.default_rng(11).integers(-128, 128, (out_channels, shape[1], *[3] * spatial))
    graph = helper.make_graph(
        [helper.make_node("ConvInteger", ["x", "w", "zx"], ["y"], pads=pads)], "conv_integer",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, shape),
         helper.make_tensor_value_info("zx", TensorProto.UINT8, [])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        [numpy_helper.from_array(w.astype(np.int8), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@NO_FALLBACK
@pytest.mark.parametrize(("shape", "pads"), [
    (["n", 8, 6, "width"], [1, 2, 1, 0]),
    (["n", 8, "width"], [1, 1]),
])
def test_runtime_zero_point_padding_over_a_symbolic_width(shape, pads) -> None:
    model = conv_integer_model(shape, 12, pads)
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    assert _dims(mod["main"].params[0])[-1] == "width"
    generic = registry.GENERIC.build(mod, resolve_target("x86"), BuildOptions())
    x86 = tvm_qdq.compile(mod, "x86")
    rng = np.random.default_rng(5)
    for n, width, zx in [(1, 4, 0), (2, 19, 131), (1, 33, 255)]:
        dims = [n if d == "n" else width if d == "width" else d for d in shape]
        feeds = {"x": rng.integers(0, 256, dims).astype(np.uint8), "zx": np.array(zx, np.uint8)}
        got = generic.run(feeds)[0]
        np.testing.assert_array_equal(got, run_ort(model, feeds)[0])
        np.testing.assert_array_equal(x86.run(feeds)[0], got)


# --------------------------------------------------------------------------------------------
# The two-layer QDQ transformer encoder of the test models with a symbolic sequence length
# --------------------------------------------------------------------------------------------


@functools.cache
def symbolic_encoder() -> onnx.ModelProto:
    """``transformer_encoder`` (u8/s8 per channel) with input ``[1, seq, 64]``: its head
    split/merge Reshapes take ``-1`` for the sequence length."""
    model = onnx.ModelProto.FromString(
        quantized_model("transformer_encoder", "u8s8_perchannel").SerializeToString())
    for init in model.graph.initializer:
        if init.name.startswith(("shape_split", "shape_merge")):
            shape = numpy_helper.to_array(init).copy()
            shape[1] = -1
            init.CopyFrom(numpy_helper.from_array(shape, init.name))
    return symbolic(model, {"x": {1: "seq"}})


def test_encoder_report_is_the_static_report() -> None:
    model = symbolic_encoder()
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    assert _dims(mod["main"].params[0]) == [1, "seq", 64]
    static = tvm_qdq.to_integer(tvm_qdq.from_onnx(model, shapes={"x": [1, 16, 64]}))
    records = _records(mod)
    assert records == _records(static)
    assert [r[0] for r in records if r[1] == "integer"].count("relax.matmul") == 16
    assert sum(r[2].startswith("folded") for r in records) == 12  # GELU chains as lookups
    assert set(_bounds(mod["main"], IMPLICIT_BOUND_ATTR)) == {"seq"}


@pytest.mark.slow
@NO_FALLBACK
def test_encoder_runs_at_every_size() -> None:
    model = symbolic_encoder()
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    generic = registry.GENERIC.build(mod, resolve_target("x86"), BuildOptions())
    x86 = tvm_qdq.compile(mod, "x86")
    info = output_quant_info(model)["y"]
    for seq in (8, 77):
        feeds = {"x": np.random.default_rng(seq).normal(0, 1, (1, seq, 64)).astype(np.float32)}
        got = generic.run(feeds)[0]
        expected = run_ort(model, feeds, optimization_level=REFERENCE)[0]
        assert_model_contract(got, expected, info.scale, info.zero_point, name=f"seq {seq}")
        np.testing.assert_array_equal(x86.run(feeds)[0], got)
