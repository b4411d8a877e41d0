"""Float ``com.microsoft`` contrib ops (:mod:`tvm_qdq.frontend.onnx.contrib_float`) against
ONNX Runtime's CPU kernels (reference session, graph optimizations off), x86 build.

Measured errors (this machine, ORT 1.32, the cases below) are in the comments; every
tolerance is at most 10× the measurement. "ulp of the scale" is the float32 spacing at the
largest |output| of the case (``np.spacing(max|y|)``).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import tvm_qdq
from tvm_qdq.errors import TvmQdqError

MS = "com.microsoft"


def _model(nodes: list, inputs: dict[str, np.ndarray], outputs: list[str],
           inits: dict[str, np.ndarray] | None = None,
           output_types: dict[str, int] | None = None) -> onnx.ModelProto:
    types = output_types or {}
    graph = helper.make_graph(
        nodes, "contrib",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape))
         for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, types.get(o, TensorProto.FLOAT), None)
         for o in outputs],
        [onnx.numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    return model


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _both(model: onnx.ModelProto, feeds: dict[str, np.ndarray]
          ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    got = tvm_qdq.compile(model, "x86").run(feeds)
    want = _ort(model, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
    return got, want


def _in_scale_ulps(got: np.ndarray, want: np.ndarray) -> float:
    """max |got − want| in float32 ulps of the largest |want|."""
    return float(np.abs(got.astype(np.float64) - want).max() / np.spacing(np.abs(want).max()))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- FusedMatMul ------------------------------------------------------------------------------

#: (A shape, B shape, attributes)
MATMUL_CASES = [
    ((2, 3, 8, 16), (2, 3, 16, 5), {"alpha": 0.125}),
    ((4, 24, 32), (32, 40), {}),  # broadcast B
    ((7, 16), (2, 9, 16), {"transB": 1, "alpha": -1.5}),
    ((2, 16, 6), (2, 16, 5), {"transA": 1}),
    ((6, 4, 8), (4, 8, 5), {"transBatchA": 1}),  # A is [M, batch, K]
    ((5, 4, 3), (6, 4, 5), {"transBatchA": 1, "transA": 1, "transBatchB": 1, "transB": 1}),
    ((3, 2, 5, 4), (4, 3, 2, 5), {"transBatchB": 1, "alpha": 0.5}),  # B is [K, batch, N]
    ((16,), (3, 16, 4), {"transA": 1}),  # rank-1 A: transA ignored, as in ORT
]


@pytest.mark.parametrize("case", MATMUL_CASES, ids=lambda c: f"{c[0]}x{c[1]}_{c[2]}")
def test_fused_matmul_matches_ort(case: tuple) -> None:
    """FusedMatMul = alpha · op(A) @ op(B) for trans/transBatch combinations and batch
    broadcasting. Measured: bit-identical on every case but the rank-1 A (1 ulp of the
    scale: ORT's vector-matrix path sums in another order)."""
    a_shape, b_shape, attrs = case
    rng = _rng(len(a_shape) * 7 + len(b_shape))
    feeds = {"a": rng.standard_normal(a_shape).astype(np.float32),
             "b": rng.standard_normal(b_shape).astype(np.float32)}
    model = _model([helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain=MS, **attrs)],
                   feeds, ["y"])
    (got,), (want,) = _both(model, feeds)
    assert _in_scale_ulps(got, want) <= 2  # measured 0 (rank-1 A: 1)


@pytest.mark.parametrize("alpha", [1.0, 0.5, -0.75])
def test_qdq_fused_matmul_becomes_integer_matmul(alpha: float) -> None:
    """DQ(x) · DQ(w)ᵀ through FusedMatMul(transB=1, alpha) then Q: the converter's
    ``permute_dims`` + ``R.matmul`` (+ ``R.multiply`` by alpha) is taken by the integer
    pass's transpose, matmul and constant-scale rules (reported as an integer matmul) and
    the result is within 1 LSB of ORT (measured 0). A positive alpha folds into the
    requantize (no float islands); a negative one stays a float multiply after the integer
    matmul (the pass folds only positive scales)."""
    rng = _rng(11)
    w = rng.integers(-127, 128, (24, 32)).astype(np.int8)  # [N, K], used transposed
    inits = {"w": w, "sw": np.array(0.02, np.float32), "zw": np.array(0, np.int8),
             "sx": np.array(0.05, np.float32), "zx": np.array(128, np.uint8),
             "sy": np.array(0.4, np.float32), "zy": np.array(120, np.uint8)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wd"]),
        helper.make_node("FusedMatMul", ["xd", "wd"], ["m"], domain=MS, transB=1,
                         alpha=alpha),
        helper.make_node("QuantizeLinear", ["m", "sy", "zy"], ["y"]),
    ]
    feeds = {"x": (rng.standard_normal((2, 8, 32)) * 2).astype(np.float32)}
    model = _model(nodes, feeds, ["y"], inits, {"y": TensorProto.UINT8})
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    report = tvm_qdq.pass_report(integer)
    assert any(r.op == "relax.matmul" and r.outcome == "integer" for r in report.integer), \
        report.integer
    islands = [f["op"] for f in report.float_ops]
    assert islands == ([] if alpha > 0 else ["relax.multiply"])
    got = tvm_qdq.compile(model, "x86").run(feeds)[0].astype(np.int32)
    want = _ort(model, feeds)[0].astype(np.int32)
    assert np.abs(got - want).max() <= 1  # measured 0
    assert np.unique(got).size > 50  # a real range of codes, not saturated


