"""A static execution plan of a lowered Relax ``main``: buffers, kernel calls, memory offsets.

After ``LegalizeOps`` / ``FuseOps`` / ``FuseTIR`` the integer model's ``main`` is a straight
sequence of ``R.call_tir`` bindings with static shapes. :func:`make_plan` turns it into
:class:`Plan`: every tensor (model input, constant, intermediate, output) is a
:class:`PlanBuffer`; every binding is a :class:`KernelCall` naming the kernel symbol and its
argument buffers (outputs last, the destination-passing convention of ``call_tir``). The
intermediates share one arena, placed offline by liveness (:func:`assign_offsets`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from ...relax_utils import ty

#: Alignment of every buffer in the arena and the constant blob (one HVX vector).
ALIGN = 128


class HexagonLoweringError(ValueError):
    """The lowered model cannot run as a static kernel sequence (dynamic shape, unknown op)."""


@dataclass
class PlanBuffer:
    """One tensor of the plan. ``kind``: input, const, temp (arena) or output (arena)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str
    value: np.ndarray | None = None
    offset: int = -1
    first: int = -1
    last: int = -1

    @property
    def nbytes(self) -> int:
        bits = tvm.DataType(self.dtype).bits
        return int(np.prod(self.shape, dtype=np.int64)) * max(bits, 8) // 8


@dataclass
class KernelCall:
    """``symbol(args...)``: ``args`` are buffer indices, inputs then outputs."""

    symbol: str
    func: str
    args: list[int]
    num_outputs: int


@dataclass
class Plan:
    """What the driver executes: buffers, the call sequence, inputs and outputs in order."""

    buffers: list[PlanBuffer] = field(default_factory=list)
    calls: list[KernelCall] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    symbols: dict[str, str] = field(default_factory=dict)
    arena_size: int = 0
    const_size: int = 0

    def add(self, name: str, shape, dtype: str, kind: str, value=None) -> int:
        buf = PlanBuffer(len(self.buffers), name, tuple(int(d) for d in shape), dtype, kind,
                         value)
        self.buffers.append(buf)
        return buf.index


def _static_shape(t, what: str) -> tuple[tuple[int, ...], str]:
    if not isinstance(t, relax.TensorType) or t.shape is None:
        raise HexagonLoweringError(f"{what}: not a tensor of known shape ({t})")
    try:
        shape = tuple(int(d) for d in t.shape.values)
    except (TypeError, AttributeError) as err:
        raise HexagonLoweringError(f"{what}: dynamic shape {t.shape} (the Hexagon driver "
                                   "needs static shapes)") from err
    return shape, str(t.dtype)


def symbol_name(index: int, func: str) -> str:
    """A short C symbol for kernel ``index`` named ``func`` (``qdq_k03_fused_conv2d1_add``)."""
    short = re.sub(r"[^A-Za-z0-9_]", "_", func)
    short = "_".join(short.split("_")[:4])[:40]
    return f"qdq_k{index:02d}_{short}"


