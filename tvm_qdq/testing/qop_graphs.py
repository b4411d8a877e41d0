"""Single-node QOperator-format ONNX graphs (QLinear*, *Integer, com.microsoft ops).

A graph is one node whose inputs are either *activations* (graph inputs, fed at run time) or
*initializers* (weights, biases, scales, zero points — constant, so the integer rewrite can
fold them).  Example::

    g = QopGraph()
    x = g.input("x", x_q)                            # graph input, dtype/shape of x_q
    w = g.init("w", w_q)                             # initializer
    (y,) = g.node("QLinearConv", [x, g.init("xs", np.float32(0.02)), ...], ["y"],
                  pads=[1, 1, 1, 1])
    model = g.model([y])

Opset 17 for the default domain unless asked, ``com.microsoft`` opset 1 when a node uses that
domain, IR version 9.  Output types come from ONNX shape inference when it knows the op and
from ``out_types`` otherwise (``com.microsoft`` ops have no ONNX schema).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["IR_VERSION", "MS_DOMAIN", "OPSET", "QopGraph", "qdq_reference", "single_node_model"]

OPSET = 17
IR_VERSION = 9
MS_DOMAIN = "com.microsoft"


@dataclass
class QopGraph:
    """Accumulates a small graph: inputs, initializers, nodes (see the module docstring)."""

    opset: int = OPSET
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    inputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    _count: int = 0

    def input(self, name: str, like: np.ndarray) -> str:
        """A graph input with the dtype and shape of ``like`` (the value it will be fed)."""
        like = np.asarray(like)
        elem = helper.np_dtype_to_tensor_dtype(like.dtype)
        self.inputs.append(helper.make_tensor_value_info(name, elem, list(like.shape)))
        return name

    def init(self, name: str, value: np.ndarray | np.generic) -> str:
        """An initializer holding ``value`` (keeps its numpy dtype and shape)."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str] | None = None,
             domain: str = "", **attrs: Any) -> list[str]:
        """Add one node (outputs named ``outputs`` or generated); returns its output names.

        Empty strings in ``inputs`` leave optional inputs out.
        """
        self._count += 1
        name = f"{op_type}_{self._count}"
        outs = outputs or [f"{name}_out0"]
        while inputs and not inputs[-1]:
            inputs = inputs[:-1]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain,
                                           **attrs))
        return outs

    def model(self, outputs: list[str],
              out_types: dict[str, tuple[int, list[int]]] | None = None) -> onnx.ModelProto:
        """The model whose graph outputs are the tensors ``outputs``.

        Output types come from ONNX shape inference; ``out_types`` gives ``(element type,
        shape)`` of the outputs it cannot type (``com.microsoft`` ops have no ONNX schema).
        The model passes ``onnx.checker``.
        """
        domains = {n.domain for n in self.nodes}
        opsets = [helper.make_opsetid("", self.opset)]
        if MS_DOMAIN in domains:
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        types = dict(out_types or {})
        graph_outputs = [
            helper.make_tensor_value_info(n, *types.get(n, (TensorProto.UNDEFINED, None)))
            for n in outputs
        ]
        graph = helper.make_graph(self.nodes, "qop_single_node", self.inputs, graph_outputs,
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION,
                                  producer_name="tvm_qdq.testing")
        inferred = onnx.shape_inference.infer_shapes(model)
        known = {vi.name: vi for vi in (*inferred.graph.value_info, *inferred.graph.output)
                 if vi.type.tensor_type.elem_type}
        for out in model.graph.output:
            if not out.type.tensor_type.elem_type and out.name in known:
                out.CopyFrom(known[out.name])
            if not out.type.tensor_type.elem_type:
                raise ValueError(f"output {out.name!r} has no type: pass it in out_types")
        onnx.checker.check_model(model)
        return model


def single_node_model(op_type: str, inputs: list[tuple[str, np.ndarray, bool] | None],
                      out_type: tuple[int, list[int]] | None = None, *, domain: str = "",
                      onnx_opset: int = OPSET, **attrs: Any) -> onnx.ModelProto:
    """One ``op_type`` node; ``inputs`` are ``(name, value, is_initializer)`` or ``None``.

    ``None`` leaves an optional input empty.  Graph inputs take the dtype/shape of ``value``.
    The single output is ``y``; ``out_type`` is its ``(element type, shape)`` when shape
    inference cannot tell (``com.microsoft`` ops).  ``onnx_opset`` is the default domain's opset
    (``opset`` would be the node attribute, e.g. QLinearSoftmax's).
    """
    g = QopGraph(opset=onnx_opset)
    names = [
        "" if item is None else (g.init(item[0], item[1]) if item[2] else g.input(item[0], item[1]))
        for item in inputs
    ]
    g.node(op_type, names, ["y"], domain=domain, **attrs)
    return g.model(["y"], {"y": out_type} if out_type is not None else None)


