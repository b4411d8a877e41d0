"""x86 VNNI matmuls with a symbolic row count (padded rows, tvm_qdq.backend.x86.kernels):
one build serves every size, exact against numpy, vpdpbusd in the assembly; the lowering
takes the VNNI kernel for matmuls with symbolic batch / rows and records every kernel it
refuses because of a symbolic dimension."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, te, tirx

from tvm_qdq.backend.x86 import LoweringReport, asm_of, has_vnni, lower_integer_kernels
from tvm_qdq.backend.x86 import kernels as K
from tvm_qdq.backend.x86.profile import time_primfunc
from tvm_qdq.backend.x86.schedules.vnni import schedule_vnni, symbolic_row_tile
from tvm_qdq.targets import resolve_target

TARGET = resolve_target("x86")
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


def test_symbolic_conv_is_reported_skipped() -> None:
    w = RNG.integers(-127, 128, size=(16, 8, 3, 3)).astype(np.int8)

    def body(bb, x):
        return bb.emit(relax.op.nn.conv2d(x, relax.const(w), padding=(1, 1),
                                          out_dtype="int32"))

    report = LoweringReport()
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(_dims((1, 8, 6, "width")), "uint8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    lower_integer_kernels(bb.get(), TARGET, report=report)
    assert report.kernels == []
    assert [(s["op"], s["reason"].split()[0]) for s in report.skipped] == [
        ("conv2d", "symbolic")], report.to_json()
