"""Public API and CLI: compile/run/export/load, targets, inspect, tvm-qdq commands."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tvm

import tvm_qdq
from tvm_qdq.cli import main as cli_main
from tvm_qdq.testing.models import default_model, quantized_model, random_feeds
from tvm_qdq.testing.oracle import run_ort


@pytest.fixture(scope="module")
def model():
    return default_model()


@pytest.fixture(scope="module")
def compiled(model):
    return tvm_qdq.compile(model, target="x86")


def test_faithful_module_is_float_qdq_and_integer_module_is_not(model) -> None:
    faithful = tvm_qdq.from_onnx(model)
    text = faithful.script(show_meta=False)
    assert "R.quantize" in text and "R.dequantize" in text
    integer = tvm_qdq.to_integer(faithful)
    text = integer.script(show_meta=False)
    assert 'R.nn.conv2d(' in text and 'out_dtype="int32"' in text
    assert text.count("R.quantize(") == 1  # only the graph input is quantized in float


def test_run_accepts_dict_or_list_and_keeps_output_order(model, compiled) -> None:
    feeds = random_feeds(model)
    by_name = compiled.run(feeds)
    by_list = compiled.run([feeds[n] for n in compiled.input_names])
    np.testing.assert_array_equal(by_name[0], by_list[0])
    assert compiled.output_names == [o.name for o in model.graph.output]
    assert by_name[0].shape == run_ort(model, feeds)[0].shape


def test_export_and_load_round_trip(model, compiled, tmp_path) -> None:
    out = compiled.export(tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "module.so"]
    loaded = tvm_qdq.load(out)
    feeds = random_feeds(model)
    np.testing.assert_array_equal(loaded.run(feeds)[0], compiled.run(feeds)[0])
    assert loaded.report is not None and loaded.report.integer


def test_target_dict_and_bad_preset(model) -> None:
    cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    compiled = tvm_qdq.compile(model, target={"kind": "llvm", "mcpu": cpu})
    assert cpu in compiled.target
    with pytest.raises(ValueError, match="unknown target preset"):
        tvm_qdq.compile(model, target="no-such-target")


def test_inspect_reports_formats_types_and_integer_ops(model) -> None:
    info = tvm_qdq.inspect(model)
    assert info["formats"] == ["QDQ"]
    assert info["error"] is None and info["unsupported"] == []
    types = {t["type"] for t in info["quantized_tensors"].values()}
    assert {"uint8", "int8", "int32"} <= types
    convs = [r for r in info["integer"] if r["op"] == "relax.nn.conv2d"]
    assert len(convs) == 7 and all(r["outcome"] == "integer" for r in convs)
    assert info["float_ops"] == []


def test_cli_inspect_compile_run(model, tmp_path, capsys) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    assert cli_main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "formats: QDQ" in text and "relax.nn.conv2d" in text
    assert cli_main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["formats"] == ["QDQ"]

    assert cli_main(["compile", str(path), "-o", str(tmp_path / "out")]) == 0
    feeds = random_feeds(model)
    np.savez(tmp_path / "x.npz", **feeds)
    assert cli_main(["run", str(tmp_path / "out"), "--inputs", str(tmp_path / "x.npz"),
                     "-o", str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz") as data:
        got = data[model.graph.output[0].name]
    np.testing.assert_array_equal(got, tvm_qdq.compile(model).run(feeds)[0])


def test_cli_reports_bad_model_without_traceback(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model at all")
    proc = subprocess.run([sys.executable, "-m", "tvm_qdq.cli", "compile", str(bad), "-o",
                           str(tmp_path / "o")], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "tvm-qdq: error:" in proc.stderr and "Traceback" not in proc.stderr


def test_run_outputs_are_independent_arrays():
    """Each run returns arrays of its own: a later run does not overwrite an earlier result,
    and writing into a result changes nothing else."""
    model = quantized_model("mlp", "u8s8_perchannel")
    compiled = tvm_qdq.compile(model, "x86")
    feeds = random_feeds(model)
    first = compiled.run(feeds)[0]
    kept = first.copy()
    other = {k: np.ascontiguousarray(np.flip(v)) for k, v in feeds.items()}
    second = compiled.run(other)[0]
    assert np.array_equal(first, kept)
    assert not np.shares_memory(first, second)
    first[...] = 0
    assert np.array_equal(compiled.run(feeds)[0], kept)
