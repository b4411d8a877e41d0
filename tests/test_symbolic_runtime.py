"""Compiled models with symbolic dimensions: run-time checks, export/load, inspect, Hexagon.

The model is built by hand: ``x`` uint8 ``[batch, seq, 16]`` and ``mask`` int32
``[batch, seq]`` (the dims shared by name), ``y = x · W + mask[..., None]`` in int32 with an
int8 ``W``; ``main`` carries a user bound (``batch ≤ 4``), lower bounds 1 and an implicit bound
(``seq ≤ 100``). Every output is compared exactly with numpy's int64 result.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import relax, tirx

import tvm_qdq
from tvm_qdq.backend.base import BuildOptions
from tvm_qdq.backend.generic import BACKEND as GENERIC
from tvm_qdq.errors import (
    DimensionBoundError,
    DimensionMismatchError,
    InputError,
    StaticShapesRequiredError,
)
from tvm_qdq.inspect import format_inspection, format_signature, signature
from tvm_qdq.targets import resolve_target

W = np.random.RandomState(0).randint(-128, 128, (16, 8)).astype(np.int8)
SIZES = [(1, 8), (4, 77), (2, 33)]


def symbolic_module(batch_bound: int = 4, seq_implicit: int = 100) -> tvm.IRModule:
    """``y = x · W + mask[..., None]`` with ``x: [batch, seq, 16]``, ``mask: [batch, seq]``."""
    bb = relax.BlockBuilder()
    batch, seq = tirx.Var("batch", "int64"), tirx.Var("seq", "int64")
    x = relax.Var("x", relax.TensorType([batch, seq, 16], "uint8"))
    mask = relax.Var("mask", relax.TensorType([batch, seq], "int32"))
    attrs = {"tir_var_upper_bound": {"batch": batch_bound},
             "tir_var_lower_bound": {"batch": 1, "seq": 1},
             "tvm_qdq.implicit_bounds": {"seq": seq_implicit}, "num_input": 2}
    with bb.function("main", [x, mask], attrs=attrs):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(relax.op.astype(x, "int32"),
                                        relax.const(W.astype(np.int32)), out_dtype="int32"))
            out = bb.emit_output(relax.op.add(y, relax.op.expand_dims(mask, -1)))
        bb.emit_func_output(out)
    return bb.get().with_attrs({"tvm_qdq.stage": "integer", "tvm_qdq.input_names": ["x", "mask"],
                                "tvm_qdq.input_types": ["uint8", "int32"]})


def feeds(batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 1000 + seq)
    return {"x": rng.integers(0, 256, (batch, seq, 16), dtype=np.uint8),
            "mask": rng.integers(-50, 50, (batch, seq), dtype=np.int32)}


def expected(f: dict[str, np.ndarray]) -> np.ndarray:
    return f["x"].astype(np.int64) @ W.astype(np.int64) + f["mask"][..., None]


@pytest.fixture(scope="module")
def x86_model():
    return tvm_qdq.compile(symbolic_module(), "x86")


@pytest.fixture(scope="module")
def generic_model():
    return GENERIC.build(symbolic_module(), resolve_target("x86"), BuildOptions())


@pytest.fixture(params=["x86", "generic"])
def model(request, x86_model, generic_model):
    return x86_model if request.param == "x86" else generic_model


def test_specs_keep_dim_names_and_bounds(x86_model) -> None:
    assert [s.shape for s in x86_model.inputs] == [["batch", "seq", 16], ["batch", "seq"]]
    assert x86_model.outputs[0].shape == ["batch", "seq", 8]
    assert x86_model.bounds.upper == {"batch": 4}
    assert x86_model.bounds.lower == {"batch": 1, "seq": 1}
    assert x86_model.bounds.implicit == {"seq": 100}
    assert x86_model.symbolic


def test_one_compile_runs_every_size_exactly(model) -> None:
    for batch, seq in SIZES + SIZES:  # again: the per-shape input buffers are reused
        f = feeds(batch, seq)
        (out,) = model.run(f)
        assert out.shape == (batch, seq, 8)
        np.testing.assert_array_equal(out, expected(f))


def test_reused_buffers_take_each_run_s_values(x86_model) -> None:
    first, second = feeds(2, 5), feeds(2, 5)
    second["x"] = 255 - first["x"]
    out1 = x86_model.run(first)[0]
    out2 = x86_model.run([second["x"], second["mask"]])[0]
    np.testing.assert_array_equal(out1, expected(first))
    np.testing.assert_array_equal(out2, expected(second))


def test_non_contiguous_inputs_run(x86_model) -> None:
    f = feeds(3, 6)
    wide = np.zeros((3, 12), np.int32)
    wide[:, ::2] = f["mask"]
    (out,) = x86_model.run({"x": np.asfortranarray(f["x"]), "mask": wide[:, ::2]})
    np.testing.assert_array_equal(out, expected(f))


def _raises(model, f: dict, error: type[Exception]) -> str:
    with pytest.raises(error) as info:
        model.run(f)
    assert isinstance(info.value, InputError)
    return str(info.value)


def test_user_bound_is_a_named_error(model) -> None:
    text = _raises(model, feeds(5, 8), DimensionBoundError)
    assert text.startswith("input 'x' axis 0 ('batch') = 5 exceeds bounds['batch'] = 4")
    assert "bounds={'batch': 5}" in text and "recompile" in text


def test_implicit_bound_is_a_named_error(model) -> None:
    text = _raises(model, feeds(1, 101), DimensionBoundError)
    assert "input 'x' axis 1 ('seq') = 101" in text and "implicit bound" in text
    assert "= 100" in text and "int32" in text and "bounds={'seq': 101}" in text


def test_lower_bound_is_a_named_error(model) -> None:
    with pytest.raises(DimensionBoundError, match=r"'seq'\) = 0 is below the lower bound 1") \
            as info:
        model.run(feeds(1, 0))
    assert (info.value.input_name, info.value.axis, info.value.dim, info.value.value,
            info.value.bound) == ("x", 1, "seq", 0, 1)


def test_one_dim_with_two_sizes_is_a_named_error(model) -> None:
    f = feeds(2, 8)
    f["mask"] = f["mask"][:, :7].copy()
    text = _raises(model, f, DimensionMismatchError)
    assert text.startswith("dimension 'seq' is 8 in input 'x' (axis 1) but 7 in input 'mask' "
                           "(axis 1)")


def test_static_dim_rank_and_type_keep_their_checks(model) -> None:
    f = feeds(1, 8)
    with pytest.raises(InputError, match=r"expected shape \['batch', 'seq', 16\], got "
                                         r"\[1, 8, 15\] \(a name marks a symbolic"):
        model.run({**f, "x": f["x"][..., :15]})
    with pytest.raises(InputError, match="expected shape"):
        model.run({**f, "x": f["x"][0]})
    with pytest.raises(InputError, match="expected element type uint8"):
        model.run({**f, "x": f["x"].astype(np.int8)})


def test_a_failed_check_does_not_make_the_shape_valid(x86_model) -> None:
    f = feeds(3, 120)
    for _ in range(2):
        _raises(x86_model, f, DimensionBoundError)


def test_export_load_round_trip_keeps_names_bounds_and_outputs(x86_model, tmp_path) -> None:
    out_dir = x86_model.export(tmp_path / "m")
    meta = json.loads((out_dir / "meta.json").read_text())
    assert meta["format"] == "tvm-qdq/2"
    assert meta["inputs"][0]["shape"] == ["batch", "seq", 16]
    assert meta["bounds"] == {"upper": {"batch": 4}, "lower": {"batch": 1, "seq": 1},
                              "implicit": {"seq": 100}}
    loaded = tvm_qdq.load(out_dir)
    assert loaded.inputs == x86_model.inputs and loaded.outputs == x86_model.outputs
    assert loaded.bounds == x86_model.bounds
    for batch, seq in SIZES:
        f = feeds(batch, seq)
        np.testing.assert_array_equal(loaded.run(f)[0], x86_model.run(f)[0])
    with pytest.raises(DimensionBoundError, match="bounds\\['batch'\\] = 4"):
        loaded.run(feeds(5, 8))


def test_static_export_keeps_format_1_and_old_null_dims_load_as_names(tmp_path) -> None:
    static = tvm_qdq.compile(_static_module(), "x86")
    out_dir = static.export(tmp_path / "s")
    meta = json.loads((out_dir / "meta.json").read_text())
    assert meta["format"] == "tvm-qdq/1" and "bounds" not in meta
    meta["inputs"][1]["shape"] = [2, None]  # how a format-1 export wrote a dynamic axis
    (out_dir / "meta.json").write_text(json.dumps(meta))
    loaded = tvm_qdq.load(out_dir)
    assert loaded.inputs[1].shape == [2, "mask_dim1"]
    assert loaded.bounds.upper == {} and loaded.bounds.implicit == {}


def _static_module() -> tvm.IRModule:
    """:func:`symbolic_module` with batch 2 and seq 5 fixed."""
    mod = symbolic_module()
    func = mod["main"].bind_symbolic_vars({"batch": 2, "seq": 5}).without_attr(
        "tir_var_upper_bound").without_attr("tir_var_lower_bound").without_attr(
        "tvm_qdq.implicit_bounds")
    return tvm.IRModule({"main": func}, attrs=mod.attrs)


def test_static_models_still_take_the_static_path() -> None:
    static = tvm_qdq.compile(_static_module(), "x86")
    assert not static.symbolic and static.inputs[0].shape == [2, 5, 16]
    f = feeds(2, 5)
    np.testing.assert_array_equal(static.run(f)[0], expected(f))
    with pytest.raises(InputError, match=r"expected shape \[2, 5, 16\], got \[2, 6, 16\]$"):
        static.run(feeds(2, 6))


def test_signature_text_shows_dim_names_and_bounds(x86_model) -> None:
    text = "\n".join(format_signature(signature(symbolic_module())))
    assert "x                        uint8    [batch, seq, 16]" in text
    assert "mask                     int32    [batch, seq]" in text
    assert "output_0                 int32    [batch, seq, 8]" in text
    assert "bounds: batch ≤ 4" in text
    assert "implicit bounds (assumed by the compile): seq ≤ 100" in text
    assert format_signature(x86_model.signature()) == text.splitlines()


def test_inspect_shows_the_declared_dim_names() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["ids"], ["y"])], "g",
        [helper.make_tensor_value_info("ids", TensorProto.FLOAT, ["batch", "sequence", 0])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 0])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.graph.input[0].type.tensor_type.shape.dim[2].Clear()  # an unnamed dynamic dim
    info = tvm_qdq.inspect(onnx.load_from_string(proto.SerializeToString()))
    (ids,) = info["signature"]["inputs"]
    assert {k: ids[k] for k in ("name", "type", "shape")} == \
        {"name": "ids", "type": "float32", "shape": ["batch", "sequence", "ids_dim2"]}
    assert "  ids                      float32  [batch, sequence, ids_dim2]" in \
        format_inspection(info).splitlines()


def test_hexagon_refuses_symbolic_dims_with_a_named_error() -> None:
    with pytest.raises(StaticShapesRequiredError) as info:
        tvm_qdq.compile(symbolic_module(), "hexagon")
    text = str(info.value)
    assert "Hexagon backend plans memory statically" in text
    assert "input 'x' has ['batch', 'seq']" in text and "input 'mask' has" in text
    assert "shapes=" in text


def test_cli_inspect_prints_the_declared_dim_names(tmp_path, capsys) -> None:
    from tvm_qdq.cli import main as cli_main

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 8])])
    path = tmp_path / "relu.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    cli_main(["inspect", str(path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:3] == ["inputs:", "  x                        float32  [batch, sequence, 8]"]


def test_cli_inspect_of_an_export_prints_names_and_bounds(x86_model, tmp_path, capsys) -> None:
    from tvm_qdq.cli import main as cli_main

    out_dir = x86_model.export(tmp_path / "m")
    assert cli_main(["inspect", str(out_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "format: tvm-qdq/2"
    assert lines[2:] == format_signature(x86_model.signature())
    assert cli_main(["inspect", str(out_dir), "--json"]) == 0
    sig = json.loads(capsys.readouterr().out)
    assert sig["inputs"][0]["shape"] == ["batch", "seq", 16]
    assert (sig["bounds"], sig["implicit_bounds"]) == ({"batch": 4}, {"seq": 100})


def test_cli_compile_prints_the_symbolic_signature(x86_model, tmp_path, capsys,
                                                   monkeypatch) -> None:
    import sys

    from tvm_qdq.cli import main as cli_main

    monkeypatch.setattr(sys.modules["tvm_qdq.compile"], "compile", lambda *a, **k: x86_model)
    assert cli_main(["compile", "model.onnx", "-o", str(tmp_path / "m")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == format_signature(x86_model.signature())
    assert tvm_qdq.load(tmp_path / "m").inputs == x86_model.inputs