# --- layer norms ------------------------------------------------------------------------------

#: (input shape, epsilon); hidden sizes with n mod 8 = 0 and 4 (ORT's bit-exact tails),
#: 13 (another tail) and a short row.
NORM_CASES = [((2, 8, 64), 1e-5), ((3, 100), 1e-6), ((2, 4, 384), 1e-12), ((4, 13), 1e-5),
              ((6, 5), 1e-3)]


def _norm_params(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = _rng(seed)
    return {"gamma": (1 + 0.3 * rng.standard_normal(n)).astype(np.float32),
            "beta": (0.2 * rng.standard_normal(n)).astype(np.float32),
            "bias": (0.1 * rng.standard_normal(n)).astype(np.float32)}


def _skip_feeds(shape: tuple, seed: int) -> dict[str, np.ndarray]:
    rng = _rng(seed)
    return {"x": (rng.standard_normal(shape) * 2 + 0.3).astype(np.float32),
            "skip": rng.standard_normal(shape).astype(np.float32)}


@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_simplified_layer_norm_matches_ort(case: tuple) -> None:
    """SimplifiedLayerNormalization (RMS norm) with its inv_std_var output: bit-identical
    to ORT, in its 8-lane FMA order for rows of ≥ 16 (64, 100, 384) and its scalar loop for
    shorter ones (13, 5) (measured, every case)."""
    shape, eps = case
    params = _norm_params(shape[-1], 3)
    feeds = {"x": _skip_feeds(shape, 4)["x"]}
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y", "inv"],
                            axis=-1, epsilon=eps)
    got, want = _both(_model([node], feeds, ["y", "inv"], {"gamma": params["gamma"]}), feeds)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("n", [8, 15, 16, 17, 21, 23, 30, 31])
def test_simplified_layer_norm_row_tails(n: int) -> None:
    """Both sides of ORT's 16-element switch and every tail ``n mod 8`` of the 8-lane sum:
    bit-identical (measured)."""
    feeds = {"x": _skip_feeds((24, n), n)["x"]}
    gamma = _norm_params(n, n + 1)["gamma"]
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y", "inv"],
                            epsilon=1e-6)
    got, want = _both(_model([node], feeds, ["y", "inv"], {"gamma": gamma}), feeds)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_simplified_layer_norm_over_two_axes() -> None:
    """axis = 1 of a rank-3 input: the normalized axes are flattened (48 values), the
    inv_std_var output has ORT's [rows, 1, 1] shape. Measured: bit-identical."""
    feeds = {"x": _skip_feeds((3, 6, 8), 5)["x"]}
    gamma = _norm_params(48, 6)["gamma"].reshape(6, 8)
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y", "inv"],
                            axis=1, epsilon=1e-5)
    got, want = _both(_model([node], feeds, ["y", "inv"], {"gamma": gamma}), feeds)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_skip_layer_norm_matches_ort(case: tuple) -> None:
    """SkipLayerNormalization with gamma, beta, bias and all four outputs, in ORT's scalar
    Welford order: every output (y, mean, inv_std_var, input_skip_bias_sum) is bit-identical
    to ORT's (measured, every case)."""
    shape, eps = case
    params = _norm_params(shape[-1], 7)
    feeds = _skip_feeds(shape, 8)
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"],
                            ["y", "mean", "inv", "sum"], domain=MS, epsilon=eps)
    got, want = _both(_model([node], feeds, ["y", "mean", "inv", "sum"], params), feeds)
    assert got[1].shape == (*shape[:-1], 1)
    for name, g, w in zip(("y", "mean", "inv_std_var", "sum"), got, want, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=name)


