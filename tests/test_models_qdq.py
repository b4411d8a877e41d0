"""Whole models quantized by ORT's quantize_static (QDQ) against ORT, integer end to end.

Models: a ResNet-style CNN, an MLP and a 2-layer transformer encoder; configurations
(activation, weight): u8/s8 per-channel, s8/s8 symmetric, u16/u8, u16/s8. Contract
(DESIGN.md §2): max ≤ 2 LSB of the output scale, ≥ 99 % of elements within 1 LSB, same
top-1 for the classifiers; each test holds its case to at most 10x the difference measured
(``OUTPUT_BOUNDS``: bit-identical where 0 was measured). The classifiers are also compared
on every intermediate QuantizeLinear output (thousands of codes, where 10 logits hide a lot).

Two ORT oracles: the reference path (graph optimizations off: every Q/DQ node runs as
written, ORT's float semantics) for every model, and the optimized path (fused kernels) for
the 8-bit CNN and MLP. Elsewhere ORT's optimized path departs from its own reference path
(seen: 168 LSB of the u16 output on the MLP u16/s8, 5 LSB on the 8-bit transformer), so it is
no oracle there.

Documented exception (docs/ARCHITECTURE.md, "Numeric exceptions"): the transformer with 16-bit
activations. ORT's reference path sums float32 products, and at 16 bits that rounds the
wrong way at a few near-tie elements (first seen: 1 of 1024 elements of ``matmul_2``, exact
value 53742.4966, ORT 53743, tvm-qdq 53742); Erf/LayerNorm float islands downstream amplify
such 1-LSB flips to a few LSB at the output. The test below pins the first divergence to an
ORT rounding error, and bounds the output difference at 8 LSB of the u16 scale (1/32 of one
8-bit step) with ≥ 85 % of elements within 1 LSB.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import tvm_qdq
from tvm_qdq.testing.intermediates import intermediate_agreements
from tvm_qdq.testing.ir import compute_calls, float_compute_calls
from tvm_qdq.testing.models import QDQ_CONFIGS, quantized_model, random_feeds
from tvm_qdq.testing.oracle import assert_model_contract, output_qparams, run_ort

MODELS = ["resnet_cnn", "mlp", "transformer_encoder"]
CLASSIFIERS = {"resnet_cnn", "mlp"}
REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
EXACT = {"max_lsb": 0.0, "min_frac_within_1": 1.0, "slack": 0.0}
# Output bounds per (model, activation type), each at most 10x the difference measured
# 2026-12-07 (seeds 1 and 2, ORT reference path, and ORT optimized for the 8-bit classifiers):
OUTPUT_BOUNDS = {
    # measured: 0 LSB (bit-identical) for every 8-bit config of every model
    ("resnet_cnn", "QUInt8"): EXACT, ("resnet_cnn", "QInt8"): EXACT,
    ("mlp", "QUInt8"): EXACT, ("mlp", "QInt8"): EXACT,
    ("transformer_encoder", "QUInt8"): EXACT, ("transformer_encoder", "QInt8"): EXACT,
    # measured: max 1.0009 (u16u8) / 0.9997 (u16s8) LSB, 100 % within 1 LSB
    ("resnet_cnn", "QUInt16"): {"max_lsb": 2.0, "min_frac_within_1": 1.0},
    # measured: 0 LSB
    ("mlp", "QUInt16"): EXACT,
    # the documented exception (module docstring); measured: max 5.0 LSB (u16s8, seed 2), at
    # least 88.8 % within 1 LSB (u16s8, seed 1; u16u8: max 4.0 LSB, 91.3 %)
    ("transformer_encoder", "QUInt16"): {"max_lsb": 8.0, "min_frac_within_1": 0.85},
}
# Every intermediate QuantizeLinear output of the classifiers, against ORT's reference path
# (measured 2026-12-07, seeds 1 and 2): bit-identical for the 8-bit configs and for the MLP;
# the u16 CNN is not: max 5 LSB (u16u8) / 3 LSB (u16s8), at most 7.1 % / 6.5 % of a tensor
# beyond 1 LSB (relu_5, seed 2). As for the u16 transformer (module docstring) the first
# differences are ORT's float32 rounding: relu_0 (the first conv), 7 of 16384 codes, u16u8
# seed 1, all near-ties (exact fractions 0.498-0.501, computed in float64) where tvm-qdq is
# the correctly rounded value and ORT is not; later layers amplify them.
INTERMEDIATE_BOUNDS = {
    ("resnet_cnn", "QUInt16"): {"max_lsb": 6.0, "min_frac_within_1": 0.92},
}


@pytest.mark.parametrize("config", sorted(QDQ_CONFIGS))
@pytest.mark.parametrize("name", MODELS)
def test_model_meets_contract_and_runs_integer(name: str, config: str) -> None:
    model = quantized_model(name, config)
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))

    calls = compute_calls(integer)
    assert calls, "the model has conv/matmul ops"
    assert float_compute_calls(integer) == [], "every conv/matmul runs on integer operands"
    assert all(out in ("int32", "int64") for _, _, out in calls)
    report = tvm_qdq.pass_report(integer)
    assert not [f for f in report.float_ops if f["compute"]]

    compiled = tvm_qdq.compile(integer)
    out_name = model.graph.output[0].name
    scale, zero_point = output_qparams(model)[out_name]
    for seed in (1, 2):
        feeds = random_feeds(model, seed=seed)
        actual = compiled.run(feeds)[0]
        reference = run_ort(model, feeds, optimization_level=REFERENCE)[0]
        bounds = OUTPUT_BOUNDS[(name, QDQ_CONFIGS[config].activation_type)]
        assert_model_contract(actual, reference, scale, zero_point,
                              classify=name in CLASSIFIERS, name=f"{name}/{config}/{seed}/ref",
                              **bounds)
        if name in CLASSIFIERS and not config.startswith("u16"):
            fused = run_ort(model, feeds)[0]
            assert_model_contract(actual, fused, scale, zero_point,
                                  classify=name in CLASSIFIERS,
                                  name=f"{name}/{config}/{seed}/fused", **bounds)


@pytest.mark.parametrize("config", sorted(QDQ_CONFIGS))
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_intermediates_match_ort(name: str, config: str) -> None:
    """Every QuantizeLinear output inside the classifier, in LSB of its own type, against
    ORT's reference path (``INTERMEDIATE_BOUNDS``; bit-identical unless listed there)."""
    bounds = INTERMEDIATE_BOUNDS.get((name, QDQ_CONFIGS[config].activation_type), EXACT)
    agreements = intermediate_agreements(quantized_model(name, config))
    assert len(agreements) >= 2 * 6, "every quantized tensor of the classifier is compared"
    for seed, tensor, ag in agreements:
        where = f"{name}/{config}/{seed}/{tensor}: {ag}"
        assert ag.max_lsb <= bounds["max_lsb"], where
        assert ag.frac_within_1 >= bounds["min_frac_within_1"], where


