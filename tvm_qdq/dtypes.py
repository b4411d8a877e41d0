"""Quantized element types: ONNX type ids, TVM container dtypes and saturation ranges.

4-bit types have no runtime container in TVM here, so a ``uint4``/``int4`` tensor is carried
in a ``uint8``/``int8`` container whose values always stay in the 4-bit range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto


@dataclass(frozen=True)
class QType:
    """A quantized integer type: its name, the TVM dtype that stores it and its range."""

    name: str
    container: str
    qmin: int
    qmax: int

    @property
    def bits(self) -> int:
        return int(np.log2(self.qmax - self.qmin + 1))

    @property
    def signed(self) -> bool:
        return self.qmin < 0


QTYPES: dict[str, QType] = {
    "uint8": QType("uint8", "uint8", 0, 255),
    "int8": QType("int8", "int8", -128, 127),
    "uint16": QType("uint16", "uint16", 0, 65535),
    "int16": QType("int16", "int16", -32768, 32767),
    "uint4": QType("uint4", "uint8", 0, 15),
    "int4": QType("int4", "int8", -8, 7),
    "int32": QType("int32", "int32", -(2**31), 2**31 - 1),
}

ONNX_TO_NAME: dict[int, str] = {
    TensorProto.UINT8: "uint8",
    TensorProto.INT8: "int8",
    TensorProto.UINT16: "uint16",
    TensorProto.INT16: "int16",
    TensorProto.UINT4: "uint4",
    TensorProto.INT4: "int4",
    TensorProto.INT32: "int32",
}

# Element types we refuse with a clear message rather than mis-compile.
UNSUPPORTED_ONNX_TYPES: dict[int, str] = {
    TensorProto.FLOAT8E4M3FN: "float8e4m3fn",
    TensorProto.FLOAT8E4M3FNUZ: "float8e4m3fnuz",
    TensorProto.FLOAT8E5M2: "float8e5m2",
    TensorProto.FLOAT8E5M2FNUZ: "float8e5m2fnuz",
}
for _name in ("FLOAT4E2M1", "INT2", "UINT2", "FLOAT8E8M0"):
    if hasattr(TensorProto, _name):
        UNSUPPORTED_ONNX_TYPES[getattr(TensorProto, _name)] = _name.lower()


def qtype(name: str) -> QType:
    """The QType called ``name`` (KeyError if it is not a quantized integer type)."""
    return QTYPES[name]


def numpy_name(dtype: np.dtype) -> str:
    """Name of a numpy (or ml_dtypes) dtype: 'int4' for ml_dtypes.int4, else numpy's name."""
    return np.dtype(dtype).name


def to_container(array: np.ndarray) -> np.ndarray:
    """Move a 4-bit ml_dtypes array into its 8-bit container; other arrays pass unchanged."""
    name = numpy_name(array.dtype)
    if name in ("int4", "uint4"):
        return np.asarray(array).astype(QTYPES[name].container)
    return np.asarray(array)


def from_container(array: np.ndarray, name: str) -> np.ndarray:
    """Inverse of :func:`to_container`: view a container array as the ``name`` type."""
    if name in ("int4", "uint4"):
        import ml_dtypes

        return array.astype(getattr(ml_dtypes, name))
    return array
