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
from ``out_types`` otherwise (``com.microsoft`` ops have no ONNX schema).  Nodes ONNX Runtime
has no kernel for are evaluated by :mod:`tvm_qdq.testing.numpy_reference`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["IR_VERSION", "MS_DOMAIN", "OPSET", "QopGraph", "single_node_model"]

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
