"""com.microsoft.DynamicQuantizeLSTM against ONNX Runtime's CPU kernel, bit for bit.

Each case is one DynamicQuantizeLSTM node (``tvm_qdq.testing.contrib_quant_graphs``), run by
ORT with graph optimizations off and by tvm-qdq compiled for x86. The converter replays ORT's
arithmetic (dynamic uint8 quantization of the whole input and of ``h`` each step, integer
GEMMs, MLAS's logistic/tanh polynomials with their FMAs, the separately rounded products),
so the outputs are compared for equality: measured 0 differing elements on every case below
(and on the 512-wide bidirectional LSTM of the real CRNN model, fed ORT's own input).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import tvm_qdq
from tvm_qdq.errors import TvmQdqError
from tvm_qdq.testing import real_corpus
from tvm_qdq.testing.contrib_quant_graphs import (
    LstmCase,
    dynamic_quantize_lstm,
    isolate_node,
    quantize_dynamic_lstm,
)
from tvm_qdq.testing.ir import compute_calls, float_compute_calls
from tvm_qdq.testing.oracle import run_ort
from tvm_qdq.testing.qop_graphs import QopGraph

CASES = {
    "forward-s8": LstmCase(5, 1, 8, 6, "forward", "int8", seed=0),
    "reverse-u8-per-column": LstmCase(4, 2, 7, 5, "reverse", "uint8", seed=1, per_channel=True),
    "bidirectional-peephole-state": LstmCase(6, 3, 9, 4, "bidirectional", "int8", seed=2,
                                             peephole=True, initial_state=True),
    "forward-input-forget-clip": LstmCase(3, 2, 6, 5, "forward", "int8", seed=3,
                                          per_channel=True, input_forget=True, clip=1.5),
    "bidirectional-u8-relu-no-bias": LstmCase(4, 1, 5, 3, "bidirectional", "uint8", seed=4,
                                              bias=False,
                                              activations=("sigmoid", "tanh", "relu") * 2),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    model, feeds = dynamic_quantize_lstm(CASES[request.param])
    expected = run_ort(model, feeds,
                       optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return CASES[request.param], model, feeds, expected


def test_matches_ort_bit_for_bit(case) -> None:
    _, model, feeds, expected = case
    actual = tvm_qdq.compile(model, "x86").run(feeds)
    for got, want in zip(actual, expected, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)  # measured: 0 differing elements


def test_gate_matmuls_are_integer(case) -> None:
    config, model, _, _ = case
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    assert float_compute_calls(integer) == []
    matmuls = [c for c in compute_calls(integer) if c[0] == "relax.matmul"]
    dirs = 2 if config.direction == "bidirectional" else 1
    # one input projection per direction, one recurrent GEMM per direction and step
    assert len(matmuls) == dirs * (1 + config.seq)
    assert all(c[1][0] == "uint8" and c[2] in ("int32", "int64") for c in matmuls)


@pytest.mark.parametrize("args", [(5, 2, 6, 8, "bidirectional", 0, "QInt8"),
                                  (4, 1, 5, 7, "reverse", 1, "QUInt8")])
def test_quantize_dynamic_lstm_matches_ort_bit_for_bit(args) -> None:
    """A float LSTM through ORT's own quantize_dynamic (measured: 0 differing elements)."""
    model, feeds = quantize_dynamic_lstm(*args)
    assert [n.op_type for n in model.graph.node] == ["DynamicQuantizeLSTM"]
    expected = run_ort(model, feeds,
                       optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    for got, want in zip(tvm_qdq.compile(model, "x86").run(feeds), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_partial_sequence_lengths_are_refused() -> None:
    model, _ = dynamic_quantize_lstm(LstmCase(3, 2, 4, 3, seed=5))
    node = model.graph.node[0]
    lens = np.array([3, 2], np.int32)
    model.graph.initializer.append(numpy_helper.from_array(lens, "lens"))
    node.input[4] = "lens"
    with pytest.raises(TvmQdqError, match="sequence_lens"):
        tvm_qdq.from_onnx(model)


def test_all_zero_state_quantizes_like_ort() -> None:
    """The zero initial state: ORT's ``GetQuantizationParameter`` gives scale 1, zero point 0
    when ``max == min`` (the shared ``dynamic_quantize`` used to divide by a zero scale)."""
    graph = QopGraph()
    x = np.zeros((2, 3), np.float32)
    graph.node("DynamicQuantizeLinear", [graph.input("x", x)], ["y", "s", "z"])
    model = graph.model(["y", "s", "z"])
    expected = run_ort(model, {"x": x},
                       optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    for got, want in zip(tvm_qdq.compile(model, "x86").run({"x": x}), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_real_crnn_lstm_bit_exact_on_its_own_input() -> None:
    """The CRNN's DynamicQuantizeLSTM (bidirectional, hidden 512, real int8 weights) alone, fed
    ORT's own values of its input: bit-exact (measured 0 of 22,528 elements differ)."""
    name = "crnn_dyn_convinteger_lstm"
    model = onnx.load_model(real_corpus.model_path(name))
    feeds = real_corpus.BY_NAME[name].feeds(0)
    alone, node_feeds = isolate_node(model, "DynamicQuantizeLSTM", feeds)
    expected = run_ort(alone, node_feeds,
                       optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    actual = tvm_qdq.compile(alone, "x86").run(node_feeds)
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(got, want)
