"""ONNX facts shared by the fuzz modules: the IR version, the quantized types and their ranges.

A type ``t`` of range ``[qmin, qmax]`` quantizes ``x`` as
``saturate(round_half_even(x / s) + zp, qmin, qmax)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

IR_VERSION = 9
#: ``producer_name`` of the models the fuzzer writes.
PRODUCER = "tvm_qdq.fuzz"

#: name → (numpy dtype, ONNX type, qmin, qmax)
QTYPES: dict[str, tuple[Any, int, int, int]] = {
    "uint8": (np.uint8, TensorProto.UINT8, 0, 255),
    "int8": (np.int8, TensorProto.INT8, -128, 127),
    "uint16": (np.uint16, TensorProto.UINT16, 0, 65535),
    "int16": (np.int16, TensorProto.INT16, -32768, 32767),
    "uint4": (np.uint8, TensorProto.UINT4, 0, 15),
    "int4": (np.int8, TensorProto.INT4, -8, 7),
}
ACT_TYPES = ("uint8", "int8", "uint16", "int16")
WEIGHT_TYPES = ("int8", "uint8", "int4", "uint4")
WIDE_TYPES = {"uint16", "int16", "uint4", "int4"}  # need opset 21 for Q/DQ


def qrange(dtype: str) -> tuple[int, int]:
    """``(qmin, qmax)`` of quantized type ``dtype``."""
    return QTYPES[dtype][2], QTYPES[dtype][3]


def onnx_model(graph: onnx.GraphProto, opset: int, **fields: Any) -> onnx.ModelProto:
    """``graph`` as a model of the default domain at ``opset`` and :data:`IR_VERSION`."""
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=IR_VERSION, **fields)
