"""Random valid quantized ONNX graphs (QDQ form), run in ONNX Runtime and in tvm-qdq.

A fuzz graph is described by a :class:`GraphSpec`: a JSON-serialisable list of *records*
(graph inputs, ops, outputs) with every random choice already made, plus a seed for the
integer weights and the feeds.  :func:`build` replays a spec into an ONNX model the way ORT's
quantizer writes one:

* every graph input is ``x → QuantizeLinear → DequantizeLinear``;
* every op reads dequantized tensors, and each op output goes through
  ``QuantizeLinear → DequantizeLinear`` whose parameters come from a *calibration* run of the
  graph built so far (ORT on calibration feeds), then perturbed: scales tightened or
  loosened, zero points moved to or near the type limits, per-axis parameters;
* weights are ``DequantizeLinear`` of int8/uint8/int4/uint4 initializers (per tensor, per
  channel or blocked), biases are int32 with scale ``s_x · s_w`` (sometimes deliberately not);
* graph outputs are the dequantized float tensor or the quantized tensor itself.

Specs are drawn op by op, building while drawing, so each op is chosen from the real shapes
of the tensors before it.  The choices come from a numpy RNG (:func:`random_specs`: every
seed a different batch; what CI and campaigns use) or from hypothesis
(:func:`graph_specs`, :func:`batch_specs`: shrinkable, but hypothesis repeats simple values
so much that most drawn graphs are duplicates).  A *batch* packs several independent graphs
into one model (each judged on its own outputs).

:func:`check` compiles a model with tvm-qdq, runs it and ORT with graph optimizations off,
and compares every output under the contract (single-op graphs ≤ 1 LSB; otherwise ≤ 2 LSB
and ≥ 99 % within 1 LSB).  When the contract fails, :func:`triage` exposes every quantized
tensor, finds those that differ although their op read identical inputs in both, and
compares both with exact float64 math on those inputs: a difference that is ORT's float32
rounding at a near-tie (later ops amplifying it) is *explained*; anything else is a failure.
Failures are saved for replay with :func:`save_failure` (spec JSON, model, feeds).
:func:`run_campaign` / ``python -m tvm_qdq.testing.fuzz`` (``scripts/fuzz``) run long
campaigns.

QOperator forms (QLinearConv, QLinearMatMul) are generated only with
``FuzzConfig(qoperator=True)``; that flag is off until tvm-qdq imports them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from .oracle import agreement, output_quant_info, run_ort

__all__ = [
    "ACT_TYPES",
    "KNOWN_BUGS",
    "WEIGHT_TYPES",
    "FuzzConfig",
    "GraphSpec",
    "Built",
    "CheckResult",
    "build",
    "build_batch",
    "check",
    "check_specs",
    "triage",
    "save_failure",
    "load_spec",
    "graph_specs",
    "batch_specs",
    "random_specs",
    "run_campaign",
    "ORT_REFERENCE_LEVEL",
]

IR_VERSION = 9
#: ORT's reference: every node as written (optimized sessions rewrite 16-bit QDQ lossy).
ORT_REFERENCE_LEVEL = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

#: name → (numpy dtype, ONNX type, qmin, qmax)
_QTYPES: dict[str, tuple[Any, int, int, int]] = {
    "uint8": (np.uint8, TensorProto.UINT8, 0, 255),
    "int8": (np.int8, TensorProto.INT8, -128, 127),
    "uint16": (np.uint16, TensorProto.UINT16, 0, 65535),
    "int16": (np.int16, TensorProto.INT16, -32768, 32767),
    "uint4": (np.uint8, TensorProto.UINT4, 0, 15),
    "int4": (np.int8, TensorProto.INT4, -8, 7),
}
ACT_TYPES = ("uint8", "int8", "uint16", "int16")
WEIGHT_TYPES = ("int8", "uint8", "int4", "uint4")
_WIDE = {"uint16", "int16", "uint4", "int4"}  # need opset 21 for Q/DQ


def _qrange(dtype: str) -> tuple[int, int]:
    return _QTYPES[dtype][2], _QTYPES[dtype][3]


# ============================================================================================
# Configuration and specs
# ============================================================================================


#: Features that hit open tvm-qdq bugs (each has a strict-xfail regression test): the
#: generator avoids them unless ``FuzzConfig(known_bugs=frozenset())``.  Remove a tag here
#: when its bug is fixed.
#:
#: * ``bias_off_grid``: an int32 bias whose real values are not on the accumulator grid
#:   ``s_x·s_w`` (bias scale ≠ s_x·s_w, or Gemm ``beta ≠ 1``) is rounded to that grid, which
#:   a 16-bit output with a finer scale shows (tests/test_fuzz.py::test_bias_off_the_
#:   accumulator_grid_with_16bit_output);
#: * ``resize_half_pixel_symmetric``: Resize with that coordinate mode imports, then TVM's
#:   legalization raises a raw ValueError (tests/test_bad_inputs.py);
#: * ``resize_fractional_scales``: nearest Resize given ``scales`` where ``size · scale`` is
#:   not an integer maps coordinates with ``out / in`` instead of the given scale (TVM's
#:   converter), picking other pixels than ORT (tests/test_fuzz.py::test_resize_scales_...).
#: * ``resize_align_corners_size1``: nearest Resize, align_corners, a spatial axis of input
#:   or output size 1: tvm.compile crashes (InternalError: Divide by zero).
KNOWN_BUGS = frozenset({"bias_off_grid", "resize_half_pixel_symmetric",
                        "resize_fractional_scales", "resize_align_corners_size1"})


@dataclass(frozen=True)
class FuzzConfig:
    """What the strategies may generate.

    ``qoperator`` (QLinearConv / QLinearMatMul instead of DQ → op → Q) is off by default:
    tvm-qdq does not import QOperator models yet.  ``act4`` allows 4-bit activations
    (QuantizeLinear to int4/uint4), outside today's supported set, so off by default too.
    """

    max_ops: int = 4
    max_graphs: int = 8
    max_dim: int = 9
    act_types: tuple[str, ...] = ACT_TYPES
    weight_types: tuple[str, ...] = WEIGHT_TYPES
    per_axis_activations: bool = True
    blocked_weights: bool = True
    qoperator: bool = False
    act4: bool = False
    known_bugs: frozenset[str] = KNOWN_BUGS


@dataclass
class GraphSpec:
    """Everything needed to rebuild one graph: opset, seed and the records in order."""

    opset: int
    seed: int
    records: list[dict] = field(default_factory=list)
    prefix: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> GraphSpec:
        data = json.loads(text)
        return GraphSpec(data["opset"], data["seed"], data["records"], data.get("prefix", ""))

    def output_name(self, tensor: str) -> str:
        """Graph output name of tensor ``tensor``."""
        return f"{self.prefix}y_{tensor}"

    @property
    def num_ops(self) -> int:
        return sum(1 for r in self.records if r["kind"] == "op")

    def describe(self) -> str:
        """One line per record, for failure messages."""
        lines = [f"opset {self.opset}, seed {self.seed}"]
        for r in self.records:
            if r["kind"] == "input":
                lines.append(f"  input {r['name']} {r['shape']} {r['q']['dtype']}")
            elif r["kind"] == "op":
                outs = ", ".join(r["outputs"])
                ins = ", ".join(str(i.get("t", i.get("c", i.get("new", "")))) for i in r["inputs"])
                dtypes = ",".join(q["dtype"] for q in r["q"])
                lines.append(f"  {outs} = {r['op']}({ins}) {r['attrs']} → {dtypes}")
            else:
                lines.append(f"  output {r['tensor']} ({r['form']})")
        return "\n".join(lines)


def load_spec(path: str | os.PathLike[str]) -> GraphSpec:
    """Read a spec saved by :func:`save_failure` (or written by hand) from JSON."""
    return GraphSpec.from_json(Path(path).read_text())


# ============================================================================================
# Quantization parameters
# ============================================================================================


@dataclass(frozen=True)
class QParams:
    """Concrete parameters of one quantized tensor (scale/zp 0-d or 1-d along ``axis``)."""

    dtype: str
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None

    @property
    def np_dtype(self) -> Any:
        return _QTYPES[self.dtype][0]

    def zp_tensor(self, name: str) -> onnx.TensorProto:
        elem = _QTYPES[self.dtype][1]
        values = self.zero_point.astype(np.int64)
        if elem in (TensorProto.INT4, TensorProto.UINT4):
            return helper.make_tensor(name, elem, list(values.shape), values.reshape(-1).tolist())
        return numpy_helper.from_array(values.astype(self.np_dtype), name)

    def bshape(self, ndim: int) -> tuple[int, ...]:
        if self.axis is None or self.scale.ndim == 0:
            return ()
        shape = [1] * ndim
        shape[self.axis] = self.scale.size
        return tuple(shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Exact reference: ``saturate(round_half_even(x / s) + zp)`` in float64."""
        s = self.scale.astype(np.float64).reshape(self.bshape(x.ndim))
        z = self.zero_point.astype(np.float64).reshape(self.bshape(x.ndim))
        lo, hi = _qrange(self.dtype)
        return np.clip(np.rint(x.astype(np.float64) / s) + z, lo, hi)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        s = self.scale.astype(np.float64).reshape(self.bshape(q.ndim))
        z = self.zero_point.astype(np.float64).reshape(self.bshape(q.ndim))
        return (q.astype(np.float64) - z) * s


