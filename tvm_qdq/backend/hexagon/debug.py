"""Debugging aids: run a plan's kernels on the host and compare every intermediate.

:func:`run_plan_on_host` executes the same kernel sequence with the same PrimFuncs built for
the host CPU (HVX intrinsics cannot run there, so pass the module lowered with
``vrmpy=False``) and returns every buffer; :func:`first_divergence` compares those with the
Hexagon ELF's per-kernel dump (``model.elf 1 dump``).
"""

from __future__ import annotations

import numpy as np
import tvm

from .plan import Plan


def run_plan_on_host(kernels: tvm.IRModule, plan: Plan,
                     inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Every buffer of ``plan`` after running ``kernels`` (built for the host) in order."""
    lib = tvm.tirx.build(kernels, target=tvm.target.Target({"kind": "llvm"}))
    values: dict[int, np.ndarray] = {}
    for idx, array in zip(plan.inputs, inputs, strict=True):
        values[idx] = np.ascontiguousarray(array)
    for buf in plan.buffers:
        if buf.kind == "const":
            values[buf.index] = buf.value
    for call in plan.calls:
        tensors = []
        for pos, idx in enumerate(call.args):
            buf = plan.buffers[idx]
            if pos >= len(call.args) - call.num_outputs:
                tensors.append(tvm.runtime.tensor(np.zeros(buf.shape, buf.dtype)))
            else:
                tensors.append(tvm.runtime.tensor(values[idx]))
        lib[call.symbol](*tensors)
        for pos, idx in enumerate(call.args):
            if pos >= len(call.args) - call.num_outputs:
                values[idx] = tensors[pos].numpy()
    return values


def split_dump(plan: Plan, data: bytes) -> list[tuple[int, np.ndarray]]:
    """The ``(buffer index, array)`` pairs of a per-kernel dump, in execution order."""
    result, pos = [], 0
    for call in plan.calls:
        for idx in call.args[len(call.args) - call.num_outputs:]:
            buf = plan.buffers[idx]
            chunk = data[pos:pos + buf.nbytes]
            pos += buf.nbytes
            result.append((idx, np.frombuffer(chunk, dtype=buf.dtype).reshape(buf.shape)))
    return result


def first_divergence(plan: Plan, host: dict[int, np.ndarray],
                     dump: list[tuple[int, np.ndarray]]) -> str | None:
    """Description of the first kernel output that differs between host and Hexagon."""
    for idx, array in dump:
        ref = host[idx]
        if not np.array_equal(array.view(np.uint8), np.ascontiguousarray(ref).view(np.uint8)):
            call = next(c for c in plan.calls if idx in c.args[len(c.args) - c.num_outputs:])
            bad = np.argwhere(array != ref)
            first = tuple(int(i) for i in bad[0]) if len(bad) else None
            return (f"{call.symbol} ({call.func}) output {plan.buffers[idx].name}: "
                    f"{len(bad)} of {array.size} differ; first at {first}: "
                    f"hexagon {array[first] if first else '?'} host "
                    f"{ref[first] if first else '?'}")
    return None
