"""Generators of pooling ops: MaxPool, AveragePool and GlobalAveragePool."""

from __future__ import annotations

from typing import Any

from ..draw import Draw
from .common import op_record, probe


def _pool_attrs(d: Draw, shape: tuple[int, ...], allow_dilation: bool) -> dict:
    spatial = len(shape) - 2
    kernel, strides, pads = [], [], [0] * (2 * spatial)
    for i in range(spatial):
        size = shape[2 + i]
        k = d.int(1, min(3, size + 1))
        kernel.append(k)
        strides.append(d.pick([1, 1, 2]))
        if k > 1:
            pads[i], pads[spatial + i] = d.int(0, k - 1), d.int(0, k - 1)
        if size + pads[i] + pads[spatial + i] < k:
            kernel[-1] = 1
            pads[i] = pads[spatial + i] = 0
    attrs: dict[str, Any] = {"kernel_shape": kernel}
    if any(s != 1 for s in strides):
        attrs["strides"] = strides
    if any(pads):
        attrs["pads"] = pads
    if d.bool(0.1):
        attrs["ceil_mode"] = 1
    return attrs


def gen_pool(d: Draw, name: str, op: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) == 4 or (op == "MaxPool" and len(t.shape) == 3))
    if x is None:
        return None
    attrs = _pool_attrs(d, x.shape, op == "MaxPool")
    if op == "AveragePool" and d.bool(0.5):
        attrs["count_include_pad"] = 1
    y = probe(d.b, op, [{"t": x.name}], attrs)
    same = x.name if op == "MaxPool" else None
    return op_record(op, [{"t": x.name}], attrs, [name], [d.qspec(y.shape, same_as=same)])


def gen_gap(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) in (3, 4))
    if x is None:
        return None
    y = probe(d.b, "GlobalAveragePool", [{"t": x.name}], {})
    return op_record("GlobalAveragePool", [{"t": x.name}], {}, [name],
                     [d.qspec(y.shape, same_as=x.name)])
