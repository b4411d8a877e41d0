"""Smoke tests for the deterministic test models in :mod:`tvm_qdq.testing.models`.

Every (model, QDQ config) pair must quantize with ONNX Runtime, run in ONNX Runtime, contain
QuantizeLinear/DequantizeLinear nodes and stay close to the float model.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tvm_qdq.testing import models

MODEL_NAMES = ["resnet_cnn", "mlp", "transformer_encoder"]
CONFIG_NAMES = ["u8s8_perchannel", "s8s8_symmetric", "u16u8", "u16s8"]
PAIRS = list(itertools.product(MODEL_NAMES, CONFIG_NAMES))

# Cosine distance (1 - cosine) between the quantized and the float model's output: per pair,
# (bound on random_feeds(seed=1), bound on the worst of EXTRA_SEEDS), each at most 10x the
# distance measured 2026-12-07 with onnxruntime 1.32 (in the comment). The mlp is the farthest
# over seeds: its 16 calibration samples do not cover the input range of every feature.
COSINE_DISTANCE_BOUNDS = {
    ("resnet_cnn", "u8s8_perchannel"): (4.9e-4, 1.0e-3),  # measured 4.97e-5, 1.02e-4
    ("resnet_cnn", "s8s8_symmetric"): (7.2e-4, 1.4e-3),  # measured 7.25e-5, 1.49e-4
    ("resnet_cnn", "u16u8"): (2.4e-3, 3.2e-3),  # measured 2.46e-4, 3.24e-4
    ("resnet_cnn", "u16s8"): (5.6e-4, 6.9e-4),  # measured 5.69e-5, 6.99e-5
    ("mlp", "u8s8_perchannel"): (1.1e-3, 5.4e-2),  # measured 1.16e-4, 5.50e-3
    ("mlp", "s8s8_symmetric"): (1.9e-3, 5.2e-2),  # measured 1.96e-4, 5.25e-3
    ("mlp", "u16u8"): (6.2e-4, 7.2e-2),  # measured 6.29e-5, 7.27e-3
    ("mlp", "u16s8"): (3.5e-3, 6.0e-2),  # measured 3.56e-4, 6.07e-3
    ("transformer_encoder", "u8s8_perchannel"): (6.8e-3, 7.8e-3),  # measured 6.84e-4, 7.86e-4
    ("transformer_encoder", "s8s8_symmetric"): (8.1e-3, 1.0e-2),  # measured 8.13e-4, 1.06e-3
    ("transformer_encoder", "u16u8"): (1.5e-3, 3.0e-3),  # measured 1.57e-4, 3.10e-4
    ("transformer_encoder", "u16s8"): (1.7e-3, 3.5e-3),  # measured 1.73e-4, 3.53e-4
}
EXTRA_SEEDS = range(2, 10)

QDQ_DOMAINS = {"", "ai.onnx", "com.microsoft"}

_NP_OF_QUANT_TYPE = {
    "QUInt8": np.uint8,
    "QInt8": np.int8,
    "QUInt16": np.uint16,
    "QInt16": np.int16,
}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
    (out,) = sess.run(None, feeds)
    return np.asarray(out)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache so the tests always exercise quantize_static itself."""
    return tmp_path_factory.mktemp("qdq_cache")


@pytest.fixture(scope="session")
def float_models() -> dict[str, onnx.ModelProto]:
    return {name: models.float_model(name) for name in MODEL_NAMES}


@pytest.fixture(scope="session")
def float_sessions(float_models: dict[str, onnx.ModelProto]) -> dict[str, ort.InferenceSession]:
    return {name: _session(m) for name, m in float_models.items()}


@pytest.fixture(scope="session")
def quantized(
    float_models: dict[str, onnx.ModelProto], cache_dir: Path
) -> dict[tuple[str, str], onnx.ModelProto]:
    return {
        (name, cfg): models.quantize_qdq(float_models[name], cfg, cache_dir=cache_dir)
        for name, cfg in PAIRS
    }


# ------------------------------------------------------------------------------------------
# Float models
# ------------------------------------------------------------------------------------------


def test_registries() -> None:
    assert sorted(models.MODEL_BUILDERS) == sorted(MODEL_NAMES)
    assert sorted(models.QDQ_CONFIGS) == sorted(CONFIG_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_float_model_valid_and_runs(
    name: str,
    float_models: dict[str, onnx.ModelProto],
    float_sessions: dict[str, ort.InferenceSession],
) -> None:
    model = float_models[name]
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= 9
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 17)}
    assert model.graph.name == name
    ops = {n.op_type for n in model.graph.node}
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops

    out = _run(float_sessions[name], models.random_feeds(model))
    assert np.isfinite(out).all()
    # He/Xavier-style init keeps the outputs O(1).
    assert 0.1 < float(out.std()) < 10.0