def test_skip_layer_norm_plain_and_broadcast_skip() -> None:
    """No beta, no bias, one output, the default epsilon (1e-12) and a skip of shape
    [S, H] broadcast over the batch (ORT's ``offset % skip_size``). Measured bit-identical."""
    feeds = _skip_feeds((3, 5, 32), 9)
    feeds["skip"] = feeds["skip"][0]
    gamma = _norm_params(32, 10)["gamma"]
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma"], ["y"], domain=MS)
    (got,), (want,) = _both(_model([node], feeds, ["y"], {"gamma": gamma}), feeds)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_skip_simplified_layer_norm_matches_ort(case: tuple) -> None:
    """SkipSimplifiedLayerNormalization with bias and all outputs, in ORT's scalar order
    (sequential sum of squares): bit-identical, the mean output all zeros as ORT writes it
    (measured, every case)."""
    shape, eps = case
    params = _norm_params(shape[-1], 11)
    feeds = _skip_feeds(shape, 12)
    node = helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma", "bias"],
                            ["y", "mean", "inv", "sum"], domain=MS, epsilon=eps)
    inits = {"gamma": params["gamma"], "bias": params["bias"]}
    got, want = _both(_model([node], feeds, ["y", "mean", "inv", "sum"], inits), feeds)
    assert not got[1].any()
    for name, g, w in zip(("y", "mean", "inv_std_var", "sum"), got, want, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=name)


def test_layer_norm_functions_get_row_schedule() -> None:
    """The SkipLayerNorm / RMS norm functions are row reductions, like LayerNormalization's:
    the x86 lowering gives them the row-reduction schedule."""
    from tvm_qdq.backend.x86 import lower_integer_kernels
    from tvm_qdq.backend.x86.lower import LoweringReport
    from tvm_qdq.compile import legalize_signedness
    from tvm_qdq.targets import resolve_target

    feeds = _skip_feeds((2, 16, 64), 13)
    params = _norm_params(64, 14)
    nodes = [
        helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta"], ["a"],
                         domain=MS, epsilon=1e-5),
        helper.make_node("SimplifiedLayerNormalization", ["a", "gamma"], ["y"], epsilon=1e-5),
    ]
    mod = tvm_qdq.from_onnx(_model(nodes, feeds, ["y"], params))
    mod = legalize_signedness(tvm_qdq.to_integer(mod), "x86")
    report = LoweringReport()
    lower_integer_kernels(mod, resolve_target("x86"), report=report)
    kinds = {k: v for k, v in report.schedules.items() if "norm" in k}
    assert len(kinds) >= 2 and set(kinds.values()) == {"row_reduce"}, report.schedules


# --- GELU family ------------------------------------------------------------------------------

#: (op, inputs, attributes, measured max error in ulps of the output scale)
GELU_CASES = [
    ("Gelu", ["x"], {}, 1.0),
    ("BiasGelu", ["x", "bias"], {}, 0.5),
    ("FastGelu", ["x"], {}, 1.0),
    ("FastGelu", ["x", "bias"], {}, 2.0),
    ("QuickGelu", ["x"], {}, 1.0),
    ("QuickGelu", ["x"], {"alpha": 1.0}, 2.0),
]


@pytest.mark.parametrize("case", GELU_CASES, ids=lambda c: f"{c[0]}{len(c[1])}{c[2]}")
@pytest.mark.parametrize("shape", [(4, 64), (2, 3, 40)], ids=lambda s: "x".join(map(str, s)))
def test_gelu_family_matches_ort(case: tuple, shape: tuple) -> None:
    """Gelu/BiasGelu (erf), FastGelu (tanh) and QuickGelu (sigmoid) against ORT, whose erf,
    tanh and logistic are MLAS polynomials (ours: fast_math's erf, TVM's tanh / sigmoid):
    errors within two ulps of the output scale (measured per case, see ``GELU_CASES``); in
    the far negative tail, where the results are tiny, the MLAS approximations have only
    absolute accuracy, so the comparison is in units of the scale."""
    op, names, attrs, measured = case
    rng = _rng(sum(shape))
    values = {"x": (rng.standard_normal(shape) * 3).astype(np.float32),
              "bias": rng.standard_normal(shape[-1]).astype(np.float32)}
    feeds = {"x": values["x"]}
    inits = {k: values[k] for k in names if k != "x"}
    model = _model([helper.make_node(op, names, ["y"], domain=MS, **attrs)], feeds, ["y"], inits)
    (got,), (want,) = _both(model, feeds)
    assert _in_scale_ulps(got, want) <= 10 * measured


def test_gelu_uses_relax_gelu() -> None:
    """Gelu and BiasGelu import as ``R.nn.gelu`` (the op fast_math vectorizes on x86)."""
    feeds = {"x": np.zeros((2, 8), np.float32)}
    nodes = [helper.make_node("BiasGelu", ["x", "bias"], ["a"], domain=MS),
             helper.make_node("Gelu", ["a"], ["y"], domain=MS)]
    mod = tvm_qdq.from_onnx(_model(nodes, feeds, ["y"], {"bias": np.ones(8, np.float32)}))
    assert mod.script().count("R.nn.gelu") == 2


