"""Scalar side computations grouped into one kernel (:mod:`tvm_qdq.backend.x86.group_scalars`).

Dynamic quantization's min, max, scale and zero point were five kernel calls per
DynamicQuantizeLinear; grouped they are one (plus the quantize). The grouping reorders no
arithmetic, so the model's outputs are bit-identical to the ungrouped build.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm

import tvm_qdq
from tvm_qdq.backend.x86 import lower, lower_integer_kernels
from tvm_qdq.compile import legalize_signedness
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.models import quantized_model, random_feeds
from tvm_qdq.testing.oracle import run_ort

TARGET = resolve_target("x86")


def _lowered(config: str, grouped: bool, monkeypatch) -> tvm.IRModule:
    model = quantized_model("mlp", config)
    mod = legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86")
    with monkeypatch.context() as patch:
        if not grouped:
            patch.setattr(lower, "group_scalar_chains", lambda m: m)
        return lower_integer_kernels(mod, TARGET)


def _calls(mod: tvm.IRModule) -> list[str]:
    return re.findall(r"call_tir\((?:cls\.)?(\w+)", mod["main"].script())


def _run(mod: tvm.IRModule, feeds: dict) -> np.ndarray:
    vm = tvm.relax.VirtualMachine(tvm.compile(mod, TARGET), tvm.cpu())
    args = [tvm.runtime.tensor(v) for v in feeds.values()]
    return vm["main"](*args).numpy()


def test_dynamic_quantize_is_two_calls_and_bit_identical(monkeypatch):
    model = quantized_model("mlp", "dyn_s8")
    grouped = _lowered("dyn_s8", True, monkeypatch)
    plain = _lowered("dyn_s8", False, monkeypatch)
    calls, plain_calls = _calls(grouped), _calls(plain)
    # 3 DynamicQuantizeLinear: min, max and 3 scalar kernels each became one kernel
    assert sum(c.startswith("fused_scalars") for c in calls) == 3
    assert len(plain_calls) - len(calls) == 3 * 4
    schedules = grouped.attrs["tvm_qdq.x86_lowering"]
    assert '"row_allreduce"' in str(schedules)  # the grouped min/max are vectorized
    for seed in (0, 1, 2):
        feeds = random_feeds(model, seed=seed)
        ours, ref = _run(grouped, feeds), _run(plain, feeds)
        np.testing.assert_array_equal(ours, ref)
        expected = run_ort(model, feeds)[0]
        assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("config", ["u8s8_perchannel", "u16s8"])
def test_static_models_unchanged(config, monkeypatch):
    """No run-time scalar chains in a static QDQ model: the same kernels either way."""
    assert _calls(_lowered(config, True, monkeypatch)) == \
        _calls(_lowered(config, False, monkeypatch))


def test_torch_dynamic_qparams_with_constants_are_grouped():
    """PyTorch's choose_qparams passes constants to its scalar kernels: they become arguments
    of the grouped kernel (FuseTIR accepts no constants inside), and the model still lowers
    (the test configuration turns a lowering fallback into an error)."""
    torch = pytest.importorskip("torch")
    from tvm_qdq.testing import torch_models as tm

    torch.manual_seed(0)
    x = torch.randn(8, 32)
    qmodel = tm.quantize_dynamic(tm.MLP().eval())
    with torch.no_grad():
        traced = torch.jit.trace(qmodel, (x,))
        expected = qmodel(x).numpy()
    mod = tvm_qdq.from_torch(traced, (x,), input_names=["x"])
    lowered = lower_integer_kernels(legalize_signedness(tvm_qdq.to_integer(mod), "x86"), TARGET)
    assert any(c.startswith("fused_scalars") for c in _calls(lowered))
    ours = tvm_qdq.compile(mod, "x86").run({"x": x.numpy()})[0]
    np.testing.assert_array_equal(ours, expected)