def test_transformer_keeps_only_non_compute_float_islands() -> None:
    """Softmax / LayerNorm / Erf have no integer rule: they stay float and are reported."""
    model = quantized_model("transformer_encoder", "u8s8_perchannel")
    report = tvm_qdq.pass_report(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)))
    islands = {f["op"] for f in report.float_ops}
    assert "relax.nn.softmax" in islands
    assert not any(f["compute"] for f in report.float_ops)
    assert sum(r.op == "relax.matmul" and r.outcome == "integer" for r in report.integer) >= 12


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {v.name: v for v in inferred.graph.value_info}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.output.extend(infos[n] for n in names)
    return out


def test_u16_transformer_first_divergence_is_an_ort_float_rounding() -> None:
    """Where tvm-qdq first differs from ORT's reference path, tvm-qdq is the exact rounding."""
    model = quantized_model("transformer_encoder", "u16s8")
    feeds = random_feeds(model, seed=1)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    quantizes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    probe = _with_outputs(model, [q.output[0] for q in quantizes])
    n_out = len(model.graph.output)
    ours = tvm_qdq.compile(probe).run(feeds)[n_out:]
    ref = run_ort(probe, feeds, optimization_level=REFERENCE)[n_out:]
    first = next(i for i, (a, b) in enumerate(zip(ours, ref, strict=True))
                 if not np.array_equal(a, b))
    q_node = quantizes[first]
    op = producer[q_node.input[0]]
    assert op.op_type == "MatMul", op.op_type
    values = dict(zip((q.output[0] for q in quantizes), ref, strict=True))

    def real(dq_name: str) -> np.ndarray:
        dq = producer[dq_name]
        q = values[dq.input[0]] if dq.input[0] in values else inits[dq.input[0]]
        zp = inits[dq.input[2]].astype(np.float64) if len(dq.input) > 2 else 0.0
        scale = inits[dq.input[1]].astype(np.float64)
        return (q.astype(np.float64) - zp) * scale

    exact = real(op.input[0]) @ real(op.input[1])
    exact_q = exact / inits[q_node.input[1]].astype(np.float64) + inits[q_node.input[2]]
    diff = ours[first].astype(np.int64) != ref[first].astype(np.int64)
    assert diff.sum() <= 4
    correctly_rounded = np.rint(exact_q[diff])
    np.testing.assert_array_equal(ours[first][diff], correctly_rounded)
    assert not np.array_equal(ref[first][diff], correctly_rounded)