def _choose_qparams(q: dict, lo: np.ndarray, hi: np.ndarray) -> QParams:
    """Parameters for a tensor whose (per-axis) calibrated range is ``[lo, hi]``.

    ``q``: ``dtype``; ``zp`` mode (``calib``: ORT's MinMax asymmetric, ``sym``: symmetric with
    the type's midpoint, ``qmin``/``qmin+1``/``qmax``/``qmax-1``: zero point pinned at or next
    to a type limit with the scale still covering the range where it can, ``mid``); a
    ``factor`` multiplying the scale (< 1 saturates); ``axis`` for per-axis parameters.
    """
    dtype = q["dtype"]
    qmin, qmax = _qrange(dtype)
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    mode = q.get("zp", "calib")
    if mode == "calib":
        scale = span / (qmax - qmin)
        zp = np.clip(np.rint(qmin - lo / scale), qmin, qmax)
    elif mode == "sym":
        bound = np.maximum(np.maximum(-lo, hi), 1e-3)
        scale = 2 * bound / (qmax - qmin)
        zp = np.full(lo.shape, (qmin + qmax + 1) // 2, np.float64)
    else:
        # Pinned at (or next to) a limit: the limit on the side the data leaves empty, so
        # the pinned zero point stays meaningful (qmin for mostly positive data, qmax for
        # mostly negative); the scale then covers the range.
        positive = float(np.sum(hi)) >= float(np.sum(-lo))
        if mode in ("qmin", "qmax"):
            mode = "qmin" if positive else "qmax"
        elif mode in ("qmin+1", "qmax-1"):
            mode = "qmin+1" if positive else "qmax-1"
        zp_value = {"qmin": qmin, "qmin+1": qmin + 1, "qmax": qmax, "qmax-1": qmax - 1,
                    "mid": (qmin + qmax + 1) // 2}[mode]
        zp = np.full(lo.shape, zp_value, np.float64)
        up = np.where(qmax > zp, hi / np.maximum(qmax - zp, 1), 0.0)
        down = np.where(zp > qmin, -lo / np.maximum(zp - qmin, 1), 0.0)
        # Cover the side with room; the other side saturates (one or two codes).
        scale = {"qmin": up, "qmin+1": up, "qmax": down, "qmax-1": down}.get(
            mode, np.maximum(up, down))
        scale = np.where(scale > 0, scale, span / (qmax - qmin))
    scale = np.maximum(scale * float(q.get("factor", 1.0)), 1e-30).astype(np.float32)
    return QParams(dtype, scale, zp.astype(np.int64), q.get("axis"))


def _weight_qparams(w: dict, rng: np.random.Generator, shape: list[int]) -> QParams:
    """Weight parameters: per tensor, per ``axis`` or blocked; scales around 10^exp."""
    dtype = w["dtype"]
    qmin, qmax = _qrange(dtype)
    axis, block = w.get("axis"), int(w.get("block", 0))
    if block:
        pshape = list(shape)
        pshape[axis] = -(-shape[axis] // block)
    elif axis is not None:
        pshape = [shape[axis]]
    else:
        pshape = []
    scale = (10.0 ** (w["exp"] + rng.uniform(-0.5, 0.5, pshape))).astype(np.float32)
    mode = w.get("zp", "zero")
    if mode == "zero" and qmin < 0:
        zp = np.zeros(pshape, np.int64)
    elif mode in ("zero", "mid"):
        zp = np.full(pshape, (qmin + qmax + 1) // 2, np.int64)
    elif mode == "random":
        zp = rng.integers(qmin, qmax + 1, pshape)
    else:
        zp = np.full(pshape, {"qmin": qmin, "qmax": qmax}[mode], np.int64)
    return QParams(dtype, scale, zp, axis)


def _weight_values(w: dict, rng: np.random.Generator, shape: list[int]) -> np.ndarray:
    qmin, qmax = _qrange(w["dtype"])
    kind = w.get("values", "uniform")
    if kind == "symmetric" and qmin < 0:
        return rng.integers(-qmax, qmax + 1, shape)
    if kind == "extreme":
        return rng.choice(np.array([qmin, qmax]), shape)
    if kind == "sparse":
        v = rng.integers(qmin, qmax + 1, shape)
        mid = (qmin + qmax + 1) // 2 if qmin == 0 else 0
        return np.where(rng.random(shape) < 0.7, mid, v)
    return rng.integers(qmin, qmax + 1, shape)


# ============================================================================================
# Building (incremental, calibrated with ORT)
# ============================================================================================


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    qp: QParams
    dq: str  # name of the dequantized float tensor consumers read
    q: str  # name of the quantized tensor


class _Builder:
    """Builds one QDQ graph record by record; calibrates each new tensor with ORT."""

    def __init__(self, opset: int, seed: int, prefix: str = "") -> None:
        self.opset = opset
        self.seed = seed
        self.prefix = prefix
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.tensors: dict[str, _Tensor] = {}
        self.order: list[str] = []  # tensor names in creation order
        self.consumed: set[str] = set()
        self.calib: dict[str, np.ndarray] = {}
        self.test: dict[str, np.ndarray] = {}
        self.records: list[dict] = []
        self.op_count = 0

    # --- names -----------------------------------------------------------------------------
    def n(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def init(self, name: str, value: np.ndarray | onnx.TensorProto) -> str:
        name = self.n(name)
        if isinstance(value, onnx.TensorProto):
            value.name = name
            self.inits.append(value)
        else:
            self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def _qdq(self, x: str, qp: QParams, base: str) -> tuple[str, str]:
        scale = self.init(f"{base}_scale", qp.scale)
        zp = self.init(f"{base}_zero_point", qp.zp_tensor("zp"))
        attrs = {"axis": qp.axis} if qp.axis is not None and qp.scale.ndim else {}
        q, dq = self.n(f"{base}_q"), self.n(f"{base}_dq")
        self.nodes.append(helper.make_node("QuantizeLinear", [x, scale, zp], [q],
                                           name=self.n(f"{base}_QuantizeLinear"), **attrs))
        self.nodes.append(helper.make_node("DequantizeLinear", [q, scale, zp], [dq],
                                           name=self.n(f"{base}_DequantizeLinear"), **attrs))
        return q, dq

    # --- running the partial graph -----------------------------------------------------------
    def _model(self, outputs: list[str], elem: int = TensorProto.FLOAT) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, elem, None) for o in outputs]
        graph = helper.make_graph(list(self.nodes), "fuzz", list(self.inputs), outs,
                                  list(self.inits))
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                 ir_version=IR_VERSION, producer_name="tvm_qdq.fuzz")

    def run_float(self, outputs: list[str]) -> list[np.ndarray]:
        """Values of float tensors ``outputs`` on the calibration feeds (ORT, reference)."""
        return run_ort(self._model(outputs), self.calib, optimization_level=ORT_REFERENCE_LEVEL)

    # --- records -----------------------------------------------------------------------------
    def add_input(self, rec: dict) -> _Tensor:
        """A graph input ``rec['name']`` of ``rec['shape']`` fed with ``rec['feed']`` values."""
        self.records.append(rec)
        name, shape = rec["name"], tuple(rec["shape"])
        full = self.n(name)
        self.inputs.append(helper.make_tensor_value_info(full, TensorProto.FLOAT, list(shape)))
        feed = rec["feed"]
        seed = int(feed.get("seed", 0))
        self.calib[full] = _feed_values(feed, shape, np.random.default_rng(seed * 2 + 1), None)
        lo, hi = _range(self.calib[full], rec["q"].get("axis"))
        qp = _choose_qparams(rec["q"], lo, hi)
        self.test[full] = _feed_values(feed, shape, np.random.default_rng(seed * 2 + 2), qp)
        q, dq = self._qdq(full, qp, name)
        t = _Tensor(name, shape, qp, dq, q)
        self.tensors[name] = t
        self.order.append(name)
        return t

    def _const(self, c: dict, key: str, ins: list[_Tensor]) -> str:
        kind = c["kind"]
        if kind == "i64":
            return self.init(key, np.asarray(c["value"], np.int64))
        if kind == "f32":
            return self.init(key, np.asarray(c["value"], np.float32))
        if kind == "weight":
            rng = np.random.default_rng([self.seed, c["seed"]])
            qp = _weight_qparams(c, rng, c["shape"])
            values = _weight_values(c, rng, c["shape"])
            elem = _QTYPES[c["dtype"]][1]
            if elem in (TensorProto.INT4, TensorProto.UINT4):
                tensor = helper.make_tensor("w", elem, list(values.shape),
                                            values.reshape(-1).tolist())
            else:
                tensor = numpy_helper.from_array(values.astype(qp.np_dtype), "w")
            qname = self.init(f"{key}_quantized", tensor)
            scale = self.init(f"{key}_scale", qp.scale)
            zp = self.init(f"{key}_zero_point", qp.zp_tensor("zp"))
            attrs: dict[str, int] = {}
            if c.get("block"):
                attrs = {"axis": c["axis"], "block_size": int(c["block"])}
            elif c.get("axis") is not None:
                attrs = {"axis": c["axis"]}
            out = self.n(f"{key}_dq")
            self.nodes.append(helper.make_node("DequantizeLinear", [qname, scale, zp], [out],
                                               name=self.n(f"{key}_DequantizeLinear"), **attrs))
            return out
        if kind == "bias":
            return self._bias(c, key, ins)
        raise ValueError(f"unknown constant kind {kind!r}")

    def _bias(self, c: dict, key: str, ins: list[_Tensor]) -> str:
        """int32 bias ``b_q`` with scale ``factor · s_x · s_w`` (per channel if ``s_w`` is)."""
        x = ins[0].qp
        w_scale = np.asarray(c["w_scale"], np.float32)
        scale = (np.float32(c.get("factor", 1.0)) * x.scale.astype(np.float32) * w_scale)
        scale = np.asarray(scale, np.float32).reshape(-1 if w_scale.ndim else ())
        rng = np.random.default_rng([self.seed, c["seed"]])
        shape = [c["channels"]]
        acc_std = float(c.get("acc_std", 100.0)) / float(c.get("factor", 1.0))
        values = np.rint(rng.normal(0, max(acc_std, 1.0) * c.get("mag", 1.0), shape))
        values = np.clip(values, -(2**31), 2**31 - 1).astype(np.int32)
        qname = self.init(f"{key}_quantized", values)
        sname = self.init(f"{key}_scale", scale)
        zname = self.init(f"{key}_zero_point", np.zeros(scale.shape, np.int32))
        attrs = {"axis": 0} if scale.ndim else {}
        out = self.n(f"{key}_dq")
        self.nodes.append(helper.make_node("DequantizeLinear", [qname, sname, zname], [out],
                                           name=self.n(f"{key}_DequantizeLinear"), **attrs))
        return out

    def add_op(self, rec: dict) -> list[_Tensor]:
        """Add op ``rec`` (its inputs, constants, attributes, output parameters)."""
        self.records.append(rec)
        self.op_count += 1
        k = self.op_count
        ins: list[_Tensor] = []
        names: list[str] = []
        for j, ref in enumerate(rec["inputs"]):
            if "t" in ref:
                t = self.tensors[ref["t"]]
                self.consumed.add(t.name)
                ins.append(t)
                names.append(t.dq if ref.get("form", "dq") == "dq" else t.q)
            elif "c" in ref:
                names.append(self._const(ref["c"], f"op{k}_in{j}", ins))
            else:
                names.append("")
        op = rec["op"]
        outs = rec["outputs"]
        if rec.get("qop"):
            return [self._add_qoperator(rec, k, ins, names)]
        float_outs = [self.n(f"{o}_f") for o in outs]
        node_name = self.n(f"{op.lower()}_{k}")
        if op == "Requant":  # mixed-precision boundary: the previous DQ feeds a new Q
            float_outs = [names[0]]
        else:
            self.nodes.append(helper.make_node(op, names, float_outs, name=node_name,
                                               **rec["attrs"]))
        values = self.run_float(float_outs)
        result = []
        for o, fo, v, q in zip(outs, float_outs, values, rec["q"], strict=True):
            qp = self.tensors[q["same_as"]].qp if "same_as" in q else None
            if qp is not None and qp.axis is not None and not (
                    qp.axis < v.ndim and v.shape[qp.axis] == qp.scale.size):
                qp = None  # per-axis parameters that do not fit the new shape
            if qp is None:
                fresh = {k_: v_ for k_, v_ in q.items() if k_ != "same_as"}
                if fresh.get("axis") is not None and fresh["axis"] >= v.ndim:
                    fresh["axis"] = None  # the op changed the rank
                lo, hi = _range(v, fresh.get("axis"))
                qp = _choose_qparams(fresh, lo, hi)
            qn, dq = self._qdq(fo, qp, o)
            t = _Tensor(o, tuple(v.shape), qp, dq, qn)
            self.tensors[o] = t
            self.order.append(o)
            result.append(t)
        return result

    def _add_qoperator(self, rec: dict, k: int, ins: list[_Tensor], names: list[str]) -> _Tensor:
        """QLinearConv / QLinearMatMul on the quantized tensors (QOperator form).

        Output parameters are calibrated on the equivalent DQ → op float node, which is then
        removed; the op reads ``x_q`` and the weight's integer initializer directly.
        """
        op = rec["op"]
        name = rec["outputs"][0]
        float_out = self.n(f"{name}_f")
        probe = helper.make_node(op, names[:2], [float_out], name=self.n("qop_probe"),
                                 **rec["attrs"])
        self.nodes.append(probe)
        value = self.run_float([float_out])[0]
        self.nodes.remove(probe)
        lo, hi = _range(value, None)
        qp = _choose_qparams({k_: v_ for k_, v_ in rec["q"][0].items() if k_ != "axis"}, lo, hi)
        x = ins[0]
        w_key = self.n(f"op{k}_in1")
        # The weight's DequantizeLinear (added by _const) is not used by the QOperator node.
        self.nodes = [n for n in self.nodes if n.name != f"{w_key}_DequantizeLinear"]
        x_s = self.init(f"{name}_x_scale", x.qp.scale)
        x_zp = self.init(f"{name}_x_zero_point", x.qp.zp_tensor("zp"))
        y_s = self.init(f"{name}_scale", qp.scale)
        y_zp = self.init(f"{name}_zero_point", qp.zp_tensor("zp"))
        w_names = [f"{w_key}_quantized", f"{w_key}_scale", f"{w_key}_zero_point"]
        q_out = self.n(f"{name}_q")
        node_name = self.n(f"{op.lower()}_{k}")
        if op == "Conv":
            inputs = [x.q, x_s, x_zp, *w_names, y_s, y_zp]
            if len(names) > 2 and names[2]:
                inputs.append(self.n(f"op{k}_in2_quantized"))
                self.nodes = [n for n in self.nodes
                              if n.name != self.n(f"op{k}_in2_DequantizeLinear")]
            self.nodes.append(helper.make_node("QLinearConv", inputs, [q_out], name=node_name,
                                               **rec["attrs"]))
        else:
            self.nodes.append(helper.make_node("QLinearMatMul",
                                               [x.q, x_s, x_zp, *w_names, y_s, y_zp], [q_out],
                                               name=node_name))
        dq = self.n(f"{name}_dq")
        self.nodes.append(helper.make_node("DequantizeLinear", [q_out, y_s, y_zp], [dq],
                                           name=self.n(f"{name}_DequantizeLinear")))
        t = _Tensor(name, tuple(value.shape), qp, dq, q_out)
        self.tensors[name] = t
        self.order.append(name)
        return t

    def add_output(self, rec: dict) -> None:
        self.records.append(rec)
        t = self.tensors[rec["tensor"]]
        src = t.dq if rec["form"] == "dq" else t.q
        name = self.n(f"y_{rec['tensor']}")
        self.nodes.append(helper.make_node("Identity", [src], [name], name=self.n(
            f"y_{rec['tensor']}_Identity")))
        elem = TensorProto.FLOAT if rec["form"] == "dq" else _QTYPES[t.qp.dtype][1]
        # No declared shape: ORT and onnx shape inference disagree on some (ceil-mode pools).
        self.outputs.append(helper.make_tensor_value_info(name, elem, [None] * len(t.shape)))

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "fuzz", self.inputs, self.outputs, self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                 ir_version=IR_VERSION, producer_name="tvm_qdq.fuzz")


def _range(v: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(v, np.float64)
    if axis is None or v.ndim == 0:
        return np.asarray(v.min(initial=0.0)), np.asarray(v.max(initial=0.0))
    axes = tuple(d for d in range(v.ndim) if d != axis % v.ndim)
    return v.min(axis=axes, initial=0.0), v.max(axis=axes, initial=0.0)


def _feed_values(feed: dict, shape: tuple[int, ...], rng: np.random.Generator,
                 qp: QParams | None) -> np.ndarray:
    """Input values: ``normal``/``uniform`` of ``std`` (× ``sat`` on test feeds), or with the
    input's parameters known (test feeds) ``grid`` (on the quantization grid), ``ties``
    (exactly half-way between two codes) or ``limits`` (codes at and past the type limits).
    """
    std = float(feed.get("std", 1.0))
    kind = feed.get("kind", "normal")
    if qp is not None and kind in ("grid", "ties", "limits"):
        lo, hi = _qrange(qp.dtype)
        s = qp.scale.astype(np.float64).reshape(qp.bshape(len(shape)))
        z = qp.zero_point.astype(np.float64).reshape(qp.bshape(len(shape)))
        if kind == "limits":  # half the codes at or past the type limits
            codes = np.where(rng.random(shape) < 0.5,
                             rng.choice(np.array([lo - 3, lo, lo + 1, hi - 1, hi, hi + 3]),
                                        shape),
                             rng.integers(lo, hi + 1, shape)).astype(np.float64)
        else:
            codes = rng.integers(lo, hi + 1, shape).astype(np.float64)
        if kind == "ties":
            codes = codes + 0.5
        return ((codes - z) * s).astype(np.float32)
    if kind == "uniform":
        values = rng.uniform(-std, std, shape)
    else:
        values = rng.normal(0.0, std, shape)
    if qp is not None:
        values = values * float(feed.get("sat", 1.0))
    return values.astype(np.float32)


@dataclass
class Built:
    """A built graph (or batch): the model, its test feeds and the specs it came from."""

    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    specs: list[GraphSpec]
    qparams: dict[str, QParams] = field(default_factory=dict)  # tensor name → parameters


def _replay(spec: GraphSpec) -> _Builder:
    b = _Builder(spec.opset, spec.seed, spec.prefix)
    for rec in spec.records:
        if rec["kind"] == "input":
            b.add_input(rec)
        elif rec["kind"] == "op":
            b.add_op(rec)
        else:
            b.add_output(rec)
    return b


def build(spec: GraphSpec) -> Built:
    """Rebuild the model and test feeds of ``spec`` (deterministic)."""
    b = _replay(spec)
    model = b.model()
    onnx.checker.check_model(model, full_check=True)
    return Built(model, dict(b.test), [spec],
                 {b.n(name): t.qp for name, t in b.tensors.items()})


def build_batch(specs: Sequence[GraphSpec]) -> Built:
    """Several independent graphs (same opset, distinct prefixes) in one model."""
    if not specs:
        raise ValueError("empty batch")
    parts = [build(s) for s in specs]
    opsets = {s.opset for s in specs}
    if len(opsets) != 1:
        raise ValueError(f"a batch needs one opset, got {sorted(opsets)}")
    graph = helper.make_graph(
        [n for p in parts for n in p.model.graph.node], "fuzz_batch",
        [i for p in parts for i in p.model.graph.input],
        [o for p in parts for o in p.model.graph.output],
        [t for p in parts for t in p.model.graph.initializer])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", specs[0].opset)],
                              ir_version=IR_VERSION, producer_name="tvm_qdq.fuzz")
    feeds = {k: v for p in parts for k, v in p.feeds.items()}
    qparams = {k: v for p in parts for k, v in p.qparams.items()}
    return Built(model, feeds, list(specs), qparams)


# ============================================================================================
# Checking against ORT
# ============================================================================================


@dataclass
class OutputResult:
    """Agreement of one graph output: worst LSB difference and fraction within 1 LSB."""

    name: str
    max_lsb: float
    frac_within_1: float
    n: int
    ok: bool
    detail: str = ""


@dataclass
class CheckResult:
    """Outcome of :func:`check` for a built model.

    ``ok``: every graph passed its contract (or failed only for a reason :func:`triage`
    explained); ``error``: tvm-qdq raised (import, rewrite, compile or run);
    ``explained``: graphs whose contract failure is ORT's float32 rounding at a near-tie;
    ``float_ops``: float islands the pass left (not a failure).
    """

    ok: bool
    outputs: list[OutputResult] = field(default_factory=list)
    error: str | None = None
    failing_specs: list[GraphSpec] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)
    float_ops: list[dict] = field(default_factory=list)
    triage: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = []
        if self.error:
            lines.append(f"tvm-qdq raised: {self.error}")
        for o in self.outputs:
            if not o.ok:
                lines.append(f"output {o.name}: max {o.max_lsb:.4g} LSB, "
                             f"{o.frac_within_1:.2%} of {o.n} within 1 LSB {o.detail}")
        lines += self.triage
        for s in self.failing_specs:
            lines.append(s.describe())
        return "\n".join(lines)


