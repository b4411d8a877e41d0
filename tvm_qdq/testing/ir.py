"""IR checks used by the tests: which conv/matmul calls a module holds, with which dtypes."""

from __future__ import annotations

import tvm
from tvm import relax

COMPUTE_OPS = ("relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d", "relax.matmul")


def compute_calls(mod: tvm.IRModule) -> list[tuple[str, list[str], str]]:
    """Every conv/matmul call in ``mod``: (op name, operand dtypes, result dtype)."""
    found = []
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)):
                    continue
                if value.op.name in COMPUTE_OPS:
                    dtypes = [str(a.ty.dtype) for a in value.args[:2]]
                    found.append((value.op.name, dtypes, str(binding.var.ty.dtype)))
    return found


def float_compute_calls(mod: tvm.IRModule) -> list[tuple[str, list[str], str]]:
    """The conv/matmul calls of ``mod`` with a float operand (should be none after the pass)."""
    return [c for c in compute_calls(mod) if any(d.startswith(("float", "bfloat")) for d in c[1])]


def float_conversion_chains(mod: tvm.IRModule) -> int:
    """How many ``quantize(dequantize(q))`` pairs (conversion chains done in float) remain."""
    count = 0
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        producer = {}
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                producer[binding.var] = value
                if (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                        and value.op.name == "relax.quantize"):
                    src = producer.get(value.args[0])
                    if (isinstance(src, relax.Call) and isinstance(src.op, tvm.ir.Op)
                            and src.op.name == "relax.dequantize"):
                        count += 1
    return count
