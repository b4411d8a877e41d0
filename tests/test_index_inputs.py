"""Inputs used as gather indices (token ids) are range-checked before the compiled model runs.

The compiled gather does not bound its indices, so an id past the table would read outside
it (a crash or garbage). ONNX Runtime rejects such ids; PyTorch raises IndexError. tvm-qdq
raises :class:`InputError` naming the input, the value, its position and the valid range.
ONNX ``Gather`` accepts ``[-n, n)`` (negative ids count from the end, as ORT does); PyTorch's
embedding accepts ``[0, n)``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tvm_qdq
from tvm_qdq.errors import InputError
from tvm_qdq.testing.oracle import run_ort

VOCAB, DIM = 10, 4


def _embedding_model() -> onnx.ModelProto:
    """ids [2, 3] int64 → Gather(table [10, 4]) → QDQ (uint8, scale 0.05, zero point 128)."""
    rng = np.random.default_rng(0)
    table = rng.uniform(-2, 2, (VOCAB, DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
        helper.make_node("QuantizeLinear", ["rows", "s", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, DIM])],
        [numpy_helper.from_array(table, "table"),
         numpy_helper.from_array(np.array(0.05, np.float32), "s"),
         numpy_helper.from_array(np.array(128, np.uint8), "zp")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def onnx_case():
    model = _embedding_model()
    return model, tvm_qdq.compile(model, "x86")


def test_onnx_index_range_recorded(onnx_case):
    _, compiled = onnx_case
    assert compiled.inputs[0].index_range == [-VOCAB, VOCAB - 1]


def test_onnx_valid_ids_match_ort_including_negative(onnx_case):
    model, compiled = onnx_case
    ids = np.array([[0, 9, -1], [-10, 3, 5]], np.int64)
    ours = compiled.run({"ids": ids})[0]
    ref = run_ort(model, {"ids": ids})[0]
    assert np.abs(ours - ref).max() / 0.05 <= 0.5  # 0 LSB (output scale 0.05)


@pytest.mark.parametrize("bad", [VOCAB, -VOCAB - 1, 10**9])
def test_onnx_out_of_range_id_is_an_input_error(onnx_case, bad):
    model, compiled = onnx_case
    ids = np.array([[0, 1, 2], [3, bad, 5]], np.int64)
    with pytest.raises(InputError, match=rf"input 'ids': value {bad} at index \(1, 1\)"):
        compiled.run({"ids": ids})
    with pytest.raises(Exception):  # noqa: B017 - ORT rejects it too (its own error type)
        run_ort(model, {"ids": ids})


def test_onnx_index_range_survives_export(onnx_case, tmp_path):
    _, compiled = onnx_case
    loaded = tvm_qdq.load(compiled.export(tmp_path / "m"))
    assert loaded.inputs[0].index_range == [-VOCAB, VOCAB - 1]
    with pytest.raises(InputError, match="outside"):
        loaded.run({"ids": np.full((2, 3), VOCAB, np.int64)})


def test_torch_embedding_ids_are_checked():
    torch = pytest.importorskip("torch")
    from tvm_qdq.testing import torch_models as tm

    cfg = tm.BertConfig()
    ids, mask = tm.token_batch(2, 8, cfg.vocab_size, seed=1)
    encoder = tm.SentenceEncoder(tm.random_bert(cfg, seed=0)).eval()
    qmodel = tm.quantize_dynamic(encoder)
    with torch.no_grad():
        traced = torch.jit.trace(qmodel, (ids, mask))
    compiled = tvm_qdq.compile(
        tvm_qdq.from_torch(traced, (ids, mask), input_names=["input_ids", "attention_mask"]),
        "x86")
    spec = compiled.inputs[0]
    assert spec.index_range == [0, cfg.vocab_size - 1]
    bad = ids.numpy().copy()
    bad[1, 2] = cfg.vocab_size
    with pytest.raises(InputError, match=r"input 'input_ids': value 128 at index \(1, 2\)"):
        compiled.run({"input_ids": bad, "attention_mask": mask.numpy()})
    bad[1, 2] = -1  # PyTorch's embedding has no negative ids
    with pytest.raises(InputError, match="outside \\[0, 127\\]"):
        compiled.run({"input_ids": bad, "attention_mask": mask.numpy()})
    with torch.no_grad():
        expected = qmodel(ids, mask).numpy()
    ours = compiled.run({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    assert np.abs(ours - expected).max() <= 1e-3 * np.abs(expected).max()
