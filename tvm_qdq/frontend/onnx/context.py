"""What a tvm-qdq converter sees of the node it converts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import tvm
from tvm import relax

from ...dtypes import ONNX_TO_NAME
from ...errors import node_label
from .qparams import NodeRef

#: ``consumer_ops`` entry of an output that is an output of the graph.
GRAPH_OUTPUT = "<graph output>"


@dataclass
class ConvertContext:
    """One node being converted: its identity, opset, the block builder and input types.

    ``input_types`` are the ONNX element-type names of the node's inputs as the model
    declares them (so a 4-bit tensor carried in an 8-bit container is still known as
    ``int4``/``uint4``); ``None`` for an absent optional input or an unknown type.
    """

    node: NodeRef
    opset: int
    bb: relax.BlockBuilder
    onnx_node: onnx.NodeProto
    input_types: list[str | None] = field(default_factory=list)
    onnx_opset: int = 0  # the model's ai.onnx opset (for TVM's float converters)
    producer_ops: list[str | None] = field(default_factory=list)
    consumer_ops: tuple[str, ...] = ()

    def fail(self, reason: str):
        return self.node.fail(reason)

    @property
    def label(self) -> str:
        """``node 'name' (Op)``, as error messages name the node."""
        return node_label(self.node.name, self.node.op_type, self.node.domain)


def constant_value(expr: relax.Expr | None) -> np.ndarray | None:
    """The numpy value of a Relax constant, or None when ``expr`` is not a constant (a prim
    value such as a dimension is not one)."""
    if isinstance(expr, tvm.ir.Constant) and hasattr(expr.value, "numpy"):
        return expr.value.numpy()
    return None


def onnx_type_name(elem_type: int) -> str | None:
    """ONNX element type id → name used by tvm-qdq ('uint8', 'int4', 'float32', ...)."""
    if elem_type in ONNX_TO_NAME:
        return ONNX_TO_NAME[elem_type]
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        return None
