"""Kernel operands with simplified symbolic shapes (:mod:`tvm_qdq.backend.canonical_shapes`):
the spelling a kernel sees must survive legalization, or FuseTIR refuses the fused call."""

from __future__ import annotations

import tvm_ffi
from tvm import relax, tirx

from tvm_qdq.backend.canonical_shapes import canonical_operand, simplified_shape
from tvm_qdq.relax_utils import ty


def test_simplified_shape_only_when_a_dim_changes() -> None:
    w = tirx.Var("w", "int64")
    padded = (w - 1) // 2 + 1 + 2
    dims = simplified_shape(relax.TensorType([1, 34, padded, 24], "uint8"))
    assert dims is not None
    assert tvm_ffi.structural_equal(dims[2], (w - 1) // 2 + 3)
    assert simplified_shape(relax.TensorType([1, 34, (w - 1) // 2 + 3, 24], "uint8")) is None
    assert simplified_shape(relax.TensorType([1, w, 8], "uint8")) is None
    assert simplified_shape(relax.TensorType([1, 8], "uint8")) is None


def test_canonical_operand_binds_the_simplified_shape() -> None:
    w = tirx.Var("w", "int64")
    x = relax.Var("x", relax.TensorType([1, w], "uint8"))
    # a map spelled as Relax infers a pad of a stride-2 map: (w - 1) // 2 + 1 + 2
    y = relax.Var("y", relax.TensorType([1, 1, 1, (w - 1) // 2 + 1 + 2], "uint8"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, y]):
        with bb.dataflow():
            same = canonical_operand(bb, x)  # already simplified: returned as it is
            pinned = canonical_operand(bb, y)
            out = bb.emit_output(pinned)
        bb.emit_func_output(out)
    assert same.same_as(x)
    assert not pinned.same_as(y)
    assert tvm_ffi.structural_equal(ty(pinned).shape.values[3], (w - 1) // 2 + 3)
    bindings = bb.get()["main"].body.blocks[0].bindings
    assert [type(b) for b in bindings][:1] == [relax.MatchCast]
