"""Activation × activation matmul schedule of the x86 lowering
(:mod:`tvm_qdq.backend.x86.schedules.matmul`): the attention matmuls of transformers.

* Synthetic batched matmuls (int16 → int32 and float32, ``B`` as ``[k, j]`` or ``[j, k]``,
  with and without an elementwise epilogue, shapes that do and do not fill a register tile):
  the scheduled function gives bit-identical outputs to the unscheduled one.
* The small QDQ and dynamic-quant transformers: every activation matmul of the model gets the
  schedule (``tvm_qdq.scheduled`` / the lowering report say ``activation_matmul``), each such
  function is bit-identical to the generic schedule, and the whole model is bit-identical to
  the build without the schedule and within the ORT contract.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, te, tirx

import tvm_qdq
from tvm_qdq.backend.x86 import asm_of, has_vnni, lower_integer_kernels
from tvm_qdq.backend.x86.lower import (
    LoweringReport,
    exact_float_rounding,
    fuse_passes,
    rewrite_kernels,
)
from tvm_qdq.backend.x86.schedules import (
    RULES,
    Kernel,
    lowers,
    schedule_function,
    schedule_generic,
)
from tvm_qdq.backend.x86.schedules import matmul as schedule_matmul
from tvm_qdq.backend.x86.schedules.matmul import (
    ActivationMatmulRule,
    MatmulTile,
    default_matmul_tile,
    schedule_activation_matmul,
)
from tvm_qdq.compile import legalize_signedness
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.models import quantized_model
from tvm_qdq.testing.oracle import assert_builds_agree

TARGET = resolve_target("x86")
CONFIGS = ["u8s8_perchannel", "dyn_s8"]
KINDS = (schedule_matmul.KIND, schedule_matmul.KIND_PAIRS)
#: Float outputs (dynamic quantization): cosine similarity to ORT's reference path.
MIN_COSINE = 0.999
pytestmark = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _random_args(func: tirx.PrimFunc, rng: np.random.Generator) -> list[np.ndarray]:
    """Random arguments: floats ~ N(0, 3²), integers uniform in [-300, 300] ∩ the dtype."""
    args = []
    for param in func.params:
        shape = [int(s) for s in param.ty.shape]
        dtype = str(param.ty.dtype)
        if "float" in dtype:
            args.append((rng.standard_normal(shape) * 3).astype(dtype))
        else:
            info = np.iinfo(dtype)
            args.append(rng.integers(max(info.min, -300), min(info.max, 300) + 1,
                                     shape).astype(dtype))
    return args


def _run(func: tirx.PrimFunc, arrays: list[np.ndarray]) -> list[np.ndarray]:
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), TARGET)
    tensors = [tvm.runtime.tensor(a.copy()) for a in arrays]
    lib["main"](*tensors)
    return [t.numpy() for t in tensors]


def _batched_matmul(dtype: str, batch: tuple[int, ...], m: int, n: int, k: int,
                    transposed: bool, epilogue: bool) -> tirx.PrimFunc:
    """``C[b, i, j] = Σ_k A[b, i, k] · B[b, k, j]`` (``B[b, j, k]`` when ``transposed``),
    accumulated in int32 (int16 operands) or float32; with ``epilogue`` a requantize-like
    ``uint8(clip(round(C · s + bias[j]) + 7, 0, 255))`` (float64) or ``C / 5.5 + bias[j]``."""
    acc = "float32" if dtype == "float32" else "int32"
    a = te.placeholder((*batch, m, k), dtype, name="a")
    b = te.placeholder((*batch, n, k) if transposed else (*batch, k, n), dtype, name="b")
    r = te.reduce_axis((0, k), name="k")

    def body(*idx):
        *bb, i, j = idx
        rhs = b[(*bb, j, r)] if transposed else b[(*bb, r, j)]
        return te.sum(a[(*bb, i, r)].astype(acc) * rhs.astype(acc), axis=r)

    c = te.compute((*batch, m, n), body, name="matmul")
    if not epilogue:
        return te.create_prim_func([a, b, c])
    bias = te.placeholder((n,), acc, name="bias")
    if acc == "int32":
        def requantize(*idx):
            scaled = c(*idx).astype("float64") * 0.0123 + bias[idx[-1]].astype("float64")
            rounded = te.round(scaled) + 7.0
            return te.max(te.min(rounded, 255.0), 0.0).astype("uint8")
        out = te.compute(c.shape, requantize, name="requantize")
    else:
        out = te.compute(c.shape, lambda *idx: c(*idx) / 5.5 + bias[idx[-1]], name="scale")
    return te.create_prim_func([a, b, bias, out])


# ----------------------------------------------------------------------------------------------
# Synthetic matmuls
# ----------------------------------------------------------------------------------------------

CASES = [
    # dtype, batch, m, n, k, transposed, epilogue
    ("int16", (2, 3), 16, 16, 32, False, True),
    ("int16", (2, 3), 16, 32, 16, False, False),
    ("int16", (3,), 12, 48, 10, True, True),
    ("int16", (2, 2), 5, 7, 3, False, True),
    ("float32", (2, 3), 16, 16, 32, False, True),
    ("float32", (4,), 16, 32, 16, True, False),
    ("float32", (2, 1), 9, 8, 5, True, True),
]


@pytest.mark.parametrize(("dtype", "batch", "m", "n", "k", "transposed", "epilogue"), CASES)
def test_synthetic_matmul_bit_identical(dtype: str, batch: tuple[int, ...], m: int, n: int,
                                        k: int, transposed: bool, epilogue: bool) -> None:
    func = _batched_matmul(dtype, batch, m, n, k, transposed, epilogue)
    variants = [schedule_activation_matmul(func, parallel=True)]
    shape_ok = dtype == "int16" and k % 2 == 0 and n % 16 == 0
    if shape_ok:
        variants.append(schedule_activation_matmul(func, parallel=True, pairs=True))
        assert "vpdpwssd" in asm_of(tvm.compile(tvm.IRModule(
            {"main": variants[-1].with_attr("global_symbol", "main")}), TARGET))
    else:
        with pytest.raises(ValueError):
            schedule_activation_matmul(func, pairs=True)
    for scheduled in variants:
        assert lowers(scheduled, TARGET)
    _, kind = schedule_function(func, target=TARGET)
    assert kind == (schedule_matmul.KIND_PAIRS if shape_ok else schedule_matmul.KIND)
    rng = np.random.default_rng(3)
    for _ in range(2):
        arrays = _random_args(func, rng)
        want = _run(func, arrays)[-1]
        for scheduled in variants:
            np.testing.assert_array_equal(_run(scheduled, arrays)[-1], want)


def test_explicit_tiles_bit_identical() -> None:
    func = _batched_matmul("int16", (2,), 16, 32, 16, False, True)
    arrays = _random_args(func, np.random.default_rng(5))
    want = _run(func, arrays)[-1]
    for tile in (MatmulTile(1, 1, 16), MatmulTile(4, 2, 16), MatmulTile(16, 1, 16),
                 MatmulTile(2, 1, 8)):
        for pairs in (False, tile.lanes == 16):
            got = _run(schedule_activation_matmul(func, tile, parallel=False, pairs=pairs),
                       arrays)[-1]
            np.testing.assert_array_equal(got, want, err_msg=f"{tile} pairs={pairs}")


def test_default_tile() -> None:
    assert default_matmul_tile(16, 16) == MatmulTile(16, 1, 16)
    assert default_matmul_tile(16, 32) == MatmulTile(8, 2, 16)
    assert default_matmul_tile(5, 7) == MatmulTile(5, 1, 7)
    tile = default_matmul_tile(12, 48)
    assert tile.lanes == 16 and tile.mr * tile.nr <= schedule_matmul.MAX_ACCUMULATORS


def test_not_a_matmul_gets_no_attempt() -> None:
    """A reduction that is no (batched) matmul is left to the other schedules."""
    a = te.placeholder((8, 16), "int16", name="a")
    r = te.reduce_axis((0, 16), name="k")
    c = te.compute((8,), lambda i: te.sum(a[i, r].astype("int32"), axis=r), name="matmul")
    func = te.create_prim_func([a, c])
    _, kind = schedule_function(func, target=TARGET)
    assert kind not in KINDS


# ----------------------------------------------------------------------------------------------
# Transformers
# ----------------------------------------------------------------------------------------------


def _integer(config: str) -> tvm.IRModule:
    model = quantized_model("transformer_encoder", config)
    return legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86")


def _fused_primfuncs(config: str) -> dict[str, tirx.PrimFunc]:
    """The unscheduled PrimFuncs of the model (what ``schedule_module`` receives)."""
    mod = _integer(config)
    with TARGET:
        mod, _ = exact_float_rounding(mod)
        mod = rewrite_kernels(mod, TARGET, LoweringReport())
        mod = fuse_passes()(mod)
    return {g.name_hint: f for g, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}


@pytest.mark.parametrize("config", CONFIGS)
def test_attention_matmuls_bit_identical_to_generic(config: str) -> None:
    funcs = _fused_primfuncs(config)
    scheduled_names = []
    for name, func in funcs.items():
        kernel = Kernel(func)
        rules = [r for r in RULES if isinstance(r, ActivationMatmulRule) and r.applies(kernel)]
        if not rules:
            continue
        assert [r.kind for r in rules] == list(reversed(KINDS))
        scheduled_names.append(name)
        generic = schedule_generic(func)
        int16 = all(str(p.ty.dtype) == "int16" for p in func.params[:2])
        rng = np.random.default_rng(0)
        for rule in rules:
            kind = rule.kind
            if kind == schedule_matmul.KIND_PAIRS and not int16:
                with pytest.raises(ValueError):
                    rule.apply(kernel)
                continue
            scheduled = rule.apply(kernel)
            assert lowers(scheduled, TARGET), name
            for _ in range(2):
                arrays = _random_args(func, rng)
                for got, want in zip(_run(scheduled, arrays), _run(generic, arrays),
                                     strict=True):
                    np.testing.assert_array_equal(got, want, err_msg=f"{name} {kind}")
    # Q·Kᵀ and softmax·V (the two layers may share their functions); every matmul block
    # outside a VNNI kernel is one of them.
    expected = [n for n, f in funcs.items() if "matmul" in Kernel(f).block_names
                and not Kernel(f).kinds]
    assert len(scheduled_names) >= 2 and scheduled_names == expected, scheduled_names


def _lowered(config: str, enabled: bool, monkeypatch: pytest.MonkeyPatch
             ) -> tuple[relax.VirtualMachine, LoweringReport, tvm.IRModule]:
    mod = _integer(config)
    with monkeypatch.context() as patch:
        if not enabled:
            patch.setattr(ActivationMatmulRule, "applies", lambda self, kernel: False)
        report = LoweringReport()
        lowered = lower_integer_kernels(mod, TARGET, report=report)
    executable = tvm.compile(lowered, TARGET)
    return relax.VirtualMachine(executable, tvm.cpu()), report, lowered


@pytest.mark.parametrize("config", CONFIGS)
def test_model_with_activation_matmuls(config: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = quantized_model("transformer_encoder", config)
    vm_new, report, lowered = _lowered(config, True, monkeypatch)
    vm_plain, plain_report, _ = _lowered(config, False, monkeypatch)
    # int16 operands (QDQ): vpdpwssd; float32 operands (dynamic quantization): vector FMAs.
    expected = schedule_matmul.KIND if config.startswith("dyn") else schedule_matmul.KIND_PAIRS
    applied = [n for n, k in report.schedules.items() if k == expected]
    assert len(applied) >= 2, report.schedules
    assert not set(KINDS) & set(plain_report.schedules.values())
    for gvar, func in lowered.functions.items():
        if gvar.name_hint in applied:
            assert str(func.attrs["tvm_qdq.scheduled"]) == expected
    assert_builds_agree(model, vm_new, vm_plain, f"transformer/{config}", MIN_COSINE)
