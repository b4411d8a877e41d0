"""tvm_qdq.frontend.fold_layout: permute / reshape of constants become constants (exact)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvm_qdq.frontend.fold_layout import fold_constant_layout


def test_moves_of_constants_fold_and_other_calls_stay() -> None:
    w = np.arange(24, dtype=np.int8).reshape(4, 6)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 4), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            wt = bb.emit(relax.op.permute_dims(relax.const(w), [1, 0]))  # [6, 4]
            w3 = bb.emit(relax.op.reshape(relax.const(w), (2, 2, 6)))
            moved = bb.emit(relax.op.permute_dims(x, [1, 0]))  # not a constant: kept
            y = bb.emit(relax.op.matmul(x, relax.op.permute_dims(wt, [1, 0]),
                                        out_dtype="int32"))
            out = bb.emit_output(relax.Tuple([y, w3, moved]))
        bb.emit_func_output(out)
    folded = fold_constant_layout(bb.get())
    text = folded["main"].script(show_meta=True)
    assert text.count("R.permute_dims(") == 1 and "R.reshape(" not in text, text
    ex = tvm.compile(folded, "llvm")
    xv = np.arange(8, dtype=np.int8).reshape(2, 4)
    y, w3v, moved = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(xv))
    np.testing.assert_array_equal(y.numpy(), xv.astype(np.int32) @ w.astype(np.int32))
    np.testing.assert_array_equal(w3v.numpy(), w.reshape(2, 2, 6))
    np.testing.assert_array_equal(moved.numpy(), xv.T)
