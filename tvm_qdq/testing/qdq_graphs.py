"""Hand-written single-op QDQ ONNX graphs, shaped the way ORT's quantizer writes them.

A graph is described once by a *build function* ``build(g: QdqGraph) -> None`` that declares
inputs, integer weights/biases, the op node(s) and the outputs.  :func:`make_qdq_model` calls it
twice:

1. in *float* mode: inputs are plain float inputs, weights and biases are float initializers
   holding the dequantized values, outputs are the op's float results.  ORT runs this float
   graph on calibration feeds, which gives each output's range;
2. in *quantized* mode: ``input → QuantizeLinear → DequantizeLinear → op``, weights and biases
   are ``DequantizeLinear`` of integer initializers, and every output goes through
   ``QuantizeLinear → DequantizeLinear`` with parameters computed from the float range (unless
   the build function gave them explicitly).

Every node is named, the opset is 17 unless asked (16-bit Q/DQ needs 21) and the IR version is 9.

Example::

    def build(g: QdqGraph) -> None:
        x = g.input("x", [1, 8, 6, 6], QP(0.03, 128, np.uint8))
        w = g.weight("w", g.rng_int8((16, 8, 3, 3)), QP(0.01, 0, np.int8))
        y = g.node("Conv", [x, w], pads=[1, 1, 1, 1])
        g.output(y, np.uint8)

    model = make_qdq_model(build, calibration_feeds)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .oracle import run_ort

__all__ = [
    "IR_VERSION",
    "OPSET",
    "QP",
    "QdqGraph",
    "make_qdq_model",
    "qparams_from_range",
]

OPSET = 17
IR_VERSION = 9

_QTYPE_RANGE: dict[type, tuple[int, int]] = {
    np.uint8: (0, 255),
    np.int8: (-128, 127),
    np.uint16: (0, 65535),
    np.int16: (-32768, 32767),
}


@dataclass(frozen=True)
class QP:
    """Quantization parameters ``real = (q - zero_point) · scale`` of one tensor.

    ``scale``/``zero_point`` are scalars (per tensor) or 1-D arrays along ``axis``; ``dtype`` is
    the numpy type of the quantized tensor (``np.uint8``, ``np.int8``, ``np.uint16`` ...).
    """

    scale: float | np.ndarray
    zero_point: int | np.ndarray
    dtype: type = np.uint8
    axis: int | None = None

    def scale_array(self) -> np.ndarray:
        """The scale as a float32 array (0-d or 1-d)."""
        return np.asarray(self.scale, dtype=np.float32)

    def zero_point_array(self) -> np.ndarray:
        """The zero point as an array of the quantized type, shaped like the scale."""
        zp = np.asarray(self.zero_point).astype(self.dtype)
        return np.broadcast_to(zp, self.scale_array().shape).copy()

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """``(q - zp) · s`` in float32, broadcast along ``axis`` for per-axis parameters."""
        s = self.scale_array().astype(np.float64)
        zp = self.zero_point_array().astype(np.float64)
        if s.ndim == 1:
            shape = [1] * q.ndim
            shape[self.axis if self.axis is not None else 1] = s.size
            s, zp = s.reshape(shape), zp.reshape(shape)
        return ((q.astype(np.float64) - zp) * s).astype(np.float32)

    @property
    def qmin(self) -> int:
        return _QTYPE_RANGE[self.dtype][0]

    @property
    def qmax(self) -> int:
        return _QTYPE_RANGE[self.dtype][1]


def qparams_from_range(lo: float, hi: float, dtype: type = np.uint8,
                       symmetric: bool = False) -> QP:
    """Per-tensor parameters covering ``[min(lo, 0), max(hi, 0)]`` like ORT's MinMax calibrator.

    Asymmetric: ``scale = (hi - lo) / (qmax - qmin)``, ``zp = round(qmin - lo / scale)``;
    symmetric: ``scale = max(|lo|, |hi|) / ((qmax - qmin) / 2)`` and the type's midpoint as zero
    point (0 for signed types, 128 / 32768 for unsigned).
    """
    qmin, qmax = _QTYPE_RANGE[dtype]
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric:
        bound = max(abs(lo), abs(hi)) or 1.0
        scale = 2 * bound / (qmax - qmin)
        return QP(np.float32(scale), (qmin + qmax + 1) // 2, dtype)
    if hi == lo:
        hi = lo + 1.0
    scale = (hi - lo) / (qmax - qmin)
    zp = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    return QP(np.float32(scale), zp, dtype)


@dataclass
class QdqGraph:
    """Accumulates one single-op graph in float or QDQ form (see the module docstring).

    ``out_qparams`` maps an output name to its parameters (quantized mode); ``ranges`` receives
    nothing here, it is filled by :func:`make_qdq_model` from the float run.
    """

    quantized: bool
    out_qparams: Mapping[str, QP] = field(default_factory=dict)
    opset: int = OPSET
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    inputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    outputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    output_types: dict[str, tuple[type, bool]] = field(default_factory=dict)
    _count: int = 0

    # --- naming ------------------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        """A new unique tensor/node name starting with ``prefix``."""
        self._count += 1
        return f"{prefix}_{self._count}"

    def _qdq_params(self, name: str, qp: QP) -> tuple[str, str]:
        scale = self.initializer(f"{name}_scale", qp.scale_array())
        zp = self.initializer(f"{name}_zero_point", qp.zero_point_array())
        return scale, zp

    def _axis_attrs(self, qp: QP) -> dict[str, int]:
        return {"axis": qp.axis} if qp.axis is not None and qp.scale_array().ndim == 1 else {}

    def _quantize(self, x: str, qp: QP, name: str) -> str:
        scale, zp = self._qdq_params(name, qp)
        out = f"{name}_q"
        self.nodes.append(helper.make_node("QuantizeLinear", [x, scale, zp], [out],
                                           name=f"{name}_QuantizeLinear", **self._axis_attrs(qp)))
        return out

    def _dequantize(self, q: str, qp: QP, name: str, out: str | None = None) -> str:
        scale, zp = self._qdq_params(f"{name}_dq", qp)
        out = out or f"{name}_dq"
        self.nodes.append(helper.make_node("DequantizeLinear", [q, scale, zp], [out],
                                           name=f"{name}_DequantizeLinear",
                                           **self._axis_attrs(qp)))
        return out

    # --- graph pieces ------------------------------------------------------------------------
    def initializer(self, name: str, value: np.ndarray) -> str:
        """Add a plain initializer (shapes, indices, float constants) and return its name."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def input(self, name: str, shape: list[int], qp: QP) -> str:
        """A float graph input, quantized with ``qp`` then dequantized in QDQ mode."""
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        if not self.quantized:
            return name
        return self._dequantize(self._quantize(name, qp, name), qp, name)

    def weight(self, name: str, q: np.ndarray, qp: QP) -> str:
        """An integer initializer ``q`` dequantized with ``qp`` (float values in float mode)."""
        if not self.quantized:
            return self.initializer(name, qp.dequantize(q))
        self.initializer(f"{name}_quantized", np.asarray(q).astype(qp.dtype))
        return self._dequantize(f"{name}_quantized", qp, name)

    def bias(self, name: str, real: np.ndarray, scale: float | np.ndarray) -> str:
        """An int32 bias ``round(real / scale)`` with zero point 0 (per channel if ``scale`` is)."""
        s = np.asarray(scale, dtype=np.float32)
        q = np.rint(np.asarray(real, np.float64) / s.astype(np.float64)).astype(np.int32)
        qp = QP(s, np.zeros(s.shape, np.int32), np.int32, 0 if s.ndim == 1 else None)
        if not self.quantized:
            return self.initializer(name, qp.dequantize(q))
        self.initializer(f"{name}_quantized", q)
        scale_name = self.initializer(f"{name}_scale", s)
        zp_name = self.initializer(f"{name}_zero_point", np.zeros(s.shape, np.int32))
        out = f"{name}_dq"
        self.nodes.append(helper.make_node(
            "DequantizeLinear", [f"{name}_quantized", scale_name, zp_name], [out],
            name=f"{name}_DequantizeLinear", **({"axis": 0} if s.ndim == 1 else {})))
        return out

    def node(self, op_type: str, inputs: list[str], num_outputs: int = 1,
             **attrs: Any) -> str | list[str]:
        """Add one ``op_type`` node; returns its output name (a list if ``num_outputs > 1``)."""
        name = self.fresh(op_type)
        outs = [f"{name}_out{i}" for i in range(num_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if num_outputs == 1 else outs

    def output(self, tensor: str, dtype: type = np.uint8, name: str | None = None,
               qp: QP | None = None, symmetric: bool = False) -> str:
        """Make ``tensor`` a graph output ``name`` (default ``y``, ``y1`` ...).

        In QDQ mode it goes through ``QuantizeLinear → DequantizeLinear`` with ``qp``, or with
        parameters computed from the float run's range of this output (``dtype``, symmetric or
        not).
        """
        name = name or ("y" if not self.outputs else f"y{len(self.outputs)}")
        self.output_types[name] = (dtype, symmetric)
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        if not self.quantized:
            self.nodes.append(helper.make_node("Identity", [tensor], [name], name=f"{name}_Id"))
            return name
        params = qp if qp is not None else self.out_qparams[name]
        self._dequantize(self._quantize(tensor, params, name), params, name, out=name)
        return name

    def model(self) -> onnx.ModelProto:
        """The ONNX model: output shapes from strict shape inference, then ``onnx.checker``."""
        graph = helper.make_graph(self.nodes, "qdq_single_op", self.inputs, self.outputs,
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  ir_version=IR_VERSION, producer_name="tvm_qdq.testing")
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        for out in model.graph.output:
            dims = out.type.tensor_type.shape.dim
            if not dims and not out.type.tensor_type.HasField("shape"):
                raise ValueError(f"shape inference left output {out.name!r} without a shape")
            if any(not d.HasField("dim_value") for d in dims):
                raise ValueError(f"output {out.name!r} has a dynamic shape")
        del model.graph.value_info[:]
        onnx.checker.check_model(model, full_check=True)
        return model


def make_qdq_model(
    build: Callable[[QdqGraph], None],
    calibration: Mapping[str, np.ndarray],
    *,
    opset: int = OPSET,
    out_qparams: Mapping[str, QP] | None = None,
) -> onnx.ModelProto:
    """Build the QDQ model of ``build`` with output parameters from a float calibration run.

    Each output's range is the min/max of the float graph's output on ``calibration`` (the
    float graph uses the dequantized weights). ``out_qparams`` overrides outputs by name.
    """
    fg = QdqGraph(quantized=False, opset=opset)
    build(fg)
    results = run_ort(fg.model(), calibration)
    qparams: dict[str, QP] = {}
    for vi, value in zip(fg.outputs, results, strict=True):
        dtype, symmetric = fg.output_types[vi.name]
        qparams[vi.name] = qparams_from_range(float(value.min()), float(value.max()), dtype,
                                              symmetric)
    qparams.update(out_qparams or {})
    qg = QdqGraph(quantized=True, out_qparams=qparams, opset=opset)
    build(qg)
    return qg.model()
