"""Small Relax functions for the x86 kernel tests: random integer inputs, a shift requantize
with its numpy reference, and one call that lowers and builds a function."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax


def random_ints(rng: np.random.Generator, shape, dtype: str) -> np.ndarray:
    """Uniform integers over the whole range of ``dtype``."""
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)


def shift_requantize(bb: relax.BlockBuilder, acc: relax.Expr) -> relax.Expr:
    """``uint8(clip((acc + 3) >> 6, 0, 255))`` emitted into ``bb``."""
    y = bb.emit(relax.op.right_shift(relax.op.add(acc, relax.const(3, "int32")),
                                     relax.const(6, "int32")))
    return bb.emit(relax.op.astype(relax.op.clip(y, 0, 255), "uint8"))


def shift_requantize_ref(acc: np.ndarray) -> np.ndarray:
    """numpy reference of :func:`shift_requantize`."""
    return np.clip((acc + 3) >> 6, 0, 255).astype(np.uint8)


def lower_and_build(make_body: Callable, inputs: dict[str, tuple], target: tvm.target.Target):
    """``main(*inputs) = make_body(bb, *params)`` (``inputs``: name → (shape, dtype)) lowered
    by :func:`tvm_qdq.backend.x86.lower_integer_kernels` for ``target`` and built: (VM,
    lowering report, executable, lowered module)."""
    from ..backend.x86 import LoweringReport, lower_integer_kernels

    bb = relax.BlockBuilder()
    params = [relax.Var(name, relax.TensorType(shape, dtype))
              for name, (shape, dtype) in inputs.items()]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(make_body(bb, *params))
        bb.emit_func_output(out)
    report = LoweringReport()
    lowered = lower_integer_kernels(bb.get(), target, report=report)
    executable = tvm.compile(lowered, target)
    return relax.VirtualMachine(executable, tvm.cpu()), report, executable, lowered
