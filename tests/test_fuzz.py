"""Differential fuzzing against ONNX Runtime, saved regressions and overflow safety.

* ``test_fuzz_ci_budget``: 200 random QDQ graphs from fixed seeds (chains and DAGs of the
  supported ops, see :mod:`tvm_qdq.testing.fuzz`), several graphs per compiled model; every
  graph must meet the contract against ORT with optimizations off (single op ≤ 1 LSB;
  otherwise ≤ 2 LSB and ≥ 99 % within 1 LSB), differences explained as ORT float32
  near-ties aside.  Failing graphs are saved under ``.cache/fuzz/ci-failures/`` with how to
  replay them.  ``test_fuzz_hypothesis``: a few more, drawn by hypothesis (shrinkable).
* ``test_regression``: every spec saved under ``tests/regressions/`` replays and passes.
* ``test_overflow_*``: adversarial weights and inputs at the type limits drive conv and
  matmul accumulators to their bounds (int32 right below 2^31, int64 beyond); the results
  equal exact integer math.

A long campaign: ``scripts/fuzz --graphs 5000`` (docs/FUZZING.md).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from onnx import TensorProto, helper, numpy_helper

import tvm_qdq
from tvm_qdq.testing import fuzz
from tvm_qdq.testing.fuzz import execution, judgement
from tvm_qdq.testing.oracle import assert_single_op_contract, run_ort

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
CI_FAILURES = ROOT / ".cache" / "fuzz" / "ci-failures"

#: CI budget: batches of random graphs (≤ 3 ops each, several graphs per compiled model) from
#: fixed seeds until 200 graphs were tried; about 0.6 s of CPU per graph on this machine.
CI_SEED = 2026
CI_CONFIG = fuzz.FuzzConfig(max_ops=3, max_graphs=8, max_dim=8)
CI_MIN_GRAPHS = 200
#: Shrinkable hypothesis examples on top (per-choice draws; set TVM_QDQ_FUZZ_SHRINK=1 to let
#: hypothesis shrink a failure to a minimal graph, which can take minutes).
HYPOTHESIS_EXAMPLES = 4


def _check_and_save(specs: list[fuzz.GraphSpec]) -> str | None:
    """None if the batch passes, else the failure text (failing graphs saved for replay)."""
    result = fuzz.check(fuzz.build_batch(specs))
    if result.ok:
        return None
    failing = fuzz.isolate(specs) or [(s, result) for s in result.failing_specs]
    lines = [result.summary()]
    for spec, res in failing:
        folder = fuzz.save_failure([spec], res, CI_FAILURES)
        lines.append(f"saved: {folder} — replay: bash scripts/fuzz --replay {folder}/spec.json;"
                     f" keep it: copy spec.json to tests/regressions/<name>.json")
    return "\n".join(lines)


def test_fuzz_ci_budget() -> None:
    """≥ 200 random graphs (fixed seeds) match ORT within the contract."""
    start = time.time()
    graphs, batch, failures = 0, 0, []
    while graphs < CI_MIN_GRAPHS:
        specs = fuzz.random_specs(CI_SEED * 1_000_003 + batch, CI_CONFIG)
        graphs += len(specs)
        failure = _check_and_save(specs)
        if failure is not None:
            failures.append(f"batch {batch}:\n{failure}")
        batch += 1
    print(f"fuzz: {graphs} graphs in {batch} compiled models, {time.time() - start:.0f} s")
    assert not failures, "\n\n".join(failures)


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate]
          + ([Phase.shrink] if os.environ.get("TVM_QDQ_FUZZ_SHRINK") else []),
          suppress_health_check=list(HealthCheck))
@given(specs=fuzz.batch_specs(fuzz.FuzzConfig(max_ops=3, max_graphs=4, max_dim=8)))
def test_fuzz_hypothesis(specs: list[fuzz.GraphSpec]) -> None:
    """The same check driven by hypothesis's per-choice strategy (shrinks to a minimal graph)."""
    failure = _check_and_save(specs)
    assert failure is None, failure