def _compare(name: str, actual: np.ndarray, expected: np.ndarray, model: onnx.ModelProto,
             single_op: bool) -> OutputResult:
    info = output_quant_info(model)[name]
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return OutputResult(name, math.inf, 0.0, int(expected.size), False,
                            f"shape/dtype {actual.shape}/{actual.dtype} vs "
                            f"{expected.shape}/{expected.dtype}")
    scale = axis = None
    if info is not None and info.float_output:
        scale = info.scale
        axis = info.axis if info.scale.size > 1 else None
    ag = agreement(actual, expected, scale, None, axis)
    max_allowed = 1.0 if single_op else 2.0
    ok = ag.max_lsb <= max_allowed + 1e-2 and (single_op or ag.frac_within_1 >= 0.99)
    detail = ""
    if not ok and ag.worst_index is not None:
        detail = (f"at {ag.worst_index}: tvm-qdq {actual[ag.worst_index]!r}, "
                  f"ORT {expected[ag.worst_index]!r}")
    return OutputResult(name, ag.max_lsb, ag.frac_within_1, ag.n, ok, detail)


def _compile_and_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    import tvm_qdq  # local import: building specs needs no TVM

    compiled = tvm_qdq.compile(model, target="x86")
    return compiled, compiled.run(feeds)


