"""Hexagon target: whole models as one freestanding ELF under qemu-hexagon (issue 7).

Needs the Debian packages ``qemu-user clang-16 lld-16`` (``scripts/setup`` installs them);
the tests that run the toolchain are skipped, with the missing tools named, without them.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from tvm import te

import tvm_qdq
from tvm_qdq.backend.hexagon import DEBIAN_PACKAGES, PRESETS, hexagon_target, missing_tools
from tvm_qdq.backend.hexagon.plan import Plan, assign_offsets
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
    ("mlp", "u16u8"),  # uint8 weights with a zero point: the matmul offset form
]


def _model(name: str, config: str):
    return mixed_case(config) if name == "mixed" else quantized_model(name, config)


_BUILT: dict = {}
_FIXED: dict = {}


def _built(name: str, config: str):
    """(model, hexagon compiled with the float requantize, x86 compiled), built once."""
    key = (name, config)
    if key not in _BUILT:
        model = _model(name, config)
        _BUILT[key] = (model, tvm_qdq.compile(model, "hexagon", requantize="float"),
                       tvm_qdq.compile(model, "x86"))
    return _BUILT[key]


def _built_fixed(name: str, config: str):
    """(model, hexagon compiled with the default ``requantize="fixed"``), built once."""
    key = (name, config)
    if key not in _FIXED:
        model = _model(name, config)
        _FIXED[key] = (model, tvm_qdq.compile(model, "hexagon"))
    return _FIXED[key]


# -- no toolchain needed --------------------------------------------------------------------------


def test_requantize_option_is_hexagon_only() -> None:
    model = _model("mlp", "u8s8_perchannel")
    with pytest.raises(ValueError, match="Hexagon option"):
        tvm_qdq.compile(model, "x86", requantize="fixed")


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
    from tvm_qdq.backend.hexagon.plan import KernelCall

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


def _random_requantize_case(rng: np.random.Generator, qtype: tuple[int, int], acc_bits: int):
    """A per-channel multiplier (spread ≤ 2^6, base 2^-30..2^8), an output zero point and
    accumulators: values mapping into the output range, near-tie values, and the extremes."""
    qmin, qmax = qtype
    channels = int(rng.integers(1, 5))
    m = 2.0 ** rng.uniform(-30, 8) * 2.0 ** rng.uniform(0, 6, size=(1, channels, 1))
    zp = int(rng.integers(qmin, qmax + 1))
    lo, hi = -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1
    reach = (qmax - qmin + 4) / m  # |t| that spans the output range
    inside = (rng.uniform(-1, 1, (64, channels, 1)) * reach).astype(np.int64)
    ties = np.rint((rng.integers(-300, 300, (16, channels, 1)) + 0.5) / m).astype(np.int64)
    extremes = np.broadcast_to(np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi]).reshape(-1, 1, 1),
                               (7, channels, 1))
    anywhere = rng.integers(lo, hi, size=(8, channels, 1), endpoint=True)
    t = np.clip(np.concatenate([inside, ties, extremes, anywhere]), lo, hi)
    return m, zp, t


def test_fixed_point_requantize_within_one_lsb_of_the_float_formula() -> None:
    """DESIGN.md §2: the fixed-point requantize differs from
    ``saturate(round_half_even(t · m) + zp)`` by at most 1 LSB, and only where ``t · m`` is
    within the plan's error bound of a half integer."""
    from tvm_qdq.qnn.fixed_point import plan_fixed_point, requantize_fixed

    rng = np.random.default_rng(7)
    qtypes = {(0, 255): "uint8", (-128, 127): "int8", (0, 65535): "uint16",
              (-32768, 32767): "int16"}
    differ = np.zeros(2, np.int64)  # [generic inputs, near-tie inputs]
    total = np.zeros(2, np.int64)
    narrow = 0
    for trial in range(1200):
        qtype = list(qtypes)[trial % 4]
        acc_bits = 64 if trial % 3 == 0 else 32
        m, zp, t = _random_requantize_case(rng, qtype, acc_bits)
        c = rng.uniform(-50, 50, size=m.shape) if trial % 5 == 4 else None
        fp = plan_fixed_point(m, acc_bits, np.array(zp), *qtype, c)
        assert fp is not None, (m.ravel(), zp, qtype, acc_bits)
        narrow += not fp.wide
        got = requantize_fixed(t, fp, zp, *qtype)
        exact = t.astype(np.float64) * m + (0.0 if c is None else c)
        want = np.clip(np.rint(exact) + zp, *qtype)
        diff = np.abs(got - want)
        assert diff.max() <= 1, (m.ravel(), zp, qtype, acc_bits)
        if diff.any():
            distance = np.abs(exact - np.floor(exact) - 0.5)[diff > 0]
            assert distance.max() <= fp.error_bound, (distance.max(), fp)
        tie_rows = np.zeros(len(t), bool)
        tie_rows[64:80] = True
        for k, rows in enumerate((~tie_rows, tie_rows)):
            differ[k] += int(np.count_nonzero(diff[rows]))
            total[k] += diff[rows].size
    assert narrow > 800, "int32 accumulators (and most int64 ones) take the HVX form"
    share = differ / total
    print(f"\nfixed-point vs float requantize, elements 1 LSB apart: {differ[0]} of {total[0]} "
          f"({share[0]:.4%}) generic, {differ[1]} of {total[1]} ({share[1]:.2%}) near ties")
    assert share[0] < 1e-3


