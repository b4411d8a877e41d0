"""Generators of data-movement ops: Concat, Reshape, Transpose, Flatten, Squeeze, Unsqueeze,
Slice, Gather, Split, Pad and nearest Resize.

Their outputs often keep their input's quantization parameters (``same_as``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..draw import Draw, divisors
from .common import i64, movement_q, op_record, probe, real_limits


def gen_concat(d: Draw, name: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    rank = len(x.shape)
    axis = d.int(-rank, rank - 1)
    ax = axis % rank
    ins = [{"t": x.name}]
    for _ in range(d.int(1, 2)):
        same = d.tensor(lambda t: len(t.shape) == rank and all(
            a == b for i, (a, b) in enumerate(zip(t.shape, x.shape, strict=True)) if i != ax))
        if same is None or d.bool(0.4):
            shape = list(x.shape)
            shape[ax] = d.int(1, 4)
            same = d.new_input(shape)
        ins.append({"t": same.name})
    y = probe(d.b, "Concat", ins, {"axis": axis})
    return op_record("Concat", ins, {"axis": axis}, [name], [d.qspec(y.shape)])


def gen_reshape(d: Draw, name: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    total = int(np.prod(x.shape))
    rank = d.int(1, 4)
    dims: list[int] = []
    rest = total
    for _ in range(rank - 1):
        dim = d.pick(divisors(rest))
        dims.append(dim)
        rest //= dim
    dims.append(rest)
    spec_dims = list(dims)
    if d.bool(0.3):
        spec_dims[d.int(0, rank - 1)] = -1
    ins = [{"t": x.name}, i64(spec_dims)]
    return op_record("Reshape", ins, {}, [name], [movement_q(d, x, dims)])


def gen_transpose(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) >= 2)
    if x is None:
        return None
    perm = d.perm(len(x.shape))
    shape = [x.shape[p] for p in perm]
    return op_record("Transpose", [{"t": x.name}], {"perm": list(perm)}, [name],
                     [movement_q(d, x, shape)])


def gen_flatten(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) >= 1)
    if x is None:
        return None
    axis = d.int(0, len(x.shape))
    shape = [int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))]
    return op_record("Flatten", [{"t": x.name}], {"axis": axis}, [name],
                     [movement_q(d, x, shape)])


def gen_squeeze(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: 1 in t.shape and len(t.shape) >= 2)
    if x is None:
        return None
    ones = [i for i, s in enumerate(x.shape) if s == 1]
    axes = d.subset(ones, 1)
    shape = [s for i, s in enumerate(x.shape) if i not in axes]
    return op_record("Squeeze", [{"t": x.name}, i64(axes)], {}, [name],
                     [movement_q(d, x, shape)])


def gen_unsqueeze(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) <= 4)
    if x is None:
        return None
    axis = d.int(-len(x.shape) - 1, len(x.shape))
    shape = list(x.shape)
    shape.insert(axis % (len(x.shape) + 1), 1)
    return op_record("Unsqueeze", [{"t": x.name}, i64([axis])], {}, [name],
                     [movement_q(d, x, shape)])


def gen_slice(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) >= 1 and max(t.shape) >= 2)
    if x is None:
        return None
    cands = [i for i, s in enumerate(x.shape) if s >= 2]
    axes = d.subset(cands, 1, 2)
    starts, ends, steps = [], [], []
    for ax in axes:
        size = x.shape[ax]
        step = d.pick([1, 1, 2, -1, -2])
        if step > 0:
            s0 = d.int(-size, size - 1)
            e0 = d.pick([size, size + 5, -1, 2**31 - 1]) if d.bool(0.5) else d.int(
                (s0 % size) + 1, size)
        else:
            s0 = d.pick([-1, size - 1, 2**31 - 1])
            e0 = d.pick([-size - 1, 0, -(2**31)])
        starts.append(s0)
        ends.append(e0)
        steps.append(step)
    ins = [{"t": x.name}, i64(starts), i64(ends), i64(axes), i64(steps)]
    return op_record("Slice", ins, {}, [name], [movement_q(d, x, x.shape)])


def gen_gather(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) >= 1)
    if x is None:
        return None
    axis = d.int(-len(x.shape), len(x.shape) - 1)
    size = x.shape[axis]
    idx = d.ints(-size, size - 1, 1, 4)
    scalar = len(idx) == 1 and d.bool(0.3)
    value = {"kind": "i64", "value": idx[0] if scalar else idx}
    return op_record("Gather", [{"t": x.name}, {"c": value}], {"axis": axis}, [name],
                     [movement_q(d, x, x.shape)])


def gen_split(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) >= 1 and max(t.shape) >= 2)
    if x is None:
        return None
    cands = [i for i, s in enumerate(x.shape) if s >= 2]
    ax = d.pick(cands)
    size = x.shape[ax]
    count = d.int(2, min(3, size))
    axis = ax - len(x.shape) if d.bool(0.3) else ax
    ins: list[dict] = [{"t": x.name}]
    attrs: dict[str, Any] = {"axis": axis}
    if d.bool(0.5):
        cuts = d.subset(range(1, size), count - 1, count - 1)
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
        if d.b.opset >= 13:
            ins.append(i64(sizes))
        else:
            attrs["split"] = sizes
    elif d.b.opset >= 18:
        attrs["num_outputs"] = count
    else:
        even = [c for c in (2, 3) if size % c == 0]
        if not even:
            return None
        count = d.pick(even)
    outs = [name] + [f"{name}_{i}" for i in range(1, count)]
    return op_record("Split", ins, attrs, outs, [movement_q(d, x, x.shape) for _ in outs])


def gen_pad(d: Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) >= 1)
    if x is None:
        return None
    rank = len(x.shape)
    mode = d.pick(["constant", "constant", "constant", "edge", "reflect"])
    pads = []
    for _side in ("begin", "end"):
        for i in range(rank):
            limit = x.shape[i] - 1 if mode == "reflect" else 2
            pads.append(d.int(0, max(0, min(2, limit))) if d.bool(0.6) else 0)
    ins: list[dict] = [{"t": x.name}, i64(pads)]
    if mode == "constant" and d.bool(0.4):
        real = real_limits(x.qp)
        value = float(np.float32(d.pick([0.0, 0.5, -1.0, 1.0]) * float(real[1])))
        ins.append({"c": {"kind": "f32", "value": value}})
    attrs = {"mode": mode} if mode != "constant" else {}
    q = movement_q(d, x, x.shape)
    return op_record("Pad", ins, attrs, [name], [q])


def gen_resize(d: Draw, name: str) -> dict | None:
    """Nearest Resize of a rank-3/4/5 tensor (spatial axes 2..), every coordinate and nearest
    mode, ``scales`` (integral or fractional ``size · scale``) or ``sizes``; from opset 18
    also the ``axes`` attribute and ``keep_aspect_ratio_policy``; ``tf_crop_and_resize``
    with a random roi and extrapolation value."""
    x = d.tensor(lambda t: 3 <= len(t.shape) <= 5)
    if x is None:
        return None
    rank = len(x.shape)
    attrs: dict[str, Any] = {"mode": "nearest"}
    modes = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
             "tf_crop_and_resize"] + (["half_pixel_symmetric"] if d.b.opset >= 19 else [])
    ctm = d.pick(modes)
    nm = d.pick(["round_prefer_floor", "floor", "ceil", "round_prefer_ceil"])
    if nm != "round_prefer_floor":
        attrs["nearest_mode"] = nm
    axes = list(range(rank))
    if d.b.opset >= 18 and d.bool(0.3):
        axes = sorted(d.pick([[a] for a in range(2, rank)] + [list(range(2, rank))]))
        attrs["axes"] = [a - rank if d.bool(0.3) else a for a in axes]
    roi: dict = {}
    if ctm == "tf_crop_and_resize":
        lo = [0.0 if a < 2 else d.pick([0.0, 0.1, -0.2, 0.25]) for a in axes]
        hi = [1.0 if a < 2 else d.pick([1.0, 0.9, 1.2, 0.6]) for a in axes]
        roi = {"c": {"kind": "f32", "value": lo + hi}}
        real = real_limits(x.qp)
        attrs["extrapolation_value"] = float(np.float32(
            d.pick([0.0, 0.0, 0.5, -1.0]) * float(real[1])))
    if d.bool(0.6):
        options = [2.0, 1.0, 3.0, 0.5, 1.5, 0.7, 0.4, 1.25, 0.6]
        scales = [1.0 if a < 2 else d.pick(options) for a in axes]
        scales = [f if int(np.float32(f) * np.float32(x.shape[a])) >= 1 else 1.0
                  for a, f in zip(axes, scales, strict=True)]  # no empty outputs
        ins = [{"t": x.name}, roi, {"c": {"kind": "f32", "value": scales}}]
    else:
        sizes = [x.shape[a] if a < 2 else d.int(1, 2 * x.shape[a] + 1) for a in axes]
        ins = [{"t": x.name}, roi, {}, i64(sizes)]
        if "axes" in attrs and d.bool(0.4):
            # ORT 1.31 mishandles negative axes here (keeps the input size): not generated
            attrs["axes"] = axes
            attrs["keep_aspect_ratio_policy"] = d.pick(["not_larger", "not_smaller"])
    if ctm != "half_pixel":
        attrs["coordinate_transformation_mode"] = ctm
    return op_record("Resize", ins, attrs, [name], [movement_q(d, x, x.shape)])
