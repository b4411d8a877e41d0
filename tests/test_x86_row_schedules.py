"""Row-wise schedules of the x86 lowering (:mod:`tvm_qdq.backend.x86.schedules.rows`).

Every PrimFunc of small QDQ and dynamic-quant transformers that gets a row schedule
(layer norm, softmax, DynamicQuantizeLinear's min/max, transposes) must give bit-identical
outputs to the generic schedule on random inputs; the whole model built with the row
schedules must be bit-identical to the build without them and meet the ORT contract.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, tirx

import tvm_qdq
from tvm_qdq.backend.x86 import lower_integer_kernels
from tvm_qdq.backend.x86.lower import (
    LoweringReport,
    exact_float_rounding,
    fuse_passes,
    rewrite_kernels,
)
from tvm_qdq.backend.x86.profile import _random_args as random_inputs
from tvm_qdq.backend.x86.schedules import RULES, Kernel, lowers, schedule_generic
from tvm_qdq.backend.x86.schedules.lut_gather import LutRule
from tvm_qdq.backend.x86.schedules.rows import RowRule
from tvm_qdq.compile import legalize_signedness
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.models import quantized_model
from tvm_qdq.testing.oracle import assert_builds_agree

TARGET = resolve_target("x86")
CONFIGS = ["u8s8_perchannel", "dyn_s8"]


#: Float outputs (dynamic quantization): cosine similarity to ORT's reference path.
MIN_COSINE = 0.999


def _integer(config: str) -> tvm.IRModule:
    """The integer module of the small transformer, as the x86 lowering receives it."""
    model = quantized_model("transformer_encoder", config)
    return legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86")


def _fused_primfuncs(config: str) -> dict[str, tirx.PrimFunc]:
    """The unscheduled PrimFuncs of the model (what :func:`schedule_module` receives)."""
    mod = _integer(config)
    with TARGET:
        mod, _ = exact_float_rounding(mod)
        mod = rewrite_kernels(mod, TARGET, LoweringReport())
        mod = fuse_passes()(mod)
    return {g.name_hint: f for g, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}


def _outputs(func: tirx.PrimFunc, seed: int) -> list[np.ndarray]:
    """Every buffer of ``func`` after one call on the profiler's random inputs for ``seed``."""
    func = func.with_attr("global_symbol", "main")
    lib = tvm.compile(tvm.IRModule({"main": func}), TARGET)
    tensors = random_inputs(func, np.random.default_rng(seed))
    lib["main"](*tensors)
    return [t.numpy() for t in tensors]


@pytest.mark.parametrize("config", CONFIGS)
def test_row_schedules_bit_identical_to_generic(config: str) -> None:
    """Each function a row schedule applies to: same outputs as the generic schedule."""
    funcs = _fused_primfuncs(config)
    kinds: dict[str, str] = {}
    for name, func in funcs.items():
        kernel = Kernel(func)
        rules = [r for r in RULES if isinstance(r, RowRule) and r.applies(kernel)]
        if not rules:
            continue
        kind = rules[0].kind
        scheduled = rules[0].apply(kernel)
        assert lowers(scheduled, TARGET), name
        kinds[name] = kind
        generic = schedule_generic(func)
        for seed in (0, 1):
            for got, want in zip(_outputs(scheduled, seed), _outputs(generic, seed),
                                 strict=True):
                np.testing.assert_array_equal(got, want, err_msg=f"{name} ({kind})")
    assert "row_reduce" in kinds.values(), kinds  # layer norm, softmax
    assert "row_copy" in kinds.values(), kinds  # head split / merge transposes
    if config.startswith("dyn"):
        assert "row_allreduce" in kinds.values(), kinds  # DynamicQuantizeLinear min/max


def _lowered(config: str, rows: bool, monkeypatch: pytest.MonkeyPatch
             ) -> tuple[relax.VirtualMachine, LoweringReport]:
    mod = _integer(config)
    with monkeypatch.context() as patch:
        if not rows:
            for rule in (RowRule, LutRule):
                patch.setattr(rule, "applies", lambda self, kernel: False)
        report = LoweringReport()
        lowered = lower_integer_kernels(mod, TARGET, report=report)
    executable = tvm.compile(lowered, TARGET)
    return relax.VirtualMachine(executable, tvm.cpu()), report


@pytest.mark.parametrize("config", CONFIGS)
def test_model_with_row_schedules(config: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole transformer: row schedules applied, outputs bit-identical to the build
    without them, and within the ORT contract."""
    model = quantized_model("transformer_encoder", config)
    vm_rows, report = _lowered(config, True, monkeypatch)
    vm_plain, plain_report = _lowered(config, False, monkeypatch)
    kinds = set(report.schedules.values())
    assert "row_reduce" in kinds, report.schedules
    assert "softmax_rows" in kinds, report.schedules  # the attention softmax (fast math)
    assert not {k for k in plain_report.schedules.values() if k.startswith("row_")}
    assert_builds_agree(model, vm_rows, vm_plain, f"transformer/{config}", MIN_COSINE)


def _range_func(shape: tuple[int, ...], dtype: str) -> tirx.PrimFunc:
    """``(max(x), min(x))`` of a whole tensor, as DynamicQuantizeLinear's range."""
    from tvm import te, topi

    x = te.placeholder(shape, dtype, name="x")
    return te.create_prim_func([x, topi.max(x), topi.min(x)])


@pytest.mark.parametrize("shape,dtype", [
    ((1, 56, 56, 144), "float32"),  # NHWC: rows of the last axis (16 lanes)
    ((1, 3, 224, 224), "float32"),  # last axis 224 = 3.5 · 64: 32 lanes
    ((64, 3, 5, 7), "float32"),  # no trailing lane multiple: one flat chain of 6720
    ((1, 24, 40, 40), "int32"),  # trailing 40·40 = 25 · 64
    ((4, 5, 64), "float32"),
])
def test_whole_tensor_range_bit_identical(shape: tuple[int, ...], dtype: str) -> None:
    """A whole-tensor max / min under ``row_allreduce`` (row by row when the trailing axes
    allow whole lane vectors, else one flat chain): the generic schedule's results, on data
    whose extremes sit anywhere (NaN-free; max and min are exact in any order)."""
    func = _range_func(shape, dtype)
    kernel = Kernel(func)
    rule = RowRule("row_allreduce")
    if not rule.applies(kernel):
        pytest.skip(f"{shape} is no whole-tensor reduction the rule takes")
    scheduled = rule.apply(kernel)
    assert lowers(scheduled, TARGET)
    for seed in (0, 1, 2):
        for got, want in zip(_outputs(scheduled, seed), _outputs(schedule_generic(func), seed),
                             strict=True):
            np.testing.assert_array_equal(got, want, err_msg=str(shape))