def test_fixed_point_add_within_one_lsb_of_the_exact_sum() -> None:
    """The int32 Add ``round(Σ x_i · r_i)`` (ratios of either sign, u8/u16 operands shifted by
    their zero points) is within 1 LSB of the exact sum, differing only near half integers."""
    from tvm_qdq.qnn.fixed_point import add_fixed, plan_fixed_point_sum

    rng = np.random.default_rng(11)
    differ = total = 0
    for trial in range(400):
        bits = [9, 9] if trial % 2 else [17, 17]  # q - zp of uint8 / uint16
        qmin, qmax = (0, 255) if trial % 2 else (0, 65535)
        ratios = [np.array(2.0 ** rng.uniform(-9, 2) * rng.choice([-1, 1])) for _ in bits]
        fp = plan_fixed_point_sum(ratios, bits)
        assert fp is not None, (ratios, bits)
        reach = [min(2 ** (b - 1), (qmax - qmin) / abs(float(r)))
                 for b, r in zip(bits, ratios, strict=True)]
        xs = [np.concatenate([rng.uniform(-1, 1, 200) * lim, [-(2 ** (b - 1)), 2 ** (b - 1) - 1]])
              .astype(np.int64) for lim, b in zip(reach, bits, strict=True)]
        zp = int(rng.integers(qmin, qmax + 1))
        exact = sum(x.astype(np.float64) * float(r) for x, r in zip(xs, ratios, strict=True))
        want = np.clip(np.rint(exact) + zp, qmin, qmax)
        diff = np.abs(add_fixed(xs, fp, zp, qmin, qmax) - want)
        assert diff.max() <= 1
        if diff.any():
            near = np.abs(exact - np.floor(exact) - 0.5)[diff > 0]
            assert near.max() <= fp.error_bound, (near.max(), fp)
        differ += int(np.count_nonzero(diff))
        total += diff.size
    print(f"\nfixed-point Add vs exact sum: {differ} of {total} elements 1 LSB apart")
    assert differ / total < 1e-3


