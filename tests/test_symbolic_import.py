"""ONNX import with symbolic input dimensions: ``from_onnx`` without ``shapes=``.

A dimension declared symbolic (``dim_param``) or unnamed stays symbolic in the faithful
module (one ``tirx.Var`` per name, shared across inputs); ``shapes=`` may fix some dims and
keep others, ``bounds=`` records upper bounds as ``tir_var_upper_bound``. The faithful
module, built with TVM's default pipeline, is run at several sizes from one build and
compared with ORT's reference path (optimizations off). Fully static imports are unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
import tvm_ffi
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_qdq
from tvm_qdq.frontend.onnx import InputShapeError
from tvm_qdq.frontend.onnx.shape_folding import fold_shape_arithmetic
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing import contrib_quant_graphs as graphs
from tvm_qdq.testing import real_corpus
from tvm_qdq.testing.oracle import assert_model_contract

D, HEADS = 32, 2
Y_SCALE, Y_ZP = 0.05, 128


def _const(name: str, value, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _attention_model(index_1d: bool = False) -> onnx.ModelProto:
    """x[batch, seq, 32] → QDQ → MatMul(W int8, QDQ) → QDQ → Reshape to
    ``[batch, seq, 2, 16]`` by ``Shape → Gather → (Unsqueeze) → Concat`` → heads;
    ``softmax(Q·Kᵀ)`` → QDQ (u8, 1/255) → ``P·V`` (K = seq) → QDQ → out[batch, 2, seq, 16].
    ``index_1d``: the dims are gathered with a 1-element index (no Unsqueeze)."""
    rng = np.random.default_rng(0)
    w = np.clip(np.round(rng.normal(0, 0.2, (D, D)) / 0.01), -127, 127)
    inits = [_const("w_q", w, np.int8), _const("w_s", 0.01, np.float32), _const("w_z", 0, np.int8),
             _const("x_s", 0.02, np.float32), _const("x_z", 128, np.uint8),
             _const("y_s", Y_SCALE, np.float32), _const("y_z", Y_ZP, np.uint8),
             _const("heads", [HEADS, D // HEADS]), _const("ax0", [0]),
             _const("p_s", 1 / 255, np.float32), _const("p_z", 0, np.uint8)]
    if index_1d:
        inits += [_const("i0", [0]), _const("i1", [1])]
        dims = [helper.make_node("Gather", ["sh", "i0"], ["bu"], axis=0),
                helper.make_node("Gather", ["sh", "i1"], ["su"], axis=0)]
    else:
        inits += [_const("i0", 0), _const("i1", 1)]
        dims = [helper.make_node("Gather", ["sh", "i0"], ["b"], axis=0),
                helper.make_node("Gather", ["sh", "i1"], ["s"], axis=0),
                helper.make_node("Unsqueeze", ["b", "ax0"], ["bu"]),
                helper.make_node("Unsqueeze", ["s", "ax0"], ["su"])]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"]),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "y_s", "y_z"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "y_s", "y_z"], ["yd"]),
        helper.make_node("Shape", ["x"], ["sh"]),
        *dims,
        helper.make_node("Concat", ["bu", "su", "heads"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["yd", "newshape"], ["y4"]),
        helper.make_node("Transpose", ["y4"], ["yt"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["y4"], ["ytt"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["yt", "ytt"], ["att"]),
        helper.make_node("Softmax", ["att"], ["p"], axis=-1),
        helper.make_node("QuantizeLinear", ["p", "p_s", "p_z"], ["pq"]),
        helper.make_node("DequantizeLinear", ["pq", "p_s", "p_z"], ["pd"]),
        helper.make_node("MatMul", ["pd", "yt"], ["ctx"]),
        helper.make_node("QuantizeLinear", ["ctx", "y_s", "y_z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "y_s", "y_z"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                           ["batch", "seq", D])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", HEADS, "seq", 16])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _position_model() -> onnx.ModelProto:
    """T5/BERT position arithmetic on ids[batch, seq] (int64): ``Range(0, Shape(ids)[1], 1)``
    added to the ids, and with ``Neg(Shape(ids)[1])`` to ``INT64_MAX`` (T5's bias slice) a
    position table sliced ``table[:, -seq:, :]`` (64 rows: clamped) and the sum sliced
    ``f[:, -seq:]`` (all of it), all quantized: out1[batch, seq], out2[1, min(seq, 64), 4],
    out3[batch, seq]."""
    table = np.random.default_rng(3).normal(0, 1, (1, 64, 4)).astype(np.float32)
    inits = [_const("zero", 0), _const("one", 1), _const("ax0", [0]), _const("ax1", [1]),
             _const("end", [np.iinfo(np.int64).max]), _const("table", table, np.float32),
             _const("s", 0.1, np.float32), _const("z", 0, np.int8)]
    nodes = [
        helper.make_node("Shape", ["ids"], ["sh"]),
        helper.make_node("Gather", ["sh", "one"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "one"], ["pos"]),
        helper.make_node("Add", ["ids", "pos"], ["shifted"]),
        helper.make_node("Cast", ["shifted"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("QuantizeLinear", ["f", "s", "z"], ["q1"]),
        helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["out1"]),
        helper.make_node("Neg", ["n"], ["neg"]),
        helper.make_node("Unsqueeze", ["neg", "ax0"], ["start"]),
        helper.make_node("Slice", ["table", "start", "end", "ax1"], ["rows"]),
        helper.make_node("QuantizeLinear", ["rows", "s", "z"], ["q2"]),
        helper.make_node("DequantizeLinear", ["q2", "s", "z"], ["out2"]),
        helper.make_node("Slice", ["out1", "start", "end", "ax1"], ["tail"]),
        helper.make_node("QuantizeLinear", ["tail", "s", "z"], ["q3"]),
        helper.make_node("DequantizeLinear", ["q3", "s", "z"], ["out3"]),
    ]
    graph = helper.make_graph(
        nodes, "positions", [helper.make_tensor_value_info("ids", TensorProto.INT64,
                                                           ["batch", "seq"])],
        [helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, None) for i in (1, 2, 3)],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _ort_reference(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _faithful_vm(mod: tvm.IRModule) -> relax.VirtualMachine:
    """The faithful module built once with TVM's default pipeline (legalized Q/DQ)."""
    return relax.VirtualMachine(tvm.compile(mod, target=resolve_target("x86")), tvm.cpu())


def _outputs(result) -> list[np.ndarray]:
    if isinstance(result, tvm.runtime.Tensor):
        return [result.numpy()]
    return [r.numpy() for r in result]


def _param_types(mod: tvm.IRModule) -> list[str]:
    return [str(p.ty) for p in mod["main"].params]


@pytest.mark.parametrize("index_1d", [False, True], ids=["scalar_index", "1d_index"])
def test_attention_graph_stays_symbolic_and_matches_ort_at_two_sizes(index_1d: bool) -> None:
    model = _attention_model(index_1d)
    mod = tvm_qdq.from_onnx(model)
    main = mod["main"]
    assert _param_types(mod) == ['R.Tensor((batch, seq, 32), dtype="float32")']
    assert str(main.ret_ty) == 'R.Tensor((batch, 2, seq, 16), dtype="float32")'
    assert dict(main.attrs["tir_var_lower_bound"]) == {"batch": 1, "seq": 1}
    assert "tir_var_upper_bound" not in main.attrs
    vm = _faithful_vm(mod)
    for shape in [(1, 8, D), (4, 77, D)]:
        x = np.random.default_rng(sum(shape)).normal(0, 1, shape).astype(np.float32)
        (got,) = _outputs(vm["main"](tvm.runtime.tensor(x)))
        (want,) = _ort_reference(model, {"x": x})
        assert got.shape == (shape[0], HEADS, shape[1], 16)
        ag = assert_model_contract(got, want, Y_SCALE, Y_ZP, name=str(shape))
        assert ag.frac_exact == 1.0, ag  # float ops in ORT's order: every element exact


def test_range_and_negative_slice_keep_the_sequence_dimension() -> None:
    """``Range(0, seq)`` has length ``seq`` (not a fresh variable) and ``x[:, -seq:]`` of a
    ``seq``-long axis has ``seq`` rows, so they broadcast and run at any size. The 64-row
    table's slice is ``seq`` rows too, under the implicit bound ``seq <= 64`` it records
    (none when ``bounds=`` is already tighter). Outputs equal ORT's."""
    model = _position_model()
    mod = tvm_qdq.from_onnx(model)
    main = mod["main"]
    assert [str(f) for f in main.ret_ty.fields] == [
        'R.Tensor((batch, seq), dtype="float32")', 'R.Tensor((1, seq, 4), dtype="float32")',
        'R.Tensor((batch, seq), dtype="float32")']
    assert dict(main.attrs["tvm_qdq.implicit_bounds"]) == {"seq": 64}
    bounded = tvm_qdq.from_onnx(model, bounds={"seq": 32})["main"]
    assert "tvm_qdq.implicit_bounds" not in bounded.attrs
    assert dict(bounded.attrs["tir_var_upper_bound"]) == {"seq": 32}
    vm = _faithful_vm(mod)
    for shape in [(1, 5), (3, 17)]:
        ids = np.random.default_rng(shape[1]).integers(0, 10, shape).astype(np.int64)
        got = _outputs(vm["main"](tvm.runtime.tensor(ids)))
        want = _ort_reference(model, {"ids": ids})
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_bounds_are_stored_as_tir_var_attributes() -> None:
    main = tvm_qdq.from_onnx(_attention_model(), bounds={"seq": 512})["main"]
    assert dict(main.attrs["tir_var_upper_bound"]) == {"seq": 512}
    assert dict(main.attrs["tir_var_lower_bound"]) == {"batch": 1, "seq": 1}


def test_partial_shapes_fix_some_dims_and_keep_or_rename_others() -> None:
    model = _attention_model()
    fixed = tvm_qdq.from_onnx(model, shapes={"x": [2, None, D]})
    assert _param_types(fixed) == ['R.Tensor((2, seq, 32), dtype="float32")']
    assert dict(fixed["main"].attrs["tir_var_lower_bound"]) == {"seq": 1}
    renamed = tvm_qdq.from_onnx(model, shapes={"x": [None, "tokens", D]},
                                bounds={"tokens": 128})
    assert _param_types(renamed) == ['R.Tensor((batch, tokens, 32), dtype="float32")']
    assert dict(renamed["main"].attrs["tir_var_upper_bound"]) == {"tokens": 128}
    # the caller's model keeps its declared dims
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:2]] == [
        "batch", "seq"]


