"""Generators of element-wise ops: Add and Mul (broadcasting), Relu, Clip and Requant.

``Requant`` is no ONNX op: the previous tensor's ``DequantizeLinear`` feeds a new
``QuantizeLinear`` of other parameters (a mixed-precision boundary).
"""

from __future__ import annotations

import numpy as np

from ..draw import Draw
from .common import op_record, probe, real_limits


def _broadcast_shape(d: Draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    kind = d.pick(["same", "same", "ones", "channel", "suffix"])
    if kind == "same":
        return shape
    if kind == "ones":
        return tuple(1 for _ in shape)
    if kind == "channel" and len(shape) >= 2:
        return tuple(s if i == 1 else 1 for i, s in enumerate(shape))
    return shape[1:] if len(shape) > 1 else shape


def gen_binary(d: Draw, name: str, op: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    choice = d.pick(["tensor", "input", "const"])
    other_ref: dict = {}
    if choice == "tensor":
        other = d.tensor(lambda t: t.shape == x.shape)
        if other is not None:
            other_ref = {"t": other.name}
    if choice == "const":
        shape = list(_broadcast_shape(d, x.shape))
        dtype = d.act_dtype()
        if dtype in ("uint4", "int4"):
            dtype = "uint8"
        other_ref = {"c": {"kind": "weight", "shape": shape, "dtype": dtype,
                           "seed": d.int(0, 2**16), "exp": float(d.int(-3, 0)),
                           "values": "uniform", "zp": d.pick(["zero", "random", "mid"]),
                           "axis": None}}
    if not other_ref:
        other_ref = {"t": d.new_input(_broadcast_shape(d, x.shape)).name}
    ins = [{"t": x.name}, other_ref]
    if d.bool(0.3):
        ins = ins[::-1]
    y = probe(d.b, op, ins, {})
    return op_record(op, ins, {}, [name], [d.qspec(y.shape)])


def gen_relu(d: Draw, name: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    y = probe(d.b, "Relu", [{"t": x.name}], {})
    return op_record("Relu", [{"t": x.name}], {}, [name], [d.qspec(y.shape, same_as=x.name)])


def gen_clip(d: Draw, name: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    real = real_limits(x.qp)
    span = float(real[1] - real[0]) or 1.0
    lo = float(np.float32(real[0] + span * d.pick([0.0, 0.1, 0.3, 0.5, -0.2])))
    hi = float(np.float32(lo + span * d.pick([0.2, 0.5, 1.0, 1.5])))
    inputs: list[dict] = [{"t": x.name}]
    which = d.pick(["both", "both", "min", "max"])
    inputs.append({"c": {"kind": "f32", "value": lo}} if which != "max" else {})
    if which != "min":
        inputs.append({"c": {"kind": "f32", "value": hi}})
    y = probe(d.b, "Clip", inputs, {})
    return op_record("Clip", inputs, {}, [name], [d.qspec(y.shape, same_as=x.name)])


def gen_requant(d: Draw, name: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    q = d.qspec(x.shape, allow_axis=False)
    return op_record("Requant", [{"t": x.name}], {}, [name], [q])