def test_fixed_point_kernel_matches_numpy_reference() -> None:
    """The ``tq_hx_requantize`` PrimFunc (narrow and wide forms), built for the host, is
    bit-exact with :func:`tvm_qdq.qnn.fixed_point.requantize_fixed`."""
    from tvm_qdq.backend.hexagon.requant import _prim_func, requantize_te
    from tvm_qdq.qnn.fixed_point import plan_fixed_point, requantize_fixed

    rng = np.random.default_rng(3)
    cases = [("int32", 32, (0, 255), 3e-4, None), ("int32", 32, (-128, 127), 5.0, None),
             ("int64", 64, (0, 65535), 1e-9, None), ("int64", 64, (0, 255), 2e-3, None),
             ("int32", 32, (0, 255), 3e-4, [0.37, -4.5, 12.25, 0.0])]  # bias off the grid
    seen_wide = set()
    for acc, bits, qtype, base, offset in cases:
        m = base * np.linspace(1, 3, 4).reshape(1, 4, 1)
        zp = np.array([[[qtype[0] + 7]]])
        c = None if offset is None else np.array(offset).reshape(1, 4, 1)
        fp = plan_fixed_point(m, bits, zp, *qtype, c)
        seen_wide.add(fp.wide)
        out = {(0, 255): "uint8", (-128, 127): "int8", (0, 65535): "uint16"}[qtype]
        func = _prim_func(requantize_te((2, 4, 32), acc, m.shape, zp.shape, fp, *qtype, out))
        lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                          target="llvm")
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        t = rng.integers(lo, hi, size=(2, 4, 32), endpoint=True, dtype=np.int64)
        t[0, :, :8] = rng.integers(-4, 4, size=(4, 8)) * int(1 / base)
        t[1, :, :2] = [lo, hi]
        t = t.astype(acc)
        dev = tvm.cpu()
        inputs = (t, fp.multiplier, zp.astype(np.int32)) + (
            () if fp.offset is None else (fp.offset,))
        args = [tvm.runtime.tensor(a, dev) for a in inputs]
        result = tvm.runtime.tensor(np.zeros(t.shape, out), dev)
        lib["main"](*args, result)
        assert np.array_equal(result.numpy(), requantize_fixed(t, fp, zp, *qtype)), (acc, base)
    assert seen_wide == {False, True}


def test_fixed_point_rewrite_of_the_relax_chains_runs_like_the_reference() -> None:
    """``fixed_point_requantize`` on the requantize ops the integer pass emits (plain, and with
    a bias off the accumulator grid): every op is legalized to fixed point, and the result,
    built for the host, equals the numpy reference."""
    from tvm import relax

    from tvm_qdq.backend.hexagon.requant import fixed_point_requantize
    from tvm_qdq.qnn.fixed_point import plan_fixed_point, requantize_fixed
    from tvm_qdq.qnn.integer_ops import Requantize

    m = np.array([2e-4, 5e-4, 1e-3]).reshape(1, 3, 1)
    c = np.array([0.25, -3.4, 7.9]).reshape(1, 3, 1)
    zp = np.array([[[3]]], np.float64)
    bb = relax.BlockBuilder()
    t = relax.Var("t", relax.TensorType([2, 3, 64], "int32"))
    with bb.function("main", [t]):
        with bb.dataflow():
            outs = [bb.emit(Requantize(t, np.zeros((), np.int64), m, zp.astype(np.int64), 0,
                                       255, "uint8", bias).call()) for bias in (None, c)]
            result = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(result)
    mod, report = fixed_point_requantize(bb.get())
    assert len(report) == 2 and all(r["fixed"] for r in report), report
    executable = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(executable, tvm.cpu())
    rng = np.random.default_rng(2)
    values = rng.integers(-(2**20), 2**20, size=(2, 3, 64)).astype("int32")
    values[0, :, :2] = [-(2**31), 2**31 - 1]
    got = vm["main"](tvm.runtime.tensor(values, tvm.cpu()))
    for out, bias in zip(got, (None, c), strict=True):
        fp = plan_fixed_point(m, 32, zp, 0, 255, bias)
        assert np.array_equal(out.numpy(), requantize_fixed(values, fp, zp, 0, 255))


