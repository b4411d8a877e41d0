"""DynamicQuantizeLSTM with a symbolic sequence length: one compile, any ``T``, bit for bit.

A symbolic ``T`` runs the step loop of :mod:`tvm_qdq.frontend.onnx.lstm_loop` (one PrimFunc)
instead of the unrolled steps; each step's arithmetic is the unrolled one's, so the outputs
equal ORT's (graph optimizations off) and the static compile's at every ``T``.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import tvm_qdq
from tvm_qdq.testing import real_corpus, yardstick
from tvm_qdq.testing.contrib_quant_graphs import LstmCase, dynamic_quantize_lstm, isolate_node
from tvm_qdq.testing.oracle import run_ort

LENGTHS = (1, 5, 17)
CASES = {
    "forward-s8": LstmCase(max(LENGTHS), 1, 8, 6, "forward", "int8", seed=0),
    "bidirectional-per-column-state": LstmCase(max(LENGTHS), 2, 7, 5, "bidirectional",
                                               "int8", seed=2, per_channel=True,
                                               initial_state=True),
    "reverse-input-forget-clip-no-bias": LstmCase(max(LENGTHS), 1, 6, 5, "reverse", "int8",
                                                  seed=3, input_forget=True, clip=1.5,
                                                  bias=False),
}


def _symbolic_length(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with ``X``'s (and ``Y``'s) first dimension named ``seq``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    x_name = model.graph.node[0].input[0]
    for value in list(model.graph.input) + list(model.graph.output[:1]):
        if value.name in (x_name, model.graph.output[0].name):
            dim = value.type.tensor_type.shape.dim[0]
            dim.ClearField("dim_value")
            dim.dim_param = "seq"
    return model


def _with_length(model: onnx.ModelProto, feeds: dict, x_name: str, steps: int):
    """The static graph and its feeds for ``T = steps`` (``X`` cut to its first rows)."""
    static = onnx.ModelProto.FromString(model.SerializeToString())
    for value in list(static.graph.input) + list(static.graph.output[:1]):
        if value.name in (x_name, static.graph.output[0].name):
            value.type.tensor_type.shape.dim[0].dim_value = steps
    return static, {**feeds, x_name: feeds[x_name][:steps]}


@pytest.mark.parametrize("name", list(CASES))
def test_one_compile_matches_ort_and_static_at_each_length(name: str) -> None:
    model, feeds = dynamic_quantize_lstm(CASES[name])
    x_name = model.graph.node[0].input[0]
    compiled = tvm_qdq.compile(_symbolic_length(model), "x86")
    for steps in LENGTHS:
        static, step_feeds = _with_length(model, feeds, x_name, steps)
        expected = run_ort(static, step_feeds,
                           optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        unrolled = tvm_qdq.compile(static, "x86").run(step_feeds)
        actual = compiled.run(step_feeds)
        for got, want, ref in zip(actual, expected, unrolled, strict=True):
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, ref)


@pytest.mark.slow
def test_real_crnn_three_widths_from_one_compile() -> None:
    """The CRNN (``input1 [1, 1, 64, 'image_width']``; the LSTM's ``T`` follows the width)
    compiled once, run at widths 96, 160 and 256 against ORT's reference path, with the x86
    kernels (no fallback to TVM's default schedules)."""
    name = "crnn_dyn_convinteger_lstm"
    proto = onnx.load_model(real_corpus.model_path(name))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = tvm_qdq.compile(proto, "x86", bounds={"image_width": 256})
    for width in (96, 160, 256):
        feeds = real_corpus._image_feeds("input1", (1, 1, 64, width), -1, 1)(0)
        expected = yardstick.reference(proto, feeds)
        movement = yardstick.input_sensitivity(proto, feeds, expected)
        for i, (got, want) in enumerate(zip(compiled.run(feeds), expected, strict=True)):
            assert got.shape == want.shape and got.dtype == want.dtype
            verdict = yardstick.judge(got, want, None if movement is None else movement[i])
            assert verdict.ok, f"width {width} output {i}: {verdict}"
    fallbacks = [str(w.message) for w in caught if "kernel lowering failed" in str(w.message)]
    assert not fallbacks, fallbacks[0]


@pytest.mark.slow
def test_real_crnn_lstm_symbolic_length_bit_exact() -> None:
    """The CRNN's DynamicQuantizeLSTM alone (bidirectional, hidden 512, real int8 weights),
    its sequence length symbolic: one compile, ORT's own input cut to 12, 17 and 20 steps,
    equal to ORT (measured 0 differing elements at each length)."""
    name = "crnn_dyn_convinteger_lstm"
    model = onnx.load_model(real_corpus.model_path(name))
    alone, feeds = isolate_node(model, "DynamicQuantizeLSTM", real_corpus.BY_NAME[name].feeds(0))
    x_name = alone.graph.node[0].input[0]
    symbolic = onnx.ModelProto.FromString(alone.SerializeToString())
    for value in symbolic.graph.input:
        if value.name == x_name:
            dim = value.type.tensor_type.shape.dim[0]
            dim.ClearField("dim_value")
            dim.dim_param = "seq"
    for value in symbolic.graph.output:
        value.type.tensor_type.ClearField("shape")
    compiled = tvm_qdq.compile(symbolic, "x86")
    for steps in (12, 17, 20):
        step_feeds = {**feeds, x_name: feeds[x_name][:steps]}
        expected = run_ort(symbolic, step_feeds,
                           optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        for got, want in zip(compiled.run(step_feeds), expected, strict=True):
            np.testing.assert_array_equal(got, want)
