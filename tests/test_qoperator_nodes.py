"""ONNX backend node cases for the QOperator / integer ops through tvm-qdq.

QLinearConv, QLinearMatMul (2D/3D, int8/uint8, float16/float32 scales), ConvInteger (with
and without padding), MatMulInteger and DynamicQuantizeLinear (plain, min/max adjusted,
expanded): integer outputs must equal the expected outputs exactly; float outputs (the
dynamic scale) within float32 rounding. These cases feed weights and scales as graph inputs,
so integer-ness is asserted where it is possible at run time (the integer-result ops);
models with constant weights (tests/test_models_qoperator.py) assert it everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest

import tvm_qdq
from tvm_qdq.testing.backend_cases import node_cases
from tvm_qdq.testing.ir import float_compute_calls

OPS = ["QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"]
CASES = node_cases(OPS)


def test_all_expected_cases_are_generated() -> None:
    names = {c.name for c in CASES}
    assert "test_qlinearconv" in names
    assert sum(n.startswith("test_qlinearmatmul") for n in names) == 8
    assert {"test_convinteger_with_padding", "test_convinteger_without_padding",
            "test_matmulinteger"} <= names
    assert sum(n.startswith("test_dynamicquantizelinear") for n in names) == 6


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_node_case(case) -> None:
    mod = tvm_qdq.to_integer(tvm_qdq.from_onnx(case.model))
    if case.op_type in ("ConvInteger", "MatMulInteger"):
        assert float_compute_calls(mod) == [], "conv/matmul run on integer operands"
    actual = tvm_qdq.compile(mod).run(case.feeds())
    for got, want in zip(actual, case.outputs, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype, (got.dtype, want.dtype)
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
        else:
            np.testing.assert_array_equal(got, want)