def test_fixed_point_report_lists_requantize_fallbacks_only() -> None:
    """A requantize with no fixed-point form (a zero multiplier) keeps its float64 form and is
    reported as ``fixed: false`` with its function; a float64 → int32 cast that is no
    requantize (PyTorch dynamic quantization's run-time zero point,
    ``int32(round(qmin - lo / scale))``) is left alone and not reported (issue 16: the scan
    that took every such cast for a requantize failed on the torch rows)."""
    from tvm import relax

    from tvm_qdq.backend.hexagon.requant import fixed_point_requantize
    from tvm_qdq.qnn.integer_ops import Requantize

    bb = relax.BlockBuilder()
    t = relax.Var("t", relax.TensorType([2, 3, 8], "int32"))
    f = relax.Var("f", relax.TensorType([], "float64"))
    with bb.function("main", [t, f]):
        with bb.dataflow():
            m = np.array([2e-4, 0.0, 1e-3]).reshape(1, 3, 1)
            q = bb.emit(Requantize(t, np.zeros((), np.int64), m, np.zeros((), np.int64), -128,
                                   127, "int8").call())
            zp = bb.emit(relax.op.astype(relax.op.round(f), "int32"))
            result = bb.emit_output(relax.Tuple([q, zp]))
        bb.emit_func_output(result)
    mod, report = fixed_point_requantize(bb.get())
    assert report == [{"fixed": False, "function": "main", "shape": [2, 3, 8],
                       "why": "no fixed-point form within the error bound"}], report
    executable = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(executable, tvm.cpu())
    values = np.arange(-24, 24, dtype=np.int32).reshape(2, 3, 8) * 1000
    got, zp = vm["main"](tvm.runtime.tensor(values, tvm.cpu()),
                         tvm.runtime.tensor(np.array(6.5), tvm.cpu()))
    assert np.array_equal(got.numpy(), np.clip(np.round(values * m), -128, 127).astype(np.int8))
    assert int(zp.numpy()) == 6


def test_fixed_point_add_kernel_matches_numpy_reference() -> None:
    """The ``tq_hx_add`` PrimFunc (broadcast operand, per-channel ratio), built for the host,
    is bit-exact with :func:`tvm_qdq.qnn.fixed_point.add_fixed`."""
    from tvm_qdq.backend.hexagon.requant_add import add_te
    from tvm_qdq.qnn.fixed_point import add_fixed, plan_fixed_point_sum

    rng = np.random.default_rng(5)
    ratios = [np.array([0.7, -1.3, 0.2]).reshape(1, 3, 1), np.array(0.45)]
    fp = plan_fixed_point_sum(ratios, [17, 9])
    shapes, dtypes = [(2, 3, 16), (3, 1)], ["int32", "int16"]
    func = te.create_prim_func(add_te(shapes, dtypes, [r.shape for r in ratios], (),
                                      (2, 3, 16), fp, 0, 65535, "uint16"))
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target="llvm")
    xs = [rng.integers(-65535, 65536, size=shapes[0]).astype("int32"),
          rng.integers(-255, 256, size=shapes[1]).astype("int16")]
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in (*xs, *fp.multipliers, np.array(9, np.int32))]
    result = tvm.runtime.tensor(np.zeros(shapes[0], "uint16"), dev)
    lib["main"](*args, result)
    assert np.array_equal(result.numpy(), add_fixed(xs, fp, 9, 0, 65535))


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


#: Models of the fixed-point acceptance: the CNN u8/s8 and u16/s8, the mixed u8/u16 model.
FIXED_CASES = [("resnet_cnn", "u8s8_perchannel"), ("resnet_cnn", "u16s8"),
               ("mixed", "seeds_op4_u16")]
#: Hexagon double / single precision float mnemonics (scalar IEEE code).
FLOAT_MNEMONICS = ("dfmpy", "dfadd", "dfsub", "sfmpy", "sfadd", "sfsub", "convert_")


@needs_toolchain
@pytest.mark.parametrize(("name", "config"), FIXED_CASES)
def test_fixed_point_requantize_models_within_contract(name: str, config: str) -> None:
    """``requantize="fixed"``: every requantize chain becomes integer code; every output stays
    within the DESIGN.md whole-model contract of ORT's reference path."""
    model, hexagon = _built_fixed(name, config)
    notes = hexagon.meta["notes"]["requantize"] + hexagon.meta["notes"]["add"]
    assert notes and all(n["fixed"] for n in notes), notes
    qparams = output_qparams(model)
    for seed in (1, 2):
        feeds = random_feeds(model, seed=seed)
        expected = run_ort(model, feeds, optimization_level=REFERENCE)
        for out, got, want in zip(model.graph.output, hexagon.run(feeds), expected,
                                  strict=True):
            scale, zero_point = qparams[out.name]
            assert_model_contract(got, want, scale, zero_point,
                                  classify=name == "resnet_cnn",
                                  name=f"hexagon-fixed/{name}/{config}/{out.name}/{seed}")