def check(built: Built, *, triage_failures: bool = True) -> CheckResult:
    """Compile ``built.model`` with tvm-qdq, run it and ORT (optimizations off), compare.

    Each graph of a batch is judged on its own outputs (``≤ 1`` LSB for single-op graphs,
    else ``≤ 2`` LSB and ``≥ 99 %`` within 1 LSB).  A graph failing the contract is passed to
    :func:`triage` (unless ``triage_failures`` is false); explained failures do not fail.
    """
    model, feeds = built.model, built.feeds
    expected = run_ort(model, feeds, optimization_level=ORT_REFERENCE_LEVEL)
    try:
        compiled, actual = _compile_and_run(model, feeds)
    except Exception as err:  # noqa: BLE001 - any tvm-qdq failure on a valid graph is a bug
        return CheckResult(False, error=f"{type(err).__name__}: {err}",
                           failing_specs=list(built.specs))
    result = CheckResult(True, float_ops=list(compiled.report.float_ops)
                         if compiled.report else [])
    names = [o.name for o in model.graph.output]
    by_name = dict(zip(names, zip(actual, expected, strict=True), strict=True))
    for spec in built.specs:
        single = spec.num_ops == 1
        graph_outs = [r["tensor"] for r in spec.records if r["kind"] == "output"]
        results = [_compare(spec.output_name(t), *by_name[spec.output_name(t)], model, single)
                   for t in graph_outs]
        result.outputs += results
        if all(r.ok for r in results):
            continue
        verdict = triage(spec) if triage_failures else None
        if verdict is not None and verdict.explained:
            result.explained.append(f"{spec.prefix or 'graph'}: {verdict.reason}")
            continue
        if verdict is not None:
            result.triage.append(verdict.reason)
        result.ok = False
        result.failing_specs.append(spec)
    return result


def check_specs(specs: Sequence[GraphSpec], **kwargs: Any) -> CheckResult:
    """:func:`check` of :func:`build_batch` (one spec: :func:`build`)."""
    built = build(specs[0]) if len(specs) == 1 else build_batch(specs)
    return check(built, **kwargs)


# ============================================================================================
# Triage: first divergence and exact float64 math
# ============================================================================================


@dataclass
class Verdict:
    """What :func:`triage` concluded about a contract failure."""

    explained: bool
    reason: str


