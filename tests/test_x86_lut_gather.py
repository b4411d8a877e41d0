"""256-entry byte table lookups as VBMI permutes (:mod:`tvm_qdq.backend.x86.schedules.lut_gather`).

The permute schedule must give the same bytes as the gather (it is numpy's ``table[x]``), run
only on ``take(table, x)`` with a uint8 ``x`` indexing a 256-entry 8-bit table, and only on a
target with ``avx512vbmi`` (the generic schedule otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_qdq.backend.x86 import lower_integer_kernels
from tvm_qdq.backend.x86.intrin import asm_of
from tvm_qdq.backend.x86.profile import kernel_times
from tvm_qdq.backend.x86.schedules import Kernel
from tvm_qdq.backend.x86.schedules import lut_gather as L
from tvm_qdq.targets import resolve_target

HOST = resolve_target("x86")
NO_VBMI = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})
needs_vbmi = pytest.mark.skipif(not L.has_vbmi(HOST), reason="host CPU without AVX-512 VBMI")


def _take_module(shape: tuple[int, ...], table: np.ndarray, index_dtype: str = "uint8",
                 mode: str = "clip") -> tvm.IRModule:
    x = relax.Var("x", relax.TensorType(shape, index_dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.take(relax.const(table, str(table.dtype)), x, axis=0,
                                      mode=mode))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _take_func(*args, **kwargs) -> tvm.tirx.PrimFunc:
    mod = relax.transform.LegalizeOps()(_take_module(*args, **kwargs))
    return next(f for g, f in mod.functions.items() if g.name_hint.startswith("take"))


def _table(dtype: str, seed: int = 0) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, 256).astype(dtype)


def _lowered(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    with target:  # the schedules read the target's features from the current target
        return lower_integer_kernels(mod, target)


def _schedules(lowered: tvm.IRModule) -> set[str]:
    return {str(f.attrs["tvm_qdq.scheduled"]) for f in lowered.functions.values()
            if isinstance(f, tvm.tirx.PrimFunc)}


def _run(lowered: tvm.IRModule, target: tvm.target.Target, x: np.ndarray):
    executable = tvm.compile(lowered, target)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy(), executable


def test_matches_only_byte_lookups() -> None:
    assert L.match_byte_lookup(_take_func((4, 64), _table("uint8"))) is not None
    assert L.match_byte_lookup(_take_func((4, 64), _table("int8"), mode="wrap")) is not None
    assert L.match_byte_lookup(_take_func((4, 64), _table("uint8"), "int32")) is None
    assert L.match_byte_lookup(_take_func((4, 64), _table("int8"), "int8", "wrap")) is None
    wide = np.arange(256, dtype=np.int16)
    assert L.match_byte_lookup(_take_func((4, 64), wide)) is None
    small = np.arange(100, dtype=np.uint8)  # clip to 99 is not the identity on the codes
    assert L.match_byte_lookup(_take_func((4, 64), small)) is None


def test_no_permutes_without_vbmi() -> None:
    func = _take_func((4, 64), _table("uint8"))
    assert not L.has_vbmi(NO_VBMI)
    assert not L.LutRule().applies(Kernel(func, target=NO_VBMI))
    with NO_VBMI:  # the current target when none is given
        assert not L.LutRule().applies(Kernel(func))


@needs_vbmi
@pytest.mark.parametrize("shape", [(16, 16, 1536), (3, 37), (64,)])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_permutes_equal_the_gather(shape, dtype) -> None:
    table = _table(dtype, seed=len(shape))
    x = np.random.default_rng(1).integers(0, 256, shape).astype(np.uint8)
    x.reshape(-1)[: min(x.size, 256)] = np.arange(min(x.size, 256))  # every code when room
    lowered = _lowered(_take_module(shape, table), HOST)
    assert "lut_vbmi" in _schedules(lowered)
    out, executable = _run(lowered, HOST, x)
    np.testing.assert_array_equal(out, table[x])
    assert "vpermt2b" in asm_of(executable) or "vpermi2b" in asm_of(executable)


def test_generic_schedule_without_vbmi() -> None:
    table = _table("uint8")
    lowered = _lowered(_take_module((8, 64), table), NO_VBMI)
    assert "lut_vbmi" not in _schedules(lowered)


@needs_vbmi
def test_permutes_faster_than_the_gather(monkeypatch) -> None:
    """MiniLM's GELU table on (16, 16, 1536): the permutes beat the generic gather by > 3×."""
    mod = _take_module((16, 16, 1536), _table("uint8"))
    fast = _lowered(mod, HOST)
    monkeypatch.setattr(L.LutRule, "applies", lambda self, kernel: False)
    generic = _lowered(mod, HOST)
    assert "lut_vbmi" in _schedules(fast) and "lut_vbmi" not in _schedules(generic)
    t_fast = sum(k.seconds for k in kernel_times(fast, HOST, 50, 5))
    t_generic = sum(k.seconds for k in kernel_times(generic, HOST, 50, 5))
    assert t_fast * 3 < t_generic, (t_fast, t_generic)
