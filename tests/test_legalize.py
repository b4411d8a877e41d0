"""Target legalization: int8 × int8 conv/matmul become uint8 × int8 on x86 (VNNI), exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tvm_qdq
from tvm_qdq.backend.legalize_signedness import legalize_signedness
from tvm_qdq.testing.ir import compute_calls
from tvm_qdq.testing.models import quantized_model, random_feeds
from tvm_qdq.testing.oracle import assert_model_contract, output_qparams, run_ort


@pytest.mark.parametrize("name", ["resnet_cnn", "mlp"])
def test_int8_activations_are_shifted_to_uint8_exactly(name: str) -> None:
    model = quantized_model(name, "s8s8_symmetric")
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    assert any(dt == ["int8", "int8"] for _, dt, _ in compute_calls(integer))
    legal = legalize_signedness(integer, "x86")
    assert all(dt == ["uint8", "int8"] for _, dt, _ in compute_calls(legal))
    assert any(dt == ["int8", "int8"] for _, dt, _ in compute_calls(integer)), "input kept"
    records = json.loads(legal.attrs["tvm_qdq.legalize"])
    assert len(records) == len(compute_calls(legal))
    feeds = random_feeds(model)
    before = tvm_qdq.compile(integer, integer=False).run(feeds)[0]
    after = tvm_qdq.compile(legal, integer=False).run(feeds)[0]
    np.testing.assert_array_equal(before, after)
    assert_model_contract(after, run_ort(model, feeds)[0], *output_qparams(model)["logits"],
                          classify=True)


def test_other_targets_are_left_alone() -> None:
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(quantized_model("mlp", "s8s8_symmetric")))
    assert legalize_signedness(integer, "arm") is integer
