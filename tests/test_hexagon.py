"""Hexagon target: whole models as one freestanding ELF under qemu-hexagon (issue 7).

Needs the Debian packages ``qemu-user clang-16 lld-16`` (``scripts/setup`` installs them);
the tests that run the toolchain are skipped, with the missing tools named, without them.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tvm

import tvm_qdq
from tvm_qdq.target.hexagon import DEBIAN_PACKAGES, PRESETS, hexagon_target, missing_tools
from tvm_qdq.target.hexagon.plan import Plan, assign_offsets
from tvm_qdq.testing.mixed_models import mixed_case
from tvm_qdq.testing.models import quantized_model, random_feeds
from tvm_qdq.testing.oracle import assert_model_contract, output_qparams, run_ort

MISSING = missing_tools()
needs_toolchain = pytest.mark.skipif(
    bool(MISSING), reason=f"Hexagon toolchain missing: {', '.join(MISSING)} "
    f"(apt-get install -y {' '.join(DEBIAN_PACKAGES)})")
REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

#: (model, config): the acceptance models of the issue plus the MLP.
CASES = [
    ("resnet_cnn", "u8s8_perchannel"),
    ("resnet_cnn", "u16s8"),
    ("mixed", "seeds_op4_u16"),
    ("mlp", "u16s8"),
]


def _model(name: str, config: str):
    return mixed_case(config) if name == "mixed" else quantized_model(name, config)


_BUILT: dict = {}


def _built(name: str, config: str):
    """(model, hexagon compiled, x86 compiled), built once per session."""
    key = (name, config)
    if key not in _BUILT:
        from tvm_qdq.target.hexagon import compile_model

        model = _model(name, config)
        _BUILT[key] = (model, compile_model(model, "hexagon"), tvm_qdq.compile(model, "x86"))
    return _BUILT[key]


# -- no toolchain needed --------------------------------------------------------------------------


def test_presets_are_llvm_hexagon_dicts() -> None:
    target = hexagon_target()
    assert target["kind"] == "llvm" and target["mtriple"] == "hexagon-unknown-linux-musl"
    assert target["mcpu"] == "hexagonv68"
    assert "+hvxv68" in target["mattr"] and "+hvx-length128b" in target["mattr"]
    assert "-hvx-qfloat" in target["mattr"], "qemu-hexagon has no HVX float"
    for arch in ("v69", "v73"):
        assert PRESETS[f"hexagon-{arch}"]()["mcpu"] == f"hexagon{arch}"
    tvm.target.Target(PRESETS["hexagon"]())  # a valid TVM target
    with pytest.raises(ValueError, match="unknown Hexagon version"):
        hexagon_target("v1")


def test_static_memory_plan_never_overlaps_live_buffers() -> None:
    plan = Plan()
    x = plan.add("x", (1, 64), "uint8", "input")
    a = plan.add("a", (1, 4096), "int32", "temp")
    b = plan.add("b", (1, 4096), "int32", "temp")
    c = plan.add("c", (1, 64), "uint8", "temp")
    d = plan.add("d", (1, 10), "float32", "output")
    from tvm_qdq.target.hexagon.plan import KernelCall

    plan.calls = [KernelCall("k0", "k0", [x, a], 1), KernelCall("k1", "k1", [a, b], 1),
                  KernelCall("k2", "k2", [b, a, c], 1), KernelCall("k3", "k3", [c, d], 1)]
    plan.inputs, plan.outputs = [x], [d]
    assign_offsets(plan)
    bufs = plan.buffers
    for i, p in enumerate(bufs):
        assert p.offset % 128 == 0
        for q in bufs[i + 1:]:
            live = not (p.last < q.first or q.last < p.first)
            apart = p.offset + p.nbytes <= q.offset or q.offset + q.nbytes <= p.offset
            if live and p.kind != "const" and q.kind != "const":
                assert apart, f"{p.name} and {q.name} overlap while both live"
    assert plan.arena_size >= max(b.offset + b.nbytes for b in bufs)


# -- toolchain and emulator ------------------------------------------------------------------------


@needs_toolchain
@pytest.mark.parametrize(("name", "config"), CASES)
def test_model_runs_on_hexagon_bit_exact_with_x86(name: str, config: str) -> None:
    model, hexagon, x86 = _built(name, config)
    for seed in (1, 2):
        feeds = random_feeds(model, seed=seed)
        expected = x86.run(feeds)
        actual = hexagon.run(feeds)
        assert len(actual) == len(expected)
        for got, want in zip(actual, expected, strict=True):
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want), f"{name}/{config}/{seed}: Hexagon != x86"
    # and the DESIGN.md contract with ORT's reference path (first output)
    feeds = random_feeds(model, seed=1)
    out_name = model.graph.output[0].name
    qparams = output_qparams(model)[out_name]
    if qparams is not None:
        scale, zero_point = qparams
        assert_model_contract(hexagon.run(feeds)[0],
                              run_ort(model, feeds, optimization_level=REFERENCE)[0],
                              scale, zero_point, classify=name in ("resnet_cnn", "mlp"),
                              name=f"hexagon/{name}/{config}")


@needs_toolchain
def test_conv_and_matmul_kernels_use_vrmpy() -> None:
    _, hexagon, _ = _built("resnet_cnn", "u8s8_perchannel")
    mix = hexagon.instruction_mix()
    kernels = hexagon.meta["notes"]["kernels"]
    assert sum(k["vrmpy"] for k in kernels) >= 7, kernels
    dots = [sym for sym, func in hexagon.meta["functions"].items() if "tq_hx_" in func]
    assert dots, "conv/matmul kernels were rewritten to the vrmpy kernels"
    for sym in dots:
        assert mix[sym]["vrmpy"] > 0, (sym, mix[sym])
        assert "vrmpy" in hexagon.meta["notes"]["schedules"][sym]
    # the other kernels get the vectorizing schedule (their float requantize math stays
    # scalar IEEE code: HVX float is off, qemu does not run it)
    schedules = hexagon.meta["notes"]["schedules"]
    assert any("vectorized" in schedules[s] for s in mix if s not in dots), schedules


@needs_toolchain
def test_profile_counts_instructions_per_kernel() -> None:
    model, hexagon, _ = _built("resnet_cnn", "u8s8_perchannel")
    outputs, profile = hexagon.profile(random_feeds(model, seed=1))
    assert np.array_equal(outputs[0], hexagon.run(random_feeds(model, seed=1))[0])
    assert profile.instructions > profile.packets > 0
    assert 0 < profile.hvx < profile.instructions
    names = [k.name for k in profile.kernels]
    assert names[0] == "driver" and set(hexagon.meta["symbols"]) <= set(names)
    vrmpy = sum(k.vrmpy for k in profile.kernels)
    # 3x3 16→16 conv on 32x32: 1024 positions × 9 taps × 4 channel groups = 36864 vrmpy
    assert vrmpy >= 36864
    assert profile.instructions == sum(k.instructions for k in profile.kernels)


@needs_toolchain
def test_export_writes_elf_object_header_and_loads(tmp_path) -> None:
    from tvm_qdq.target.hexagon import load_hexagon

    model, hexagon, _ = _built("mlp", "u16s8")
    out = hexagon.export(tmp_path / "hx")
    for name in ("model.elf", "kernels.o", "qdq_model.c", "qdq_model.h", "qdq_abi.h",
                 "consts.bin", "meta.json"):
        assert (out / name).exists(), name
    assert (out / "model.elf").read_bytes()[18:20] == (164).to_bytes(2, "little"), "EM_QDSP6"
    header = (out / "qdq_model.h").read_text()
    assert "int qdq_model_run(void);" in header and "QDQ_MODEL_NUM_INPUTS 1" in header
    again = load_hexagon(out)
    feeds = random_feeds(model, seed=3)
    assert np.array_equal(again.run(feeds)[0], hexagon.run(feeds)[0])
    assert again.output_names == hexagon.output_names


@needs_toolchain
def test_feeds_are_checked_like_compiled_run() -> None:
    from tvm_qdq.errors import InputError

    model, hexagon, _ = _built("mlp", "u16s8")
    feeds = random_feeds(model, seed=1)
    name = hexagon.input_names[0]
    with pytest.raises(InputError, match="missing"):
        hexagon.run({})
    with pytest.raises(InputError, match="element type"):
        hexagon.run({name: feeds[name].astype(np.float64)})
    assert np.array_equal(hexagon.run([feeds[name]])[0], hexagon.run(feeds)[0])


@needs_toolchain
def test_no_packet_stores_and_reloads_one_address() -> None:
    """qemu-hexagon 7.2 runs a store and a load of the same address in one packet in the
    wrong order (it hit the runtime's old volatile rounding): the ELF must not contain one."""
    from tvm_qdq.target.hexagon import isa

    _, hexagon, _ = _built("resnet_cnn", "u16s8")
    assert isa.same_address_store_load(hexagon._disassembly()) == []
