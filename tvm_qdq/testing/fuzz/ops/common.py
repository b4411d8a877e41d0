"""What the op generators share: probing an op's float output, bias and QOperator records.

A generator ``gen_<op>(d, name)`` picks an existing tensor of a fitting shape, draws the op's
attributes and constants, probes its float output on the calibration feeds and returns the
op's record (or None when no tensor fits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from onnx import helper

from ..builder import BuiltTensor, GraphBuilder
from ..draw import Draw
from ..onnx_types import qrange
from ..qparams import DrawnQParams, weight_qparams


def _acc_std(b: GraphBuilder, x: BuiltTensor, w_scale: np.ndarray, y_float: np.ndarray) -> float:
    s = float(np.max(x.qp.scale)) * float(np.max(w_scale))
    return float(np.std(y_float)) / s if s > 0 else 1.0


def _w_scale(b: GraphBuilder, w: dict) -> np.ndarray:
    rng = np.random.default_rng([b.seed, w["seed"]])
    return weight_qparams(w, rng, w["shape"]).scale


def bias_for(d: Draw, x: BuiltTensor, w: dict, channels: int, per_channel_ok: bool,
             float_output: Callable[[], np.ndarray]) -> dict | None:
    """An int32 bias record matching weight ``w`` (or None: no bias).

    ``acc_std = std(y) / (max s_x · max s_w)`` is the spread of the op's float output ``y``
    (``float_output()``) in accumulator codes; the builder draws the bias codes from a normal
    distribution of standard deviation ``mag · max(acc_std / factor, 1)``.
    """
    if not d.bool(0.6):
        return None
    ws = _w_scale(d.b, w)
    if w.get("block") or (ws.ndim and not per_channel_ok) or x.qp.scale.ndim:
        return None
    factor = 1.0
    if d.bool(0.2):  # a bias off the accumulator grid
        factor = d.pick([0.7, 1e-3, 1e3, 0.5])
    w_scale = ws.tolist() if ws.ndim else float(ws)
    return {"kind": "bias", "channels": channels, "w_scale": w_scale, "factor": factor,
            "seed": d.int(0, 2**16), "mag": d.pick([1.0, 0.1, 5.0]),
            "acc_std": _acc_std(d.b, x, ws, float_output())}


def probe(b: GraphBuilder, op: str, inputs: list[dict], attrs: dict) -> np.ndarray:
    """Float output of ``op`` on input refs ``inputs`` without keeping anything (calibration)."""
    n_nodes, n_inits = len(b.nodes), len(b.inits)
    try:
        names = []
        seen: list[BuiltTensor] = []
        for j, ref in enumerate(inputs):
            if "t" in ref:
                seen.append(b.tensors[ref["t"]])
                names.append(b.tensors[ref["t"]].dq)
            elif "c" in ref:
                names.append(b.const_input(ref["c"], f"probe_in{j}", seen))
            else:
                names.append("")
        out = b.n("probe_out")
        b.nodes.append(helper.make_node(op, names, [out], name=b.n("probe"), **attrs))
        return b.run_float([out])[0]
    finally:
        del b.nodes[n_nodes:]
        del b.inits[n_inits:]


def op_record(op: str, inputs: list[dict], attrs: dict, outs: list[str],
              qs: list[dict]) -> dict:
    """The spec record of op ``op``."""
    return {"kind": "op", "op": op, "inputs": inputs, "attrs": attrs, "outputs": outs, "q": qs}


def maybe_qoperator(d: Draw, rec: dict, x: BuiltTensor, w: dict) -> dict:
    """With ``config.qoperator``, sometimes turn a Conv / const MatMul into QLinearConv /
    QLinearMatMul: 8-bit per-tensor activations, 8-bit weights (per-channel for Conv only),
    bias scale exactly ``s_x · s_w``, 8-bit per-tensor output."""
    eight = ("uint8", "int8")
    if not d.config.qoperator or not d.bool(0.5):
        return rec
    if x.qp.dtype not in eight or x.qp.scale.ndim or w["dtype"] not in eight or w.get("block"):
        return rec
    if rec["op"] == "MatMul" and w.get("axis") is not None:
        return rec
    if x.qp.dtype == "int8" and w["dtype"] == "uint8":
        return rec  # ORT has no s8 × u8 kernel
    bias = rec["inputs"][2]["c"] if len(rec["inputs"]) > 2 else None
    if bias is not None and float(bias.get("factor", 1.0)) != 1.0:
        return rec
    q = dict(rec["q"][0])
    q["dtype"] = x.qp.dtype  # ORT's kernels: output type = input type (u8·u8, u8·s8, s8·s8)
    q.pop("axis", None)
    q.pop("same_as", None)
    return {**rec, "q": [q], "qop": True}


def real_limits(qp: DrawnQParams) -> np.ndarray:
    """Real values of the type limits (first channel's parameters for per-axis ones)."""
    s = float(qp.scale.reshape(-1)[0])
    z = float(qp.zero_point.reshape(-1)[0])
    lo, hi = qrange(qp.dtype)
    return np.array([(lo - z) * s, (hi - z) * s])


def i64(values: Sequence[int]) -> dict:
    """Input ref of an int64 constant ``values``."""
    return {"c": {"kind": "i64", "value": [int(v) for v in values]}}


def movement_q(d: Draw, x: BuiltTensor, shape: Sequence[int]) -> dict:
    """Output parameters of a data-movement op: often ``x``'s own."""
    return d.qspec(shape, same_as=x.name)
