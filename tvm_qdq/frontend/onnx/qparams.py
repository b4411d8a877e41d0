"""Validation of quantization parameters (scale, zero point, axis, block size) of one node.

Every check raises :class:`~tvm_qdq.errors.InvalidQuantizationError` naming the node, so a
malformed model fails at import with a message saying what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...dtypes import QTYPES, QType
from ...errors import InvalidQuantizationError


@dataclass(frozen=True)
class NodeRef:
    """Which ONNX node a converter is working on (for error messages)."""

    name: str
    op_type: str
    domain: str = ""

    def fail(self, reason: str) -> InvalidQuantizationError:
        return InvalidQuantizationError(self.name, self.op_type, reason, self.domain)


def check_scale(node: NodeRef, scale: np.ndarray | None) -> None:
    """Scales must be finite and > 0 (a constant scale is checked; a runtime one cannot be)."""
    if scale is None:
        return
    if not np.issubdtype(scale.dtype, np.floating):
        raise node.fail(f"scale must be a float tensor, got {scale.dtype}")
    bad = ~np.isfinite(scale) | (scale <= 0)
    if bad.any():
        raise node.fail(
            f"scale must be finite and > 0, got {scale.reshape(-1)[np.argmax(bad.reshape(-1))]!r}"
            f" ({int(bad.sum())} bad value(s) of {scale.size})"
        )


def check_zero_point(node: NodeRef, zero_point: np.ndarray | None, qt: QType) -> None:
    """A zero point must have an integer type and lie inside its quantized type's range."""
    if zero_point is None:
        return
    if not np.issubdtype(zero_point.dtype, np.integer):
        raise node.fail(f"zero point must be an integer tensor, got {zero_point.dtype}")
    lo, hi = int(zero_point.min(initial=qt.qmin)), int(zero_point.max(initial=qt.qmin))
    if lo < qt.qmin or hi > qt.qmax:
        raise node.fail(
            f"zero point {lo if lo < qt.qmin else hi} is outside the {qt.name} range "
            f"[{qt.qmin}, {qt.qmax}]"
        )


def quantized_type_of(node: NodeRef, dtype_name: str, role: str) -> QType:
    """The QType for ``dtype_name`` or a clear error when it is not a quantized integer type."""
    qt = QTYPES.get(dtype_name)
    if qt is None or dtype_name == "int32" and role != "dequantize input":
        raise node.fail(f"{role} has type {dtype_name}, which is not a quantized integer type")
    return qt


def normalize_axis(node: NodeRef, axis: int, ndim: int) -> int:
    """Axis in [-ndim, ndim) → [0, ndim); anything else is an error naming the node."""
    if not -ndim <= axis < max(ndim, 1):
        raise node.fail(f"axis {axis} is out of range for a tensor of rank {ndim}")
    return axis % max(ndim, 1)


def check_param_shape(
    node: NodeRef,
    name: str,
    param_shape: tuple[int, ...],
    data_shape: tuple[int, ...],
    axis: int,
    block_size: int,
) -> str:
    """Classify a scale/zero-point shape as 'tensor', 'axis' or 'block' and check it fits.

    Per tensor: a scalar or one element. Per axis: 1-D with ``data_shape[axis]`` elements.
    Blocked: same rank as the data, equal everywhere except ``axis`` where it has
    ``ceil(data_shape[axis] / block_size)`` elements.
    """
    if block_size > 0:
        if len(param_shape) != len(data_shape):
            raise node.fail(
                f"blocked {name} must have the data's rank {len(data_shape)}, got {param_shape}"
            )
        want = list(data_shape)
        want[axis] = -(-data_shape[axis] // block_size)
        if list(param_shape) != want:
            raise node.fail(
                f"blocked {name} shape {param_shape} does not match data shape {data_shape} with "
                f"block_size {block_size} on axis {axis} (expected {tuple(want)})"
            )
        return "block"
    if int(np.prod(param_shape, dtype=np.int64)) == 1 and len(param_shape) <= 1:
        return "tensor"
    if len(param_shape) != 1:
        raise node.fail(f"per-axis {name} must be 1-D, got shape {param_shape}")
    if not data_shape:
        raise node.fail(f"per-axis {name} given for a scalar input")
    if param_shape[0] != data_shape[axis]:
        raise node.fail(
            f"per-axis {name} has {param_shape[0]} elements but axis {axis} of the input has "
            f"{data_shape[axis]}"
        )
    return "axis"