@settings(max_examples=3, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(spec=fuzz.graph_specs(fuzz.FuzzConfig(max_ops=3), opset=21))
def test_generator_is_deterministic_and_replays_from_json(spec: fuzz.GraphSpec) -> None:
    """A spec rebuilds the same model and feeds, also after a JSON round trip."""
    again = fuzz.GraphSpec.from_json(spec.to_json())
    a, b = fuzz.build(spec), fuzz.build(again)
    assert a.model.SerializeToString() == b.model.SerializeToString()
    assert a.feeds.keys() == b.feeds.keys()
    for name in a.feeds:
        np.testing.assert_array_equal(a.feeds[name], b.feeds[name])


def test_qoperator_generation_is_on_by_default() -> None:
    """tvm-qdq imports QOperator models: the default config makes QLinearConv / QLinearMatMul,
    and the CI seeds include some."""
    assert fuzz.FuzzConfig().qoperator is True
    specs = [s for k in range(12) for s in fuzz.random_specs(CI_SEED * 1_000_003 + k, CI_CONFIG)]
    assert any(r.get("qop") for s in specs for r in s.records)


# ============================================================================================
# Triage: every op judged on its own inputs (tvm_qdq/testing/fuzz/op_triage.py)
# ============================================================================================

#: x (int8) → Mul by 0.5 with x's parameters (every odd ``x - zp`` an exact tie) → a → Relu → b.
TIE_SPEC = fuzz.GraphSpec(21, 7, [
    {"kind": "input", "name": "x", "shape": [2, 3, 5], "q": {"dtype": "int8", "zp": "calib"},
     "feed": {"kind": "uniform", "std": 4.0, "seed": 3}},
    {"kind": "op", "op": "Mul", "inputs": [{"t": "x"}, {"c": {"kind": "f32", "value": 0.5}}],
     "attrs": {}, "outputs": ["a"], "q": [{"dtype": "int8", "same_as": "x"}]},
    {"kind": "op", "op": "Relu", "inputs": [{"t": "a"}], "attrs": {}, "outputs": ["b"],
     "q": [{"dtype": "uint8", "zp": "calib"}]},
    {"kind": "output", "tensor": "b", "form": "q"},
])


def _plant_faults(monkeypatch: pytest.MonkeyPatch, b_fault: str | None,
                  half_up: bool = False) -> None:
    """Wrap tvm-qdq's runs of fuzz graphs with planted faults.

    The tie: where ``a`` and ``x`` are both outputs (the triage's probe model), ``a`` moves to
    the other code neighbour of its exact value ``(x_q - zp)/2 + zp`` at the first exact tie:
    as close to the exact value as ORT's, i.e. an explained near-tie; with ``half_up`` every
    exact tie of ``a`` rounds half up instead (a wrong rounding mode).  ``b_fault`` is a bug in
    the Relu, applied wherever ``b`` is computed (graph output, probe, re-judge model):
    ``"plus_one"`` every code +1 (a systematic 1-LSB error within the 2-LSB graph contract) or
    ``"plus_three"`` one code +3 (beyond it).
    """
    run = execution.compile_and_run
    zp = int(fuzz.build(TIE_SPEC).qparams["x"].zero_point)

    def faulty(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
        compiled, outs = run(model, feeds)
        values = dict(zip((o.name for o in model.graph.output), outs, strict=True))
        if "a_q" in values and "x_q" in values:
            x = values["x_q"].astype(np.int64)
            at = tuple(np.argwhere((x - zp) % 2 == 1)[0])
            exact = (x[at] - zp) / 2 + zp
            a = values["a_q"].copy()
            a[at] += 1 if a[at] < exact else -1
            if half_up:
                a = (np.floor((x - zp) / 2 + 0.5) + zp).astype(a.dtype)
            values["a_q"] = a
        for name in ("b_q", "y_b"):
            if b_fault and name in values:
                b = values[name].astype(np.int64)
                if b_fault == "plus_one":
                    b += 1
                else:
                    b.reshape(-1)[0] += 3
                values[name] = np.clip(b, 0, 255).astype(np.uint8)
        return compiled, [values[o.name] for o in model.graph.output]

    monkeypatch.setattr(execution, "compile_and_run", faulty)


def test_triage_rejudges_the_op_after_a_tie_on_orts_inputs(monkeypatch, tmp_path) -> None:
    """A tie in ``a`` makes ``b``'s inputs differ: ``b`` is re-judged on ORT's codes (passes),
    the campaign report counts the tie, the exact ops and the re-judged op."""
    _plant_faults(monkeypatch, None)
    verdict = fuzz.triage(TIE_SPEC)
    assert verdict.explained, verdict.reason
    by_tensor = {j.tensor: j for j in verdict.judgements}
    assert (by_tensor["x"].outcome, by_tensor["x"].route) == ("exact", "direct")
    assert (by_tensor["a"].outcome, by_tensor["a"].differing) == ("tie", 1)
    assert (by_tensor["b"].outcome, by_tensor["b"].route) == ("exact", "rejudged")
    assert verdict.counts() == {"exact": 1, "tie": 1, "rejudged_pass": 1}
    stats = fuzz.CampaignStats()
    stats.add(fuzz.random_specs(3))
    stats.add_result(fuzz.CheckResult(True, triaged=1, judgements=verdict.judgements,
                                      explained=["graph (within contract): tie"]))
    report = stats.report()
    assert "triaged (an output differs): 1, of which explained" in report
    assert "exact 1, explained near-ties 1, unexplained 0" in report
    assert "on ORT's inputs: 1 passed, 0 failed" in report


@pytest.mark.parametrize("b_fault", ["plus_one", "plus_three"])
def test_triage_catches_a_bug_downstream_of_a_tie(monkeypatch, b_fault: str) -> None:
    """The Relu after the tie is wrong: systematically +1 (within the graph contract, so only
    the per-op judgement sees it) or +3 at one element (the old triage excused every tensor
    downstream of an explained tie).  Re-judged on ORT's inputs, it fails."""
    _plant_faults(monkeypatch, b_fault)
    result = fuzz.check(fuzz.build(TIE_SPEC))
    assert not result.ok
    assert result.triaged == 1 and result.exact_graphs == 0
    by_tensor = {j.tensor: j for j in result.judgements}
    assert by_tensor["a"].outcome == "tie"
    assert (by_tensor["b"].route, by_tensor["b"].outcome) == ("rejudged", "fail")
    assert by_tensor["b"].category == "rejudged_fail"
    assert "UNEXPLAINED b (Relu" in result.summary()


def test_triage_fails_a_rounding_mode_error_at_exact_ties(monkeypatch) -> None:
    """``a`` rounded half up at its exact ties: each element as close to the exact value as
    ORT's half-to-even answer, so only the exact share (≥ 99.9 %) of an op ORT computes exactly
    catches it, although ``b`` (the output) stays within the graph contract."""
    _plant_faults(monkeypatch, None, half_up=True)
    verdict = fuzz.triage(TIE_SPEC)
    a = next(j for j in verdict.judgements if j.tensor == "a")
    assert not verdict.explained and a.outcome == "fail" and "systematic" in a.note
    assert a.differing > 1


def _codes(values: list[float]) -> np.ndarray:
    return np.asarray(values, np.int64)


def test_judge_op_separates_exact_ties_and_failures() -> None:
    """judge_op on synthetic codes: ``v`` the exact values before rounding."""
    v = np.array([0.2, 1.5, 2.5000001, -3.0, 4.9, 6.5], np.float64)
    ort = _codes([0, 2, 2, -3, 5, 6])
    judge = judgement.judge_op
    assert judge(ort, ort, lambda: v, True)[0] == "exact"
    # ORT's float32 rounded 2.5000001 down; tvm-qdq's 3 is closer: an explained near-tie.
    tvm = _codes([0, 2, 3, -3, 5, 6])
    assert judge(tvm, ort, lambda: v, True)[:2] == ("tie", 1)
    # Farther from the exact value than ORT (4 vs 4.9), or 2 codes off: unexplained.
    assert judge(_codes([0, 2, 2, -3, 4, 6]), ort, lambda: v, False)[0] == "fail"
    assert judge(_codes([0, 2, 2, -1, 5, 6]), ort, lambda: v, False)[0] == "fail"
    # ORT's float32 16-bit requantize off at every element, tvm-qdq strictly closer: no share.
    near = np.full(100, 50900.500155)
    assert judge(np.full(100, 50901), np.full(100, 50900), lambda: near, True)[:2] == ("tie", 100)
    # One exact tie repeated (a clipped bound) is one event; rounding it to odd is noted.
    tie = np.full(40, 127.5)
    outcome, _, _, note = judge(np.full(40, 127), np.full(40, 128), lambda: tie, True)
    assert outcome == "tie" and "rounds 40 exact tie(s) away from even" in note


def test_judge_op_rejects_a_systematic_one_lsb_error_for_exactly_computed_ops() -> None:
    """Half-up instead of half-to-even at exact ties is as close to ``v`` as ORT's answer at
    every element; for an op ORT computes exactly it must not pass (≥ 99.9 % exact, at most
    one isolated near-tie below 1 000 elements), for a float-summing Conv it is ties."""
    rng = np.random.default_rng(0)
    v = rng.integers(-100, 100, 2000) + 0.5
    ort = np.rint(v).astype(np.int64)  # half to even
    half_up = np.floor(v + 0.5).astype(np.int64)
    outcome, differing, _, note = judgement.judge_op(half_up, ort, lambda: v, True)
    assert outcome == "fail" and differing == int(np.sum(half_up != ort)) > 2
    assert "systematic" in note
    assert judgement.judge_op(half_up, ort, lambda: v, False)[0] == "tie"
    assert judgement.allowed_inexact(200) == 1 and judgement.allowed_inexact(5000) == 5
    assert judgement.computed_exactly({"op": "Conv", "qop": True})
    assert not judgement.computed_exactly({"op": "Conv"})


def test_campaign_report_separates_exact_ties_and_rejudged_ops(tmp_path) -> None:
    """``scripts/fuzz`` (``fuzz.main``) writes the counters to stats.txt and prints them."""
    assert fuzz.main(["--graphs", "1", "--seed", "3", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "seed3" / "stats.txt").read_text()
    graphs = int(report.split("graphs tried: ")[1].split(" ")[0])
    exact = int(report.split("bit-exact outputs: ")[1].split(";")[0])
    triaged = int(report.split("triaged (an output differs): ")[1].split(",")[0])
    assert graphs >= 1 and exact + triaged == graphs
    assert "ops judged in triage: exact " in report and "passed, " in report


# ============================================================================================
# Saved regressions (specs found by the fuzzer; JSON replayed by the generator)
# ============================================================================================

#: regression file stem → reason, for regressions of bugs not fixed yet (strict xfail).
KNOWN_BUGS: dict[str, str] = {}


def _regression_params() -> list:
    params = []
    for path in sorted(REGRESSIONS.glob("*.json")):
        marks = []
        if path.stem in KNOWN_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[path.stem]))
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


@pytest.mark.parametrize("path", _regression_params())
def test_regression(path: Path) -> None:
    spec = fuzz.load_spec(path)
    result = fuzz.check_specs([spec])
    assert result.ok, result.summary()


def test_regression_files_are_valid_specs() -> None:
    for path in REGRESSIONS.glob("*.json"):
        data = json.loads(path.read_text())
        assert {"opset", "seed", "records"} <= set(data), path


# ============================================================================================
# Overflow safety: accumulators driven to their bounds
# ============================================================================================

_QT = {
    "uint8": (np.uint8, TensorProto.UINT8, 0, 255),
    "int8": (np.int8, TensorProto.INT8, -128, 127),
    "uint16": (np.uint16, TensorProto.UINT16, 0, 65535),
    "int16": (np.int16, TensorProto.INT16, -32768, 32767),
}


def _zp(dtype: str, value: int) -> np.ndarray:
    return np.asarray(value, _QT[dtype][0])


def _qdq_out(nodes: list, inits: list, src: str, scale: float, zp: int, dtype: str,
             name: str) -> None:
    inits += [numpy_helper.from_array(np.float32(scale), f"{name}_s"),
              numpy_helper.from_array(_zp(dtype, zp), f"{name}_zp")]
    nodes += [helper.make_node("QuantizeLinear", [src, f"{name}_s", f"{name}_zp"], [name],
                               name=f"{name}_QuantizeLinear")]


def _input_qdq(nodes: list, inits: list, name: str, scale: float, zp: int,
               dtype: str) -> str:
    inits += [numpy_helper.from_array(np.float32(scale), f"{name}_s"),
              numpy_helper.from_array(_zp(dtype, zp), f"{name}_zp")]
    nodes += [
        helper.make_node("QuantizeLinear", [name, f"{name}_s", f"{name}_zp"], [f"{name}_q"],
                         name=f"{name}_QuantizeLinear"),
        helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_zp"],
                         [f"{name}_dq"], name=f"{name}_DequantizeLinear"),
    ]
    return f"{name}_dq"


