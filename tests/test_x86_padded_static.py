"""Static row counts with poor divisors take the padded-rows form (tvm_qdq.backend.x86
.padded_tiles): VNNI matmuls / convs with e.g. 13 or 97 rows, activation matmuls with e.g.
77 × 77 outputs; bit-exact against numpy; row counts that divide well (64, 128, 8) keep the
dividing form (the same kernels, schedules and tuning keys as before); padded kernels are not
tuned."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from tvm import relax, te

from tvm_qdq.backend.x86 import asm_of, has_vnni
from tvm_qdq.backend.x86 import kernels as K
from tvm_qdq.backend.x86.amx import without_amx
from tvm_qdq.backend.x86.padded_tiles import (
    PADDED_MARGIN,
    PADDED_MIN_MACS,
    activation_padded_tile,
    clearly_better,
    real_fraction,
    vnni_padded_row_tile,
)
from tvm_qdq.backend.x86.schedules.vnni import Tile, best_column_tile, default_tile, tile_score
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.kernel_cases import (
    lower_and_build,
    random_ints,
    shift_requantize,
    shift_requantize_ref,
)

TARGET = without_amx(resolve_target("x86"))  # the VNNI kernels (AMX: test_x86_amx.py)
RNG = np.random.default_rng(23)
needs_vnni = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")
#: A reduction long enough for any kernel here to pass PADDED_MIN_MACS.
BIG = 1 << 16


# ----------------------------------------------------------------------------------------------
# The rule (shape only)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [13, 17, 97])
def test_poor_divisors_take_the_padded_form(m: int) -> None:
    mr = vnni_padded_row_tile([1, m], 3, BIG)
    assert 1 < mr <= min(m, 16)
    best = default_tile([1, m], 3)
    merit = tile_score(mr, best_column_tile(mr, 3)) * real_fraction(m, mr)
    assert clearly_better(merit, tile_score(best.mr, best.nr))
    assert merit > PADDED_MARGIN * tile_score(best.mr, best.nr)


@pytest.mark.parametrize("m", [1, 3, 8, 16, 32, 64, 128, 256])
@pytest.mark.parametrize("n_blocks", [1, 2, 3, 4, 24, 96])
def test_good_divisors_keep_the_dividing_form(m: int, n_blocks: int) -> None:
    assert vnni_padded_row_tile([1, m], n_blocks, BIG) == 0
    assert vnni_padded_row_tile([4, m], n_blocks, BIG) == 0


def test_minilm_rows_keep_their_vnni_tiles() -> None:
    """77 rows × 384 / 1536 columns: the dividing 7×3 tile is as good as any padded one;
    so are 11×2 against 6×4 (4 blocks) and any tile of a negative score (1 row, 1 block)."""
    for n_blocks in (3, 4, 24, 96):
        assert vnni_padded_row_tile([1, 77], n_blocks, 384) == 0
    assert vnni_padded_row_tile([1, 1], 1, BIG) == 0


def test_small_vnni_kernels_keep_the_dividing_form() -> None:
    """Below PADDED_MIN_MACS the fixed costs dominate: 97 rows × 48 columns × 32 stays."""
    assert vnni_padded_row_tile([1, 97], 3, 32) == 0
    assert vnni_padded_row_tile([1, 97], 3, -(-PADDED_MIN_MACS // (97 * 48))) > 0


def test_activation_matmul_rule() -> None:
    # Q·Kᵀ at 77 tokens: no vector width divides 77.
    assert activation_padded_tile(77, 77, 32) is not None
    assert activation_padded_tile(77, 77, 32, pairs=True) is not None
    # P·V at 77 tokens: k = 77 is odd, so only the padded form (k padded to 78) pairs.
    assert activation_padded_tile(77, 32, 77, pairs=True) is not None
    assert activation_padded_tile(77, 32, 77, pairs=False) is None
    for m, n, k in ((64, 64, 32), (8, 32, 8), (128, 32, 128), (16, 128, 64), (8, 8, 32)):
        assert activation_padded_tile(m, n, k) is None, (m, n, k)
        if n >= 16:
            assert activation_padded_tile(m, n, k, pairs=True) is None, (m, n, k)


# ----------------------------------------------------------------------------------------------
# Lowered and run
# ----------------------------------------------------------------------------------------------


def _random(shape, dtype: str) -> np.ndarray:
    return random_ints(RNG, shape, dtype)


def _lower(make_body, inputs: dict[str, tuple]):
    return lower_and_build(make_body, inputs, TARGET)


_requantize, _requantize_ref = shift_requantize, shift_requantize_ref


def _vnni_row_tiles(mod: tvm.IRModule) -> list[int | None]:
    """The row-tile annotation of each VNNI block of a lowered module (None: dividing)."""
    out = []
    for func in mod.functions.values():
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is None or \
                str(func.attrs.get("tvm_qdq.scheduled", "")) != "vnni":
            continue
        found = re.findall(r'"tvm_qdq\.row_tile": (\d+)', func.script())
        out.append(int(found[0]) if found else None)
    return out


MATMUL_CASES = [
    # batch, m, k, n, a dtype, weights (lo, hi): padded when m divides poorly
    ((1,), 13, 1024, 384, "uint8", (-127, 127)),
    ((), 97, 384, 384, "int8", (-127, 127)),
    ((2,), 97, 256, 96, "uint8", (-100, 155)),  # offset form (window sums padded too)
    ((2,), 77, 2048, 16, "uint8", (-127, 127)),  # 16 × 1 padded against 11 × 1
    ((1,), 64, 1024, 96, "uint8", (-127, 127)),  # dividing
    ((), 77, 384, 384, "uint8", (-127, 127)),  # MiniLM-like: dividing
    ((1,), 97, 32, 48, "uint8", (-127, 127)),  # below PADDED_MIN_MACS: dividing
]


@needs_vnni
@pytest.mark.parametrize("case", MATMUL_CASES,
                         ids=lambda c: f"{'x'.join(map(str, (*c[0], c[1])))}-{c[3]}-{c[4]}")
def test_static_vnni_matmul_padded_when_better(case) -> None:
    batch, m, k, n, a_dtype, (lo, hi) = case
    w = RNG.integers(lo, hi + 1, size=(k, n)).astype(np.int16)
    shape = (*batch, m, k)

    def body(bb, x):
        return _requantize(bb, bb.emit(relax.op.matmul(x, relax.const(w),
                                                       out_dtype="int32")))

    vm, report, executable, lowered = _lower(body, {"x": (shape, a_dtype)})
    expected_tile = vnni_padded_row_tile([*batch, m], -(-n // 16), -(-k // 4) * 4)
    assert [kn["kind"] for kn in report.kernels] == ["vnni_matmul"], report.to_json()
    assert report.kernels[0].get("row_tile", 0) == expected_tile, report.to_json()
    assert (expected_tile > 0) == ((m in (13, 97) and k > 32) or (m, n) == (77, 16))
    assert "vnni" in report.schedules.values(), report.to_json()
    tiles = _vnni_row_tiles(lowered)
    assert tiles and all(t == (expected_tile or None) for t in tiles), tiles
    assert "vpdpbusd" in asm_of(executable)
    x = _random(shape, a_dtype)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = _requantize_ref(x.astype(np.int64) @ w.astype(np.int64))
    np.testing.assert_array_equal(got, expected)


def _conv_ref(x: np.ndarray, w: np.ndarray, pad: int) -> np.ndarray:
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, w.astype(np.int64))


@needs_vnni
@pytest.mark.parametrize("width", [19, 16])
def test_static_vnni_conv_padded_when_better(width: int) -> None:
    """3×3 conv 64 → 64 channels on 8 rows: width 19 pads its output columns (5×4 tiles
    against 1×4), width 16 keeps the dividing tile; exact either way."""
    w = RNG.integers(-127, 128, size=(64, 64, 3, 3)).astype(np.int8)
    shape = (1, 64, 8, width)

    def body(bb, x):
        return _requantize(bb, bb.emit(relax.op.nn.conv2d(x, relax.const(w), padding=(1, 1),
                                                          out_dtype="int32")))

    vm, report, executable, lowered = _lower(body, {"x": (shape, "uint8")})
    expected_tile = vnni_padded_row_tile([1, 8, width], 4, 9 * 64)
    assert (expected_tile > 0) == (width == 19)
    assert [kn["kind"] for kn in report.kernels] == ["vnni_conv2d"], report.to_json()
    assert report.kernels[0].get("row_tile", 0) == expected_tile, report.to_json()
    assert _vnni_row_tiles(lowered) == [expected_tile or None]
    assert "vpdpbusd" in asm_of(executable)
    x = _random(shape, "uint8")
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(got, _requantize_ref(_conv_ref(x, w, 1)))


ACT_CASES = [
    # a shape, b shape: Q·Kᵀ with 77 columns (padded), P·V with 77 rows (padded), 64 (not)
    ((1, 2, 77, 16), (1, 2, 16, 77), True),
    ((1, 2, 77, 77), (1, 2, 77, 32), True),
    ((1, 2, 64, 16), (1, 2, 16, 64), False),
]


@pytest.mark.parametrize("case", ACT_CASES, ids=("qk77", "pv77", "qk64"))
def test_static_activation_matmul_padded_when_better(case) -> None:
    a_shape, b_shape, padded = case

    def body(bb, a, b):
        return _requantize(bb, bb.emit(relax.op.matmul(a, b, out_dtype="int32")))

    vm, report, _, _ = _lower(body, {"a": (a_shape, "int16"), "b": (b_shape, "int16")})
    kinds = [kn["kind"] for kn in report.kernels]
    assert kinds == (["activation_matmul"] if padded else []), report.to_json()
    assert report.skipped == []
    assert any(k.startswith("activation_matmul") for k in report.schedules.values()), \
        report.to_json()
    a = RNG.integers(-300, 300, a_shape).astype(np.int16)
    b = RNG.integers(-300, 300, b_shape).astype(np.int16)
    got = vm["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b)).numpy()
    np.testing.assert_array_equal(got, _requantize_ref(a.astype(np.int64) @ b.astype(np.int64)))


# ----------------------------------------------------------------------------------------------
# Tuning
# ----------------------------------------------------------------------------------------------


def _unscheduled(m: int, row_tile: int) -> tvm.tirx.PrimFunc:
    w = np.ones((32, 48), np.int8)
    spec = K.MatmulSpec(batch=(), m=m, k=32, n=48, in_dtype="uint8", out_dtype="int32")
    a = te.placeholder((m, 32), "uint8", name="a")
    bp = te.placeholder(K.pack_matmul_weight(w).shape, "int8", name="bp")
    return te.create_prim_func([a, bp, K.matmul_vnni(a, bp, spec, row_tile=row_tile)])


def test_padded_static_kernels_are_not_tuned() -> None:
    """A static kernel with padded rows has no tunable shape: no stored tile applies, tuning
    skips it (status "padded"); the unpadded kernel of the same shape keeps its shape."""
    from tvm_qdq.backend.x86.tuning_db import (
        TuningDB,
        database_tiles,
        is_padded_kernel,
        is_symbolic_kernel,
        kernel_key,
        kernel_shape,
        target_key,
    )

    padded = _unscheduled(13, 7)
    assert is_padded_kernel(padded) and not is_symbolic_kernel(padded)
    with pytest.raises(ValueError, match="padded"):
        kernel_shape(padded)
    db = TuningDB(None)
    db.put(target_key(TARGET), kernel_key(padded), Tile(7, 1))
    assert database_tiles(db, TARGET)(padded) is None
    plain = _unscheduled(13, 0)
    assert not is_padded_kernel(plain)
    assert kernel_shape(plain) == ([13], 3)
    assert kernel_key(plain) != kernel_key(padded)


def test_static_float_activation_matmul_padded_is_bit_identical(monkeypatch) -> None:
    """float32 ``Q·Kᵀ`` at 77 tokens (a float attention island, e.g. T5's dynamic
    quantization): the padded kernel sums over ``k`` in the same order as TVM's matmul, so
    its output equals the dividing form's (TVM's matmul, generic schedule) bit for bit."""
    from tvm_qdq.backend.x86 import kernel_selection

    a_shape, b_shape = (1, 2, 77, 16), (1, 2, 16, 77)

    def body(bb, a, b):
        return bb.emit(relax.op.add(relax.op.matmul(a, b), relax.const(0.5, "float32")))

    inputs = {"a": (a_shape, "float32"), "b": (b_shape, "float32")}
    a = RNG.standard_normal(a_shape).astype(np.float32)
    b = RNG.standard_normal(b_shape).astype(np.float32)
    vm, report, _, _ = _lower(body, inputs)
    assert [kn["kind"] for kn in report.kernels] == ["activation_matmul"], report.to_json()
    padded = vm["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b)).numpy()
    monkeypatch.setattr(kernel_selection, "activation_padded_tile", lambda *_a, **_k: None)
    vm, report, _, _ = _lower(body, inputs)
    assert report.kernels == []
    dividing = vm["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b)).numpy()
    np.testing.assert_array_equal(padded, dividing)
    np.testing.assert_allclose(padded, a @ b + 0.5, rtol=1e-5, atol=1e-5)
