"""x86 kernels with symbolic sizes (padded rows, tvm_qdq.backend.x86.kernels): VNNI matmuls
and convs, activation × activation matmuls; one build serves every size, exact against
numpy, vpdpbusd in the assembly; the lowering takes these kernels for symbolic batch / rows /
widths and records every kernel it refuses because of a symbolic dimension."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, te, tirx

from tvm_qdq.backend.x86 import LoweringReport, asm_of, has_vnni, lower_integer_kernels
from tvm_qdq.backend.x86 import kernels as K
from tvm_qdq.backend.x86.amx import without_amx
from tvm_qdq.backend.x86.profile import time_primfunc
from tvm_qdq.backend.x86.schedules.matmul import schedule_padded_activation_matmul
from tvm_qdq.backend.x86.schedules.vnni import schedule_vnni, symbolic_row_tile
from tvm_qdq.targets import resolve_target

TARGET = without_amx(resolve_target("x86"))  # the VNNI kernels (AMX: test_x86_amx.py)
pytestmark = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")

RNG = np.random.default_rng(17)
ROWS = (1, 3, 8, 77, 128, 257)


def _random(shape, dtype: str) -> np.ndarray:
    info = np.iinfo(dtype)
    return RNG.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)


def _shift_requantize(acc: te.Tensor) -> te.Tensor:
    """A fused requantize-like epilogue: ``clip((acc + 3) >> 2, 0, 255)`` as uint8."""
    return te.compute(acc.shape, lambda i, j: tirx.max(
        tirx.min((acc[i, j] + 3) >> 2, 255), 0).astype("uint8"), name="requantize")


def _shift_requantize_ref(acc: np.ndarray) -> np.ndarray:
    return np.clip((acc + 3) >> 2, 0, 255).astype(np.uint8)


def _bare_matmul(m, k: int, w: np.ndarray, a_dtype: str, epilogue: bool):
    """The scheduled PrimFunc ``a[m, k] @ w`` (+ the epilogue) and its constant inputs."""
    n = int(w.shape[1])
    spec = K.MatmulSpec(batch=(), m=m, k=k, n=n, in_dtype=a_dtype, out_dtype="int32")
    terms = K.weight_terms(w)
    packed = K.pack_matmul_weight(w, terms)
    a = te.placeholder((m, k), a_dtype, name="a")
    bp = te.placeholder(packed.shape, "int8", name="bp")
    params, consts, kwargs = [a, bp], [packed], {}
    corr = K.matmul_correction(w, a_dtype)
    if corr is not None:
        kwargs["corr"] = te.placeholder((n,), "int32", name="corr")
        params.append(kwargs["corr"])
        consts.append(corr.astype(np.int32))
    if not isinstance(m, int):
        kwargs["row_tile"] = symbolic_row_tile(spec.n16 // K.LANES).mr
    out = K.matmul_vnni(a, bp, spec, **kwargs)
    if epilogue:
        out = _shift_requantize(out)
    return schedule_vnni(te.create_prim_func([*params, out])), consts


BARE_CASES = [
    # K, N, a dtype, weight range, epilogue
    (64, 48, "uint8", 127, True),
    (64, 48, "uint8", 127, False),
    (30, 20, "int8", 127, True),
    (96, 80, "uint8", 255, True),  # two int8 weight terms
]


@pytest.mark.parametrize("case", BARE_CASES, ids=lambda c: "-".join(map(str, c)))
def test_one_build_serves_every_row_count(case) -> None:
    k, n, a_dtype, w_max, epilogue = case
    w = RNG.integers(-w_max, w_max + 1, size=(k, n)).astype(np.int16)
    func, consts = _bare_matmul(tirx.Var("m", "int64"), k, w, a_dtype, epilogue)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=TARGET)
    assert "vpdpbusd" in asm_of(lib)
    out_dtype = "uint8" if epilogue else "int32"
    for m in ROWS:
        a = _random((m, k), a_dtype)
        out = tvm.runtime.empty((m, n), out_dtype)
        lib["main"](tvm.runtime.tensor(a), *map(tvm.runtime.tensor, consts), out)
        ref = a.astype(np.int64) @ w.astype(np.int64)
        expected = _shift_requantize_ref(ref) if epilogue else ref.astype(np.int32)
        np.testing.assert_array_equal(out.numpy(), expected, err_msg=f"m = {m}")


def test_symbolic_rows_time_against_static() -> None:
    """Prints (does not assert) the bare kernel's time, symbolic vs a static build per size."""
    k = n = 384
    w = RNG.integers(-127, 128, size=(k, n)).astype(np.int8)
    symbolic, _ = _bare_matmul(tirx.Var("m", "int64"), k, w, "uint8", True)
    for m in (32, 128, 256):
        static, _ = _bare_matmul(m, k, w, "uint8", True)
        t_sym = time_primfunc(symbolic, TARGET, number=20, repeat=7, sizes={"m": m})
        t_static = time_primfunc(static, TARGET, number=20, repeat=7)
        print(f"rows {m}: symbolic {t_sym * 1e6:.1f} us, static {t_static * 1e6:.1f} us, "
              f"ratio {t_sym / t_static:.2f}")


