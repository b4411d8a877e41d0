"""com.microsoft.QAttention and QEmbedLayerNormalization against ONNX Runtime's CPU kernels.

Small single-node graphs (``tvm_qdq.testing.contrib_quant_graphs``) and one BERT block that
ORT's own ``quantize_dynamic`` turned into ``QEmbedLayerNormalization → DynamicQuantizeLinear
→ QAttention``, run by ORT with graph optimizations off and by tvm-qdq compiled for x86.

QAttention's QKV projection is an integer GEMM in both; the attention itself (Q·Kᵀ, softmax,
·V) and QEmbedLayerNormalization's layer norm are float in ORT's kernels and stay float here,
so float outputs are compared with an absolute tolerance of 10× the measured error: measured
max |diff| 9.5e-7 (the second BERT block, outputs up to 4.4: 2 float32 ulps; the single nodes
6e-8 to 2.4e-7) → ``ATOL = 1e-5``; ``mask_index`` (int32) is exact.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import tvm_qdq
from tvm_qdq.testing import contrib_quant_graphs as graphs
from tvm_qdq.testing.ir import compute_calls
from tvm_qdq.testing.oracle import run_ort

ATOL = 1e-5  # 10x the measured max |diff| (9.5e-7), module docstring

CASES = {
    "qattention-s8": lambda: graphs.qattention(1, 5, 16, 16, 2, "int8", seed=0),
    "qattention-u8-per-column-1d-mask": lambda: graphs.qattention(
        2, 7, 12, 24, 3, "uint8", seed=1, mask="1d", per_column=True),
    "qattention-s8-2d-mask-unidirectional": lambda: graphs.qattention(
        2, 6, 8, 16, 4, "int8", seed=2, mask="2d", unidirectional=True),
    "qattention-u8-one-head-present": lambda: graphs.qattention(1, 4, 16, 8, 1, "uint8",
                                                                seed=3, present=True),
    "qembed-u8-segment-mask": lambda: graphs.qembed_layer_norm(2, 6, 16, 30, "uint8", seed=0),
    "qembed-s8-plain": lambda: graphs.qembed_layer_norm(1, 5, 32, 20, "int8", seed=1,
                                                        segment=False, mask=False),
    "bert-block-quantize-dynamic": lambda: graphs.quantize_dynamic_bert_block(2, 7, 32, 4, 50),
    "bert-block-quantize-dynamic-seed1": lambda: graphs.quantize_dynamic_bert_block(
        1, 9, 48, 3, 40, seed=1),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    model, feeds = CASES[request.param]()
    expected = run_ort(model, feeds,
                       optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return request.param, model, feeds, expected


def test_matches_ort(case) -> None:
    _, model, feeds, expected = case
    actual = tvm_qdq.compile(model, "x86").run(feeds)
    for got, want in zip(actual, expected, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        if np.issubdtype(want.dtype, np.integer):
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("qembed")])
def test_qkv_projection_is_integer(name: str) -> None:
    model, _ = CASES[name]()
    matmuls = [c for c in compute_calls(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)))
               if c[0] == "relax.matmul"]
    integer = [c for c in matmuls if c[1][0] in ("uint8", "int8")]
    float_ = [c for c in matmuls if c[1][0] == "float32"]
    # the QKV GEMM is integer; Q·Kᵀ and probs·V are float (as in ORT's kernel)
    assert len(integer) == 1 and integer[0][2] in ("int32", "int64")
    assert len(float_) == 2