def _weight_dq(nodes: list, inits: list, w: np.ndarray, scale: float, zp: int) -> str:
    inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(scale), "w_s"),
              numpy_helper.from_array(np.asarray(zp, w.dtype), "w_zp")]
    nodes.append(helper.make_node("DequantizeLinear", ["w", "w_s", "w_zp"], ["w_dq"],
                                  name="w_DequantizeLinear"))
    return "w_dq"


def _model(nodes: list, inits: list, inputs: dict[str, list[int]],
           out_rank: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "overflow",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.INT16, [None] * out_rank)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)],
                              ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return model


def _exact_out(acc: np.ndarray, acc_scale: float, y_scale: float) -> np.ndarray:
    return np.clip(np.rint(acc.astype(np.float64) * (acc_scale / y_scale)), -32768,
                   32767).astype(np.int16)


def _power_of_two_at_least(value: float) -> float:
    return float(2.0 ** int(np.ceil(np.log2(value))))


# (name, activation type, x code, zero point, weight value, weight type, weight zp, K)
# K = input channels · kernel area; the accumulator is Σ_k (x - zx)(w - zw) = K·(x-zx)(w-zw).
CONV_CASES = [
    # u8 at the int32 bound: 255 · 128 · 65536 = 2 139 095 040 < 2^31 - 1 → int32, no overflow.
    ("u8_int32_bound", "uint8", 255, 0, -128, "int8", 0, 4096 * 16),
    # zero point at the other limit: (0 - 255)(w) and the zx·Σw correction at its maximum.
    ("u8_zp255_x0", "uint8", 0, 255, -128, "int8", 0, 2048 * 16),
    # uint8 weights with zero point 255: w - zw = -255 does not fit int8.
    ("u8_uint8_weights_zp255", "uint8", 255, 0, 0, "uint8", 255, 2048 * 16),
    # u16: 65535 · 128 · 256 = 2 147 450 880 → still int32, 32 767 below the limit.
    ("u16_int32_edge", "uint16", 65535, 0, -128, "int8", 0, 16 * 16),
    # u16 with zero point 65535 and x = 0: needs int64 (|acc| = 65535·128·4096 ≈ 3.4e10).
    ("u16_zp65535_int64", "uint16", 0, 65535, -128, "int8", 0, 256 * 16),
    # s16 at both limits: x - zx = -32768 - 32767 = -65535.
    ("s16_limits_int64", "int16", -32768, 32767, 127, "int8", 0, 256 * 16),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_overflow_conv_accumulator_at_bounds(case) -> None:
    name, dtype, x_code, zx, w_value, w_type, zw, k = case
    channels = k // 16
    s_x, s_w = 2.0**-8, 2.0**-7
    acc = k * (x_code - zx) * (w_value - zw)
    # Output int16 with a power-of-two scale: the extreme accumulator maps to ≤ 2^14 codes.
    y_scale = _power_of_two_at_least(abs(acc) * s_x * s_w / 2**14)
    nodes: list = []
    inits: list = []
    x_dq = _input_qdq(nodes, inits, "x", s_x, zx, dtype)
    # Two output channels: one at the bound, one with the opposite-sign weight mix (small).
    w = np.full((2, channels, 4, 4), w_value, _QT[w_type][0])
    w[1, ::2] = zw  # half the window contributes nothing: a second, smaller accumulator
    w_dq = _weight_dq(nodes, inits, w, s_w, zw)
    nodes.append(helper.make_node("Conv", [x_dq, w_dq], ["c"], name="conv",
                                  kernel_shape=[4, 4]))
    _qdq_out(nodes, inits, "c", y_scale, 0, "int16", "y")
    model = _model(nodes, inits, {"x": [1, channels, 4, 4]}, 4)
    x = np.full((1, channels, 4, 4), (x_code - zx) * s_x, np.float32)
    compiled = tvm_qdq.compile(model)
    actual = compiled.run({"x": x})[0]
    w_shift = w.astype(np.int64) - zw
    exact_acc = (w_shift.reshape(2, -1).sum(1) * (x_code - zx)).reshape(1, 2, 1, 1)
    assert abs(int(exact_acc[0, 0, 0, 0])) == abs(acc)
    exact = _exact_out(exact_acc, s_x * s_w, y_scale)
    assert_single_op_contract(actual, exact, exact=True, name=name)
    assert_single_op_contract(actual, run_ort(model, {"x": x}, optimization_level=fuzz.
                                              ORT_REFERENCE_LEVEL)[0], name=f"{name} vs ORT")
    record = next(r for r in compiled.report.integer if r.op == "relax.nn.conv2d")
    bound = (max(abs(_QT[dtype][2]), abs(_QT[dtype][3])) + abs(zx)) * abs(w_shift[0]).sum()
    assert ("int64" if bound >= 2**31 else "int32") in record.detail, record


# (name, a type, a code, a zp, b type, b code, b zp, K) for activation × activation MatMul
MATMUL_ACT_CASES = [
    ("u8xu8_int32", "uint8", 255, 0, "uint8", 0, 255, 32768),
    ("u16xu16_int64", "uint16", 65535, 0, "uint16", 0, 65535, 64),
    ("s16xs16_int64", "int16", -32768, 32767, "int16", 32767, -32768, 64),
    ("u16xs8_int64", "uint16", 0, 65535, "int8", -128, 127, 512),
]


@pytest.mark.parametrize("case", MATMUL_ACT_CASES, ids=[c[0] for c in MATMUL_ACT_CASES])
def test_overflow_matmul_two_activations_at_bounds(case) -> None:
    name, ta, a_code, za, tb, b_code, zb, k = case
    s_a, s_b = 2.0**-6, 2.0**-9
    acc = k * (a_code - za) * (b_code - zb)
    y_scale = _power_of_two_at_least(abs(acc) * s_a * s_b / 2**14)
    nodes: list = []
    inits: list = []
    a_dq = _input_qdq(nodes, inits, "a", s_a, za, ta)
    b_dq = _input_qdq(nodes, inits, "b", s_b, zb, tb)
    nodes.append(helper.make_node("MatMul", [a_dq, b_dq], ["m"], name="matmul"))
    _qdq_out(nodes, inits, "m", y_scale, 0, "int16", "y")
    model = _model(nodes, inits, {"a": [2, k], "b": [k, 3]}, 2)
    a = np.full((2, k), (a_code - za) * s_a, np.float32)
    b = np.full((k, 3), (b_code - zb) * s_b, np.float32)
    b[:, 1] = 0.0  # a zero column: exactness away from the bound too
    compiled = tvm_qdq.compile(model)
    actual = compiled.run({"a": a, "b": b})[0]
    qa = np.full((2, k), a_code - za, np.int64)
    qb = np.rint(b.astype(np.float64) / s_b).astype(np.int64)
    exact = _exact_out(qa @ qb, s_a * s_b, y_scale)
    assert abs(int((qa @ qb)[0, 0])) == abs(acc)
    assert_single_op_contract(actual, exact, exact=True, name=name)
    expected = run_ort(model, {"a": a, "b": b}, optimization_level=fuzz.ORT_REFERENCE_LEVEL)[0]
    assert_single_op_contract(actual, expected, name=f"{name} vs ORT")


# (name, activation type, a code, zp, weight value, K): constant-weight MatMul / Gemm
MATMUL_CONST_CASES = [
    ("u8_int32_bound", "uint8", 255, 0, -128, 65536),
    ("u16_int64", "uint16", 0, 65535, 127, 4096),
    ("s16_int64", "int16", 32767, -32768, -128, 1024),
]


@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
@pytest.mark.parametrize("case", MATMUL_CONST_CASES, ids=[c[0] for c in MATMUL_CONST_CASES])
def test_overflow_matmul_const_weight_at_bounds(case, op: str) -> None:
    name, dtype, a_code, za, w_value, k = case
    s_a, s_w = 2.0**-5, 2.0**-8
    acc = k * (a_code - za) * w_value
    y_scale = _power_of_two_at_least(abs(acc) * s_a * s_w / 2**14)
    nodes: list = []
    inits: list = []
    a_dq = _input_qdq(nodes, inits, "a", s_a, za, dtype)
    w = np.full((k, 2), w_value, np.int8)
    w[: k // 2, 1] = -w_value if w_value != -128 else 127  # a column that cancels out
    w_dq = _weight_dq(nodes, inits, w, s_w, 0)
    nodes.append(helper.make_node(op, [a_dq, w_dq], ["m"], name=op.lower()))
    _qdq_out(nodes, inits, "m", y_scale, 0, "int16", "y")
    model = _model(nodes, inits, {"a": [1, k]}, 2)
    a = np.full((1, k), (a_code - za) * s_a, np.float32)
    compiled = tvm_qdq.compile(model)
    actual = compiled.run({"a": a})[0]
    exact_acc = np.full((1, k), a_code - za, np.int64) @ w.astype(np.int64)
    assert abs(int(exact_acc[0, 0])) == abs(acc)
    assert_single_op_contract(actual, _exact_out(exact_acc, s_a * s_w, y_scale), exact=True,
                              name=name)
    expected = run_ort(model, {"a": a}, optimization_level=fuzz.ORT_REFERENCE_LEVEL)[0]
    assert_single_op_contract(actual, expected, name=f"{name} vs ORT")


# ============================================================================================
# Bugs the fuzzer found, as minimal hand-written graphs
# ============================================================================================


def _resize_model(mode: str, scales: list[float], shape: list[int]) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.float32(0.05), "s"),
             numpy_helper.from_array(np.uint8(128), "zp"),
             numpy_helper.from_array(np.array(scales, np.float32), "scales")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="x_q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="x_dq"),
        helper.make_node("Resize", ["xd", "", "scales"], ["r"], name="resize", mode="nearest",
                         coordinate_transformation_mode=mode),
        helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["y"], name="y_q"),
    ]
    graph = helper.make_graph(
        nodes, "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [None] * 4)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)


def _resize_check(mode: str, scales: list[float], shape: list[int]) -> None:
    model = _resize_model(mode, scales, shape)
    x = {"x": np.random.default_rng(0).normal(0, 2, shape).astype(np.float32)}
    expected = run_ort(model, x, optimization_level=fuzz.ORT_REFERENCE_LEVEL)[0]
    assert_single_op_contract(tvm_qdq.compile(model).run(x)[0], expected, exact=True)


@pytest.mark.parametrize("mode", ["half_pixel", "pytorch_half_pixel", "asymmetric"])
def test_resize_scales_with_fractional_output_size_match_ort(mode: str) -> None:
    _resize_check(mode, [1.0, 1.0, 1.0, 0.5], [1, 2, 7, 7])


@pytest.mark.parametrize("mode", ["half_pixel", "pytorch_half_pixel", "asymmetric",
                                  "align_corners"])
def test_resize_scales_with_integral_output_size_match_ort(mode: str) -> None:
    _resize_check(mode, [1.0, 1.0, 2.0, 0.5], [1, 2, 4, 4])


@pytest.mark.parametrize(("scales", "shape"), [
    ([1.0, 1.0, 1.0, 2.0], [1, 2, 1, 4]),   # H = 1 in and out
    ([1.0, 1.0, 0.25, 1.0], [1, 2, 4, 4]),  # H: 4 → 1
], ids=["h1_to_1", "h4_to_1"])
def test_resize_align_corners_with_a_size_one_axis_matches_ort(scales, shape) -> None:
    _resize_check("align_corners", scales, shape)


def _gemm_beta_model(beta: float) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Gemm with an int32 bias at scale s_a·s_w, beta ≠ 1 and an int16 output whose scale is
    s_a·s_w/64 (powers of two: ORT's float path is exact)."""
    s_a, s_w = 2.0**-4, 2.0**-6
    nodes: list = []
    inits: list = []
    a_dq = _input_qdq(nodes, inits, "a", s_a, 128, "uint8")
    w = np.random.default_rng(1).integers(-3, 4, (8, 3)).astype(np.int8)  # |acc| ≤ 48
    w_dq = _weight_dq(nodes, inits, w, s_w, 0)
    inits += [numpy_helper.from_array(np.array([1, -3, 5], np.int32), "c"),
              numpy_helper.from_array(np.float32(s_a * s_w), "c_s"),
              numpy_helper.from_array(np.int32(0), "c_zp")]
    nodes.append(helper.make_node("DequantizeLinear", ["c", "c_s", "c_zp"], ["c_dq"],
                                  name="c_DequantizeLinear"))
    nodes.append(helper.make_node("Gemm", [a_dq, w_dq, "c_dq"], ["g"], name="gemm", beta=beta))
    _qdq_out(nodes, inits, "g", s_a * s_w / 64, 0, "int16", "y")
    model = _model(nodes, inits, {"a": [2, 8]}, 2)
    a = np.random.default_rng(2).integers(-2, 3, (2, 8)).astype(np.float32) * s_a
    return model, {"a": a}


def test_gemm_bias_beta_one_with_16bit_output_is_exact() -> None:
    model, feeds = _gemm_beta_model(1.0)
    expected = run_ort(model, feeds, optimization_level=fuzz.ORT_REFERENCE_LEVEL)[0]
    assert_single_op_contract(tvm_qdq.compile(model).run(feeds)[0], expected, exact=True)


def test_gemm_bias_beta_half_with_16bit_output_matches_ort() -> None:
    model, feeds = _gemm_beta_model(0.5)
    expected = run_ort(model, feeds, optimization_level=fuzz.ORT_REFERENCE_LEVEL)[0]
    assert_single_op_contract(tvm_qdq.compile(model).run(feeds)[0], expected)


_PAD_TYPES = {"uint8": (np.uint8, TensorProto.UINT8), "int8": (np.int8, TensorProto.INT8),
              "uint16": (np.uint16, TensorProto.UINT16)}


def _pad_model(x_type: str, x_s: float, x_zp: int, value: float, y_type: str, y_s: float,
               y_zp: int) -> onnx.ModelProto:
    """``Q(x) → DQ → Pad(value) → Q(y)`` with a one-cell border on H and W."""
    inits = [numpy_helper.from_array(np.float32(x_s), "x_s"),
             numpy_helper.from_array(np.asarray(x_zp, _PAD_TYPES[x_type][0]), "x_zp"),
             numpy_helper.from_array(np.float32(y_s), "y_s"),
             numpy_helper.from_array(np.asarray(y_zp, _PAD_TYPES[y_type][0]), "y_zp"),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             numpy_helper.from_array(np.float32(value), "value")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_zp"], ["xd"], name="x_dq"),
             helper.make_node("Pad", ["xd", "pads", "value"], ["p"], name="pad"),
             helper.make_node("QuantizeLinear", ["p", "y_s", "y_zp"], ["y"], name="y_q")]
    graph = helper.make_graph(
        nodes, "pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", _PAD_TYPES[y_type][1], [None] * 4)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=9)


def _pad_check(*args) -> None:
    model = _pad_model(*args)
    x = {"x": np.random.default_rng(0).uniform(0, 2, (1, 2, 3, 3)).astype(np.float32)}
    expected = run_ort(model, x, optimization_level=fuzz.ORT_REFERENCE_LEVEL)[0]
    assert_single_op_contract(tvm_qdq.compile(model).run(x)[0], expected)


@pytest.mark.parametrize("args", [
    ("uint8", 0.1, 0, -0.5, "int8", 0.1, 0),  # value below the uint8 input's range
    ("uint8", 0.1, 128, 0.05, "uint16", 0.001, 32768),  # half an input step, finer output
], ids=["outside_input_range", "between_input_codes"])
def test_pad_value_not_on_the_input_grid_matches_ort(args) -> None:
    _pad_check(*args)


@pytest.mark.parametrize("args", [
    ("uint8", 0.1, 0, -0.5, "uint8", 0.1, 0),  # same parameters: clipping is what ORT does
    ("uint8", 0.1, 0, 0.0, "int8", 0.05, 3),  # zero: exactly the zero point
    ("int8", 0.1, -3, 0.3, "uint8", 0.05, 10),  # on the input grid
], ids=["same_params", "zero_value", "on_input_grid"])
def test_pad_value_on_the_input_grid_matches_ort(args) -> None:
    _pad_check(*args)


def test_mul_with_a_per_axis_operand_of_lower_rank_matches_ort() -> None:
    """Found by the seed-5 campaign: ``Mul([1, 2, 5, 8], [2, 5, 8])`` whose second operand is
    quantized per axis 1 (5 channels). The multiply rule shaped that operand's scales for the
    product's rank (axis 1 of 4, length 2) instead of its own (right-aligned: axis 2 of 4):
    tvm-qdq raised a broadcast ValueError."""
    inits = [numpy_helper.from_array(np.float32(0.02), "a_s"),
             numpy_helper.from_array(np.int8(0), "a_zp"),
             numpy_helper.from_array(np.array([0.01, 0.02, 0.03, 0.04, 0.05], np.float32), "b_s"),
             numpy_helper.from_array(np.full(5, 7, np.uint8), "b_zp"),
             numpy_helper.from_array(np.float32(0.004), "y_s"),
             numpy_helper.from_array(np.uint8(128), "y_zp")]
    nodes = [
        helper.make_node("QuantizeLinear", ["a", "a_s", "a_zp"], ["aq"]),
        helper.make_node("DequantizeLinear", ["aq", "a_s", "a_zp"], ["ad"]),
        helper.make_node("QuantizeLinear", ["b", "b_s", "b_zp"], ["bq"], axis=1),
        helper.make_node("DequantizeLinear", ["bq", "b_s", "b_zp"], ["bd"], axis=1),
        helper.make_node("Mul", ["ad", "bd"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "y_s", "y_zp"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mul", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2, 5, 8]),
                       helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 5, 8])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    rng = np.random.default_rng(6)
    feeds = {"a": rng.normal(0, 1, (1, 2, 5, 8)).astype(np.float32),
             "b": rng.uniform(0, 5, (2, 5, 8)).astype(np.float32)}
    expected = run_ort(model, feeds, optimization_level=fuzz.ORT_REFERENCE_LEVEL)[0]
    compiled = tvm_qdq.compile(model)
    assert compiled.report.float_ops == []
    assert_single_op_contract(compiled.run(feeds)[0], expected)
