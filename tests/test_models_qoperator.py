"""Models from ORT's quantize_static (QOperator format) and quantize_dynamic, against ORT.

QOperator: uint8 activations with int8 per-tensor, int8 per-channel and uint8 reduce_range
weights; dynamic: int8 per-tensor, int8 per-channel and uint8 weights. CNN, MLP and
transformer encoder each. Quantized outputs meet DESIGN.md §2 in LSB; float outputs (the
QOperator transformer ends in a float LayerNorm, dynamic models are float in and out) are
held to a relative max error of 1e-5 of the output's range (measured ≤ 4e-7). Every conv
and matmul that ORT quantized runs on integer operands in tvm-qdq.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import tvm_qdq
from tvm_qdq.testing.ir import compute_calls, float_compute_calls
from tvm_qdq.testing.models import (
    DYNAMIC_CONFIGS,
    QOPERATOR_CONFIGS,
    quantized_model,
    random_feeds,
)
from tvm_qdq.testing.oracle import assert_model_contract, output_qparams, run_ort

MODELS = ["resnet_cnn", "mlp", "transformer_encoder"]
CLASSIFIERS = {"resnet_cnn", "mlp"}
REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger"}
FLOAT_RELATIVE = 1e-5


def _check(model, name: str, label: str) -> None:
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    quantized = sum(n.op_type in INTEGER_OPS for n in model.graph.node)
    float_matmuls = sum(n.op_type in ("MatMul", "Conv", "Gemm") for n in model.graph.node)
    integer_calls = [c for c in compute_calls(mod) if c not in float_compute_calls(mod)]
    assert len(integer_calls) == quantized, (len(integer_calls), quantized)
    assert len(float_compute_calls(mod)) == float_matmuls  # only what ORT left float
    compiled = tvm_qdq.compile(mod)
    params = output_qparams(model)[model.graph.output[0].name]
    for seed in (1, 2):
        feeds = random_feeds(model, seed=seed)
        actual = compiled.run(feeds)[0]
        for level, oracle in (("ref", REFERENCE), ("opt", None)):
            expected = run_ort(model, feeds, optimization_level=oracle)[0]
            if params is not None:
                assert_model_contract(actual, expected, *params, classify=name in CLASSIFIERS,
                                      name=f"{label}/{seed}/{level}")
            else:
                err = np.abs(actual - expected).max() / np.abs(expected).max()
                assert err <= FLOAT_RELATIVE, f"{label}/{seed}/{level}: relative error {err:.3g}"


@pytest.mark.parametrize("config", sorted(QOPERATOR_CONFIGS))
@pytest.mark.parametrize("name", MODELS)
def test_qoperator_model(name: str, config: str) -> None:
    _check(quantized_model(name, config), name, f"{name}/{config}")


@pytest.mark.parametrize("config", sorted(DYNAMIC_CONFIGS))
@pytest.mark.parametrize("name", MODELS)
def test_dynamic_model(name: str, config: str) -> None:
    model = quantized_model(name, config)
    assert any(n.op_type == "DynamicQuantizeLinear" for n in model.graph.node)
    _check(model, name, f"{name}/{config}")
