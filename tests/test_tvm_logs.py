"""TVM's native log lines: benign ones go to the DEBUG log, everything else still shows."""

from __future__ import annotations

import logging
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import tvm_qdq
from tvm_qdq.tvm_logs import benign_reason, routed_tvm_logs


def _embedding_model() -> onnx.ModelProto:
    """ids [2, 3] int64 → Gather(table [10, 4]) → QDQ (u8): TVM warns about its fast gather."""
    table = np.arange(40, dtype=np.float32).reshape(10, 4) / 20
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
         helper.make_node("QuantizeLinear", ["rows", "s", "zp"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])],
        [numpy_helper.from_array(table, "table"),
         numpy_helper.from_array(np.array(0.05, np.float32), "s"),
         numpy_helper.from_array(np.array(0, np.uint8), "zp")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_compile_export_load_print_no_tvm_internals(tmp_path, capfd, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tvm_qdq.tvm")
    compiled = tvm_qdq.compile(_embedding_model(), "x86")
    compiled.export(tmp_path / "out")
    again = tvm_qdq.load(tmp_path / "out")
    ids = np.array([[0, 1, 2], [7, 8, 9]], np.int64)
    np.testing.assert_array_equal(again.run({"ids": ids})[0], compiled.run({"ids": ids})[0])
    captured = capfd.readouterr()
    assert "segfault" not in captured.err and "Scope" not in captured.err, captured.err
    routed = [r.getMessage() for r in caplog.records if r.name == "tvm_qdq.tvm"]
    assert any("Fast mode segfaults" in m for m in routed)
    assert any("Scope Saving" in m for m in routed) and any("Scope Loaded" in m for m in routed)


def test_pow_advice_is_hidden_and_negative_bases_are_exact(capfd) -> None:
    """TVM warns that pow(x, y ≥ 3) may misbehave for x < 0; with ONNX Pow's integer-valued
    exponents the result is exact (T5's GELU computes x³ this way), so the line is hidden."""
    graph = helper.make_graph(
        [helper.make_node("Pow", ["x", "e"], ["y"])], "pow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
        [numpy_helper.from_array(np.array(3.0, np.float32), "e")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([-3, -2, -1.5, -0.5, 0, 0.5, 1.5, 2], np.float32)
    np.testing.assert_array_equal(tvm_qdq.compile(model, "x86").run({"x": x})[0], x ** 3)
    assert "pow" not in capfd.readouterr().err


def test_other_native_stderr_lines_still_reach_the_user(capfd) -> None:
    with routed_tvm_logs(), routed_tvm_logs():  # nested blocks hand lines outward
        os.write(2, b"[10:00:00] x.cc:1: Warning: something real\n")
        os.write(2, b"[10:00:00] y.cc:2: Warning: Scope Saving:\n")
    err = capfd.readouterr().err
    assert "something real" in err and "Scope Saving" not in err


def test_lines_written_before_an_exception_are_not_lost(capfd) -> None:
    try:
        with routed_tvm_logs():
            os.write(2, b"native error detail\n")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert "native error detail" in capfd.readouterr().err


def test_benign_reason_names_why() -> None:
    assert "range-checked" in benign_reason(
        "transform.h:1261: Warning: Fast mode segfaults when there are out-of-bounds indices")
    assert benign_reason("Warning: kernel lowering failed") is None
