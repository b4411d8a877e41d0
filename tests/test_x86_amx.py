"""AMX matmuls (tvm_qdq.backend.x86.amx, .amx_matmul, .schedules.amx) on hosts with AMX int8:
static row counts that fill tiles, padded ones (29, 77 rows), symbolic ones; uint8 / int8 /
uint16 activations, the offset form of uint8 weights, K not a multiple of 64; bit-exact
against numpy, and the code runs ``tdpbusd``."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, tirx

import tvm_qdq
from tvm_qdq.backend.x86 import LoweringReport, asm_of, lower_integer_kernels
from tvm_qdq.backend.x86.amx import has_amx, host_has_amx, without_amx
from tvm_qdq.backend.x86.amx_matmul import (
    amx_column_width,
    amx_reduction,
    amx_row_tile,
    pack_amx_weight,
)
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.kernel_cases import (
    lower_and_build,
    random_ints,
    shift_requantize,
    shift_requantize_ref,
)
from tvm_qdq.testing.models import quantized_model, random_feeds

TARGET = resolve_target("x86")
RNG = np.random.default_rng(29)
needs_amx = pytest.mark.skipif(not (host_has_amx() and has_amx(TARGET)),
                               reason="host CPU has no AMX int8 (or the OS does not grant it)")


def test_row_tiles_and_reduction_padding() -> None:
    assert amx_row_tile(64) == 0 and amx_row_tile(48) == 0
    assert amx_row_tile(77) == 16 and amx_row_tile(14) == 16  # 80 < 96, 16 < 32 rows
    assert amx_row_tile(29) == 32 and amx_row_tile(90) == 32  # as few rows as with 16
    assert amx_row_tile(tirx.Var("seq", "int64")) == 32
    assert [amx_column_width(n) for n in (1, 16, 17, 32, 48, 64, 1536)] == \
        [16, 16, 32, 32, 16, 32, 32]
    assert [amx_reduction(k) for k in (64, 384, 100, 1)] == [64, 384, 128, 64]


def test_amx_weight_layout() -> None:
    """``bp[j // W, q, j % W, r] = b[4q + r, j]``, zero beyond ``b``."""
    b = RNG.integers(-128, 128, size=(70, 40)).astype(np.int8)
    bp = pack_amx_weight(b, 32)
    assert bp.shape == (2, 32, 32, 4)
    j, q, r = np.meshgrid(np.arange(64), np.arange(32), np.arange(4), indexing="ij")
    full = np.zeros((128, 64), np.int8)
    full[:70, :40] = b
    np.testing.assert_array_equal(bp[j // 32, q, j % 32, r], full[4 * q + r, j])


def _random(shape, dtype: str) -> np.ndarray:
    return random_ints(RNG, shape, dtype)


_requantize, _requantize_ref = shift_requantize, shift_requantize_ref


def _compile(w: np.ndarray, shape: tuple, dtype: str):
    """``requantize(x @ w)`` lowered and built for the host: (VM, report, executable)."""
    vm, report, executable, _ = lower_and_build(
        lambda bb, x: _requantize(bb, bb.emit(relax.op.matmul(x, relax.const(w),
                                                              out_dtype="int32"))),
        {"x": (shape, dtype)}, TARGET)
    return vm, report, executable


CASES = [
    # batch, m, k, n, a dtype, weights (lo, hi)
    ((1,), 64, 384, 384, "uint8", (-127, 127)),  # whole 32-row blocks
    ((), 48, 256, 48, "int8", (-128, 127)),  # 16-row blocks, odd column blocks
    ((1,), 77, 384, 1536, "uint8", (-127, 127)),  # padded rows (MiniLM)
    ((2,), 29, 100, 40, "uint8", (-127, 127)),  # padded rows and reduction, 40 columns
    ((2,), 97, 256, 96, "uint8", (-100, 155)),  # offset form (window sums on AMX too)
    ((1,), 32, 128, 64, "uint16", (-127, 127)),  # two byte planes
]


@needs_amx
@pytest.mark.parametrize("case", CASES,
                         ids=lambda c: f"{'x'.join(map(str, (*c[0], c[1])))}-{c[2]}-{c[3]}-{c[4]}")
def test_static_amx_matmul_exact(case) -> None:
    batch, m, k, n, a_dtype, (lo, hi) = case
    w = RNG.integers(lo, hi + 1, size=(k, n)).astype(np.int16)
    shape = (*batch, m, k)
    vm, report, executable = _compile(w, shape, a_dtype)
    kinds = [kn["kind"] for kn in report.kernels]
    assert kinds and set(kinds) == {"amx_matmul"}, report.to_json()
    assert "amx" in report.schedules.values(), report.to_json()
    assert "tdpbusd" in asm_of(executable)
    x = _random(shape, a_dtype)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(got, _requantize_ref(x.astype(np.int64) @ w.astype(np.int64)))


@needs_amx
def test_symbolic_rows_amx_matmul_exact() -> None:
    """One compile for ``[batch, seq, 384] @ [384, 1536]``; row counts that fill a tile, pad
    one, or are smaller than one."""
    w = RNG.integers(-127, 128, size=(384, 1536)).astype(np.int8)
    batch, seq = tirx.Var("batch", "int64"), tirx.Var("seq", "int64")
    vm, report, executable = _compile(w, (batch, seq, 384), "int8")
    assert [kn["kind"] for kn in report.kernels] == ["amx_matmul"], report.to_json()
    assert "tdpbusd" in asm_of(executable)
    for b, s in ((1, 8), (1, 77), (4, 128), (3, 33)):
        x = _random((b, s, 384), "int8")
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        np.testing.assert_array_equal(
            got, _requantize_ref(x.astype(np.int64) @ w.astype(np.int64)), err_msg=f"{b}×{s}")


@needs_amx
def test_few_rows_keep_vnni() -> None:
    """8 static rows: the VNNI kernel (an AMX tile would be half padding)."""
    w = RNG.integers(-127, 128, size=(384, 384)).astype(np.int8)
    _, report, _ = _compile(w, (1, 8, 384), "uint8")
    assert [kn["kind"] for kn in report.kernels] == ["vnni_matmul"], report.to_json()


@needs_amx
@pytest.mark.parametrize("config", ["u8s8_perchannel", "u16s8"])
def test_transformer_encoder_identical_to_vnni(config: str) -> None:
    """The BERT-style encoder: every constant-weight matmul on AMX tiles, the output equal,
    element for element, to the VNNI-only build's (both are exact integer matmuls)."""
    model = quantized_model("transformer_encoder", config)
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(model))
    report = LoweringReport()
    amx = tvm.compile(lower_integer_kernels(integer, TARGET, report=report), TARGET)
    assert "amx_matmul" in {k["kind"] for k in report.kernels}, report.to_json()
    assert "tdpbusd" in asm_of(amx)
    vnni_target = without_amx(TARGET)
    vnni = tvm.compile(lower_integer_kernels(integer, vnni_target), vnni_target)
    feeds = random_feeds(model, seed=1)
    args = [tvm.runtime.tensor(feeds[i.name]) for i in model.graph.input]
    got = relax.VirtualMachine(amx, tvm.cpu())["main"](*args).numpy()
    np.testing.assert_array_equal(
        got, relax.VirtualMachine(vnni, tvm.cpu())["main"](*args).numpy())


def _conv_ref(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.einsum("nchw,oc->nohw", x.astype(np.int64), w[:, :, 0, 0].astype(np.int64))


@needs_amx
@pytest.mark.parametrize("shape,out_channels,dtype", [
    ((1, 64, 6, 56), 96, "uint8"),  # 56 pixels a row: 64-row tiles, 2 column tiles
    ((2, 128, 3, 14), 40, "int8"),  # 14 pixels padded to 16, odd column blocks
])
def test_pointwise_conv_on_amx_exact(shape, out_channels: int, dtype: str) -> None:
    """A 1×1 conv (stride 1, no padding) is a matmul per row of NHWC pixels: AMX, exact."""
    w = RNG.integers(-127, 128, size=(out_channels, shape[1], 1, 1)).astype(np.int8)
    vm, report, executable, _ = lower_and_build(
        lambda bb, x: _requantize(bb, bb.emit(relax.op.nn.conv2d(x, relax.const(w),
                                                                 out_dtype="int32"))),
        {"x": (shape, dtype)}, TARGET)
    assert [k["kind"] for k in report.kernels] == ["amx_matmul"], report.to_json()
    assert "tdpbusd" in asm_of(executable)
    xv = _random(shape, dtype)
    got = vm["main"](tvm.runtime.tensor(xv)).numpy()
    np.testing.assert_array_equal(got, _requantize_ref(_conv_ref(xv, w)))


@needs_amx
def test_small_reduction_pointwise_conv_keeps_vnni() -> None:
    w = RNG.integers(-127, 128, size=(96, 16, 1, 1)).astype(np.int8)
    _, report, _, _ = lower_and_build(
        lambda bb, x: relax.op.nn.conv2d(x, relax.const(w), out_dtype="int32"),
        {"x": ((1, 16, 4, 32), "uint8")}, TARGET)
    assert [k["kind"] for k in report.kernels] == ["vnni_conv2d"], report.to_json()