ACT_CASES = [
    # a dims, b dims (str: symbolic), row tile, column tile: Q·Kᵀ (n = seq), P·V (k = seq)
    (("batch", 2, "seq", 16), ("batch", 2, 16, "seq"), 4, 32),
    (("batch", 2, "seq", "seq"), ("batch", 2, "seq", 16), 8, 16),
]


@pytest.mark.parametrize("pairs", [False, True], ids=("vector", "pairs"))
@pytest.mark.parametrize("case", ACT_CASES, ids=("qk", "pv"))
def test_padded_activation_matmul_serves_every_size(case, pairs: bool) -> None:
    a_dims, b_dims, row_tile, col_tile = case
    names = {"batch": tirx.Var("batch", "int64"), "seq": tirx.Var("seq", "int64")}
    a = te.placeholder([names.get(d, d) for d in a_dims], "int16", name="a")
    b = te.placeholder([names.get(d, d) for d in b_dims], "int16", name="b")
    c = K.activation_matmul(a, b, row_tile=row_tile, col_tile=col_tile, even_k=pairs)
    q = te.compute(c.shape, lambda *i: tirx.max(tirx.min((c[i] + 8) >> 4, 255), 0).astype(
        "uint8"), name="requantize")
    func = schedule_padded_activation_matmul(te.create_prim_func([a, b, q]), parallel=True,
                                             pairs=pairs)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=TARGET)
    assert ("vpdpwssd" in asm_of(lib)) == pairs
    for batch, seq in ((1, 1), (1, 8), (4, 77), (2, 33)):
        sizes = {"batch": batch, "seq": seq}
        av = RNG.integers(-300, 300, [sizes.get(d, d) for d in a_dims]).astype(np.int16)
        bv = RNG.integers(-300, 300, [sizes.get(d, d) for d in b_dims]).astype(np.int16)
        ref = np.clip((av.astype(np.int64) @ bv.astype(np.int64) + 8) >> 4, 0, 255)
        out = tvm.runtime.empty(ref.shape, "uint8")
        lib["main"](tvm.runtime.tensor(av), tvm.runtime.tensor(bv), out)
        np.testing.assert_array_equal(out.numpy(), ref.astype(np.uint8), err_msg=str(sizes))


HEADS, HEAD_DIM = 12, 32


