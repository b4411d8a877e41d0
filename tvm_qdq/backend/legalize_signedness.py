"""Target legalization: give integer conv/matmul the operand signedness the target's
dot-product instruction wants, exactly.

x86 VNNI ``vpdpbusd`` multiplies uint8 × int8. An int8 activation ``x`` becomes
``x + 128`` (uint8) and the zero-point identity restores the exact sum:

    Σ_k x_k · w_k = Σ_k (x_k + 128) · w_k - 128 · Σ_k w_k

with ``Σ_k w_k`` a compile-time constant per output channel (weights are constants). A padded
convolution is padded with 0 in the int8 domain first, so padding contributes nothing.
The choice is recorded per op (``tvm_qdq.legalize`` module attribute).
"""

from __future__ import annotations

import json

import numpy as np
import tvm
from tvm import relax

from ..relax_utils import constant as const
from ..relax_utils import constant_value, conv_pad_width, partial_shape, remap_vars

SHIFT = 128
PREFERENCES = {"x86": ("uint8", "int8")}


def _to_uint8(bb: relax.BlockBuilder, x: relax.Expr) -> relax.Expr:
    """int8 ``x`` → uint8 ``x + 128`` (exact: the result is in [0, 255])."""
    wide = bb.emit(relax.op.add(relax.op.astype(x, "int16"), const(SHIFT, "int16")))
    return bb.emit(relax.op.astype(wide, "uint8"), "legal_u8")


def _legalize_conv(bb, call: relax.Call, weight: np.ndarray) -> relax.Expr:
    attrs = call.attrs
    spatial = len(weight.shape) - 2
    padding = [int(p) for p in attrs.padding]
    data = call.args[0]
    if any(padding):
        data = bb.emit(relax.op.nn.pad(data, conv_pad_width(padding, spatial), "constant", 0))
    op = relax.op.nn.conv2d if spatial == 2 else relax.op.nn.conv1d
    acc = str(attrs.out_dtype)
    value = bb.emit(op(_to_uint8(bb, data), call.args[1], strides=list(attrs.strides),
                       padding=[0] * len(padding), dilation=list(attrs.dilation),
                       groups=int(attrs.groups), data_layout=str(attrs.data_layout),
                       kernel_layout=str(attrs.kernel_layout), out_dtype=acc), "qnn_conv")
    out_ch = weight.shape[0]
    correction = SHIFT * weight.astype(np.int64).reshape(out_ch, -1).sum(axis=1)
    return relax.op.subtract(value, const(correction.reshape((1, out_ch) + (1,) * spatial), acc))


def _legalize_matmul(bb, call: relax.Call, weight: np.ndarray) -> relax.Expr:
    acc = str(call.attrs.out_dtype)
    value = bb.emit(relax.op.matmul(_to_uint8(bb, call.args[0]), call.args[1], out_dtype=acc),
                    "qnn_matmul")
    return relax.op.subtract(value, const(SHIFT * weight.astype(np.int64).sum(axis=0), acc))


def _report_shape(var: relax.Var) -> list[int | str]:
    """The shape of ``var`` for the report: ints, and the name of each symbolic dim."""
    return [d if isinstance(d, int) else str(d) for d in partial_shape(var)]


def _candidate(call: relax.Expr) -> np.ndarray | None:
    """The constant int8 weight of an int8 × int8 conv/matmul, else None."""
    if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)):
        return None
    if call.op.name not in ("relax.nn.conv1d", "relax.nn.conv2d", "relax.matmul"):
        return None
    data, weight = call.args[0], call.args[1]
    w = constant_value(weight)
    if w is None or str(data.ty.dtype) != "int8" or str(w.dtype) != "int8":
        return None
    if call.op.name == "relax.matmul" and w.ndim != 2:
        return None
    return w


def legalize_signedness(mod: tvm.IRModule, target: str = "x86") -> tvm.IRModule:
    """Rewrite int8 × int8 conv/matmul into uint8 × int8 (+ constant correction) for x86."""
    if target not in PREFERENCES:
        return mod
    records = []
    mod = mod.clone()  # IRModule assignment mutates in place: never touch the caller's module
    for gvar, func in list(mod.functions.items()):
        if not isinstance(func, relax.Function):
            continue
        bb = relax.BlockBuilder()
        mapping: dict = {}
        attrs = {str(k): v for k, v in func.attrs.items()} if func.attrs is not None else {}
        with bb.function(gvar.name_hint, list(func.params), attrs=attrs):
            with bb.dataflow():
                for block in func.body.blocks:
                    for binding in block.bindings:
                        value = remap_vars(binding.value, mapping)
                        weight = _candidate(value)
                        if weight is not None:
                            build = _legalize_conv if value.op.name != "relax.matmul" else \
                                _legalize_matmul
                            value = build(bb, value, weight)
                            records.append({"op": binding.value.op.name,
                                            "shape": _report_shape(binding.var),
                                            "rewrite": "int8×int8 → uint8×int8 - 128·Σw"})
                        mapping[binding.var] = bb.emit(value, name_hint=binding.var.name)
                out = bb.emit_output(remap_vars(func.body.body, mapping))
            bb.emit_func_output(out)
        mod[gvar] = bb.get()[gvar.name_hint]
    return mod.with_attr("tvm_qdq.legalize", json.dumps(records))
