"""Quantization parameters of one tensor: ``real = (q - zero_point) · scale``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dtypes import QTYPES, QType

# Accumulator types: integer results of conv/matmul before requantization (zero point 0).
ACCUMULATORS: dict[str, QType] = {
    "int32": QTYPES["int32"],
    "int64": QType("int64", "int64", -(2**63), 2**63 - 1),
}


@dataclass(frozen=True, eq=False)
class QParams:
    """Scale and zero point of a quantized tensor, per tensor or along one ``axis``.

    ``scale`` is float64 (float32 model scales and their exact products) and ``zero_point``
    int64, each a 0-d array (per tensor) or a 1-D
    array of length ``shape[axis]`` (per axis). ``qtype`` gives the storage type and the
    saturation range ``[qmin, qmax]``.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    qtype: QType
    axis: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", np.asarray(self.scale, dtype=np.float64))
        object.__setattr__(self, "zero_point", np.asarray(self.zero_point, dtype=np.int64))
        if self.scale.size == 1 and self.zero_point.size == 1:
            object.__setattr__(self, "scale", self.scale.reshape(()))
            object.__setattr__(self, "zero_point", self.zero_point.reshape(()))
            object.__setattr__(self, "axis", None)

    @property
    def per_tensor(self) -> bool:
        return self.axis is None

    @property
    def has_zero_point(self) -> bool:
        return bool(np.any(self.zero_point != 0))

    def broadcast(self, values: np.ndarray, ndim: int) -> np.ndarray:
        """Shape per-axis ``values`` ``[C]`` as ``[1, .., C, .., 1]`` for a rank-``ndim`` tensor."""
        values = np.asarray(values)
        if self.axis is None or values.ndim == 0:
            return values.reshape(())
        shape = [1] * ndim
        shape[self.axis] = values.size
        return values.reshape(shape)

    def with_axis(self, axis: int | None) -> QParams:
        return QParams(self.scale, self.zero_point, self.qtype, axis)

    def same_as(self, other: QParams) -> bool:
        """Bit-identical parameters and type (a requantize between them is the identity)."""
        return (
            self.qtype == other.qtype
            and self.axis == other.axis
            and self.scale.shape == other.scale.shape
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    def key(self) -> tuple:
        """Hashable identity of the parameters (type, axis, scale and zero point bytes)."""
        return (self.qtype.name, self.axis, self.scale.tobytes(), self.zero_point.tobytes())

    def describe(self) -> str:
        where = "per-tensor" if self.axis is None else f"per-axis({self.axis})"
        return f"{self.qtype.name} {where}"

