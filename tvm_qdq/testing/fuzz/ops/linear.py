"""Generators of the ops that sum products: Conv, MatMul (constant or tensor right side), Gemm.

Conv: any group count dividing ``C_in`` (depthwise included), kernels 1-3, dilations, strides
and asymmetric pads; weights per tensor, per output channel or blocked along ``C_in``; an
int32 bias sometimes off the accumulator grid (``scale ≠ s_x · s_w``); about half of the
eligible ones as QLinearConv / QLinearMatMul.  Gemm: ``transA``, ``transB``, ``alpha``,
``beta``.
"""

from __future__ import annotations

from typing import Any

from ..draw import Draw, divisors
from .common import bias_for, maybe_qoperator, op_record, probe


def gen_conv(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) in (3, 4) and min(t.shape) >= 1)
    if x is None:
        return None
    spatial = len(x.shape) - 2
    cin = x.shape[1]
    group = d.pick(divisors(cin))
    depthwise = group == cin and d.bool(0.5)
    cout = group * d.int(1, 2) if depthwise else group * d.int(1, max(1, 8 // group))
    kernel, pads, strides, dil = [], [0] * (2 * spatial), [], []
    for i in range(spatial):
        size = x.shape[2 + i]
        k = d.int(1, 3)
        dl = d.pick([1, 1, 2])
        p0, p1 = d.int(0, 2), d.int(0, 2)
        if size + p0 + p1 < dl * (k - 1) + 1:
            k, dl = 1, 1
        kernel.append(k)
        dil.append(dl)
        strides.append(d.pick([1, 1, 2, 3]))
        pads[i], pads[spatial + i] = p0, p1
    attrs: dict[str, Any] = {"kernel_shape": kernel, "group": group}
    if any(pads):
        attrs["pads"] = pads
    if any(s != 1 for s in strides):
        attrs["strides"] = strides
    if any(v != 1 for v in dil):
        attrs["dilations"] = dil
    w_shape = [cout, cin // group, *kernel]
    w = d.weight(w_shape, axis=0, block_axis=1)
    inputs = [{"t": x.name}, {"c": w}]
    y = probe(d.b, "Conv", inputs, attrs)
    bias = bias_for(d, x, w, cout, True, lambda: y)
    if bias is not None:
        inputs.append({"c": bias})
    rec = op_record("Conv", inputs, attrs, [name], [d.qspec(y.shape)])
    return maybe_qoperator(d, rec, x, w)


def gen_matmul(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: 2 <= len(t.shape) <= 4)
    if x is None:
        return None
    k = x.shape[-1]
    if d.bool(0.7):
        n = d.int(1, 9)
        w = d.weight([k, n], axis=1, block_axis=0)
        ins = [{"t": x.name}, {"c": w}]
        y = probe(d.b, "MatMul", ins, {})
        rec = op_record("MatMul", ins, {}, [name], [d.qspec(y.shape)])
        return maybe_qoperator(d, rec, x, w)
    n = d.int(1, 9)
    other_shape = (*x.shape[:-2], k, n)
    other = d.tensor(lambda t: t.shape == other_shape and t.name != x.name)
    if other is None:
        other = d.new_input(other_shape)
    ins = [{"t": x.name}, {"t": other.name}]
    y = probe(d.b, "MatMul", ins, {})
    return op_record("MatMul", ins, {}, [name], [d.qspec(y.shape)])


def gen_gemm(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) == 2)
    if x is None:
        return None
    trans_a = int(d.bool(0.2))
    k = x.shape[0] if trans_a else x.shape[1]
    n = d.int(1, 9)
    trans_b = int(d.bool(0.6))
    w = d.weight([n, k] if trans_b else [k, n], axis=0 if trans_b else 1)
    attrs: dict[str, Any] = {}
    if trans_a:
        attrs["transA"] = 1
    if trans_b:
        attrs["transB"] = 1
    alpha = d.pick([1.0, 1.0, 0.5, 2.0, 0.1])
    if alpha != 1.0:
        attrs["alpha"] = alpha
    inputs = [{"t": x.name}, {"c": w}]
    y = probe(d.b, "Gemm", inputs, attrs)
    bias = bias_for(d, x, w, n, True, lambda: y)
    if bias is not None:
        if alpha != 1.0:
            bias["factor"] = float(bias["factor"]) * alpha
        beta = d.pick([1.0, 1.0, 0.5])
        if beta != 1.0:
            attrs["beta"] = beta
        inputs.append({"c": bias})
    return op_record("Gemm", inputs, attrs, [name], [d.qspec(y.shape)])