def _exact_op_output(b: _Builder, rec: dict, inputs_q: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Exact (float64) real outputs of op ``rec`` given its inputs' quantized values.

    The op runs in onnx's numpy reference evaluator on float64 data: activations are
    ``(q - zp) · s`` in float64 from ``inputs_q``, constants are their exact real values.
    """
    from onnx.reference import ReferenceEvaluator

    k = [r for r in b.records if r["kind"] == "op"].index(rec) + 1
    node = next(n for n in b.nodes if n.name == b.n(f"{rec['op'].lower()}_{k}"))
    init_values = {t.name: numpy_helper.to_array(t) for t in b.inits}
    producers = {o: n for n in b.nodes for o in n.output}
    feeds: dict[str, np.ndarray] = {}
    inputs: list[onnx.ValueInfoProto] = []
    for name in node.input:
        if not name or name in feeds:
            continue
        if name in init_values:
            value = init_values[name].astype(np.float64) if init_values[name].dtype.kind == "f" \
                else init_values[name]
        else:
            dq = producers[name]
            src = dq.input[0]
            s = init_values[dq.input[1]].astype(np.float64)
            z = init_values[dq.input[2]].astype(np.float64)
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            block = next((a.i for a in dq.attribute if a.name == "block_size"), 0)
            q = inputs_q[src] if src in inputs_q else init_values[src]
            q = np.asarray(q).astype(np.float64)
            if block:
                s = np.repeat(s, block, axis=axis)
                z = np.repeat(z, block, axis=axis)
            elif s.ndim == 1:
                shape = [1] * q.ndim
                shape[axis % q.ndim] = s.size
                s, z = s.reshape(shape), z.reshape(shape)
            value = (q - z) * s
        feeds[name] = np.asarray(value)
        elem = helper.np_dtype_to_tensor_dtype(feeds[name].dtype)
        inputs.append(helper.make_tensor_value_info(name, elem, list(feeds[name].shape)))
    outs = [helper.make_tensor_value_info(o, TensorProto.DOUBLE, None) for o in node.output]
    graph = helper.make_graph([node], "one", inputs, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset)],
                              ir_version=IR_VERSION)
    return [np.asarray(v, np.float64) for v in ReferenceEvaluator(model).run(None, feeds)]


def triage(spec: GraphSpec, feeds: dict[str, np.ndarray] | None = None) -> Verdict:
    """Explain a contract failure of ``spec`` or confirm it.

    Every quantized tensor is made a graph output (integer); tvm-qdq and ORT are run.  A
    tensor whose producing op read *identical* inputs in both yet differs is a *divergence*:
    exact float64 math on those inputs gives its true value ``v`` (before rounding).  A
    divergence is explained when, at every differing element, tvm-qdq is at most 1 LSB from
    ORT and at least as close to ``v`` as ORT is (ORT's float32 path rounded the wrong way at
    a near-tie, or ``v`` is a genuine tie).  Tensors downstream of a divergence are not
    judged (they inherit the difference, amplified).  The failure is explained when every
    divergence is.
    """
    b = _replay(spec)
    feeds = feeds if feeds is not None else b.test
    qnames = [b.tensors[name].q for name in b.order]
    outs = [helper.make_tensor_value_info(q, _QTYPES[b.tensors[name].qp.dtype][1], None)
            for q, name in zip(qnames, b.order, strict=True)]
    graph = helper.make_graph(b.nodes, "probe", b.inputs, outs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.opset)],
                              ir_version=IR_VERSION)
    expected = run_ort(model, feeds, optimization_level=ORT_REFERENCE_LEVEL)
    try:
        _, actual = _compile_and_run(model, feeds)
    except Exception as err:  # noqa: BLE001
        return Verdict(False, f"triage: the probe model (all tensors as outputs) fails: {err}")
    ort_q = dict(zip(qnames, expected, strict=True))
    producer_rec = {o: r for r in b.records if r["kind"] == "op" for o in r["outputs"]}
    clean: set[str] = set()
    notes: list[str] = []
    explained = True
    for name, a, e in zip(b.order, actual, expected, strict=True):
        rec = producer_rec.get(name)
        if rec is not None and any("t" in i and i["t"] not in clean for i in rec["inputs"]):
            continue  # inherits an upstream difference
        d = np.abs(a.astype(np.int64) - e.astype(np.int64))
        if not d.any():
            clean.add(name)
            continue
        t = b.tensors[name]
        nd = len(t.shape)
        s_b = t.qp.scale.astype(np.float64).reshape(t.qp.bshape(nd))
        z_b = t.qp.zero_point.astype(np.float64).reshape(t.qp.bshape(nd))
        if rec is None:  # a graph input, quantized from the same float feed in both
            real = feeds[b.n(name)].astype(np.float64)
        elif rec["op"] == "Requant":
            src = b.tensors[rec["inputs"][0]["t"]]
            real = src.qp.dequantize(ort_q[src.q])
        else:
            real = _exact_op_output(b, rec, ort_q)[rec["outputs"].index(name)]
        lo, hi = _qrange(t.qp.dtype)
        v = np.clip(real / s_b + z_b, lo, hi)
        bad = d > 0
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        dist_tvm = np.abs(a.astype(np.float64) - v)[bad]
        dist_ort = np.abs(e.astype(np.float64) - v)[bad]
        ok = bool(d.max() <= 1 and np.all(dist_tvm <= dist_ort + 1e-6))
        op = rec["op"] if rec else "input"
        notes.append(
            f"{'explained' if ok else 'UNEXPLAINED'} divergence at {spec.prefix}{name} "
            f"({op} → {t.qp.dtype}): {int(bad.sum())} of {d.size} element(s) differ, max "
            f"{int(d.max())}; at {first}: tvm-qdq {a[first]}, ORT {e[first]}, exact "
            f"{v[first]:.6f}")
        explained = explained and ok
    if not notes:
        return Verdict(False, "triage: no quantized tensor differs, but an output does")
    return Verdict(explained, "; ".join(notes))


# ============================================================================================
# Saving failures
# ============================================================================================


def spec_id(specs: Sequence[GraphSpec]) -> str:
    """Short stable hash of a list of specs (names failure folders)."""
    text = "\n".join(s.to_json() for s in specs)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def save_failure(specs: Sequence[GraphSpec], result: CheckResult | None,
                 root: str | os.PathLike[str]) -> Path:
    """Write ``root/<id>/{spec.json, model.onnx, feeds.npz, report.txt}``; return the folder.

    ``spec.json`` is enough to replay (``check_specs([load_spec(path)])``); the model and
    feeds are there for other tools.
    """
    folder = Path(root) / spec_id(specs)
    folder.mkdir(parents=True, exist_ok=True)
    if len(specs) == 1:
        (folder / "spec.json").write_text(specs[0].to_json() + "\n")
    for i, s in enumerate(specs):
        (folder / f"spec_{i}.json").write_text(s.to_json() + "\n")
    try:
        built = build(specs[0]) if len(specs) == 1 else build_batch(specs)
        onnx.save(built.model, str(folder / "model.onnx"))
        np.savez(folder / "feeds.npz", **built.feeds)
    except Exception as err:  # noqa: BLE001 - the specs are what matters
        (folder / "build_error.txt").write_text(repr(err))
    if result is not None:
        (folder / "report.txt").write_text(result.summary() + "\n")
    return folder


# ============================================================================================
# Hypothesis strategies
# ============================================================================================

try:  # hypothesis is a test dependency only
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    st = None  # type: ignore[assignment]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class _Draw:
    """The generators' source of choices: hypothesis draws (shrinkable) or a numpy RNG.

    Hypothesis reuses simple values heavily (most drawn graphs repeat), so CI and campaigns
    draw from ``rng`` (every seed a different graph); the hypothesis mode is there for
    shrinking a failure to a minimal graph.
    """

    def __init__(self, draw: Callable | None, config: FuzzConfig, b: _Builder,
                 rng: np.random.Generator | None = None) -> None:
        self.draw = draw
        self.rng = rng
        self.config = config
        self.b = b

    def int(self, lo: int, hi: int) -> int:
        if self.rng is not None:
            return int(self.rng.integers(lo, hi + 1))
        return self.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[Any]) -> Any:
        options = list(options)
        if self.rng is not None:
            return options[int(self.rng.integers(len(options)))]
        return self.draw(st.sampled_from(options))

    def bool(self, p: float = 0.5) -> bool:
        # integers shrink to 0 → False: shrinking turns optional features off
        return self.int(0, 99) >= 100 - int(p * 100)

    def perm(self, n: int) -> list[int]:
        if self.rng is not None:
            return [int(i) for i in self.rng.permutation(n)]
        return list(self.draw(st.permutations(list(range(n)))))

    def subset(self, options: Sequence[int], lo: int, hi: int | None = None) -> list[int]:
        """A sorted subset of ``options`` with ``lo`` to ``hi`` distinct elements."""
        options = list(options)
        hi = len(options) if hi is None else min(hi, len(options))
        if self.rng is not None:
            size = int(self.rng.integers(lo, hi + 1))
            return sorted(int(v) for v in self.rng.choice(options, size, replace=False))
        return sorted(self.draw(st.lists(st.sampled_from(options), min_size=lo, max_size=hi,
                                         unique=True)))

    def ints(self, lo: int, hi: int, min_size: int, max_size: int) -> list[int]:
        if self.rng is not None:
            size = int(self.rng.integers(min_size, max_size + 1))
            return [int(v) for v in self.rng.integers(lo, hi + 1, size)]
        return list(self.draw(st.lists(st.integers(lo, hi), min_size=min_size,
                                       max_size=max_size)))

    def act_dtype(self) -> str:
        types = list(self.config.act_types)
        if self.b.opset < 21:
            types = [t for t in types if t not in _WIDE] or ["uint8"]
        if self.config.act4 and self.b.opset >= 21:
            types += ["uint4", "int4"]
        return self.pick(types)

    def qspec(self, shape: Sequence[int] | None = None, allow_axis: bool = True,
              same_as: str | None = None) -> dict:
        """Output parameters: type, zero-point mode, scale factor, maybe per axis."""
        if same_as is not None and self.bool(0.5):
            return {"dtype": self.b.tensors[same_as].qp.dtype, "same_as": same_as}
        q: dict[str, Any] = {"dtype": self.act_dtype()}
        q["zp"] = self.pick(["calib", "calib", "calib", "sym", "qmin", "qmin+1", "qmax",
                             "qmax-1", "mid"])
        q["factor"] = self.pick([1.0, 1.0, 1.0, 1.0, 0.5, 0.9, 1.5, 3.0, 0.1])
        if (allow_axis and shape and len(shape) >= 2 and self.config.per_axis_activations
                and self.bool(0.1)):
            q["axis"] = self.int(0, len(shape) - 1)
        return q

    def feed(self) -> dict:
        kind = self.pick(["normal", "normal", "normal", "uniform", "grid", "ties", "limits"])
        std = float(10.0 ** self.int(-3, 3)) * self.pick([1.0, 0.37, 2.9])
        return {"kind": kind, "std": std, "seed": self.int(0, 2**16),
                "sat": self.pick([1.0, 1.0, 1.0, 2.5])}

    def new_input(self, shape: Sequence[int]) -> _Tensor:
        name = f"x{len(self.b.inputs)}"
        rec = {"kind": "input", "name": name, "shape": [int(d) for d in shape],
               "feed": self.feed(), "q": self.qspec(shape)}
        return self.b.add_input(rec)

    def tensor(self, pred: Callable[[_Tensor], bool] = lambda t: True) -> _Tensor | None:
        """An existing tensor satisfying ``pred`` (bias towards the newest)."""
        cands = [self.b.tensors[n] for n in self.b.order
                 if min(self.b.tensors[n].shape, default=1) > 0 and pred(self.b.tensors[n])]
        if not cands:
            return None
        i = self.int(0, len(cands) - 1)
        return cands[len(cands) - 1 - i]

    def weight(self, shape: list[int], axis: int | None, block_axis: int | None = None) -> dict:
        types = list(self.config.weight_types)
        if self.b.opset < 21:
            types = [t for t in types if t not in _WIDE] or ["int8"]
        w: dict[str, Any] = {"kind": "weight", "shape": shape, "dtype": self.pick(types),
                             "seed": self.int(0, 2**16), "exp": float(self.int(-4, 0)),
                             "values": self.pick(["uniform", "uniform", "symmetric", "extreme",
                                                  "sparse"]),
                             "zp": self.pick(["zero", "zero", "random", "qmin", "qmax", "mid"])}
        w["axis"] = axis if axis is not None and self.bool(0.6) else None
        if (block_axis is not None and self.config.blocked_weights and self.b.opset >= 21
                and self.bool(0.1)):
            sizes = [d for d in _divisors(shape[block_axis]) if d < shape[block_axis]]
            if sizes:
                w["axis"] = block_axis
                w["block"] = self.pick(sizes)
        return w


def _acc_std(b: _Builder, x: _Tensor, w_scale: np.ndarray, y_float: np.ndarray) -> float:
    s = float(np.max(x.qp.scale)) * float(np.max(w_scale))
    return float(np.std(y_float)) / s if s > 0 else 1.0


def _w_scale(b: _Builder, w: dict) -> np.ndarray:
    rng = np.random.default_rng([b.seed, w["seed"]])
    return _weight_qparams(w, rng, w["shape"]).scale


def _bias_for(d: _Draw, x: _Tensor, w: dict, channels: int, per_channel_ok: bool,
              probe: Callable[[], np.ndarray]) -> dict | None:
    """An int32 bias record matching weight ``w`` (or None: no bias)."""
    if not d.bool(0.6):
        return None
    ws = _w_scale(d.b, w)
    if w.get("block") or (ws.ndim and not per_channel_ok) or x.qp.scale.ndim:
        return None
    factor = 1.0
    if "bias_off_grid" not in d.config.known_bugs and d.bool(0.2):
        factor = d.pick([0.7, 1e-3, 1e3, 0.5])
    w_scale = ws.tolist() if ws.ndim else float(ws)
    return {"kind": "bias", "channels": channels, "w_scale": w_scale, "factor": factor,
            "seed": d.int(0, 2**16), "mag": d.pick([1.0, 0.1, 5.0]),
            "acc_std": _acc_std(d.b, x, ws, probe())}


def _probe(b: _Builder, op: str, inputs: list[dict], attrs: dict) -> np.ndarray:
    """Float output of ``op`` on input refs ``inputs`` without keeping anything (calibration)."""
    n_nodes, n_inits = len(b.nodes), len(b.inits)
    try:
        names = []
        seen: list[_Tensor] = []
        for j, ref in enumerate(inputs):
            if "t" in ref:
                seen.append(b.tensors[ref["t"]])
                names.append(b.tensors[ref["t"]].dq)
            elif "c" in ref:
                names.append(b._const(ref["c"], f"probe_in{j}", seen))
            else:
                names.append("")
        out = b.n("probe_out")
        b.nodes.append(helper.make_node(op, names, [out], name=b.n("probe"), **attrs))
        return b.run_float([out])[0]
    finally:
        del b.nodes[n_nodes:]
        del b.inits[n_inits:]


def _op_record(op: str, inputs: list[dict], attrs: dict, outs: list[str],
               qs: list[dict]) -> dict:
    return {"kind": "op", "op": op, "inputs": inputs, "attrs": attrs, "outputs": outs, "q": qs}


def _maybe_qoperator(d: _Draw, rec: dict, x: _Tensor, w: dict) -> dict:
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
    q["dtype"] = q["dtype"] if q["dtype"] in eight else "uint8"
    q.pop("axis", None)
    return {**rec, "q": [q], "qop": True}


# --- one generator per op family --------------------------------------------------------------


def _gen_conv(d: _Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) in (3, 4) and min(t.shape) >= 1)
    if x is None:
        return None
    spatial = len(x.shape) - 2
    cin = x.shape[1]
    group = d.pick(_divisors(cin))
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
    y = _probe(d.b, "Conv", inputs, attrs)
    bias = _bias_for(d, x, w, cout, True, lambda: y)
    if bias is not None:
        inputs.append({"c": bias})
    rec = _op_record("Conv", inputs, attrs, [name], [d.qspec(y.shape)])
    return _maybe_qoperator(d, rec, x, w)


def _gen_matmul(d: _Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: 2 <= len(t.shape) <= 4)
    if x is None:
        return None
    k = x.shape[-1]
    if d.bool(0.7):
        n = d.int(1, 9)
        w = d.weight([k, n], axis=1, block_axis=0)
        ins = [{"t": x.name}, {"c": w}]
        y = _probe(d.b, "MatMul", ins, {})
        rec = _op_record("MatMul", ins, {}, [name], [d.qspec(y.shape)])
        return _maybe_qoperator(d, rec, x, w)
    n = d.int(1, 9)
    other_shape = (*x.shape[:-2], k, n)
    other = d.tensor(lambda t: t.shape == other_shape and t.name != x.name)
    if other is None:
        other = d.new_input(other_shape)
    ins = [{"t": x.name}, {"t": other.name}]
    y = _probe(d.b, "MatMul", ins, {})
    return _op_record("MatMul", ins, {}, [name], [d.qspec(y.shape)])


def _gen_gemm(d: _Draw, name: str) -> dict | None:
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
    y = _probe(d.b, "Gemm", inputs, attrs)
    bias = _bias_for(d, x, w, n, True, lambda: y)
    if bias is not None:
        if alpha != 1.0:
            bias["factor"] = float(bias["factor"]) * alpha
        beta = 1.0 if "bias_off_grid" in d.config.known_bugs else d.pick([1.0, 1.0, 0.5])
        if beta != 1.0:
            attrs["beta"] = beta
        inputs.append({"c": bias})
    return _op_record("Gemm", inputs, attrs, [name], [d.qspec(y.shape)])


def _broadcast_shape(d: _Draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    kind = d.pick(["same", "same", "ones", "channel", "suffix"])
    if kind == "same":
        return shape
    if kind == "ones":
        return tuple(1 for _ in shape)
    if kind == "channel" and len(shape) >= 2:
        return tuple(s if i == 1 else 1 for i, s in enumerate(shape))
    return shape[1:] if len(shape) > 1 else shape


def _gen_binary(d: _Draw, name: str, op: str) -> dict | None:
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
    y = _probe(d.b, op, ins, {})
    return _op_record(op, ins, {}, [name], [d.qspec(y.shape)])


def _gen_concat(d: _Draw, name: str) -> dict | None:
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
    y = _probe(d.b, "Concat", ins, {"axis": axis})
    return _op_record("Concat", ins, {"axis": axis}, [name], [d.qspec(y.shape)])


def _pool_attrs(d: _Draw, shape: tuple[int, ...], allow_dilation: bool) -> dict:
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


def _gen_pool(d: _Draw, name: str, op: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) == 4 or (op == "MaxPool" and len(t.shape) == 3))
    if x is None:
        return None
    attrs = _pool_attrs(d, x.shape, op == "MaxPool")
    if op == "AveragePool" and d.bool(0.5):
        attrs["count_include_pad"] = 1
    y = _probe(d.b, op, [{"t": x.name}], attrs)
    same = x.name if op == "MaxPool" else None
    return _op_record(op, [{"t": x.name}], attrs, [name], [d.qspec(y.shape, same_as=same)])


def _gen_gap(d: _Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) in (3, 4))
    if x is None:
        return None
    y = _probe(d.b, "GlobalAveragePool", [{"t": x.name}], {})
    return _op_record("GlobalAveragePool", [{"t": x.name}], {}, [name],
                      [d.qspec(y.shape, same_as=x.name)])


def _gen_relu(d: _Draw, name: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    y = _probe(d.b, "Relu", [{"t": x.name}], {})
    return _op_record("Relu", [{"t": x.name}], {}, [name], [d.qspec(y.shape, same_as=x.name)])


def _real_range(qp: QParams) -> np.ndarray:
    """Real values of the type limits (first channel's parameters for per-axis ones)."""
    s = float(qp.scale.reshape(-1)[0])
    z = float(qp.zero_point.reshape(-1)[0])
    lo, hi = _qrange(qp.dtype)
    return np.array([(lo - z) * s, (hi - z) * s])


def _gen_clip(d: _Draw, name: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    real = _real_range(x.qp)
    span = float(real[1] - real[0]) or 1.0
    lo = float(np.float32(real[0] + span * d.pick([0.0, 0.1, 0.3, 0.5, -0.2])))
    hi = float(np.float32(lo + span * d.pick([0.2, 0.5, 1.0, 1.5])))
    inputs: list[dict] = [{"t": x.name}]
    which = d.pick(["both", "both", "min", "max"])
    inputs.append({"c": {"kind": "f32", "value": lo}} if which != "max" else {})
    if which != "min":
        inputs.append({"c": {"kind": "f32", "value": hi}})
    y = _probe(d.b, "Clip", inputs, {})
    return _op_record("Clip", inputs, {}, [name], [d.qspec(y.shape, same_as=x.name)])


def _i64(values: Sequence[int]) -> dict:
    return {"c": {"kind": "i64", "value": [int(v) for v in values]}}


def _movement_q(d: _Draw, x: _Tensor, shape: Sequence[int]) -> dict:
    return d.qspec(shape, same_as=x.name)


def _gen_reshape(d: _Draw, name: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    total = int(np.prod(x.shape))
    rank = d.int(1, 4)
    dims: list[int] = []
    rest = total
    for _ in range(rank - 1):
        dim = d.pick(_divisors(rest))
        dims.append(dim)
        rest //= dim
    dims.append(rest)
    spec_dims = list(dims)
    if d.bool(0.3):
        spec_dims[d.int(0, rank - 1)] = -1
    ins = [{"t": x.name}, _i64(spec_dims)]
    return _op_record("Reshape", ins, {}, [name], [_movement_q(d, x, dims)])


def _gen_transpose(d: _Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) >= 2)
    if x is None:
        return None
    perm = d.perm(len(x.shape))
    shape = [x.shape[p] for p in perm]
    return _op_record("Transpose", [{"t": x.name}], {"perm": list(perm)}, [name],
                      [_movement_q(d, x, shape)])


def _gen_flatten(d: _Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) >= 1)
    if x is None:
        return None
    axis = d.int(0, len(x.shape))
    shape = [int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))]
    return _op_record("Flatten", [{"t": x.name}], {"axis": axis}, [name],
                      [_movement_q(d, x, shape)])


