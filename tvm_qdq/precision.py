"""Precision map of a QDQ model: regions of one quantized type, their boundaries, and the
accumulator each integer op gets (``tvm-qdq inspect --precision``).

* A compute op's type is the type its output is quantized to (or, with no quantized output,
  the widest type among its quantized activation inputs).
* A region is a maximal set of compute ops of one type linked by ``Q(t) → DQ(t)`` edges.
* A boundary is a conversion chain ``DQ(t1) → Q(t2)`` with ``t1 != t2`` (or new parameters).
* Accumulators use the same exact bound as the integer pass (:mod:`tvm_qdq.qnn.ops`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .dtypes import ONNX_TO_NAME, QTYPES
from .qnn.ops import accumulator_for

QDQ = {"QuantizeLinear", "DequantizeLinear"}
COLORS = {"uint8": "#9ecae1", "int8": "#a1d99b", "uint16": "#fdae6b", "int16": "#fc9272",
          "uint4": "#dadaeb", "int4": "#bcbddc", "float": "#f0f0f0"}


@dataclass
class OpPrecision:
    node: str
    op_type: str
    type: str
    inputs: list[str]
    accumulator: str | None = None
    bound: int | None = None
    region: int = -1


@dataclass
class Boundary:
    tensor: str
    from_type: str
    to_type: str
    nodes: list[str]


@dataclass
class PrecisionMap:
    ops: list[OpPrecision] = field(default_factory=list)
    regions: list[dict] = field(default_factory=list)
    boundaries: list[Boundary] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ops": [asdict(o) for o in self.ops], "regions": self.regions,
                "boundaries": [asdict(b) for b in self.boundaries]}


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.inits = {i.name: i for i in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.shapes: dict[str, list] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
                dims = vi.type.tensor_type.shape.dim
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                                        for d in dims]
        except Exception:  # shapes only refine the report
            pass
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def array(self, name: str) -> np.ndarray | None:
        init = self.inits.get(name)
        if init is not None:
            return numpy_helper.to_array(init)
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def qtype(self, node: onnx.NodeProto) -> str:
        """Quantized type of a Q's output or a DQ's input (zero point / output_dtype / data)."""
        for attr in node.attribute:
            if attr.name == "output_dtype" and attr.i:
                return ONNX_TO_NAME.get(attr.i, "?")
        if len(node.input) > 2 and node.input[2]:
            init = self.inits.get(node.input[2])
            if init is not None:
                return ONNX_TO_NAME.get(init.data_type, "?")
        if node.op_type == "DequantizeLinear":
            init = self.inits.get(node.input[0])
            if init is not None:
                return ONNX_TO_NAME.get(init.data_type, "?")
        return "uint8"


def _accumulator(g: _Graph, node: onnx.NodeProto, dq_inputs: list[onnx.NodeProto | None]):
    """Accumulator type and bound for Conv/MatMul/Gemm from the DQ parameters, else None."""
    if node.op_type not in ("Conv", "MatMul", "Gemm") or len(dq_inputs) < 2:
        return None, None
    x_dq, w_dq = dq_inputs[0], dq_inputs[1]
    if x_dq is None or w_dq is None:
        return None, None
    x_qt = QTYPES.get(g.qtype(x_dq))
    zx = g.array(x_dq.input[2]) if len(x_dq.input) > 2 else None
    zx = int(np.asarray(zx).reshape(-1)[0]) if zx is not None and np.size(zx) == 1 else 0
    w = g.array(w_dq.input[0])
    if x_qt is None:
        return None, None
    if w is None:  # activation × activation: bound max|a - za| · max|b - zb| · K
        b_qt = QTYPES.get(g.qtype(w_dq))
        k = g.shapes.get(x_dq.output[0], [None])[-1]
        if b_qt is None or not isinstance(k, int):
            return None, None
        zb = g.array(w_dq.input[2]) if len(w_dq.input) > 2 else None
        zb = int(np.asarray(zb).reshape(-1)[0]) if zb is not None and np.size(zb) == 1 else 0
        a_max = max(abs(x_qt.qmin - zx), abs(x_qt.qmax - zx))
        b_max = max(abs(b_qt.qmin - zb), abs(b_qt.qmax - zb))
        return accumulator_for(a_max * b_max * k), a_max * b_max * k
    zw = g.array(w_dq.input[2]) if len(w_dq.input) > 2 else np.zeros(())
    axis = next((a.i for a in w_dq.attribute if a.name == "axis"), 1)
    w = w.astype(np.int64)
    zw = np.asarray(zw, np.int64)
    if zw.ndim and zw.size > 1:
        shape = [1] * w.ndim
        shape[axis % w.ndim] = zw.size
        zw = zw.reshape(shape)
    shift = w - zw
    if node.op_type == "Conv":
        sums = np.abs(shift).reshape(shift.shape[0], -1).sum(axis=1)
    else:
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        sums = np.abs(shift).sum(axis=1 if trans_b else 0)
    bound = (max(abs(x_qt.qmin), abs(x_qt.qmax)) + abs(zx)) * int(sums.max())
    return accumulator_for(bound), bound


def precision_map(model: onnx.ModelProto) -> PrecisionMap:
    """Regions, boundaries and per-op accumulators of a QDQ model."""
    g = _Graph(model)
    result = PrecisionMap()
    ops: dict[str, OpPrecision] = {}
    for node in model.graph.node:
        if node.op_type in QDQ or node.op_type == "Constant":
            continue
        dq_inputs = [g.producer.get(i) for i in node.input]
        dq_inputs = [p if p is not None and p.op_type == "DequantizeLinear" else None
                     for p in dq_inputs]
        act_types = [g.qtype(p) for p, i in zip(dq_inputs, node.input, strict=True)
                     if p is not None and p.input[0] not in g.inits]
        out_q = [c for o in node.output for c in g.consumers.get(o, [])
                 if c.op_type == "QuantizeLinear"]
        out_types = [g.qtype(q) for q in out_q]
        widest = max(out_types or act_types or ["float"],
                     key=lambda t: QTYPES[t].bits if t in QTYPES else 0)
        acc, bound = _accumulator(g, node, dq_inputs)
        name = node.name or node.output[0]
        ops[name] = OpPrecision(name, node.op_type, widest, act_types, acc, bound)

    # Regions: union-find over Q(t) → DQ(t) edges between ops of the same type.
    parent = {n: n for n in ops}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for node in model.graph.node:
        name = node.name or (node.output[0] if node.output else "")
        if name not in ops:
            continue
        for out in node.output:
            for q in g.consumers.get(out, []):
                if q.op_type != "QuantizeLinear":
                    continue
                for dq in g.consumers.get(q.output[0], []):
                    if dq.op_type != "DequantizeLinear":
                        continue
                    for nxt in g.consumers.get(dq.output[0], []):
                        other = nxt.name or nxt.output[0]
                        if other in ops and ops[other].type == ops[name].type:
                            parent[find(other)] = find(name)
        # Boundaries: DQ(t1) output feeding a Q(t2) directly.
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        for q in g.consumers.get(node.output[0], []):
            if q.op_type == "QuantizeLinear":
                t1, t2 = g.qtype(node), g.qtype(q)
                result.boundaries.append(Boundary(node.input[0], t1, t2, [node.name, q.name]))
    roots: dict[str, int] = {}
    for name, op in ops.items():
        op.region = roots.setdefault(find(name), len(roots))
    for root, idx in roots.items():
        members = [o for o in ops.values() if o.region == idx]
        result.regions.append({"id": idx, "type": ops[root].type,
                               "ops": [o.node for o in members]})
    result.ops = list(ops.values())
    return result


def format_precision(pmap: PrecisionMap) -> str:
    lines = [f"{len(pmap.regions)} region(s), {len(pmap.boundaries)} conversion chain(s)"]
    for region in pmap.regions:
        ops = [o for o in pmap.ops if o.region == region["id"]]
        lines.append(f"region {region['id']} [{region['type']}]: {len(ops)} op(s)")
        for o in ops:
            acc = f"  acc {o.accumulator} (bound {o.bound})" if o.accumulator else ""
            lines.append(f"  {o.node:28s} {o.op_type:20s}{acc}")
    if pmap.boundaries:
        lines.append("conversion chains (DQ → Q):")
        for b in pmap.boundaries:
            lines.append(f"  {b.tensor}: {b.from_type} → {b.to_type}  ({', '.join(b.nodes)})")
    return "\n".join(lines)


def to_dot(pmap: PrecisionMap, model: onnx.ModelProto) -> str:
    """Graphviz DOT text of the compute ops, coloured by precision, chains as red edges."""
    g = _Graph(model)
    ops = {o.node: o for o in pmap.ops}
    lines = ["digraph precision {", "  rankdir=LR;", '  node [shape=box, style=filled];']
    for o in pmap.ops:
        label = f"{o.node}\\n{o.op_type} [{o.type}]" + (f"\\nacc {o.accumulator}"
                                                         if o.accumulator else "")
        color = COLORS.get(o.type, "#ffffff")
        lines.append(f'  "{o.node}" [label="{label}", fillcolor="{color}"];')

    def upstream(tensor: str, converted: bool = False) -> tuple[str | None, bool]:
        node = g.producer.get(tensor)
        while node is not None and node.op_type in QDQ:
            if node.op_type == "QuantizeLinear":
                prev = g.producer.get(node.input[0])
                if prev is not None and prev.op_type == "DequantizeLinear":
                    converted = True
            node = g.producer.get(node.input[0])
        if node is None:
            return None, converted
        return node.name or node.output[0], converted

    for node in model.graph.node:
        name = node.name or (node.output[0] if node.output else "")
        if name not in ops:
            continue
        for i in node.input:
            src, converted = upstream(i)
            if src in ops:
                style = ' [color=red, penwidth=2, label="convert"]' if converted else ""
                lines.append(f'  "{src}" -> "{name}"{style};')
    lines.append("}")
    return "\n".join(lines)


def render(dot_text: str, path: str | os.PathLike) -> Path:
    """Write the picture (``.svg`` or ``.png`` by suffix; ``.dot`` writes the text) at ``path``."""
    out = Path(path)
    if out.suffix == ".dot":
        out.write_text(dot_text)
        return out
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("graphviz 'dot' is not installed (Debian package 'graphviz'; "
                           "scripts/setup installs it); write a .dot file instead")
    fmt = out.suffix.lstrip(".") or "svg"
    subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=dot_text.encode(), check=True)
    return out