def _qk_func(seq, dtype: str, pairs: bool, padded: bool = True) -> tvm.tirx.PrimFunc:
    """``requantize(Q·Kᵀ)`` on ``q[1, 12, seq, 32]``, ``kt[1, 12, 32, seq]``: the padded kernel
    (symbolic ``seq``, 16-column tiles as the lowering chooses) or a plain matmul."""
    q = te.placeholder((1, HEADS, seq, HEAD_DIM), dtype, name="q")
    kt = te.placeholder((1, HEADS, HEAD_DIM, seq), dtype, name="kt")
    if padded:
        acc = K.activation_matmul(q, kt, row_tile=16, col_tile=16, even_k=pairs)
    else:
        rk = te.reduce_axis((0, HEAD_DIM), name="rk")
        acc = te.compute((1, HEADS, seq, seq), lambda b, h, i, j: te.sum(
            q[b, h, i, rk].astype("int32") * kt[b, h, rk, j].astype("int32"), axis=rk),
            name="matmul")
    out = te.compute(acc.shape, lambda *i: tirx.max(tirx.min((acc[i] + 64) >> 7, 255), 0)
                     .astype("uint8"), name="requantize")
    return te.create_prim_func([q, kt, out])


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_symbolic_qk_serves_every_length(dtype: str) -> None:
    """``Q·Kᵀ`` with a symbolic column count (12 heads × 32): one build, vector code (the
    main column tiles vectorized, ``vpdpwssd`` pairs for int16), exact against numpy at
    every length, including lengths below one tile and with a column tail."""
    seq = tirx.Var("seq", "int64")
    pairs = dtype == "int16"
    func = schedule_padded_activation_matmul(_qk_func(seq, dtype, pairs), pairs=pairs)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=TARGET)
    asm = asm_of(lib)
    assert "vpdpwssd" in asm or not pairs
    assert "zmm" in asm
    assert "vpmovusdb" in asm or "vpmovdb" in asm, "the requantize epilogue is not vectorized"
    for s in (1, 7, 8, 77, 256):
        # int16 operands are 8-bit activations minus their zero points (int32 sums exact).
        q, kt = (_random(shape, dtype) if dtype != "int16" else
                 RNG.integers(-300, 300, shape).astype(np.int16)
                 for shape in ((1, HEADS, s, HEAD_DIM), (1, HEADS, HEAD_DIM, s)))
        ref = np.clip((q.astype(np.int64) @ kt.astype(np.int64) + 64) >> 7, 0, 255)
        out = tvm.runtime.empty(ref.shape, "uint8")
        lib["main"](tvm.runtime.tensor(q), tvm.runtime.tensor(kt), out)
        np.testing.assert_array_equal(out.numpy(), ref.astype(np.uint8), err_msg=f"seq {s}")


def test_symbolic_qk_time_against_generic_and_static() -> None:
    """Prints (does not assert) the symbolic ``Q·Kᵀ`` kernel's time (int16, pairs) against
    the generic schedule of the same symbolic matmul and a static build per length."""
    from tvm_qdq.backend.x86.schedules.generic import schedule_generic
    from tvm_qdq.backend.x86.schedules.matmul import schedule_activation_matmul

    seq = tirx.Var("seq", "int64")
    symbolic = schedule_padded_activation_matmul(_qk_func(seq, "int16", True), pairs=True)
    generic = schedule_generic(_qk_func(seq, "int16", False, padded=False))
    for s in (32, 128, 256):
        static = schedule_activation_matmul(_qk_func(s, "int16", False, padded=False),
                                            pairs=True)
        times = [time_primfunc(f, TARGET, number=10, repeat=5, sizes={"seq": s}) * 1e6
                 for f in (symbolic, generic, static)]
        print("Q·Kᵀ seq {}: symbolic {:.1f} us, generic {:.1f} us, static {:.1f} us".format(
            s, *times))


# ----------------------------------------------------------------------------------------------
# Lowering of Relax matmuls with symbolic dimensions
# ----------------------------------------------------------------------------------------------


def _dims(spec: tuple) -> tuple:
    return tuple(tirx.Var(d, "int64") if isinstance(d, str) else d for d in spec)


def _lower(make_body, shape: tuple, dtype: str):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(make_body(bb, x))
        bb.emit_func_output(out)
    report = LoweringReport()
    lowered = lower_integer_kernels(bb.get(), TARGET, report=report)
    executable = tvm.compile(lowered, TARGET)
    return relax.VirtualMachine(executable, tvm.cpu()), report, executable


def _requantize(bb, acc, bias: np.ndarray, mult: np.ndarray, zp: float):
    y = bb.emit(relax.op.add(acc, relax.const(bias.astype(np.int32), "int32")))
    y = bb.emit(relax.op.multiply(relax.op.astype(y, "float32"),
                                  relax.const(mult.astype(np.float32), "float32")))
    y = bb.emit(relax.op.add(relax.op.round(y), relax.const(zp, "float32")))
    return bb.emit(relax.op.astype(relax.op.clip(y, 0, 255), "uint8"))


def _requantize_ref(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, zp: float):
    value = (acc + bias).astype(np.int32).astype(np.float32) * mult.astype(np.float32)
    return np.clip(np.round(value) + np.float32(zp), 0, 255).astype(np.uint8)