def _gen_squeeze(d: _Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: 1 in t.shape and len(t.shape) >= 2)
    if x is None:
        return None
    ones = [i for i, s in enumerate(x.shape) if s == 1]
    axes = d.subset(ones, 1)
    shape = [s for i, s in enumerate(x.shape) if i not in axes]
    return _op_record("Squeeze", [{"t": x.name}, _i64(axes)], {}, [name],
                      [_movement_q(d, x, shape)])


def _gen_unsqueeze(d: _Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) <= 4)
    if x is None:
        return None
    axis = d.int(-len(x.shape) - 1, len(x.shape))
    shape = list(x.shape)
    shape.insert(axis % (len(x.shape) + 1), 1)
    return _op_record("Unsqueeze", [{"t": x.name}, _i64([axis])], {}, [name],
                      [_movement_q(d, x, shape)])


def _gen_slice(d: _Draw, name: str) -> dict | None:
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
    ins = [{"t": x.name}, _i64(starts), _i64(ends), _i64(axes), _i64(steps)]
    return _op_record("Slice", ins, {}, [name], [_movement_q(d, x, x.shape)])


def _gen_gather(d: _Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) >= 1)
    if x is None:
        return None
    axis = d.int(-len(x.shape), len(x.shape) - 1)
    size = x.shape[axis]
    idx = d.ints(-size, size - 1, 1, 4)
    scalar = len(idx) == 1 and d.bool(0.3)
    value = {"kind": "i64", "value": idx[0] if scalar else idx}
    return _op_record("Gather", [{"t": x.name}, {"c": value}], {"axis": axis}, [name],
                      [_movement_q(d, x, x.shape)])