def test_shared_dim_names_are_one_variable() -> None:
    """Two inputs declaring ``['batch', 'sequence']`` share both variables: their sum has
    shape ``(batch, sequence)``."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "sequence"])
              for n in ("a", "b")]
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    main = tvm_qdq.from_onnx(model)["main"]
    a, b = main.params
    assert a.ty.shape[0].same_as(b.ty.shape[0]) and a.ty.shape[1].same_as(b.ty.shape[1])
    assert str(main.ret_ty) == 'R.Tensor((batch, sequence), dtype="float32")'


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"bounds": {"sequence": 64}}, r"bounds= names \['sequence'\].*\['batch', 'seq'\]"),
    ({"bounds": {"seq": 0}}, r"bounds\['seq'\] = 0: a bound must be an int >= 1"),
    ({"shapes": {"x": [2, 8, 31]}}, r"dimension 2 is fixed to 32 by the model"),
    ({"shapes": {"x": [2, 8]}}, r"has rank 2"),
    ({"shapes": {"x": [2, "a+b", D]}}, r"name 'a\+b' must be a plain identifier"),
    ({"shapes": {"y": [2, 8, D]}}, r"not graph inputs"),
    ({"shapes": {"x": [2, 8, D]}, "bounds": {"seq": 64}},
     r"bounds= names \['seq'\].*symbolic dimensions: none"),
])
def test_bad_shapes_and_bounds_are_named_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InputShapeError, match=message):
        tvm_qdq.from_onnx(_attention_model(), **kwargs)


def test_input_without_shape_is_refused_by_name() -> None:
    model = _attention_model()
    model.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(InputShapeError, match=r"input 'x' has no shape \(not even its rank\)"):
        tvm_qdq.from_onnx(model)
    mod = tvm_qdq.from_onnx(model, shapes={"x": [None, None, D]})
    assert _param_types(mod) == ['R.Tensor((x_dim0, x_dim1, 32), dtype="float32")']


def test_per_axis_quantization_along_a_symbolic_axis_names_the_axis() -> None:
    """Per-axis parameters need the axis static: the error names the node, the axis and the
    symbolic dimension."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="qx", axis=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "seq"])],
        [helper.make_tensor_value_info("q", TensorProto.UINT8, None)],
        [_const("s", [0.1, 0.2], np.float32), _const("z", [0, 0], np.uint8)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InputShapeError, match=r"node 'qx' \(QuantizeLinear\) needs dimension"
                                              r"\(s\) 1 of input 0 static \(per-axis.*'seq'"):
        tvm_qdq.from_onnx(model)