LOWERING_CASES = [
    # a shape (str: symbolic), sizes run, N, a dtype, weights (lo, hi), epilogue, out dtype
    (("batch", "seq", 32), [(1, 8), (4, 77), (2, 1)], 48, "uint8", (-127, 127), True, "int32"),
    (("seq", 24), [(1,), (77,), (130,)], 20, "int8", (-127, 127), True, "int32"),
    (("seq", 32), [(3,), (64,)], 16, "uint16", (-127, 127), False, "int32"),
    (("seq", 32), [(5,), (19,)], 48, "uint16", (-127, 127), False, "int64"),
    (("batch", "seq", 32), [(1, 8), (3, 21)], 48, "uint8", (-100, 155), True, "int32"),
    ((2, "seq", 40), [(9,), (33,)], 32, "uint8", (-127, 127), True, "int32"),
    (("batch", 5, 30), [(1,), (6,)], 10, "uint8", (-127, 127), True, "int32"),
]


@pytest.mark.parametrize("case", LOWERING_CASES,
                         ids=lambda c: f"{'x'.join(map(str, c[0]))}-{c[3]}-{c[4][1]}-{c[6]}")
def test_symbolic_matmul_lowers_to_vnni(case) -> None:
    dims, sizes, n, a_dtype, (lo, hi), epilogue, out_dtype = case
    k = dims[-1]
    w = RNG.integers(lo, hi + 1, size=(k, n)).astype(np.int16)
    bias = RNG.integers(-5000, 5000, size=n)
    mult = RNG.random(n) * 2e-4

    def body(bb, x):
        acc = bb.emit(relax.op.matmul(x, relax.const(w), out_dtype=out_dtype))
        return _requantize(bb, acc, bias, mult, 7.0) if epilogue else acc

    vm, report, executable = _lower(body, _dims(dims), a_dtype)
    assert [kn["kind"] for kn in report.kernels] == ["vnni_matmul"], report.to_json()
    assert report.skipped == []
    assert set(report.schedules.values()) == {"vnni"}, report.to_json()
    assert "vpdpbusd" in asm_of(executable)
    offset = report.kernels[0]["offset_form"]
    assert offset == (lo == -100), report.to_json()
    for size in sizes:
        it = iter(size)
        shape = tuple(next(it) if isinstance(d, str) else d for d in dims)
        a = _random(shape, a_dtype)
        got = vm["main"](tvm.runtime.tensor(a)).numpy()
        ref = a.astype(np.int64) @ w.astype(np.int64)
        expected = _requantize_ref(ref, bias, mult, 7.0) if epilogue else ref.astype(out_dtype)
        np.testing.assert_array_equal(got, expected, err_msg=f"shape {shape}")


def _conv_ref(x: np.ndarray, w: np.ndarray, pad: int, pad_h: int | None = None) -> np.ndarray:
    """NCHW/OIHW integer conv, stride 1, zero padding ``pad`` on each side (``pad_h`` at the
    top and bottom if given) in int64."""
    ph = pad if pad_h is None else pad_h
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, w.astype(np.int64))


def _shift_requantize_relax(bb, acc):
    y = bb.emit(relax.op.right_shift(relax.op.add(acc, relax.const(3, "int32")),
                                     relax.const(6, "int32")))
    return bb.emit(relax.op.astype(relax.op.clip(y, 0, 255), "uint8"))


def test_conv_chain_with_symbolic_width_lowers_to_vnni() -> None:
    """conv → requantize → conv on ``[1, 8, 6, width]``: both VNNI (padded output columns),
    the chain stays NHWC, exact at several widths from one build."""
    w1 = RNG.integers(-127, 128, size=(24, 8, 3, 3)).astype(np.int8)
    w2 = RNG.integers(-127, 128, size=(16, 24, 1, 1)).astype(np.int8)

    def body(bb, x):
        acc = bb.emit(relax.op.nn.conv2d(x, relax.const(w1), padding=(1, 1),
                                         out_dtype="int32"))
        mid = _shift_requantize_relax(bb, acc)
        return bb.emit(relax.op.nn.conv2d(mid, relax.const(w2), out_dtype="int32"))

    vm, report, executable = _lower(body, _dims((1, 8, 6, "width")), "uint8")
    assert [kn["kind"] for kn in report.kernels] == ["vnni_conv2d"] * 2, report.to_json()
    assert report.skipped == []
    assert list(report.schedules.values()).count("vnni") == 2, report.to_json()
    assert "vpdpbusd" in asm_of(executable)
    for width in (1, 5, 37):
        x = _random((1, 8, 6, width), "uint8")
        mid = np.clip((_conv_ref(x, w1, 1) + 3) >> 6, 0, 255).astype(np.uint8)
        expected = _conv_ref(mid, w2, 0).astype(np.int32)
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"width {width}")