@needs_toolchain
def test_torch_dynamic_mlp_runs_on_hexagon() -> None:
    """PyTorch's dynamic int8 MLP (benchmark row ``torch_mlp/torch_dynamic``: run-time
    activation qparams, ``fma(float32(acc), s_x · s_w, bias)`` float outputs) compiles and runs
    on Hexagon (issue 16). It has no requantize op, so ``fixed`` and ``float`` are the same
    build; the float output is judged as ``tests/test_torch_dynamic.py`` judges the MLPs and
    as the float outputs above are judged against x86: bit for bit, against the x86 build and
    against PyTorch itself."""
    torch = pytest.importorskip("torch")
    from tvm_qdq.testing import torch_models as tm

    torch.manual_seed(0)
    qmodel = tm.quantize_dynamic(tm.MLP().eval().fused())
    x = torch.randn(64, 32)
    with torch.no_grad():
        mod = tvm_qdq.from_torch(torch.jit.trace(qmodel, (x,)), (x,), input_names=["x"])
    hexagon = tvm_qdq.compile(mod, "hexagon")
    assert hexagon.meta["notes"]["requantize"] == [] and hexagon.meta["notes"]["add"] == []
    x86 = tvm_qdq.compile(mod, "x86")
    for seed in (1, 2):
        feed = torch.randn(64, 32, generator=torch.Generator().manual_seed(seed)) * seed
        with torch.no_grad():
            want = qmodel(feed).numpy()
        (got,) = hexagon.run({"x": feed.numpy()})
        np.testing.assert_array_equal(got, x86.run({"x": feed.numpy()})[0],
                                      err_msg=f"torch_mlp/{seed}: Hexagon != x86")
        np.testing.assert_array_equal(got, want, err_msg=f"torch_mlp/{seed}: != PyTorch")


def _float_instructions(build, symbol: str) -> list[str]:
    """The scalar IEEE float instructions of a kernel (both its functions)."""
    from tvm_qdq.backend.hexagon import isa

    dis = build._disassembly()
    found = []
    for fname in (f"__tvm_ffi_{symbol}", f"{symbol}_compute_"):
        if fname in dis.functions:
            found += [ins for p in dis.function_packets(fname) for ins in p.instructions
                      if isa.mnemonic(ins).startswith(FLOAT_MNEMONICS)]
    return found


@needs_toolchain
def test_fixed_point_epilogues_are_hvx_integer_code() -> None:
    """With ``requantize="fixed"`` the vrmpy kernels' requantize epilogues hold no float
    instruction (the float build's do), and the model runs fewer instructions, more of them
    HVX."""
    model, fixed = _built_fixed("resnet_cnn", "u8s8_perchannel")
    _, floating, _ = _built("resnet_cnn", "u8s8_perchannel")
    for build, expect_float in ((fixed, False), (floating, True)):
        dots = [s for s, f in build.meta["functions"].items() if "tq_hx_conv2d" in f]
        assert dots
        with_float = [s for s in dots if _float_instructions(build, s)]
        assert bool(with_float) == expect_float, (build.meta["requantize"], with_float)
    feeds = random_feeds(model, seed=1)
    _, fixed_profile = fixed.profile(feeds)
    _, float_profile = floating.profile(feeds)
    assert fixed_profile.hvx_share > float_profile.hvx_share
    assert fixed_profile.instructions < float_profile.instructions