def test_float_models_deterministic() -> None:
    for name in MODEL_NAMES:
        a = models.float_model(name).SerializeToString()
        b = models.float_model(name).SerializeToString()
        assert a == b, name
    assert models.resnet_cnn(seed=1).SerializeToString() != models.resnet_cnn().SerializeToString()


def test_float_model_structure(float_models: dict[str, onnx.ModelProto]) -> None:
    def io(m: onnx.ModelProto) -> tuple[list, list]:
        def shape(v: onnx.ValueInfoProto) -> tuple[str, list[int]]:
            return v.name, [d.dim_value for d in v.type.tensor_type.shape.dim]

        return [shape(v) for v in m.graph.input], [shape(v) for v in m.graph.output]

    cnn, mlp, enc = (float_models[n] for n in MODEL_NAMES)
    assert io(cnn) == ([("input", [1, 3, 32, 32])], [("logits", [1, 10])])
    assert io(mlp) == ([("input", [1, 64])], [("logits", [1, 10])])
    assert io(enc) == ([("x", [1, 16, 64])], [("y", [1, 16, 64])])

    cnn_ops = [n.op_type for n in cnn.graph.node]
    for op in ("Conv", "Relu", "Add", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm"):
        assert op in cnn_ops, op
    inits = _initializers(cnn)
    convs = [n for n in cnn.graph.node if n.op_type == "Conv"]
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in convs]
    assert any(a["group"] == 16 for a in attrs)  # depthwise
    assert any(a["strides"] == [2, 2] and a["kernel_shape"] == [1, 1] for a in attrs)  # proj
    assert any(inits[n.input[1]].shape[0] == 16 and n.input[0] == "input" for n in convs)  # stem

    mlp_ops = " ".join(n.op_type for n in mlp.graph.node)
    assert mlp_ops == "MatMul Add Relu Gemm Relu MatMul Add"

    enc_ops = [n.op_type for n in enc.graph.node]
    for op in ("MatMul", "Reshape", "Transpose", "Softmax", "LayerNormalization", "Erf", "Mul"):
        assert op in enc_ops, op


def test_feeds_deterministic(float_models: dict[str, onnx.ModelProto]) -> None:
    for name, model in float_models.items():
        calib = models.calibration_feeds(model)
        assert len(calib) == 16
        again = models.calibration_feeds(model, n=16, seed=0)
        for a, b in zip(calib, again, strict=True):
            assert a.keys() == b.keys()
            for k in a:
                assert a[k].dtype == np.float32
                np.testing.assert_array_equal(a[k], b[k])
        f1 = models.random_feeds(model)
        f1b = models.random_feeds(model, seed=1)
        f2 = models.random_feeds(model, seed=2)
        (k,) = f1.keys()
        np.testing.assert_array_equal(f1[k], f1b[k])
        assert not np.array_equal(f1[k], f2[k])
        assert not np.array_equal(f1[k], calib[0][k]), name