def test_symbolic_depthwise_conv_is_reported_skipped() -> None:
    w = RNG.integers(-127, 128, size=(8, 1, 3, 3)).astype(np.int8)

    def body(bb, x):
        return bb.emit(relax.op.nn.conv2d(x, relax.const(w), padding=(1, 1), groups=8,
                                          out_dtype="int32"))

    vm, report, _ = _lower(body, _dims((1, 8, 6, "width")), "uint8")
    assert report.kernels == []
    assert [(s["op"], s["reason"].split()[0]) for s in report.skipped] == [
        ("conv2d", "symbolic")], report.to_json()
    x = _random((1, 8, 6, 7), "uint8")
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    ref = np.concatenate([_conv_ref(x[:, c:c + 1], w[c:c + 1], 1) for c in range(8)], axis=1)
    np.testing.assert_array_equal(got, ref.astype(np.int32))


def test_conv1d_with_symbolic_width_lowers_to_vnni() -> None:
    w = RNG.integers(-127, 128, size=(16, 8, 3)).astype(np.int8)

    def body(bb, x):
        return bb.emit(relax.op.nn.conv1d(x, relax.const(w), padding=(1, 1),
                                          out_dtype="int32"))

    vm, report, _ = _lower(body, _dims((1, 8, "width")), "int8")
    assert [kn["kind"] for kn in report.kernels] == ["vnni_conv2d"], report.to_json()
    for width in (2, 29):
        x = _random((1, 8, width), "int8")
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        ref = _conv_ref(x[:, :, None, :], w[:, :, None, :], 1, pad_h=0)[:, :, 0]
        np.testing.assert_array_equal(got, ref.astype(np.int32), err_msg=f"width {width}")


def _attention_module(w: np.ndarray) -> tvm.IRModule:
    """An integer attention block on ``x[batch, seq, 32]`` (uint8): a VNNI matmul with a
    requantize epilogue, a two-head split, ``Q·Kᵀ`` and ``P·V`` between activations (int16
    operands, int32 sums, reduction over ``seq`` in ``P·V``), each requantized to uint8."""
    batch, seq = tirx.Var("batch", "int64"), tirx.Var("seq", "int64")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, seq, 32), "uint8"))

    def requantize(acc, shift: int):
        y = bb.emit(relax.op.right_shift(relax.op.add(acc, relax.const(1 << (shift - 1),
                                                                       "int32")),
                                         relax.const(shift, "int32")))
        return bb.emit(relax.op.astype(relax.op.clip(y, 0, 255), "uint8"))

    def centered(u8):
        return bb.emit(relax.op.subtract(relax.op.astype(u8, "int16"),
                                         relax.const(128, "int16")))

    with bb.function("main", [x]):
        with bb.dataflow():
            acc = bb.emit(relax.op.matmul(x, relax.const(w), out_dtype="int32"))
            y = requantize(acc, 10)
            heads = bb.emit(relax.op.permute_dims(
                relax.op.reshape(y, (batch, seq, 2, 16)), [0, 2, 1, 3]))
            q = centered(heads)
            kt = bb.emit(relax.op.permute_dims(q, [0, 1, 3, 2]))
            p = requantize(bb.emit(relax.op.matmul(q, kt, out_dtype="int32")), 12)
            ctx = bb.emit(relax.op.matmul(centered(p), q, out_dtype="int32"))
            out = bb.emit_output(requantize(ctx, 14))
        bb.emit_func_output(out)
    return bb.get()


