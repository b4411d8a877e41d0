"""Exactness of the x86 form of ``tvm_qdq.requantize``, the float64 requantize with its
saturation moved onto the integer input (``tvm_qdq.backend.x86.rounding``): bit-identical to
the default form, checked exhaustively over the integer input range, in numpy and as built
x86 code."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_qdq.backend.x86.rounding import exact_float_rounding, saturation_bounds
from tvm_qdq.qnn.integer_ops import Requantize
from tvm_qdq.targets import resolve_target


def _old(d: np.ndarray, m: float, c: float, z: int, qlo: int, qhi: int) -> np.ndarray:
    """``clip(rhe(fl(fl(d · m) + c)) + z, qlo, qhi)`` (the requantize as emitted)."""
    return np.clip(np.round(d.astype(np.float64) * m + c) + z, qlo, qhi)


def _new(d: np.ndarray, bounds, z: int) -> np.ndarray:
    a_lo, a_hi, m, c = bounds
    return np.round(np.clip(d, a_lo, a_hi).astype(np.float64) * m + c) + z


@pytest.mark.parametrize("seed", range(40))
def test_saturation_bounds_exhaustive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = float(10 ** rng.uniform(-4.5, 0.3))
    c = float(rng.uniform(-300, 300))
    z = int(rng.integers(-20, 20)) if seed % 2 else 0
    qlo, qhi = (0, 255) if seed % 3 else (-128, 127)
    span = int(min(2**21, 600 / m))
    dlo, dhi = -span - int(rng.integers(0, 1000)), span + int(rng.integers(0, 1000))
    bounds = saturation_bounds(m, c, z, qlo, qhi, dlo, dhi)
    assert bounds is not None
    d = np.arange(dlo, dhi + 1, dtype=np.int64)
    np.testing.assert_array_equal(_new(d, bounds, z), _old(d, m, c, z, qlo, qhi))


def test_saturated_channel_is_constant() -> None:
    for m, c, expect in ((2.5e-8, -52.7, 0.0), (2.5e-8, 400.0, 255.0)):
        bounds = saturation_bounds(m, c, 0, 0, 255, -150000, 150000)
        assert bounds is not None and bounds[2] == 0.0
        d = np.arange(-150000, 150001, 7, dtype=np.int64)
        np.testing.assert_array_equal(_new(d, bounds, 0), _old(d, m, c, 0, 0, 255))
        assert np.all(_new(d, bounds, 0) == expect)


def _chain(channels: int, m: np.ndarray, c: np.ndarray, zp: float | None) -> tvm.IRModule:
    """``tvm_qdq.requantize``: ``uint8(clip(round(float64(x) · m + c) [+ zp], 0, 255))`` on
    int32 ``x``."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, channels, 1, 4096), "int32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            op = Requantize(x, np.zeros((), np.int64), m.reshape(1, -1, 1, 1),
                            np.asarray(0 if zp is None else int(zp), np.int64), 0, 255,
                            "uint8", c.reshape(1, -1, 1, 1))
            out = bb.emit_output(op.call())
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("zp", [None, 118.0])
def test_built_kernel_bit_identical(zp: float | None) -> None:
    """The default and the x86 form of the op built for x86 agree on every int32 input of a
    wide window (thresholds of all channels included; the build may fuse the multiply-add)."""
    rng = np.random.default_rng(7)
    channels = 16
    m = 10 ** rng.uniform(-3.5, -1.0, channels)
    c = rng.uniform(-150, 150, channels)
    m[3] = 2.5e-8  # a dead channel: always saturated
    mod = _chain(channels, m, c, zp)
    new, _ = exact_float_rounding(mod)
    assert "maximum" in new.script() and "clip" not in new.script()
    target = resolve_target("x86")
    outs = []
    for module in (mod, new):
        vm = relax.VirtualMachine(tvm.compile(module, target), tvm.cpu())
        outs.append(vm)
    for start in range(-2**20, 2**20, 4096):
        row = np.arange(start, start + 4096, dtype=np.int32)
        x = tvm.runtime.tensor(np.ascontiguousarray(
            np.broadcast_to(row, (1, channels, 1, 4096))))
        np.testing.assert_array_equal(outs[0]["main"](x).numpy(), outs[1]["main"](x).numpy())