# ------------------------------------------------------------------------------------------
# Quantized models
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "config"), PAIRS)
def test_quantized_runs_and_matches_float(
    name: str,
    config: str,
    quantized: dict[tuple[str, str], onnx.ModelProto],
    float_models: dict[str, onnx.ModelProto],
    float_sessions: dict[str, ort.InferenceSession],
) -> None:
    qmodel = quantized[(name, config)]
    fmodel = float_models[name]
    onnx.checker.check_model(qmodel)

    qdq = [n for n in qmodel.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert {n.op_type for n in qdq} == {"QuantizeLinear", "DequantizeLinear"}
    assert {n.domain for n in qdq} <= QDQ_DOMAINS

    # Same interface as the float model.
    assert [i.name for i in qmodel.graph.input] == [i.name for i in fmodel.graph.input]
    assert [o.name for o in qmodel.graph.output] == [o.name for o in fmodel.graph.output]

    qsess = _session(qmodel)
    feeds = models.random_feeds(fmodel)
    ref = _run(float_sessions[name], feeds)
    out = _run(qsess, feeds)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    bound, bound_any_seed = COSINE_DISTANCE_BOUNDS[(name, config)]
    distance = 1 - _cosine(out, ref)
    assert distance <= bound, f"{name}/{config}: cosine distance {distance:.3g}"

    worst = max(
        1 - _cosine(_run(qsess, f), _run(float_sessions[name], f))
        for f in (models.random_feeds(fmodel, seed=s) for s in EXTRA_SEEDS)
    )
    assert worst <= bound_any_seed, f"{name}/{config}: worst cosine distance {worst:.3g}"


@pytest.mark.parametrize(("name", "config"), PAIRS)
def test_quantized_types_follow_config(
    name: str, config: str, quantized: dict[tuple[str, str], onnx.ModelProto]
) -> None:
    cfg = models.QDQ_CONFIGS[config]
    qmodel = quantized[(name, config)]
    inits = _initializers(qmodel)
    act_dtype = _NP_OF_QUANT_TYPE[cfg.activation_type]
    w_dtype = _NP_OF_QUANT_TYPE[cfg.weight_type]

    # Activations: every QuantizeLinear produces the activation type.
    q_nodes = [n for n in qmodel.graph.node if n.op_type == "QuantizeLinear"]
    assert q_nodes
    for n in q_nodes:
        zp = inits[n.input[2]]
        assert zp.dtype == act_dtype, n.name
        if cfg.extra_options.get("ActivationSymmetric"):
            assert np.all(zp == 0), n.name

    # Weights of Conv/Gemm/MatMul: DequantizeLinear of an initializer of the weight type.
    producers = {o: n for n in qmodel.graph.node for o in n.output}
    weight_dqs = []
    for n in qmodel.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            dq = producers.get(n.input[1])
            if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
                weight_dqs.append(dq)
    assert weight_dqs
    for dq in weight_dqs:
        assert inits[dq.input[0]].dtype == w_dtype, dq.name
    per_channel = [dq for dq in weight_dqs if inits[dq.input[1]].size > 1]
    assert bool(per_channel) == cfg.per_channel

    # 16-bit activations need opset >= 21 for standard-domain Q/DQ, else com.microsoft Q/DQ.
    if act_dtype in (np.uint16, np.int16):
        opset = {o.domain or "ai.onnx": o.version for o in qmodel.opset_import}
        domains = {n.domain for n in q_nodes}
        assert opset["ai.onnx"] >= 21 or domains == {"com.microsoft"}


# ------------------------------------------------------------------------------------------
# Cache and convenience API
# ------------------------------------------------------------------------------------------


def test_cache_roundtrip(tmp_path: Path) -> None:
    fmodel = models.mlp()
    first = models.quantize_qdq(fmodel, "u8s8_perchannel", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.onnx"))
    assert len(files) == 1 and files[0].name.startswith("mlp.u8s8_perchannel.")
    assert not list(tmp_path.glob("*.tmp"))

    second = models.quantize_qdq(fmodel, "u8s8_perchannel", cache_dir=tmp_path)
    assert second.SerializeToString() == first.SerializeToString()

    # A different float model (other seed) gets its own entry.
    models.quantize_qdq(models.mlp(seed=3), "u8s8_perchannel", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 2

    # A corrupt entry is rebuilt.
    files[0].write_bytes(b"not an onnx model")
    third = models.quantize_qdq(fmodel, "u8s8_perchannel", cache_dir=tmp_path)
    assert third.SerializeToString() == first.SerializeToString()


def test_cache_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TVM_QDQ_CACHE", raising=False)
    repo = Path(models.__file__).resolve().parents[2]
    assert models.default_cache_dir() == repo / ".cache" / "models"

    monkeypatch.setenv("TVM_QDQ_CACHE", str(tmp_path))
    assert models.default_cache_dir() == tmp_path
    qmodel = models.quantized_model("mlp", "s8s8_symmetric")
    assert any(n.op_type == "QuantizeLinear" for n in qmodel.graph.node)
    assert len(list(tmp_path.glob("mlp.s8s8_symmetric.*.onnx"))) == 1


def test_default_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TVM_QDQ_CACHE", str(tmp_path))
    qmodel = models.default_model()
    assert qmodel.graph.name == "resnet_cnn"
    assert len(list(tmp_path.glob("resnet_cnn.u8s8_perchannel.*.onnx"))) == 1
    out = _run(_session(qmodel), models.random_feeds(qmodel))
    assert out.shape == (1, 10)


def test_unknown_names_raise() -> None:
    with pytest.raises(KeyError):
        models.quantized_model("nope", "u8s8_perchannel")
    with pytest.raises(KeyError):
        models.quantize_qdq(models.mlp(), "nope")
