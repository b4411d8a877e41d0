"""Input sizes on the command line (``--shape``) and ``inspect`` on models it cannot import.

A model whose input is declared without a shape is refused by ``from_onnx`` without sizes;
``inspect`` still reports its formats and unsupported ops, every CLI command that reads a model
accepts ``--shape NAME=DIMS``, and the error names the input and the option to pass.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tvm_qdq
from tvm_qdq.cli import main as cli_main
from tvm_qdq.cli import parse_shape
from tvm_qdq.testing.oracle import run_ort


def _symbolic_qdq_model(extra_op: bool = False) -> onnx.ModelProto:
    """x (no declared shape) float → Q/DQ (u8, 0.05, 128) → Relu [→ com.microsoft.NoSuchOp]
    → y."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dq"),
        helper.make_node("Relu", ["dq"], ["r"], name="relu"),
    ]
    opsets = [helper.make_opsetid("", 17)]
    if extra_op:
        nodes.append(helper.make_node("NoSuchOp", ["r"], ["y"], name="mystery",
                                      domain="com.microsoft"))
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    else:
        nodes.append(helper.make_node("Identity", ["r"], ["y"], name="out"))
    graph = helper.make_graph(
        nodes, "symbolic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
         numpy_helper.from_array(np.array(128, np.uint8), "zp")])
    return helper.make_model(graph, opset_imports=opsets)


@pytest.fixture()
def symbolic_path(tmp_path):
    path = tmp_path / "symbolic.onnx"
    onnx.save_model(_symbolic_qdq_model(), path)
    return path


def test_parse_shape_accepts_x_and_commas_and_refuses_nonsense() -> None:
    assert parse_shape("input=1x3x224x224") == ("input", [1, 3, 224, 224])
    assert parse_shape("a=b=2,5") == ("a=b", [2, 5])  # the last '=' separates the sizes
    for bad in ("input", "=1x2", "input=1xfoo", "input=0x3", "input="):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=DIMS"):
            parse_shape(bad)


def test_inspect_lists_unsupported_ops_without_input_sizes(tmp_path, capsys) -> None:
    path = tmp_path / "mystery.onnx"
    onnx.save_model(_symbolic_qdq_model(extra_op=True), path)
    info = tvm_qdq.inspect(str(path))
    assert info["unsupported"] == [["mystery", "NoSuchOp", "com.microsoft"]]
    assert "QDQ" in info["formats"] and "NoSuchOp" in info["error"]
    assert cli_main(["inspect", str(path)]) == 1
    out = capsys.readouterr().out
    assert "unsupported ops:" in out and "'mystery' com.microsoft.NoSuchOp" in out


def test_inspect_without_sizes_reports_formats_and_which_size_to_pass(symbolic_path) -> None:
    info = tvm_qdq.inspect(str(symbolic_path))
    assert info["formats"] == ["QDQ"] and info["unsupported"] == []
    assert "InputShapeError" in info["error"] and "'x'" in info["error"]
    assert "has no shape" in info["error"]
    with_sizes = tvm_qdq.inspect(str(symbolic_path), shapes={"x": [3, 4]})
    assert with_sizes["error"] is None


def test_cli_commands_take_shape(symbolic_path, tmp_path, capsys) -> None:
    assert cli_main(["inspect", str(symbolic_path)]) == 1
    assert "InputShapeError" in capsys.readouterr().out
    assert cli_main(["inspect", str(symbolic_path), "--shape", "x=3x4"]) == 0
    assert "error:" not in capsys.readouterr().out

    assert cli_main(["compile", str(symbolic_path), "-o", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "'x'" in err and "--shape NAME=DIMS" in err

    out_dir = tmp_path / "out"
    assert cli_main(["compile", str(symbolic_path), "-o", str(out_dir),
                     "--shape", "x=3x4"]) == 0
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    np.savez(tmp_path / "x.npz", x=x)
    expected = run_ort(_symbolic_qdq_model(), {"x": x})[0]
    for source, extra in ((str(out_dir), []), (str(symbolic_path), ["--shape", "x=3x4"])):
        result = tmp_path / "y.npz"
        assert cli_main(["run", source, "--inputs", str(tmp_path / "x.npz"),
                         "-o", str(result), *extra]) == 0
        with np.load(result) as got:
            np.testing.assert_array_equal(got["y"], expected)


def test_cli_rejects_malformed_shape(symbolic_path, capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["inspect", str(symbolic_path), "--shape", "x:3x4"])
    assert "NAME=DIMS" in capsys.readouterr().err
