"""The backend table behind ``tvm_qdq.compile`` / ``tvm_qdq.load`` and the x86 build's scoping.

* Targets go to the first backend that serves their family and kind: Hexagon triples to the
  Hexagon backend, every other LLVM CPU target to the x86 backend, other kinds to TVM's
  default pipeline; exports come back through the backend that writes their format.
* The x86 build's TVM settings (``tirx.nearbyint`` vectorizable) hold during the build only,
  and a model's first run leaves the environment as it found it.
* When the x86 lowering raises, the model is built with TVM's default schedules, with a
  warning, and computes the same integers.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tvm

import tvm_qdq
from tvm_qdq.backend import registry
from tvm_qdq.backend.base import BuildOptions, CompiledModel
from tvm_qdq.backend.x86 import backend as x86_backend
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.models import quantized_model, random_feeds


@pytest.fixture(scope="module")
def model():
    return quantized_model("mlp", "u8s8_perchannel")


@pytest.mark.parametrize(("target", "name"), [
    ("x86", "x86"),
    ("llvm", "x86"),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}, "x86"),
    ("hexagon", "hexagon"),
    ({"kind": "c"}, "tvm"),
])
def test_targets_go_to_the_backend_of_their_family(target, name: str) -> None:
    assert registry.backend_for_target(resolve_target(target)).name == name


def test_exports_come_back_through_the_backend_of_their_format() -> None:
    assert registry.backend_for_format("tvm-qdq/1").format == "tvm-qdq/1"
    assert registry.backend_for_format("tvm-qdq-hexagon/1").name == "hexagon"
    with pytest.raises(ValueError, match="unknown tvm-qdq export format"):
        registry.backend_for_format("onnx/1")


def test_x86_build_options_hold_during_the_build_only(model, monkeypatch) -> None:
    op = tvm.ir.Op.get("tirx.nearbyint")
    before = op.get_attr("TVectorizable")
    seen = []
    lower = x86_backend.lower_kernels

    def spy(*args, **kwargs):
        seen.append(op.get_attr("TVectorizable"))
        return lower(*args, **kwargs)

    monkeypatch.setattr(x86_backend, "lower_kernels", spy)
    monkeypatch.delenv("TVM_THREAD_POOL_SPIN_COUNT", raising=False)
    monkeypatch.delenv("TVM_BIND_THREADS", raising=False)
    compiled = tvm_qdq.compile(model, "x86")
    assert seen == [True]
    assert op.get_attr("TVectorizable") == before
    env = dict(os.environ)
    compiled.run(random_feeds(model, seed=1))
    assert dict(os.environ) == env
    assert isinstance(compiled, CompiledModel) and isinstance(compiled, tvm_qdq.Compiled)


def test_x86_lowering_failure_builds_with_tvm_default_schedules(model, monkeypatch) -> None:
    feeds = random_feeds(model, seed=2)
    expected = tvm_qdq.compile(model, "x86").run(feeds)

    def broken(*_args, **_kwargs):
        raise RuntimeError("planted lowering failure")

    monkeypatch.setattr(x86_backend, "lower_kernels", broken)
    with pytest.warns(UserWarning, match="planted lowering failure"):
        fallback = tvm_qdq.compile(model, "x86")
    for got, want in zip(fallback.run(feeds), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_generic_backend_computes_the_same_integers(model) -> None:
    feeds = random_feeds(model, seed=3)
    target = resolve_target("x86")
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    generic = registry.GENERIC.build(integer, target, BuildOptions())
    for got, want in zip(generic.run(feeds), tvm_qdq.compile(model, "x86").run(feeds),
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_requantize_forms_are_refused_outside_hexagon(model) -> None:
    with pytest.raises(ValueError, match="is a Hexagon option; the llvm build"):
        tvm_qdq.compile(model, "x86", requantize="fixed")
    tvm_qdq.compile(model, "x86", requantize="float")  # the x86 form itself: accepted