# --------------------------------------------------------------------------------------------
# Float references for what ONNX Runtime cannot run as a QOperator node
# --------------------------------------------------------------------------------------------


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise ValueError(f"{name!r} is not an initializer")


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def qdq_reference(model: onnx.ModelProto) -> onnx.ModelProto:
    """The single-node ``model`` written with standard float ops, for ONNX Runtime to run.

    ORT has no kernel for some legal QOperator nodes (QLinearConv / QLinearMatMul with int8
    activations and uint8 weights, QLinearMatMul with a per-row ``a`` scale, ConvInteger with a
    per-channel weight zero point).  The reference follows the operator definition:

    * ``QLinearConv``/``QLinearMatMul``: ``QuantizeLinear(op(DequantizeLinear(x),
      DequantizeLinear(w)[, DequantizeLinear(B, s_x·s_w)]))`` with per-axis ``DequantizeLinear``
      for per-row ``a`` (axis -2), per-column ``b`` (axis -1) and per-channel ``w`` (axis 0).
      Run it without graph optimizations so ORT does not fuse it back into the QOperator node;
    * ``ConvInteger``: ``Cast<int32>(Conv(float(x) - zp_x, float(w - zp_w)))``, exact while every
      partial sum stays below ``2**24`` (checked).

    Scales, zero points and weights must be initializers.
    """
    (node,) = model.graph.node
    attrs = _attrs(node)
    g = QopGraph(opset=max(13, next(o.version for o in model.opset_import if o.domain == "")))
    g.inputs = list(model.graph.input)
    inputs = list(node.input)
    init_names = {t.name for t in model.graph.initializer}
    for t in model.graph.initializer:
        if t.name in inputs:
            g.initializers.append(t)
    out = model.graph.output[0].name

    def dq(x: str, scale: str, zp: str, axis: int) -> str:
        size = next(int(np.prod(t.dims)) for t in g.initializers if t.name == scale)
        n_axis = {"axis": axis} if size > 1 else {}
        return g.node("DequantizeLinear", [x, scale, zp], **n_axis)[0]

    if node.op_type in ("QLinearConv", "QLinearMatMul"):
        if node.op_type == "QLinearConv":
            x, xs, xz, w, ws, wz, ys, yz = inputs[:8]
            xf, wf = dq(x, xs, xz, 1), dq(w, ws, wz, 0)
            parts = [xf, wf]
            if len(inputs) > 8 and inputs[8]:
                b_scale = (_initializer(model, xs).astype(np.float32)
                           * _initializer(model, ws).astype(np.float32))
                bs = g.init("ref_bias_scale", b_scale.astype(np.float32))
                bz = g.init("ref_bias_zero_point", np.zeros(b_scale.shape, np.int32))
                parts.append(dq(inputs[8], bs, bz, 0))
            yf = g.node("Conv", parts, **attrs)[0]
        else:
            a, a_s, az, b, bs, bz, ys, yz = inputs[:8]
            yf = g.node("MatMul", [dq(a, a_s, az, -2), dq(b, bs, bz, -1)])[0]
        g.node("QuantizeLinear", [yf, ys, yz], [out])
        return g.model([out])
    if node.op_type == "ConvInteger":
        x, w = inputs[0], inputs[1]
        xz = inputs[2] if len(inputs) > 2 and inputs[2] else ""
        wz = inputs[3] if len(inputs) > 3 and inputs[3] else ""
        wq = _initializer(model, w).astype(np.int64)
        zw = _initializer(model, wz).astype(np.int64) if wz else np.zeros((), np.int64)
        w_shift = wq - (zw.reshape((-1,) + (1,) * (wq.ndim - 1)) if zw.size > 1 else zw)
        x_type = next(i.type.tensor_type.elem_type for i in g.inputs if i.name == x)
        x_range = 255 if x_type == TensorProto.UINT8 else 128 + 127
        bound = x_range * np.abs(w_shift).reshape(w_shift.shape[0], -1).sum(1).max()
        if bound >= 2**24:
            raise ValueError(f"float32 ConvInteger reference would round (bound {bound})")
        xf = g.node("Cast", [x], to=TensorProto.FLOAT)[0]
        if xz:
            assert xz in init_names, "x zero point must be an initializer"
            zf = g.init("ref_x_zero_point", _initializer(model, xz).astype(np.float32))
            xf = g.node("Sub", [xf, zf])[0]
        wf = g.init("ref_w_shifted", w_shift.astype(np.float32))
        yf = g.node("Conv", [xf, wf], **attrs)[0]
        g.node("Cast", [yf], [out], to=TensorProto.INT32)
        return g.model([out])
    raise NotImplementedError(f"no float reference for {node.op_type}")
