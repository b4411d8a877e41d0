"""Average pools requantize their integer sums exactly, ties to even (``rules/pool.py``).

``round_half_even(sum · s_in / (count · s_out))`` with the float64 multiplier
``s_in / (count · s_out)`` misses exact ties: with equal scales and ``count = 98``,
``-11907 / 98 = -121.5`` became ``-121`` (``fl(1/98)`` is above ``1/98``). The rule now divides
in int64 by the exact rational multiplier. Power-of-two scales keep ORT's float32 reference
path exact too (every partial sum, the division by ``count`` of a representable quotient and
the division by the scale are exact), so ORT is the oracle for each tie.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import tvm_qdq
from relay_passes.rules.pool import exact_ratio
from tvm_qdq.testing.oracle import run_ort

REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def _round_half_even(value: Fraction) -> int:
    floor = value.numerator // value.denominator
    rest = value - floor
    return floor + (rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1))


def _tie_sums(count: int, channels: int, lo: int, hi: int) -> list[int]:
    """Sums ``S`` with ``S / count`` half-way between two codes in ``[lo, hi]`` that the
    float64 multiplier rounds away from even (the first ``channels`` of them)."""
    multiplier = np.float64(1.0) / np.float64(count)
    found = []
    for twice in range(2 * lo + 1, 2 * hi, 2):  # S / count = twice / 2
        s = twice * count // 2
        if Fraction(s, count) * 2 != twice:
            continue
        if np.rint(np.float64(s) * multiplier) != _round_half_even(Fraction(s, count)):
            found.append(s)
    assert len(found) >= channels, found
    return found[:channels]


def _codes_with_sum(total: int, count: int) -> np.ndarray:
    """``count`` int8 codes (zero point 0) summing to ``total``, as even as possible."""
    base, extra = divmod(total, count)
    return np.array([base + 1] * extra + [base] * (count - extra), np.int64)


@pytest.mark.parametrize("h, w", [(7, 14), (14, 14)])
def test_global_average_pool_exact_ties_are_even(h: int, w: int) -> None:
    count = h * w
    sums = _tie_sums(count, 4, -127, 127)
    x = np.stack([_codes_with_sum(s, count).reshape(h, w) for s in sums])[None].astype(np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
             helper.make_node("GlobalAveragePool", ["xf"], ["yf"]),
             helper.make_node("QuantizeLinear", ["yf", "s", "z"], ["y"])]
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.25]),
             helper.make_tensor("z", TensorProto.INT8, [], [0])]
    graph = helper.make_graph(
        nodes, "gap_ties", [helper.make_tensor_value_info("x", TensorProto.INT8, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [1, len(sums), 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    exact = [_round_half_even(Fraction(s, count)) for s in sums]
    (want,) = run_ort(model, {"x": x}, optimization_level=REFERENCE)
    assert want.reshape(-1).tolist() == exact  # ORT's reference path rounds these ties to even
    compiled = tvm_qdq.compile(model, "x86")
    (got,) = compiled.run({"x": x})
    np.testing.assert_array_equal(got, want)


def test_exact_ratio_is_lowest_terms_and_refuses_overflow() -> None:
    a, b = exact_ratio(np.float32(0.1), np.float32(0.05), np.array([30, 49]), 30 * 255)
    for k, count in enumerate((30, 49)):
        assert Fraction(int(a[k]), int(b[k])) == \
            Fraction(float(np.float32(0.1))) / (count * Fraction(float(np.float32(0.05))))
    assert exact_ratio(np.float32(2.0**60), np.float32(2.0**-60), np.array(9), 9 * 255) is None