def make_plan(mod: tvm.IRModule) -> Plan:
    """The static plan of ``mod['main']`` (already lowered to ``call_tir`` bindings)."""
    plan = Plan()
    func = mod["main"]
    num_input = (int(func.attrs["num_input"]) if func.attrs and "num_input" in func.attrs
                 else len(func.params))
    if num_input != len(func.params):
        raise HexagonLoweringError("main has parameters beyond its inputs (weights as "
                                   "parameters are not supported by the Hexagon driver)")
    env: dict = {}
    for param in func.params:
        shape, dtype = _static_shape(ty(param), f"input {param.name}")
        env[param] = plan.add(str(param.name), shape, dtype, "input")
        plan.inputs.append(env[param])
    consts: dict = {}

    def arg_buffer(expr) -> int | tuple:
        if isinstance(expr, relax.Var):
            if expr not in env:
                raise HexagonLoweringError(f"unbound variable {expr.name}")
            return env[expr]
        if isinstance(expr, tvm.ir.Constant):
            key = expr
            if key not in consts:
                value = expr.value.numpy()
                shape, dtype = _static_shape(ty(expr), "constant")
                consts[key] = plan.add(f"const{len(consts)}", shape, dtype, "const", value)
            return consts[key]
        if isinstance(expr, relax.Tuple):
            return tuple(arg_buffer(f) for f in expr.fields)
        raise HexagonLoweringError(f"unsupported argument {type(expr).__name__}")

    call_tir = tvm.ir.Op.get("relax.call_tir")
    body = func.body
    for block in body.blocks:
        for binding in block.bindings:
            if not isinstance(binding, relax.VarBinding):
                raise HexagonLoweringError("match_cast bindings are not supported")
            var, value = binding.var, binding.value
            if isinstance(value, relax.Call) and value.op.same_as(call_tir):
                if len(value.args) > 2:
                    raise HexagonLoweringError(f"{var.name}: call_tir with symbolic shape "
                                               "arguments (static shapes only)")
                gvar = value.args[0]
                fname = str(gvar.name_hint)
                if fname not in plan.symbols:
                    plan.symbols[fname] = symbol_name(len(plan.symbols), fname)
                ins = arg_buffer(value.args[1])
                ins = list(ins) if isinstance(ins, tuple) else [ins]
                out_ty = ty(var)
                fields = list(out_ty.fields) if isinstance(out_ty, relax.TupleType) else [out_ty]
                outs = []
                for i, fty in enumerate(fields):
                    shape, dtype = _static_shape(fty, f"{var.name}[{i}]")
                    outs.append(plan.add(f"{var.name}" + (f"_{i}" if len(fields) > 1 else ""),
                                         shape, dtype, "temp"))
                env[var] = tuple(outs) if isinstance(out_ty, relax.TupleType) else outs[0]
                plan.calls.append(KernelCall(plan.symbols[fname], fname, ins + outs,
                                             len(outs)))
            elif isinstance(value, relax.Var | tvm.ir.Constant | relax.Tuple):
                env[var] = arg_buffer(value)
            elif isinstance(value, relax.TupleGetItem):
                env[var] = arg_buffer(value.tuple_value)[int(value.index)]
            else:
                what = value.op.name if isinstance(value, relax.Call) and hasattr(
                    value.op, "name") else type(value).__name__
                raise HexagonLoweringError(f"{var.name}: {what} is not a kernel call (only "
                                           "call_tir sequences run on the Hexagon driver)")
    result = arg_buffer(body.body)
    plan.outputs = list(result) if isinstance(result, tuple) else [result]
    for idx in plan.outputs:
        if plan.buffers[idx].kind == "temp":
            plan.buffers[idx].kind = "output"
    assign_offsets(plan)
    return plan


def _align(value: int) -> int:
    return (value + ALIGN - 1) // ALIGN * ALIGN


def assign_offsets(plan: Plan) -> None:
    """Place the arena buffers by liveness (greedy, largest first) and the constants in a blob.

    A buffer is live from the call that writes it to its last reader; outputs and inputs live
    for the whole run. Buffers whose live ranges meet (even at one call) never overlap.
    """
    end = len(plan.calls)
    for buf in plan.buffers:
        buf.first, buf.last = (0, end) if buf.kind in ("input", "const") else (end, -1)
    for step, call in enumerate(plan.calls):
        for pos, idx in enumerate(call.args):
            buf = plan.buffers[idx]
            if buf.kind in ("temp", "output"):
                if pos >= len(call.args) - call.num_outputs:
                    buf.first = min(buf.first, step)
                buf.last = max(buf.last, step)
    arena = [b for b in plan.buffers if b.kind in ("temp", "output", "input")]
    for buf in arena:
        if buf.kind in ("output", "input"):
            buf.first, buf.last = (0 if buf.kind == "input" else buf.first), end
    placed: list[PlanBuffer] = []
    for buf in sorted(arena, key=lambda b: (-b.nbytes, b.index)):
        offset = 0
        for other in sorted(placed, key=lambda b: b.offset):
            if other.last < buf.first or buf.last < other.first:
                continue
            if offset + _align(buf.nbytes) <= other.offset:
                break
            offset = max(offset, other.offset + _align(other.nbytes))
        buf.offset = offset
        placed.append(buf)
    plan.arena_size = _align(max((b.offset + b.nbytes for b in placed), default=0))
    offset = 0
    for buf in plan.buffers:
        if buf.kind == "const":
            buf.offset = offset
            offset += _align(buf.nbytes)
    plan.const_size = offset


def single_kernel_plan(func: tvm.tirx.PrimFunc, symbol: str = "qdq_k00_kernel",
                       num_outputs: int = 1) -> tuple[Plan, tvm.IRModule]:
    """A plan that calls one PrimFunc: its first parameters are inputs, the last outputs.

    Used to run a single kernel under the emulator (kernel tests, debugging).
    """
    plan = Plan()
    params = list(func.params)
    args = []
    for pos, param in enumerate(params):
        buf = param.ty
        kind = "input" if pos < len(params) - num_outputs else "output"
        idx = plan.add(str(param.name), [int(d) for d in buf.shape], str(buf.dtype), kind)
        args.append(idx)
        (plan.inputs if kind == "input" else plan.outputs).append(idx)
    plan.symbols[symbol] = symbol
    plan.calls.append(KernelCall(symbol, symbol, args, num_outputs))
    assign_offsets(plan)
    mod = tvm.IRModule({symbol: func.with_attr("global_symbol", symbol)})
    return plan, mod