@pytest.mark.parametrize("index_1d", [False, True])
def test_fully_fixed_shapes_give_the_static_module(index_1d: bool) -> None:
    """``shapes=`` fixing every dim gives the module of a model declared static, with no
    symbolic-size attributes."""
    model = _attention_model(index_1d)
    static = onnx.ModelProto()
    static.CopyFrom(model)
    for dim, size in zip(static.graph.input[0].type.tensor_type.shape.dim, (3, 8, D),
                         strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = size
    fixed = tvm_qdq.from_onnx(model, shapes={"x": [3, 8, D]})
    declared = tvm_qdq.from_onnx(static)
    assert "tir_var_lower_bound" not in fixed["main"].attrs
    assert tvm_ffi.structural_equal(fixed, declared)
    assert _param_types(fixed) == ['R.Tensor((3, 8, 32), dtype="float32")']


# --- real models with symbolic inputs ------------------------------------------------------


def _corpus_or_skip(name: str) -> onnx.ModelProto:
    try:
        return onnx.load_model(real_corpus.model_path(name))
    except Exception as err:  # noqa: BLE001 - absent corpus (no network): skip
        pytest.skip(f"{name} unavailable: {err}")


@pytest.mark.parametrize(("name", "params"), [
    ("t5_encoder_dyn_matmulinteger",
     ['R.Tensor((batch_size, encoder_sequence_length), dtype="int64")'] * 2),
    ("minilm_weightonly_int8", ['R.Tensor((batch, sequence), dtype="int64")'] * 3),
])
def test_real_models_import_with_symbolic_dims(name: str, params: list[str]) -> None:
    mod = tvm_qdq.from_onnx(_corpus_or_skip(name))
    assert _param_types(mod) == params
    assert mod["main"].attrs["tir_var_lower_bound"] is not None


def _minilm_dynamic_qdq() -> onnx.ModelProto:
    """all-MiniLM-L6-v2 exported with ``dynamic_axes`` on batch and sequence, quantized QDQ
    u8/s8 per channel like the benchmark row (``benchmarks/cases.py``; cached outside git)."""
    import sys
    from pathlib import Path

    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import cases
    finally:
        sys.path.pop(0)
    try:
        return cases.minilm_dynamic("u8s8_perchannel")
    except ImportError as err:
        pytest.skip(str(err))


@pytest.mark.slow
def test_minilm_qdq_with_dynamic_axes_imports_symbolic() -> None:
    """The QDQ MiniLM keeps ``(batch, sequence)``; its 512-row position table bounds the
    sequence (implicit bound); built once, it equals the static import's build at (2, 77)."""
    model = _minilm_dynamic_qdq()
    mod = tvm_qdq.from_onnx(model)
    assert _param_types(mod) == ['R.Tensor((batch, sequence), dtype="int64")'] * 2
    assert str(mod["main"].ret_ty) == 'R.Tensor((batch, 384), dtype="float32")'
    assert dict(mod["main"].attrs["tvm_qdq.implicit_bounds"]) == {"sequence": 512}
    names = ["input_ids", "attention_mask"]
    feeds = _token_feeds(names, 2, 77)
    static = tvm_qdq.from_onnx(model, shapes={n: [2, 77] for n in names})
    args = [tvm.runtime.tensor(feeds[n]) for n in names]
    (got,) = _outputs(_faithful_vm(mod)["main"](*args))
    (want,) = _outputs(_faithful_vm(static)["main"](*args))
    np.testing.assert_array_equal(got, want)


# --- contrib transformer ops on symbolic batch / sequence ----------------------------------

CONTRIB_ATOL = 1e-5  # as tests/test_contrib_quant_ops.py: float attention, 10x measured error


def _with_symbolic_batch_and_seq(model: onnx.ModelProto, seq: bool = True) -> onnx.ModelProto:
    """``model`` with every graph input's axis 0 named ``batch`` and (``seq``) axis 1 of
    rank ≥ 2 inputs named ``seq``; output shapes cleared."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in out.graph.input:
        dims = vi.type.tensor_type.shape.dim
        for axis, name in ((0, "batch"), (1, "seq") if seq else (0, "batch")):
            if axis < len(dims):
                dims[axis].ClearField("dim_value")
                dims[axis].dim_param = name
    for vi in out.graph.output:
        vi.type.tensor_type.ClearField("shape")
    return out


CONTRIB_CASES = {
    # (builder(batch, seq), whether the sequence may vary: a 1-D mask holds end positions)
    "qattention-s8-2d-mask-unidirectional": (lambda b, s: graphs.qattention(
        b, s, 8, 16, 4, "int8", seed=2, mask="2d", unidirectional=True), True),
    "qattention-u8-per-column-1d-mask": (lambda b, s: graphs.qattention(
        b, s, 12, 24, 3, "uint8", seed=1, mask="1d", per_column=True), False),
    "qembed-u8-segment-mask": (lambda b, s: graphs.qembed_layer_norm(
        b, s, 16, 30, "uint8", seed=0), True),
    "bert-block-quantize-dynamic": (lambda b, s: graphs.quantize_dynamic_bert_block(
        b, s, 32, 4, 50), True),
}


@pytest.mark.parametrize("name", list(CONTRIB_CASES))
def test_contrib_transformer_ops_run_at_two_sizes_from_one_faithful_build(name: str) -> None:
    """QAttention (masks built with ``R.arange`` on the symbolic sequence) and
    QEmbedLayerNormalization with symbolic batch and sequence: one faithful build, outputs
    within the contrib ops' tolerance of ORT at the model's size and at another."""
    build, seq_varies = CONTRIB_CASES[name]
    base, feeds = build(2, 6)
    model = _with_symbolic_batch_and_seq(base, seq_varies)
    mod = tvm_qdq.from_onnx(model)
    first = _param_types(mod)[0]
    assert first.startswith("R.Tensor((batch, seq" if seq_varies else "R.Tensor((batch, 6")
    vm = _faithful_vm(mod)
    names = [str(n) for n in mod.attrs["tvm_qdq.input_names"]]
    other = build(3, 4 if seq_varies else 6)[1]  # position tables hold 6 rows
    for size_feeds in (feeds, other):
        got = _outputs(vm["main"](*[tvm.runtime.tensor(size_feeds[n]) for n in names]))
        want = _ort_reference(model, size_feeds)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype
            if np.issubdtype(w.dtype, np.integer):
                np.testing.assert_array_equal(g, w)
            else:
                np.testing.assert_allclose(g, w, rtol=0, atol=CONTRIB_ATOL)


# --- normalizations and softmax with symbolic rows -----------------------------------------

MS = "com.microsoft"


def _norm_model(kind: str) -> onnx.ModelProto:
    """x[batch, seq, 24] (and skip) through one normalization: ``LayerNormalization`` (with
    Mean/InvStdDev), ``SkipLayerNormalization`` (all four outputs),
    ``SimplifiedLayerNormalization`` or opset-12-style ``QLinearSoftmax`` (u8)."""
    rng = np.random.default_rng(4)
    hidden = 24
    gamma = _const("gamma", rng.uniform(0.5, 1.5, hidden), np.float32)
    beta = _const("beta", rng.normal(0, 0.1, hidden), np.float32)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", hidden])]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    if kind == "layer_norm":
        nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"],
                                  ["y", "mean", "inv"], axis=-1, epsilon=1e-5)]
        inits, outputs = [gamma, beta], ["y", "mean", "inv"]
    elif kind == "skip_layer_norm":
        inputs.append(helper.make_tensor_value_info("skip", TensorProto.FLOAT,
                                                    ["batch", "seq", hidden]))
        bias = _const("bias", rng.normal(0, 0.1, hidden), np.float32)
        nodes = [helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"],
                                  ["y", "mean", "inv", "sum"], domain=MS, epsilon=1e-12)]
        inits, outputs = [gamma, beta, bias], ["y", "mean", "inv", "sum"]
    elif kind == "simplified_layer_norm":
        nodes = [helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y"],
                                  axis=-1, epsilon=1e-6)]
        inits, outputs = [gamma], ["y"]
    else:
        inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, ["batch", "seq", hidden])]
        nodes = [helper.make_node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], ["y"],
                                  domain=MS, axis=-1, opset=12)]
        inits = [_const("xs", 0.1, np.float32), _const("xz", 128, np.uint8),
                 _const("ys", 1 / 256, np.float32), _const("yz", 0, np.uint8)]
        outputs = ["y"]
    out_type = TensorProto.UINT8 if kind == "qlinear_softmax" else TensorProto.FLOAT
    graph = helper.make_graph(nodes, kind, inputs, [
        helper.make_tensor_value_info(o, out_type, None) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


@pytest.mark.parametrize("kind", ["layer_norm", "skip_layer_norm", "simplified_layer_norm",
                                  "qlinear_softmax"])
def test_normalizations_with_symbolic_rows_match_ort_bit_for_bit(kind: str) -> None:
    """ORT-order normalization TEs over symbolic rows (only the 24-wide axis is static) and
    QLinearSoftmax's ``[rows, 24]`` flattening: one faithful build, equal to ORT at two
    sizes."""
    model = _norm_model(kind)
    mod = tvm_qdq.from_onnx(model)
    assert _param_types(mod)[0].startswith("R.Tensor((batch, seq, 24)")
    vm = _faithful_vm(mod)
    names = [str(n) for n in mod.attrs["tvm_qdq.input_names"]]
    for shape in [(1, 3, 24), (4, 37, 24)]:
        rng = np.random.default_rng(shape[1])
        feeds = {n: (rng.integers(0, 256, shape).astype(np.uint8) if kind == "qlinear_softmax"
                     else rng.normal(0, 2, shape).astype(np.float32)) for n in names}
        got = _outputs(vm["main"](*[tvm.runtime.tensor(feeds[n]) for n in names]))
        want = _ort_reference(model, feeds)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_array_equal(g, w)


def test_symbolic_normalized_axis_is_a_named_error() -> None:
    """LayerNormalization needs its normalized axis static: the error names the node, the
    axis and the dimension."""
    model = _norm_model("layer_norm")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].ClearField("dim_value")
    dims[2].dim_param = "hidden"
    model.graph.node[0].name = "ln"
    with pytest.raises(InputShapeError, match=r"node 'ln' \(LayerNormalization\) needs "
                                              r"dimension\(s\) 2 of input 0 static \(the "
                                              r"normalized axes\).*\['hidden'\]"):
        tvm_qdq.from_onnx(model)


def test_static_part_of_a_symbolic_shape_folds() -> None:
    """``Shape(x, start=2)`` of x[batch, seq, 32] is ``[32]``: the pre-pass folds it (and the
    Concat reading it) to a constant; ``Shape(x)`` itself, symbolic, stays. The reshape to
    ``[-1, 32]`` has ``batch·seq`` rows."""
    nodes = [helper.make_node("Shape", ["x"], ["tail"], start=2),
             helper.make_node("Concat", ["minus1", "tail"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("Shape", ["x"], ["whole"]),
             helper.make_node("Reshape", ["flat", "whole"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_const("minus1", [-1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folded = fold_shape_arithmetic(model)
    assert [n.op_type for n in folded.graph.node] == ["Reshape", "Shape", "Reshape"]
    target = next(i for i in folded.graph.initializer if i.name == "target")
    assert numpy_helper.to_array(target).tolist() == [-1, D]
    main = tvm_qdq.from_onnx(model)["main"]
    assert str(main.ret_ty) == 'R.Tensor((batch, seq, 32), dtype="float32")'
    assert "R.Tensor((batch * seq, 32)" in str(main)


def _token_feeds(names: list[str], batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seq)
    return {n: np.ones((batch, seq), np.int64) if "mask" in n
            else np.zeros((batch, seq), np.int64) if "type" in n
            else rng.integers(100, 2000, (batch, seq)).astype(np.int64) for n in names}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["t5_encoder_dyn_matmulinteger", "minilm_weightonly_int8"])
def test_real_model_symbolic_build_equals_static_builds(name: str) -> None:
    """One faithful build of the symbolic module gives, at (1, 8) and (2, 77), exactly the
    outputs of the faithful module imported with those sizes fixed (``shapes=``)."""
    model = _corpus_or_skip(name)
    mod = tvm_qdq.from_onnx(model)
    names = [str(n) for n in mod.attrs["tvm_qdq.input_names"]]
    vm = _faithful_vm(mod)
    for batch, seq in [(1, 8), (2, 77)]:
        feeds = _token_feeds(names, batch, seq)
        static = _faithful_vm(tvm_qdq.from_onnx(model, shapes={n: [batch, seq] for n in names}))
        args = [tvm.runtime.tensor(feeds[n]) for n in names]
        for got, want in zip(_outputs(vm["main"](*args)), _outputs(static["main"](*args)),
                             strict=True):
            assert got.shape == want.shape and got.shape[:2] == (batch, seq)
            np.testing.assert_array_equal(got, want)


def test_one_element_shape_arithmetic_feeds_a_slice_end() -> None:
    """YOLO's head: ``Slice(x, 1, (Shape(x)[[2]] + 1) / 2)`` on x[1, 3, n] with a
    1-element Gather index: the arithmetic stays on shape values (held as an int64 tensor
    between ops TVM lets read no shape), the slice gets ``min((n + 1) / 2, n) - 1``
    columns, and one build matches ORT at n = 10 and 15."""
    nodes = [helper.make_node("Shape", ["x"], ["sh"]),
             helper.make_node("Gather", ["sh", "two"], ["n"], axis=0),
             helper.make_node("Add", ["n", "one"], ["n1"]),
             helper.make_node("Div", ["n1", "two"], ["end"]),
             helper.make_node("Slice", ["x", "one", "end", "two"], ["sl"]),
             helper.make_node("QuantizeLinear", ["sl", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_const("two", [2]), _const("one", [1]), _const("s", 0.05, np.float32),
         _const("z", 3, np.int8)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    mod = tvm_qdq.from_onnx(model)
    assert str(mod["main"].ret_ty) == \
        'R.Tensor((1, 3, T.min(T.Div(n + 1, 2), n) - 1), dtype="float32")'
    vm = _faithful_vm(mod)
    for n in (10, 15):
        x = np.random.default_rng(n).uniform(-3, 3, (1, 3, n)).astype(np.float32)
        (got,) = _outputs(vm["main"](tvm.runtime.tensor(x)))
        (want,) = _ort_reference(model, {"x": x})
        np.testing.assert_array_equal(got, want)