def test_symbolic_attention_block_matches_generic_build() -> None:
    """One lowered build of a symbolic ``[batch, seq, 32]`` attention block: the weight matmul
    is VNNI, ``Q·Kᵀ`` (symbolic columns) and ``P·V`` padded activation matmuls, nothing is
    skipped, and every output equals TVM's own build of the same module."""
    w = RNG.integers(-127, 128, size=(32, 32)).astype(np.int8)
    mod = _attention_module(w)
    report = LoweringReport()
    lowered = tvm.compile(lower_integer_kernels(mod, TARGET, report=report), TARGET)
    generic = tvm.compile(mod, TARGET)
    assert [kn["kind"] for kn in report.kernels] == ["vnni_matmul", "activation_matmul",
                                                     "activation_matmul"], report.to_json()
    assert not report.skipped, report.to_json()
    assert list(report.schedules.values()).count("activation_matmul_vnni") == 2, \
        report.to_json()
    vms = [relax.VirtualMachine(ex, tvm.cpu()) for ex in (lowered, generic)]
    for shape in ((1, 8, 32), (4, 77, 32)):
        x = tvm.runtime.tensor(_random(shape, "uint8"))
        got, ref = (vm["main"](x).numpy() for vm in vms)
        assert got.shape == (shape[0], 2, shape[1], 16)
        np.testing.assert_array_equal(got, ref, err_msg=f"shape {shape}")


def test_symbolic_onnx_attention_lowers_to_vnni() -> None:
    """The QDQ attention model with inputs ``[batch, seq, 32]`` (imported and made integer
    with its symbolic dims): the lowering takes the VNNI matmul and the padded ``P·V``
    and ``Q·Kᵀ`` (symbolic columns), and its outputs at (1, 8, 32) and (4, 77, 32) equal the
    generic backend's."""
    from test_symbolic_integer import ATTENTION_SIZES, attention_model

    import tvm_qdq
    from tvm_qdq.backend import registry
    from tvm_qdq.backend.base import BuildOptions

    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(attention_model()))
    report = LoweringReport()
    lowered = tvm.compile(lower_integer_kernels(integer, TARGET, report=report), TARGET)
    assert [kn["kind"] for kn in report.kernels] == ["vnni_matmul", "activation_matmul",
                                                     "activation_matmul"], report.to_json()
    assert report.kernels[0]["spec"]["m"] == "seq", report.to_json()
    assert not [s for s in report.skipped if "activation matmul" in s["reason"]], \
        report.to_json()
    assert "none" not in report.schedules.values()
    vm = relax.VirtualMachine(lowered, tvm.cpu())
    generic = registry.GENERIC.build(integer, TARGET, BuildOptions())
    for shape in ATTENTION_SIZES:
        x = np.random.default_rng(sum(shape)).normal(0, 1, shape).astype(np.float32)
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        np.testing.assert_array_equal(got, generic.run({"x": x})[0], err_msg=f"{shape}")


def test_symbolic_kernels_are_not_tuned() -> None:
    """A symbolic VNNI kernel has one size-independent key; tuning skips it (no fixed shape to
    measure) and a stored tile is never looked up for it; a static kernel keeps its shape."""
    from tvm_qdq.backend.x86.schedules.vnni import Tile
    from tvm_qdq.backend.x86.tuning_db import (
        TuningDB,
        database_tiles,
        is_symbolic_kernel,
        kernel_key,
        kernel_shape,
        target_key,
    )

    w = RNG.integers(-127, 128, size=(32, 48)).astype(np.int8)

    def unscheduled(m):
        spec = K.MatmulSpec(batch=(), m=m, k=32, n=48, in_dtype="uint8", out_dtype="int32")
        a = te.placeholder((m, 32), "uint8", name="a")
        bp = te.placeholder(K.pack_matmul_weight(w).shape, "int8", name="bp")
        kwargs = {} if isinstance(m, int) else {"row_tile": 4}
        return te.create_prim_func([a, bp, K.matmul_vnni(a, bp, spec, **kwargs)])

    symbolic = unscheduled(tirx.Var("m", "int64"))
    assert is_symbolic_kernel(symbolic)
    assert kernel_key(symbolic) == kernel_key(unscheduled(tirx.Var("rows", "int64")))
    with pytest.raises(ValueError, match="symbolic"):
        kernel_shape(symbolic)
    db = TuningDB(None)
    db.put(target_key(TARGET), kernel_key(symbolic), Tile(4, 1))
    assert database_tiles(db, TARGET)(symbolic) is None
    assert not is_symbolic_kernel(unscheduled(8))
    assert kernel_shape(unscheduled(8)) == ([8], 3)