def _gen_split(d: _Draw, name: str) -> dict | None:
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
            ins.append(_i64(sizes))
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
    return _op_record("Split", ins, attrs, outs, [_movement_q(d, x, x.shape) for _ in outs])


def _gen_pad(d: _Draw, name: str) -> dict | None:
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
    ins: list[dict] = [{"t": x.name}, _i64(pads)]
    if mode == "constant" and d.bool(0.4):
        real = _real_range(x.qp)
        value = float(np.float32(d.pick([0.0, 0.5, -1.0, 1.0]) * float(real[1])))
        ins.append({"c": {"kind": "f32", "value": value}})
    attrs = {"mode": mode} if mode != "constant" else {}
    q = _movement_q(d, x, x.shape)
    return _op_record("Pad", ins, attrs, [name], [q])


def _gen_resize(d: _Draw, name: str) -> dict | None:
    x = d.tensor(lambda t: len(t.shape) == 4)
    if x is None:
        return None
    attrs: dict[str, Any] = {"mode": "nearest"}
    ctm = d.pick(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                  "half_pixel_symmetric" if d.b.opset >= 18
                  and "resize_half_pixel_symmetric" not in d.config.known_bugs
                  else "asymmetric"])
    nm = d.pick(["round_prefer_floor", "floor", "ceil", "round_prefer_ceil"])
    if nm != "round_prefer_floor":
        attrs["nearest_mode"] = nm
    known = d.config.known_bugs
    if d.bool(0.6):
        scales = [1.0, 1.0, d.pick([2.0, 1.0, 3.0, 0.5]), d.pick([2.0, 1.0, 0.5, 1.5])]
        out_hw = [int(n * f) for n, f in zip(x.shape[2:], scales[2:], strict=True)]
        fractional = any(float(n * f) != int(n * f) for n, f in zip(x.shape, scales,
                                                                    strict=True))
        ins = [{"t": x.name}, {}, {"c": {"kind": "f32", "value": scales}}]
    else:
        sizes = [x.shape[0], x.shape[1], d.int(1, 2 * x.shape[2] + 1),
                 d.int(1, 2 * x.shape[3] + 1)]
        out_hw, fractional = sizes[2:], False
        ins = [{"t": x.name}, {}, {}, _i64(sizes)]
    if ctm == "align_corners" and "resize_align_corners_size1" in known and (
            1 in x.shape[2:] or 1 in out_hw):
        ctm = "asymmetric"
    if ctm != "align_corners" and fractional and "resize_fractional_scales" in known:
        ins[2] = {"c": {"kind": "f32", "value": [1.0, 1.0, 2.0, 2.0]}}
    if ctm != "half_pixel":
        attrs["coordinate_transformation_mode"] = ctm
    return _op_record("Resize", ins, attrs, [name], [_movement_q(d, x, x.shape)])


def _gen_requant(d: _Draw, name: str) -> dict | None:
    x = d.tensor()
    if x is None:
        return None
    q = d.qspec(x.shape, allow_axis=False)
    return _op_record("Requant", [{"t": x.name}], {}, [name], [q])


_GENERATORS: dict[str, Callable[[_Draw, str], dict | None]] = {
    "Conv": _gen_conv,
    "MatMul": _gen_matmul,
    "Gemm": _gen_gemm,
    "Add": lambda d, n: _gen_binary(d, n, "Add"),
    "Mul": lambda d, n: _gen_binary(d, n, "Mul"),
    "Concat": _gen_concat,
    "MaxPool": lambda d, n: _gen_pool(d, n, "MaxPool"),
    "AveragePool": lambda d, n: _gen_pool(d, n, "AveragePool"),
    "GlobalAveragePool": _gen_gap,
    "Relu": _gen_relu,
    "Clip": _gen_clip,
    "Reshape": _gen_reshape,
    "Transpose": _gen_transpose,
    "Flatten": _gen_flatten,
    "Squeeze": _gen_squeeze,
    "Unsqueeze": _gen_unsqueeze,
    "Slice": _gen_slice,
    "Gather": _gen_gather,
    "Split": _gen_split,
    "Pad": _gen_pad,
    "Resize": _gen_resize,
    "Requant": _gen_requant,
}
OPS = tuple(_GENERATORS)


def _first_shape(d: _Draw) -> list[int]:
    """Shape of a graph's first input: mostly moderate sizes, sometimes 1 or odd."""
    m = d.config.max_dim

    def dim(limit: int) -> int:
        options = [v for v in (5, 4, 7, 3, 8, 6, 1, 2, 9, 11, 13, 16) if v <= limit]
        return d.pick(options)

    rank = d.pick([4, 4, 4, 3, 2])
    batch = d.pick([1, 1, 1, 2])
    if rank == 4:
        return [batch, dim(m), dim(m), dim(m)]
    if rank == 3:
        return [batch, dim(m), dim(2 * m)]
    return [dim(m), dim(2 * m)]


