"""The integer pass: ``dequantize → op → quantize`` becomes integer compute.

Like Relay's FakeQuantizationToInteger, but on Relax and driven forward:

1. Bindings are re-emitted in order. A ``dequantize`` with constant parameters exposes its
   integer input as a :class:`QTensor`; every op with a *forward rule* whose inputs have
   integer forms gets an integer form too (conv → int32 accumulator, reshape → same
   reshape on integers, ...).
2. At each ``quantize`` with constant parameters, the input's integer form is requantized
   to the output's parameters; or, if the input is produced by an op with an *output rule*
   (add, concat, average pools, ...) whose inputs have integer forms, that rule builds it.
   The float ``quantize`` is then replaced by the integer value.
   A float consumer of a value with an integer *accumulator* form (a conv/matmul followed
   by LeakyRelu, SiLU, a float bias or nothing at all) reads the accumulator dequantized,
   ``float(float64(acc) · s_acc)``, instead of the float op: the conv/matmul is integer
   whatever follows it.
3. Dead float code is removed. Ops with no rule keep their float form between
   ``dequantize`` and ``quantize`` (a float island); the report lists them.

Shapes may be partial (symbolic dims such as ``seq``). A rule that needs a symbolic dim as an
integer refuses with :class:`~tvm_qdq.qnn.dims.NeedsStaticDim`; the op then keeps its float
form and the report names the refusal (outcome ``float``). Upper bounds of symbolic dims the
rules assume (an int32 accumulator over a symbolic ``K``) become the function attribute
``tvm_qdq.implicit_bounds``; every other function attribute is kept.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import tvm
from tvm import relax

from tvm_qdq.dtypes import QTYPES
from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.dims import DimBounds, NeedsStaticDim
from tvm_qdq.relax_utils import remap_vars as _remap

from . import rules  # noqa: F401  (registers every rule)
from .qtensor import OpRecord, QTensor, RewriteContext, constant_value
from .registry import FORWARD_RULES, OUTPUT_RULES

COMPUTE_OPS = {
    "relax.nn.conv1d",
    "relax.nn.conv2d",
    "relax.nn.conv3d",
    "relax.matmul",
    "relax.nn.conv2d_transpose",
}
QDQ_OPS = {"relax.quantize", "relax.dequantize"}


@dataclass
class PassReport:
    """What the pass did: integer ops created, float ops left (islands), per op."""

    integer: list[OpRecord] = field(default_factory=list)
    float_ops: list[dict] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {"integer": [asdict(r) for r in self.integer], "float_ops": self.float_ops}
        )

    @staticmethod
    def from_json(text: str) -> PassReport:
        data = json.loads(text)
        return PassReport([OpRecord(**r) for r in data["integer"]], data["float_ops"])


def _quantize_params(call: relax.Call) -> QParams | None:
    scale, zero_point = constant_value(call.args[1]), constant_value(call.args[2])
    qtype = QTYPES.get(str(call.attrs.out_dtype))
    if scale is None or zero_point is None or qtype is None:
        return None
    axis = int(call.attrs.axis) if scale.size > 1 else None
    return QParams(scale, zero_point, qtype, axis)


def _integer_quantize(ctx: RewriteContext, call: relax.Call) -> relax.Expr | None:
    """Integer value replacing ``quantize(y)``, or None when ``y`` has no integer form."""
    dst = _quantize_params(call)
    if dst is None:
        return None
    src = call.args[0]
    q = ctx.qtensor(src)
    if q is not None and (q.params.per_tensor or q.params.axis is not None):
        out = ctx.requantize(q.value, q.params, dst)
        folded = out.same_as(q.value)
        ctx.record("relax.quantize", str(getattr(out, "name", "")),
                   "folded" if folded else "requantize",
                   f"{q.params.describe()} → {dst.describe()}")
        return out
    producer = ctx.producer(src)
    if isinstance(producer, relax.Call) and isinstance(producer.op, tvm.ir.Op):
        rule = OUTPUT_RULES.get(producer.op.name)
        if rule is not None:
            return _apply(ctx, rule, producer, src, dst)
    return None


def _apply(ctx: RewriteContext, rule, call: relax.Call, var: relax.Expr, *args):
    """``rule(ctx, call, *args)``; a :class:`NeedsStaticDim` refusal leaves the op float and
    is recorded (outcome ``float``, the refusal as the detail)."""
    try:
        return rule(ctx, call, *args)
    except NeedsStaticDim as refusal:
        ctx.record(call.op.name, str(getattr(var, "name", "")), "float", str(refusal))
        return None


def _float_from_accumulator(ctx: RewriteContext, original: relax.Var, var: relax.Var,
                            call: relax.Call, result, mapping: dict) -> None:
    """Consumers of a float result that has an integer accumulator form read the accumulator
    dequantized (:meth:`RewriteContext.dequantize`) instead of the float op, so a conv/matmul
    on dequantized inputs is integer whatever follows it (LeakyRelu, SiLU, a float output).
    ``quantize`` consumers still requantize the accumulator itself (the dequantized value
    carries the same :class:`QTensor`); if no float consumer is left, the float op and the
    dequantize are dead code."""
    dtype = str(getattr(original.ty, "dtype", ""))
    if not (isinstance(result, QTensor) and result.is_accumulator and dtype.startswith("float")):
        return
    value = ctx.dequantize(result, dtype)
    mapping[original] = value
    ctx.qtensors[value] = result
    ctx.producers[value] = call
    ctx.record(call.op.name, str(value.name), "dequantize",
               f"{result.params.qtype.name} accumulator → {dtype} for float consumers")


def _rewrite_function(func: relax.Function, name: str) -> tuple[relax.Function, RewriteContext]:
    bb = relax.BlockBuilder()
    ctx = RewriteContext(bb, dims=DimBounds.of(func))
    mapping: dict = {}
    attrs = {str(k): v for k, v in func.attrs.items()} if func.attrs is not None else {}
    with bb.function(name, list(func.params), attrs=attrs):
        with bb.dataflow():
            for block in func.body.blocks:
                for binding in block.bindings:
                    if not isinstance(binding, relax.VarBinding):
                        raise NotImplementedError("match_cast bindings are not supported")
                    value = _remap(binding.value, mapping)
                    is_op = isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                    if is_op and value.op.name == "relax.quantize":
                        integer = _integer_quantize(ctx, value)
                        if integer is not None:
                            mapping[binding.var] = integer
                            continue
                    var = bb.emit(value, name_hint=binding.var.name)
                    mapping[binding.var] = var
                    ctx.originals.add(var)
                    ctx.producers[var] = value
                    if is_op and value.op.name in FORWARD_RULES:
                        result = _apply(ctx, FORWARD_RULES[value.op.name], value, var)
                        if result is not None:
                            ctx.qtensors[var] = result
                            _float_from_accumulator(ctx, binding.var, var, value, result,
                                                    mapping)
                    elif isinstance(value, relax.TupleGetItem):
                        items = ctx.qtuple(value.tuple_value)
                        if items is not None:
                            ctx.qtensors[var] = items[value.index]
                    elif isinstance(value, relax.Tuple):
                        items = ctx.qtuple(value)
                        if items is not None:
                            ctx.qtensors[var] = items
            out = bb.emit_output(_remap(func.body.body, mapping))
        bb.emit_func_output(out)
    return ctx.dims.attach(bb.get()[name]), ctx


def _float_islands(func: relax.Function, originals: set) -> list[dict]:
    """Ops of the imported graph that kept a float result (other than quantize/dequantize)."""
    found = []
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if binding.var not in originals:
                continue
            if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)):
                continue
            dtype = getattr(binding.var.ty, "dtype", None)
            if value.op.name in QDQ_OPS or dtype is None or not str(dtype).startswith("float"):
                continue
            found.append({"op": value.op.name, "var": str(binding.var.name),
                          "compute": value.op.name in COMPUTE_OPS})
    return found


def fake_quantization_to_integer(mod: tvm.IRModule) -> tuple[tvm.IRModule, PassReport]:
    """Rewrite every Relax function of ``mod`` into integer compute; return it and a report."""
    report = PassReport()
    updates = {}
    originals: set = set()
    for gvar, func in mod.functions.items():
        if not isinstance(func, relax.Function):
            continue
        new_func, ctx = _rewrite_function(func, gvar.name_hint)
        updates[gvar] = new_func
        report.integer.extend(ctx.records)
        originals |= ctx.originals
    mod = mod.clone()  # IRModule assignment mutates in place: never touch the caller's module
    for gvar, func in updates.items():
        mod[gvar] = func
    mod = relax.transform.DeadCodeElimination()(mod)
    live = set()
    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            report.float_ops.extend(_float_islands(func, originals))
            live |= {str(b.var.name) for block in func.body.blocks for b in block.bindings}
    # A dequantized accumulator only matters where a float consumer kept it alive.
    report.integer = [r for r in report.integer if r.outcome != "dequantize" or r.var in live]
    return mod, report


__all__ = ["PassReport", "QTensor", "fake_quantization_to_integer"]