def test_refusals_name_the_node() -> None:
    """Unsupported forms fail at import with an error naming the node: a float64
    SimplifiedLayerNormalization statistic (stash_type 0) and a scale of the wrong size."""
    feeds = {"x": np.zeros((2, 8), np.float32)}
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], name="rms",
                            stash_type=0)
    with pytest.raises(TvmQdqError, match="rms.*stash_type"):
        tvm_qdq.from_onnx(_model([node], feeds, ["y"], {"g": np.ones(8, np.float32)}))
    node = helper.make_node("SkipLayerNormalization", ["x", "x", "g"], ["y"], name="sln",
                            domain=MS)
    with pytest.raises(TvmQdqError, match="sln.*8 float32 values"):
        tvm_qdq.from_onnx(_model([node], feeds, ["y"], {"g": np.ones(6, np.float32)}))


# --- a model written by ORT's optimizers ------------------------------------------------------


@pytest.mark.parametrize("gelu_approximation", [False, True], ids=["BiasGelu", "FastGelu"])
def test_ort_optimized_bert_matches_ort(tmp_path, gelu_approximation: bool) -> None:
    """A small random BERT exported from PyTorch, fused by ORT's transformer optimizer
    (``optimize_model``, attention fusion off; ``enable_gelu_approximation`` gives FastGelu)
    and then saved by an ORT session at ORT_ENABLE_EXTENDED: the file holds
    SkipLayerNormalization (5), FusedMatMul (2) and BiasGelu or FastGelu (2) beside plain
    ops, as models shipped after ORT's optimizers do. tvm-qdq runs it within float32
    rounding of ORT's reference path: measured max |Δ| 1.43e-6 (BiasGelu) and 0.83e-6
    (FastGelu) on outputs up to 5.12."""
    import collections
    import warnings

    import torch
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    from tvm_qdq.testing.torch_models import random_bert, token_batch

    ids, mask = token_batch(2, 16, 128)
    exported, fused, saved = (str(tmp_path / n) for n in ("bert.onnx", "fused.onnx", "ext.onnx"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(random_bert(), (ids, mask), exported, input_names=["ids", "mask"],
                          output_names=["h"], opset_version=17, dynamo=False)
    options = FusionOptions("bert")
    options.enable_attention = False
    options.enable_gelu_approximation = gelu_approximation
    optimizer.optimize_model(exported, model_type="bert", num_heads=4, hidden_size=64,
                             optimization_options=options, opt_level=0,
                             use_gpu=False).save_model_to_file(fused)
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session_options.optimized_model_filepath = saved
    ort.InferenceSession(fused, session_options, providers=["CPUExecutionProvider"])
    model = onnx.load(saved)
    ops = collections.Counter(n.op_type for n in model.graph.node if n.domain == MS)
    gelu = "FastGelu" if gelu_approximation else "BiasGelu"
    assert ops["SkipLayerNormalization"] >= 4 and ops["FusedMatMul"] >= 1 and ops[gelu] >= 1, ops

    feeds = {"ids": ids.numpy(), "mask": mask.numpy()}
    got = tvm_qdq.compile(model, "x86", shapes={"ids": [2, 16], "mask": [2, 16]}).run(feeds)[0]
    want = _ort(model, feeds)[0]
    assert np.abs(got - want).max() <= 1.4e-5  # measured 1.43e-6 / 0.83e-6


def test_skip_layer_norm_sum_output_only() -> None:
    """Outputs ``[y, "", "", input_skip_bias_sum]`` (the form ORT's optimizer writes when
    the residual sum feeds the next block): both bit-identical to ORT (measured)."""
    feeds = _skip_feeds((2, 6, 48), 15)
    params = _norm_params(48, 16)
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"],
                            ["y", "", "", "sum"], domain=MS, epsilon=1e-12)
    got, want = _both(_model([node], feeds, ["y", "sum"], params), feeds)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("op", ["Gelu", "FastGelu", "QuickGelu"])
def test_gelu_family_is_vector_code(op: str) -> None:
    """The x86 build of each GELU variant calls no libm function (erf / exp run as
    fast_math's polynomials; FastGelu and QuickGelu are written with ``R.exp``, because
    TVM's tanh and sigmoid would call ``expf`` once per element)."""
    import re

    import tvm

    from tvm_qdq.backend.x86 import asm_of, lower_integer_kernels
    from tvm_qdq.compile import legalize_signedness
    from tvm_qdq.targets import resolve_target

    feeds = {"x": np.zeros((64, 256), np.float32)}
    model = _model([helper.make_node(op, ["x"], ["y"], domain=MS)], feeds, ["y"])
    mod = legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86")
    target = resolve_target("x86")
    asm = asm_of(tvm.compile(lower_integer_kernels(mod, target), target))
    assert not re.search(r"call\w*\s+(erff|expf|tanhf|erf|exp|tanh)(@PLT)?\b", asm)