def _draw_graph(draw: Callable | None, config: FuzzConfig, opset: int, prefix: str,
                ops: Sequence[str] | None = None,
                rng: np.random.Generator | None = None) -> GraphSpec:
    seed = int(rng.integers(2**31)) if rng is not None else draw(st.integers(0, 2**31 - 1))
    b = _Builder(opset, seed, prefix)
    d = _Draw(draw, config, b, rng)
    d.new_input(_first_shape(d))
    n_ops = d.pick([min(3, config.max_ops), *range(1, config.max_ops + 1)])
    names = list(ops or OPS)
    for i in range(n_ops):
        rec = None
        for _attempt in range(4):
            op = d.pick(names)
            rec = _GENERATORS[op](d, f"t{i + 1}")
            if rec is not None:
                break
        if rec is None:
            continue
        b.add_op(rec)
    outputs = [n for n in b.order if n not in b.consumed]
    extra = [n for n in b.order if n in b.consumed and d.bool(0.15)]
    for name in outputs + extra:
        b.add_output({"kind": "output", "tensor": name,
                      "form": "q" if d.bool(0.25) else "dq"})
    return GraphSpec(opset, seed, b.records, prefix)


def random_specs(seed: int, config: FuzzConfig | None = None,
                 ops: Sequence[str] | None = None) -> list[GraphSpec]:
    """A batch of independent specs (one opset) from a numpy RNG seeded with ``seed``.

    Deterministic, and every seed gives different graphs (unlike hypothesis draws): what CI
    and campaigns use.
    """
    config = config or FuzzConfig()
    rng = np.random.default_rng([seed, 0x5EED])
    opset = int(rng.choice([21, 21, 17, 13]))
    sizes = [n for n in (5, 6, 4, 7, 8, 3, 2, 1) if n <= config.max_graphs]
    count = int(rng.choice(sizes))
    return [_draw_graph(None, config, opset, f"g{i}_", ops, rng) for i in range(count)]


def graph_specs(config: FuzzConfig | None = None, opset: int | None = None,
                ops: Sequence[str] | None = None):
    """Hypothesis strategy: one random :class:`GraphSpec` (1 to ``max_ops`` ops)."""
    config = config or FuzzConfig()

    @st.composite
    def strategy(draw: Callable) -> GraphSpec:
        chosen = opset if opset is not None else draw(st.sampled_from([21, 21, 17, 13]))
        return _draw_graph(draw, config, chosen, "", ops)

    return strategy()


def batch_specs(config: FuzzConfig | None = None, ops: Sequence[str] | None = None):
    """Hypothesis strategy: 1 to ``max_graphs`` independent specs sharing one opset."""
    config = config or FuzzConfig()

    @st.composite
    def strategy(draw: Callable) -> list[GraphSpec]:
        opset = draw(st.sampled_from([21, 21, 17, 13]))
        # Mostly several graphs per model: compiling has a fixed cost per model.
        sizes = [n for n in (5, 6, 4, 7, 8, 3, 2, 1) if n <= config.max_graphs]
        count = draw(st.sampled_from(sizes))
        return [_draw_graph(draw, config, opset, f"g{i}_", ops) for i in range(count)]

    return strategy()


# ============================================================================================
# Campaigns
# ============================================================================================


@dataclass
class CampaignStats:
    """Counters of a fuzz run (printed by ``scripts/fuzz``, recorded in docs/FUZZING.md)."""

    batches: int = 0
    graphs: int = 0
    ops: int = 0
    failures: int = 0
    explained: int = 0
    generator_errors: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)
    dtype_counts: dict[str, int] = field(default_factory=dict)
    failure_dirs: list[str] = field(default_factory=list)
    explained_notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    unique: set[str] = field(default_factory=set)

    def add(self, specs: Sequence[GraphSpec]) -> None:
        self.batches += 1
        self.graphs += len(specs)
        for s in specs:
            self.unique.add(spec_id([dataclasses.replace(s, prefix="")]))
            for r in s.records:
                if r["kind"] == "op":
                    self.ops += 1
                    self.op_counts[r["op"]] = self.op_counts.get(r["op"], 0) + 1
                    for q in r["q"]:
                        self.dtype_counts[q["dtype"]] = self.dtype_counts.get(q["dtype"], 0) + 1
                elif r["kind"] == "input":
                    dt = r["q"]["dtype"]
                    self.dtype_counts[dt] = self.dtype_counts.get(dt, 0) + 1

    def report(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.op_counts.items()))
        dts = ", ".join(f"{k} {v}" for k, v in sorted(self.dtype_counts.items()))
        lines = [
            f"graphs tried: {self.graphs} ({len(self.unique)} distinct) in {self.batches} "
            f"compiled models, {self.ops} ops, {self.seconds:.0f} s",
            f"failures: {self.failures}; explained (ORT float32 near-ties): {self.explained}; "
            f"generator errors: {self.generator_errors}",
            f"ops: {ops}",
            f"tensor types: {dts}",
        ]
        lines += [f"failure saved: {d}" for d in self.failure_dirs]
        lines += [f"explained: {n}" for n in self.explained_notes]
        return "\n".join(lines)


def isolate(specs: Sequence[GraphSpec]) -> list[tuple[GraphSpec, CheckResult]]:
    """The graphs of a failing batch that fail on their own (with their results)."""
    failing = []
    for spec in specs:
        alone = dataclasses.replace(spec, prefix="")
        result = check_specs([alone])
        if not result.ok:
            failing.append((alone, result))
    return failing


def _log(text: str) -> None:
    print(text, flush=True)


def run_campaign(graphs: int, seed: int, out: str | os.PathLike[str],
                 config: FuzzConfig | None = None, log: Callable[[str], None] = _log,
                 stats: CampaignStats | None = None) -> CampaignStats:
    """Fuzz until ``graphs`` graphs were tried, saving each failure under ``out``.

    Batch ``k`` is :func:`random_specs` of seed ``seed · 1 000 003 + k`` (so a campaign is
    reproducible).  A failure does not stop the run: the failing batch is reduced to the
    graphs that fail on their own, each saved with :func:`save_failure`.
    """
    import time

    config = config or FuzzConfig()
    stats = stats or CampaignStats()
    start = time.time()
    last_log = start
    k = 0
    while stats.graphs < graphs:
        specs = random_specs(seed * 1_000_003 + k, config)
        k += 1
        stats.add(specs)
        try:
            result = check_specs(specs)
        except Exception as err:  # noqa: BLE001 - ORT refused the graph: generator bug
            stats.generator_errors += 1
            folder = save_failure(specs, None, Path(out) / "generator")
            log(f"generator error ({type(err).__name__}: {err}); saved {folder}")
            continue
        stats.explained += len(result.explained)
        stats.explained_notes += result.explained
        for note in result.explained:
            log(f"explained: {note}")
        if not result.ok:
            failing = isolate(specs) or [(s, result) for s in result.failing_specs]
            for spec, res in failing:
                stats.failures += 1
                folder = save_failure([spec], res, out)
                stats.failure_dirs.append(str(folder))
                log(f"FAILURE saved in {folder}:\n{res.summary()}")
        stats.seconds = time.time() - start
        if time.time() - last_log > 120:
            last_log = time.time()
            log(f"[{stats.seconds:.0f} s] {stats.graphs} graphs ({len(stats.unique)} distinct), "
                f"{stats.failures} failure(s), {stats.explained} explained")
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tvm_qdq.testing.fuzz``: a long campaign, or replay of saved specs."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graphs", type=int, default=2000, help="graphs to try (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    parser.add_argument("--out", default=".cache/fuzz", help="where failures are saved")
    parser.add_argument("--max-ops", type=int, default=4)
    parser.add_argument("--act4", action="store_true", help="also 4-bit activations")
    parser.add_argument("--qoperator", action="store_true",
                        help="QOperator forms (not supported by tvm-qdq yet)")
    parser.add_argument("--known-bugs", action="store_true",
                        help=f"also generate features of open bugs {sorted(KNOWN_BUGS)}")
    parser.add_argument("--replay", nargs="*", metavar="SPEC.json",
                        help="check saved specs instead of fuzzing")
    args = parser.parse_args(argv)
    if args.replay:
        bad = 0
        for path in args.replay:
            result = check_specs([load_spec(path)])
            print(f"{path}: {'ok' if result.ok else 'FAIL'}")
            if not result.ok:
                bad += 1
                print(result.summary())
            for note in result.explained:
                print(f"  explained: {note}")
        return 1 if bad else 0
    config = FuzzConfig(max_ops=args.max_ops, act4=args.act4, qoperator=args.qoperator,
                        known_bugs=frozenset() if args.known_bugs else KNOWN_BUGS)
    stats = run_campaign(args.graphs, args.seed, Path(args.out) / f"seed{args.seed}", config)
    print(stats.report())
    (Path(args.out) / f"seed{args.seed}").mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"seed{args.seed}" / "stats.txt").write_text(stats.report() + "\n")
    return 1 if stats.failures or stats.generator_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