@needs_toolchain
def test_depthwise_conv_and_elementwise_kernels_run_on_hvx() -> None:
    """Non-GEMM kernels: the depthwise conv (channels on the vector lanes) and
    the integer elementwise kernels contain HVX instructions in the default (fixed) build."""
    _, fixed = _built_fixed("resnet_cnn", "u8s8_perchannel")
    mix = fixed.instruction_mix()
    functions = fixed.meta["functions"]
    schedules = fixed.meta["notes"]["schedules"]
    depthwise = [s for s, f in functions.items() if "dwconv2d" in f]
    assert depthwise, functions
    for sym in depthwise:
        assert mix[sym]["hvx"] > 0, (sym, mix[sym])
        assert "1 epilogue vectorized" in schedules[sym], schedules[sym]
    # the fixed-point requantize / Add kernels not fused into a vrmpy epilogue (the global
    # average pool's requantize is now exact int64 rational arithmetic, scalar: 1d68377)
    requant = [s for s, f in functions.items()
               if f.startswith(("fused_tq_hx_requantize", "fused_tq_hx_add", "fused_cast_tq_hx"))]
    assert requant and all(mix[s]["hvx"] > 0 for s in requant), {s: mix[s] for s in requant}


@needs_toolchain
def test_mixed_model_uint8_weight_convs_use_vrmpy_offset_form() -> None:
    """The mixed u8/u16 model's uint8 weights with a zero point (``|w - zw| ≤ 255``) take
    ``vrmpy`` through the per-channel offset form (u8 and u16 activations); the results are
    bit-exact with x86 in ``test_model_runs_on_hexagon_bit_exact_with_x86[mixed-...]``."""
    _, hexagon = _built_fixed("mixed", "seeds_op4_u16")
    convs = [k for k in hexagon.meta["notes"]["kernels"]
             if k["op"] == "conv2d" and not k.get("depthwise")]
    assert convs and all(k["vrmpy"] and k["offset"] for k in convs), convs
    assert {k["act"] for k in convs} == {"uint8", "uint16"}
    mix = hexagon.instruction_mix()
    dots = [s for s, f in hexagon.meta["functions"].items() if "tq_hx_conv2d" in f]
    assert dots and all(mix[s]["vrmpy"] > 0 for s in dots)


@needs_toolchain
def test_uint8_weight_matmuls_use_vrmpy_offset_form() -> None:
    """The MLP u16/u8 (uint8 weights with a zero point) takes vrmpy through the per-column
    offset form; bit-exact with x86 in ``test_model_runs_on_hexagon_bit_exact_with_x86``."""
    _, hexagon, _ = _built("mlp", "u16u8")
    matmuls = [k for k in hexagon.meta["notes"]["kernels"] if k["op"] == "matmul"]
    assert matmuls and all(k["vrmpy"] and k["offset"] for k in matmuls), matmuls
    mix = hexagon.instruction_mix()
    dots = [s for s, f in hexagon.meta["functions"].items() if "tq_hx_matmul" in f]
    assert dots and all(mix[s]["vrmpy"] > 0 for s in dots)


@needs_toolchain
def test_conv_and_matmul_kernels_use_vrmpy() -> None:
    _, hexagon, _ = _built("resnet_cnn", "u8s8_perchannel")
    mix = hexagon.instruction_mix()
    kernels = hexagon.meta["notes"]["kernels"]
    assert sum(k["vrmpy"] for k in kernels) >= 7, kernels
    dots = [sym for sym, func in hexagon.meta["functions"].items()
            if "tq_hx_conv2d" in func or "tq_hx_matmul" in func]
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
    model, hexagon, _ = _built("mlp", "u16s8")
    out = hexagon.export(tmp_path / "hx")
    for name in ("model.elf", "kernels.o", "qdq_model.c", "qdq_model.h", "qdq_abi.h",
                 "consts.bin", "meta.json"):
        assert (out / name).exists(), name
    assert (out / "model.elf").read_bytes()[18:20] == (164).to_bytes(2, "little"), "EM_QDSP6"
    header = (out / "qdq_model.h").read_text()
    assert "int qdq_model_run(void);" in header and "QDQ_MODEL_NUM_INPUTS 1" in header
    again = tvm_qdq.load(out)
    assert type(again) is type(hexagon)
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
    from tvm_qdq.backend.hexagon import isa

    _, hexagon, _ = _built("resnet_cnn", "u16s8")
    assert isa.same_address_store_load(hexagon._disassembly()) == []
