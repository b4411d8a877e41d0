"""Last-axis softmax (:func:`tvm_qdq.backend.fast_math.te_softmax_rows`) and its x86
schedule (:mod:`tvm_qdq.backend.x86.schedules.softmax_rows`).

A mask add fused before and a uint8 quantize fused after, as in an attention layer. For
static row lengths (a multiple of 16, lengths vectorized whole or in 16-lane vectors plus a
scalar tail, lengths below 16) and for a symbolic batch and row length, the
``softmax_rows`` schedule applies, its outputs are bit-identical to the generic schedule's
(the sum order is fixed by the formula) and within 1 LSB of numpy's float64 softmax. A
softmax along another axis keeps the old four-stage form.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import s_tir, te, tirx

from tvm_qdq.backend.fast_math import te_softmax
from tvm_qdq.backend.kernel_tags import SOFTMAX_ROWS
from tvm_qdq.backend.tir_blocks import block_name, kernel_kinds, root_blocks
from tvm_qdq.backend.x86.schedules import schedule_function, schedule_generic
from tvm_qdq.targets import resolve_target

TARGET = resolve_target("x86")
HEADS = 3


def _masked_softmax_u8(shape: tuple) -> tirx.PrimFunc:
    """``q = clamp(round(softmax(x + mask, -1) · 255), 0, 255)`` as uint8."""
    x = te.placeholder(shape, "float32", name="x")
    mask = te.placeholder((shape[0], 1, 1, shape[3]), "float32", name="mask")
    xm = te.compute(shape, lambda a, h, i, j: x[a, h, i, j] + mask[a, 0, 0, j], name="T_add")
    sm = te_softmax(xm, 3)
    q = te.compute(shape, lambda *i: tirx.Cast("uint8", tirx.max(tirx.min(
        tirx.round(sm(*i) * tirx.const(255.0, "float32")), tirx.const(255.0, "float32")),
        tirx.const(0.0, "float32"))), name="q")
    return te.create_prim_func([x, mask, q]).with_attr("global_symbol", "main")


def _symbolic() -> tirx.PrimFunc:
    b, n = tirx.Var("b", "int64"), tirx.Var("n", "int64")
    return _masked_softmax_u8((b, tirx.IntImm("int64", HEADS), n, n))


def _run(func: tirx.PrimFunc, shape: tuple, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the quantized output, numpy's float64 reference of it)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    mask = np.where(rng.random((shape[0], 1, 1, shape[3])) < 0.2, -1e4, 0.0).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros(shape, np.uint8))
    tvm.compile(tvm.IRModule({"main": func}), TARGET)["main"](
        tvm.runtime.tensor(x), tvm.runtime.tensor(mask), out)
    xm = x.astype(np.float64) + mask
    e = np.exp(xm - xm.max(-1, keepdims=True))
    ref = np.clip(np.round(e / e.sum(-1, keepdims=True) * 255), 0, 255)
    return out.numpy(), ref


def _check(func: tirx.PrimFunc, shapes: list[tuple]) -> None:
    assert SOFTMAX_ROWS in kernel_kinds(func)
    scheduled, kind = schedule_function(func, target=TARGET)
    assert kind == "softmax_rows"
    generic = schedule_generic(func)
    for seed, shape in enumerate(shapes):
        got, ref = _run(scheduled, shape, seed)
        want, _ = _run(generic, shape, seed)
        np.testing.assert_array_equal(got, want, err_msg=str(shape))
        assert np.abs(got.astype(int) - ref).max() <= 1, shape


@pytest.mark.parametrize("length", [600, 255, 128, 77, 8, 1])
def test_static_rows(length: int) -> None:
    shape = (2, HEADS, length, length)
    _check(_masked_softmax_u8(shape), [shape])


def test_symbolic_rows() -> None:
    shapes = [(b, HEADS, n, n) for b, n in [(1, 1), (2, 5), (1, 16), (2, 33), (1, 64), (1, 77)]]
    _check(_symbolic(), shapes)


def test_other_axis_keeps_four_stages() -> None:
    x = te.placeholder((2, 8, 5), "float32", name="x")
    func = te.create_prim_func([x, te_softmax(x, 1)])
    assert SOFTMAX_ROWS not in kernel_kinds(func)
    sch = s_tir.Schedule(func)
    names = {block_name(sch, b) for b in root_blocks(sch)}
    assert {"T_softmax_maxelem", "T_softmax_exp", "T_softmax_expsum",
            "T_softmax_norm"} <= names
