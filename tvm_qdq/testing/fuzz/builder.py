"""Replaying a :class:`GraphSpec` into an ONNX model, record by record, calibrated with ORT.

Every graph input is ``x → QuantizeLinear → DequantizeLinear``; every op reads dequantized
tensors and each op output goes through ``QuantizeLinear → DequantizeLinear`` whose parameters
come from a calibration run (ORT on calibration feeds) of the graph built so far, then
perturbed as the record says (:func:`~.qparams.choose_qparams`).  Weights are
``DequantizeLinear`` of integer initializers, biases int32 with scale ``factor · s_x · s_w``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .execution import run_reference
from .onnx_types import PRODUCER, QTYPES, onnx_model
from .qparams import DrawnQParams, calibrated_range, choose_qparams, weight_qparams
from .spec import GraphSpec
from .values import feed_values, weight_values


@dataclass
class BuiltTensor:
    """A tensor of the graph being built: its shape, parameters and Q / DQ tensor names."""

    name: str
    shape: tuple[int, ...]
    qp: DrawnQParams
    dq: str  # name of the dequantized float tensor consumers read
    q: str  # name of the quantized tensor


class GraphBuilder:
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
        self.tensors: dict[str, BuiltTensor] = {}
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

    def _qdq(self, x: str, qp: DrawnQParams, base: str) -> tuple[str, str]:
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
        return onnx_model(graph, self.opset, producer_name=PRODUCER)

    def run_float(self, outputs: list[str]) -> list[np.ndarray]:
        """Values of float tensors ``outputs`` on the calibration feeds (ORT, reference)."""
        return run_reference(self._model(outputs), self.calib)

    # --- records -----------------------------------------------------------------------------
    def add_input(self, rec: dict) -> BuiltTensor:
        """A graph input ``rec['name']`` of ``rec['shape']`` fed with ``rec['feed']`` values."""
        self.records.append(rec)
        name, shape = rec["name"], tuple(rec["shape"])
        full = self.n(name)
        self.inputs.append(helper.make_tensor_value_info(full, TensorProto.FLOAT, list(shape)))
        feed = rec["feed"]
        seed = int(feed.get("seed", 0))
        self.calib[full] = feed_values(feed, shape, np.random.default_rng(seed * 2 + 1), None)
        lo, hi = calibrated_range(self.calib[full], rec["q"].get("axis"))
        qp = choose_qparams(rec["q"], lo, hi)
        self.test[full] = feed_values(feed, shape, np.random.default_rng(seed * 2 + 2), qp)
        q, dq = self._qdq(full, qp, name)
        t = BuiltTensor(name, shape, qp, dq, q)
        self.tensors[name] = t
        self.order.append(name)
        return t

    def const_input(self, c: dict, key: str, ins: list[BuiltTensor]) -> str:
        """Name of the float tensor of constant record ``c`` (int64 / float32 values, a
        dequantized integer weight, or a bias scaled by ``ins[0]``'s scale)."""
        kind = c["kind"]
        if kind == "i64":
            return self.init(key, np.asarray(c["value"], np.int64))
        if kind == "f32":
            return self.init(key, np.asarray(c["value"], np.float32))
        if kind == "weight":
            rng = np.random.default_rng([self.seed, c["seed"]])
            qp = weight_qparams(c, rng, c["shape"])
            values = weight_values(c, rng, c["shape"])
            elem = QTYPES[c["dtype"]][1]
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

    def _bias(self, c: dict, key: str, ins: list[BuiltTensor]) -> str:
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

    def add_op(self, rec: dict) -> list[BuiltTensor]:
        """Add op ``rec`` (its inputs, constants, attributes, output parameters)."""
        self.records.append(rec)
        self.op_count += 1
        k = self.op_count
        ins: list[BuiltTensor] = []
        names: list[str] = []
        for j, ref in enumerate(rec["inputs"]):
            if "t" in ref:
                t = self.tensors[ref["t"]]
                self.consumed.add(t.name)
                ins.append(t)
                names.append(t.dq if ref.get("form", "dq") == "dq" else t.q)
            elif "c" in ref:
                names.append(self.const_input(ref["c"], f"op{k}_in{j}", ins))
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
                lo, hi = calibrated_range(v, fresh.get("axis"))
                qp = choose_qparams(fresh, lo, hi)
            qn, dq = self._qdq(fo, qp, o)
            t = BuiltTensor(o, tuple(v.shape), qp, dq, qn)
            self.tensors[o] = t
            self.order.append(o)
            result.append(t)
        return result

    def _add_qoperator(self, rec: dict, k: int, ins: list[BuiltTensor],
                       names: list[str]) -> BuiltTensor:
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
        lo, hi = calibrated_range(value, None)
        qp = choose_qparams({k_: v_ for k_, v_ in rec["q"][0].items() if k_ != "axis"}, lo, hi)
        x = ins[0]
        w_key = self.n(f"op{k}_in1")
        # The weight's DequantizeLinear (added by const_input) is not used by the QOperator node.
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
        t = BuiltTensor(name, tuple(value.shape), qp, dq, q_out)
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
        elem = TensorProto.FLOAT if rec["form"] == "dq" else QTYPES[t.qp.dtype][1]
        # No declared shape: ORT and onnx shape inference disagree on some (ceil-mode pools).
        self.outputs.append(helper.make_tensor_value_info(name, elem, [None] * len(t.shape)))

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "fuzz", self.inputs, self.outputs, self.inits)
        return onnx_model(graph, self.opset, producer_name=PRODUCER)


@dataclass
class Built:
    """A built graph (or batch): the model, its test feeds and the specs it came from."""

    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    specs: list[GraphSpec]
    qparams: dict[str, DrawnQParams] = field(default_factory=dict)  # tensor name → parameters


def replay(spec: GraphSpec) -> GraphBuilder:
    """The builder after adding every record of ``spec`` (its nodes, tensors and feeds)."""
    b = GraphBuilder(spec.opset, spec.seed, spec.prefix)
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
    b = replay(spec)
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
    model = onnx_model(graph, specs[0].opset, producer_name=PRODUCER)
    feeds = {k: v for p in parts for k, v in p.feeds.items()}
    qparams = {k: v for p in parts for k, v in p.qparams.items()}
    return Built(model, feeds, list(specs), qparams)


def build_specs(specs: Sequence[GraphSpec]) -> Built:
    """:func:`build` of a single spec, else :func:`build_batch`."""
    return build(specs[0]) if len(specs) == 1 else build_batch(specs)
