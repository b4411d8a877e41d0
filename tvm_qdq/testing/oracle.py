"""ONNX Runtime oracle and quantization-aware comparison helpers used by the tests.

Contract vocabulary
-------------------
One *LSB* (least significant bit) is one quantization step of the output being compared:

* integer (quantized) outputs, including ``ml_dtypes`` ``int4/uint4/int2/uint2``:
  ``lsb = |a - e|`` computed exactly in ``int64`` (so ``uint16``/``uint32`` cannot wrap);
* float outputs of a dequantized tensor ``y = (q - zp) * scale``:
  ``lsb = |a - e| / scale`` in ``float64``, with ``scale`` broadcast per tensor, per axis or per
  block exactly like ``DequantizeLinear`` does; the zero point cancels out of the difference;
* one-byte float outputs (``float8_*``, ``float4_e2m1fn``, i.e. QuantizeLinear to a float type):
  the distance between the two values *in representable codes* (adjacent codes are 1 apart).

NaN equals NaN (0 LSB), NaN against a number is ``inf``; equal infinities are 0 LSB.

``assert_single_op_contract``: every element within 1 LSB *and* at least ``min_frac_exact``
(:data:`MIN_FRAC_EXACT`, 99.9 %) of the elements exactly equal (or bit-exact everywhere when
``exact=True``).  The 1-LSB allowance is for near-ties only: ORT computes the integer
conv/matmul/add/mul/pools/concat, requantize and Q/DQ exactly up to float32 ties, so a
systematic 1-LSB bias (a wrong rounding mode) must fail even though every element is within
1 LSB.  Cases whose scales make many exact ties that ORT's float32 arithmetic rounds either
way pass their measured exact share instead.
``assert_model_contract``: max ≤ 2 LSB, at least 99 % of the elements within 1 LSB and, for
classifiers, the same top-1 class in every row.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

__all__ = [
    "Agreement",
    "QuantInfo",
    "FLOAT_SLACK_LSB",
    "MIN_FRAC_EXACT",
    "run_ort",
    "output_quant_info",
    "output_qparams",
    "lsb_diff",
    "agreement",
    "assert_single_op_contract",
    "assert_model_contract",
]

#: Tolerance (in LSB) added to the thresholds for float outputs: a dequantized float32 value
#: ``(q - zp) * s`` carries a rounding error of up to ``|q - zp| * 2**-24`` LSB, so two outputs
#: one code apart may differ by ``1.00002`` LSB.  Integer differences are unaffected.
FLOAT_SLACK_LSB = 1e-2

#: Default share of elements that the single-op contract requires to equal the reference
#: exactly (a float output: within :data:`FLOAT_SLACK_LSB` of it, i.e. the same code).
#: Measured with ORT 1.32 (2026-12-07) on every single-op test: 100 % for all conv/matmul/gemm/
#: add/mul/pool/concat/movement/activation rules (tests/test_rules.py, QDQ), the QOperator
#: conv/matmul/QGemm/add/sigmoid/leaky-relu/softmax/global-pool cases, Q/DQ node cases and the
#: accumulator-bound tests.  Lower only where the case's scales make exact ties that ORT's float32
#: arithmetic rounds either way (94-98.96 %: QLinearMul/Concat/Where/excluded-pad AveragePool,
#: 72-100 % for u8→i16 ×2.5 requantize); those tests pin their measured share.  Cases with
#: power-of-two scales (ORT exact, ties half to even) measure 100 %, provided the output zero
#: point is even: ORT's QLinearAdd/QLinearMul kernels round ``v + zp`` rather than
#: ``round(v) + zp``, so an odd one flips every tie (78.5-78.8 % exact on such a case).
#: Re-measure with ``pytest -p tvm_qdq.testing.exact_share <test files>``.
MIN_FRAC_EXACT = 0.999

# --------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------

# Element types the onnxruntime Python binding converts to/from numpy by itself.
_ORT_NATIVE = {
    "float",
    "double",
    "float16",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "bool",
    "string",
}
_ONNX_TYPE_BY_NAME = {name.lower(): value for name, value in TensorProto.DataType.items()}


def _ort_session_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def _is_ort_native(dtype: np.dtype) -> bool:
    # ml_dtypes types (float8, bfloat16, int4 ...) are user-defined dtypes (isbuiltin == 2);
    # note that float8_e5m2 reports kind "f", so the kind cannot tell them apart.
    return dtype.isbuiltin != 2


_SUB_BYTE_BITS = {
    TensorProto.INT4: 4,
    TensorProto.UINT4: 4,
    TensorProto.FLOAT4E2M1: 4,
    TensorProto.INT2: 2,
    TensorProto.UINT2: 2,
}


def _to_ort_value(array: np.ndarray, keep_alive: list[Any]) -> ort.OrtValue:
    """OrtValue for an ``ml_dtypes`` array (float8, bfloat16, int4, int2, float4 ...)."""
    elem = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
    bits = onnx.helper.tensor_dtype_to_np_dtype(elem).itemsize * 8
    if elem in _SUB_BYTE_BITS:
        bits = _SUB_BYTE_BITS[elem]
    array = np.ascontiguousarray(array)
    if bits % 8 == 0:
        # Same storage size: ORT reinterprets the bytes (no copy -> keep the buffer alive).
        raw = array.view(np.dtype(f"u{bits // 8}"))
        keep_alive.append(raw)
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, elem)
    # Sub-byte types: ORT stores them packed (low nibble / low bits first), like ONNX raw_data.
    packed = numpy_helper.from_array(array).raw_data
    value = ort.OrtValue.ortvalue_from_shape_and_type(list(array.shape), elem)
    if len(packed) != value.tensor_size_in_bytes():
        raise ValueError(
            f"packed size mismatch for {array.dtype}{list(array.shape)}: "
            f"{len(packed)} != {value.tensor_size_in_bytes()}"
        )
    if packed:
        ctypes.memmove(value.data_ptr(), packed, len(packed))
    return value


def _from_ort_value(value: Any) -> np.ndarray:
    type_str = value.data_type()  # e.g. "tensor(float8e4m3fn)"
    name = type_str[len("tensor(") : -1] if type_str.startswith("tensor(") else type_str
    if name in _ORT_NATIVE:
        return np.asarray(value.numpy())
    elem = _ONNX_TYPE_BY_NAME.get(name)
    if elem is None:
        raise TypeError(f"cannot convert ORT output of type {type_str}")
    shape = list(value.shape())
    nbytes = value.tensor_size_in_bytes()
    raw = ctypes.string_at(value.data_ptr(), nbytes) if nbytes else b""
    tensor = onnx.helper.make_tensor("out", elem, shape, raw, raw=True)
    return numpy_helper.to_array(tensor)


def run_ort(
    model: onnx.ModelProto | str | os.PathLike[str],
    feeds: Mapping[str, np.ndarray],
    *,
    threads: int = 1,
    optimization_level: ort.GraphOptimizationLevel | None = None,
) -> list[np.ndarray]:
    """Run ``model`` with ONNX Runtime's CPUExecutionProvider and return all graph outputs.

    Session: ``intra_op_num_threads=threads``, ``inter_op_num_threads=1``, sequential execution,
    ``session.intra_op.allow_spinning = "0"`` (and inter-op), ORT's default graph optimizations
    unless ``optimization_level`` is given.

    Inputs and outputs of types the ORT Python binding cannot express in numpy (``float8*``,
    ``bfloat16``, ``int4``/``uint4``, ``int2``/``uint2``, ``float4e2m1``) are exchanged as
    ``ml_dtypes`` arrays: they are passed to ORT as raw (packed for sub-byte types) OrtValues and
    decoded back with :func:`onnx.numpy_helper.to_array`.
    """
    so = _ort_session_options(threads)
    if optimization_level is not None:
        so.graph_optimization_level = optimization_level
    source: str | bytes
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
    sess = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    arrays = {name: np.asarray(value) for name, value in feeds.items()}
    out_types = [o.type for o in sess.get_outputs()]
    native = all(_is_ort_native(a.dtype) for a in arrays.values()) and not any(
        t.startswith("tensor(") and t[len("tensor(") : -1] not in _ORT_NATIVE for t in out_types
    )
    if native:
        return [np.asarray(x) for x in sess.run(None, dict(arrays))]
    keep_alive: list[Any] = []  # buffers the OrtValues alias, alive until the run returns
    ort_feeds = {
        name: ort.OrtValue.ortvalue_from_numpy(a)
        if _is_ort_native(a.dtype)
        else _to_ort_value(a, keep_alive)
        for name, a in arrays.items()
    }
    outputs = sess.run_with_ort_values(None, ort_feeds)
    return [_from_ort_value(v) for v in outputs]


# --------------------------------------------------------------------------------------------
# Quantization parameters of graph outputs
# --------------------------------------------------------------------------------------------

_QDQ_DOMAINS = {"", "ai.onnx", "com.microsoft"}
# (op_type, domain) -> (index of output scale input, index of output zero-point input).
# Positions checked against the schemas registered in onnxruntime 1.32.
_QLINEAR_OUTPUT_QPARAMS: dict[tuple[str, str], tuple[int, int]] = {
    ("QLinearConv", ""): (6, 7),
    ("QLinearMatMul", ""): (6, 7),
    ("QLinearConv", "com.microsoft"): (6, 7),
    ("QLinearAdd", "com.microsoft"): (6, 7),
    ("QLinearMul", "com.microsoft"): (6, 7),
    ("QLinearSigmoid", "com.microsoft"): (3, 4),
    ("QLinearLeakyRelu", "com.microsoft"): (3, 4),
    ("QLinearSoftmax", "com.microsoft"): (3, 4),
    ("QLinearAveragePool", "com.microsoft"): (3, 4),
    ("QLinearGlobalAveragePool", "com.microsoft"): (3, 4),
    ("QLinearReduceMean", "com.microsoft"): (3, 4),
    ("QLinearConcat", "com.microsoft"): (0, 1),
    ("QLinearWhere", "com.microsoft"): (7, 8),
    ("QGemm", "com.microsoft"): (7, 8),
}


@dataclass(frozen=True)
class QuantInfo:
    """Quantization of one graph output.

    ``float_output`` is true when the output is the *dequantized* float tensor
    ``(q - zero_point) * scale`` (producer ``DequantizeLinear``), false when the output is the
    quantized tensor itself (``QuantizeLinear`` or a ``QLinear*`` op).  ``axis``/``block_size``
    follow the ``DequantizeLinear``/``QuantizeLinear`` attributes (``axis`` defaults to 1 and is
    only meaningful for non-scalar scales; ``block_size`` 0 means per-tensor or per-axis).
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int
    block_size: int
    producer: str
    float_output: bool


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        g = model.graph
        self.producer = {out: node for node in g.node for out in node.output if out}
        self.initializers = {t.name: t for t in g.initializer}
        self._elem_types: dict[str, int] | None = None

    def constant(self, name: str) -> np.ndarray | None:
        """Value of ``name`` if it is an initializer or a (chain of Identity to a) Constant."""
        seen: set[str] = set()
        while name and name not in seen:
            seen.add(name)
            if name in self.initializers:
                return numpy_helper.to_array(self.initializers[name])
            node = self.producer.get(name)
            if node is None:
                return None
            if node.op_type == "Identity" and node.domain in ("", "ai.onnx"):
                name = node.input[0]
                continue
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                return _constant_node_value(node)
            return None
        return None

    def elem_type(self, name: str) -> int | None:
        if self._elem_types is None:
            model = self.model
            try:
                model = onnx.shape_inference.infer_shapes(model)
            except Exception:  # noqa: BLE001 - best effort (custom domains, >2 GB ...)
                pass
            g = model.graph
            types = {
                vi.name: vi.type.tensor_type.elem_type
                for vi in (*g.input, *g.value_info, *g.output)
                if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type
            }
            types.update({t.name: t.data_type for t in g.initializer})
            self._elem_types = types
        return self._elem_types.get(name)


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(onnx.helper.get_attribute_value(a))
    return default


def _input(node: onnx.NodeProto, i: int) -> str:
    return node.input[i] if i < len(node.input) else ""


def _default_zero_point(scale: np.ndarray, elem_type: int | None) -> np.ndarray:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type or TensorProto.UINT8)
    return np.zeros(scale.shape, dtype=dtype)


def output_quant_info(model: onnx.ModelProto) -> dict[str, QuantInfo | None]:
    """Like :func:`output_qparams`, with axis / block size / producer details."""
    graph = _Graph(model)
    result: dict[str, QuantInfo | None] = {}
    for out in model.graph.output:
        name = out.name
        node = graph.producer.get(name)
        while node is not None and node.op_type == "Identity" and node.domain in ("", "ai.onnx"):
            node = graph.producer.get(node.input[0])
        info: QuantInfo | None = None
        if node is not None and node.domain in _QDQ_DOMAINS:
            key = (node.op_type, "com.microsoft" if node.domain == "com.microsoft" else "")
            if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
                scale_idx, zp_idx = 1, 2
            else:
                scale_idx, zp_idx = _QLINEAR_OUTPUT_QPARAMS.get(key, (-1, -1))
            scale = graph.constant(_input(node, scale_idx)) if scale_idx >= 0 else None
            if scale is not None:
                zp_name = _input(node, zp_idx)
                zp = graph.constant(zp_name) if zp_name else None
                if zp_name and zp is None:
                    scale = None  # dynamic zero point: parameters not known statically
                elif zp is None:
                    if node.op_type == "DequantizeLinear":
                        zp_type = graph.elem_type(node.input[0])
                    elif node.op_type == "QuantizeLinear":
                        zp_type = _attr(node, "output_dtype", 0) or TensorProto.UINT8
                    else:
                        zp_type = graph.elem_type(node.output[0])
                    zp = _default_zero_point(scale, zp_type)
            if scale is not None and zp is not None:
                info = QuantInfo(
                    scale=scale,
                    zero_point=zp,
                    axis=_attr(node, "axis", 1),
                    block_size=_attr(node, "block_size", 0),
                    producer=node.op_type,
                    float_output=node.op_type == "DequantizeLinear",
                )
        result[name] = info
    return result


def output_qparams(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """``{graph output name: (scale, zero_point) or None}``.

    * output produced by ``DequantizeLinear`` (domain ``""`` or ``com.microsoft``, possibly
      through ``Identity``): that node's ``x_scale`` and ``x_zero_point``;
    * output that is itself quantized, produced by ``QuantizeLinear`` or a ``QLinear*``/``QGemm``
      operator: its output ``y_scale``/``y_zero_point``;
    * otherwise, or when scale / zero point are computed at run time (neither initializers nor
      ``Constant`` nodes), ``None``.

    A missing zero point is returned as zeros of the quantized type (``uint8`` for a
    ``QuantizeLinear`` without ``output_dtype``).  Use :func:`output_quant_info` for the axis.
    """
    return {
        name: None if info is None else (info.scale, info.zero_point)
        for name, info in output_quant_info(model).items()
    }


# --------------------------------------------------------------------------------------------
# LSB differences and the contracts
# --------------------------------------------------------------------------------------------

_ML_INT_NAMES = {"int2", "uint2", "int4", "uint4"}


def _is_int(dtype: np.dtype) -> bool:
    return dtype.kind in "iub" or dtype.name in _ML_INT_NAMES


def _is_narrow_float(dtype: np.dtype) -> bool:
    # float8_* / float4_e2m1fn (ml_dtypes); numpy itself has no one-byte float.
    return dtype.itemsize == 1 and dtype.name.startswith("float")


@functools.cache
def _code_table(dtype: np.dtype) -> np.ndarray:
    """Sorted distinct finite values representable in a one-byte float type."""
    values = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float64)
    return np.unique(values[np.isfinite(values)])


def _code_index(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    table = _code_table(dtype)
    idx = np.searchsorted(table, np.where(np.isfinite(values), values, 0.0)).astype(np.float64)
    idx = np.where(values == np.inf, len(table), idx)
    return np.where(values == -np.inf, -1.0, idx)


def _broadcast_scale(
    scale: np.ndarray | float,
    shape: tuple[int, ...],
    axis: int | None,
    block_size: int | None,
) -> np.ndarray:
    """Scale broadcastable to ``shape``, following ``DequantizeLinear``'s rules.

    * one element: per tensor;
    * 1-D of length ``shape[axis]`` (``axis`` default 1, negative allowed): per axis;
    * same rank as the data: per block, each scale repeated ``block_size`` times along the
      dimensions where it is smaller than the data (``block_size`` default
      ``ceil(shape[d] / scale.shape[d])``), the last block possibly partial.
    """
    s = np.asarray(scale).astype(np.float64)
    if not np.all(s > 0):
        raise ValueError("quantization scale must be positive")
    ndim = len(shape)
    if s.size == 1:
        return s.reshape(())
    if s.ndim == 1:
        ax = 1 if axis is None else axis
        ax = ax + ndim if ax < 0 else ax
        if not 0 <= ax < ndim or shape[ax] != s.size:
            raise ValueError(
                f"per-axis scale of length {s.size} does not fit shape {shape} "
                f"on axis {axis if axis is not None else 1}"
            )
        return s.reshape([-1 if d == ax else 1 for d in range(ndim)])
    if s.ndim == ndim:
        for d in range(ndim):
            if s.shape[d] in (1, shape[d]):
                continue
            block = block_size or math.ceil(shape[d] / s.shape[d])
            if math.ceil(shape[d] / block) != s.shape[d]:
                raise ValueError(f"blocked scale shape {s.shape} does not fit shape {shape}")
            s = np.repeat(s, block, axis=d).take(np.arange(shape[d]), axis=d)
        return s
    raise ValueError(f"scale of shape {s.shape} does not fit data of shape {shape}")


def lsb_diff(
    actual: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray | float | None = None,
    zero_point: np.ndarray | int | None = None,
    axis: int | None = None,
    *,
    block_size: int | None = None,
) -> np.ndarray:
    """Elementwise ``|actual - expected|`` in quantization steps (LSB), shape of ``expected``.

    * integer ``expected`` (numpy ints/bool, ``ml_dtypes`` int4/uint4/int2/uint2): ``int64``
      array ``|a - e|`` computed in ``int64``, so no type wraps (for ``uint64`` operands:
      ``uint64`` array ``max(a, e) - min(a, e)``); ``scale`` unused;
    * one-byte float ``expected`` (``float8_*``, ``float4_e2m1fn``): ``float64`` distance in
      representable codes; ``scale`` unused;
    * other float ``expected``: ``float64`` ``|a - e| / scale`` with ``scale`` broadcast per
      tensor / per axis (``axis``, default 1) / per block (``block_size``); ``scale`` required.

    ``zero_point`` cancels out of a difference and is accepted only so that the result of
    :func:`output_qparams` can be passed through.  NaN vs NaN and equal infinities give 0,
    NaN vs a number gives ``inf``.
    """
    del zero_point  # (a - zp) * s - (e - zp) * s == (a - e) * s
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        raise ValueError(f"shape mismatch: actual {a.shape} vs expected {e.shape}")
    if _is_int(e.dtype):
        if not _is_int(a.dtype):
            raise TypeError(f"expected is integer ({e.dtype}) but actual is {a.dtype}")
        if e.dtype == np.uint64 or a.dtype == np.uint64:
            au, eu = a.astype(np.uint64), e.astype(np.uint64)
            return np.maximum(au, eu) - np.minimum(au, eu)
        return np.abs(a.astype(np.int64) - e.astype(np.int64))
    af = a.astype(np.float64)
    ef = e.astype(np.float64)
    if _is_narrow_float(e.dtype):
        d = np.abs(_code_index(af, e.dtype) - _code_index(ef, e.dtype))
    else:
        if scale is None:
            raise ValueError("scale is required to express float differences in LSB")
        with np.errstate(invalid="ignore"):
            d = np.abs(af - ef) / _broadcast_scale(scale, e.shape, axis, block_size)
    with np.errstate(invalid="ignore"):
        d = np.where(af == ef, 0.0, d)
    d = np.where(np.isnan(af) & np.isnan(ef), 0.0, d)
    return np.where(np.isnan(af) ^ np.isnan(ef), np.inf, d)


@dataclass(frozen=True)
class Agreement:
    """Summary of :func:`lsb_diff` between an output and its reference.

    ``max_lsb = max(lsb)``, ``frac_within_1 = mean(lsb <= 1 + slack)`` over the ``n`` elements
    (1.0 when ``n == 0``), ``frac_exact = mean(lsb <= t)`` with ``t = slack`` for dequantized
    float outputs (float32 rounding of the same code) and ``t = 0`` otherwise, so
    ``frac_within_1 - frac_exact`` is the share of 1-LSB (near-tie) differences; ``top1_equal``
    is the classifier row check (``None`` if not asked),
    ``worst_index`` the index of the (first) largest difference (``None`` when ``n == 0``) and
    ``top1_mismatch_rows`` the number of rows whose top-1 sets do not intersect.
    """

    max_lsb: float
    frac_within_1: float
    n: int
    top1_equal: bool | None
    worst_index: tuple[int, ...] | None = None
    top1_mismatch_rows: int = 0
    frac_exact: float = 1.0

    def __str__(self) -> str:
        s = f"max {self.max_lsb:.4g} LSB"
        if self.worst_index is not None:
            s += f" at index {self.worst_index}"
        s += f", {self.frac_exact:.4%} exact, {self.frac_within_1:.4%} of {self.n} within 1 LSB"
        if self.top1_equal is not None:
            s += f", top-1 {'equal' if self.top1_equal else 'DIFFERS'}"
            if self.top1_mismatch_rows:
                s += f" in {self.top1_mismatch_rows} row(s)"
        return s


def _top1_mismatch_rows(actual: np.ndarray, expected: np.ndarray) -> int:
    """Rows (last axis = classes) where the sets of maximal entries do not intersect.

    Comparing tie *sets* rather than ``argmax`` indices keeps quantized logits with equal
    top values from failing spuriously: a row passes when some class is maximal in both.
    """
    a = np.asarray(actual).astype(np.float64)
    e = np.asarray(expected).astype(np.float64)
    if a.ndim == 0 or a.size == 0:
        return 0
    a = a.reshape(-1, a.shape[-1])
    e = e.reshape(-1, e.shape[-1])
    top_a = a == a.max(axis=-1, keepdims=True)
    top_e = e == e.max(axis=-1, keepdims=True)
    return int(np.count_nonzero(~np.any(top_a & top_e, axis=-1)))


def agreement(
    actual: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray | float | None = None,
    zero_point: np.ndarray | int | None = None,
    axis: int | None = None,
    *,
    block_size: int | None = None,
    classify: bool = False,
    slack: float = FLOAT_SLACK_LSB,
) -> Agreement:
    """:class:`Agreement` of ``actual`` with ``expected`` (see :func:`lsb_diff` for the units).

    With ``classify=True`` the last axis is the class axis and ``top1_equal`` is true when, in
    every row, some class is maximal in both ``actual`` and ``expected``.
    """
    d = lsb_diff(actual, expected, scale, zero_point, axis, block_size=block_size)
    n = int(d.size)
    e_dtype = np.asarray(expected).dtype
    exact_tol = 0.0 if _is_int(e_dtype) or _is_narrow_float(e_dtype) else slack
    if n == 0:
        max_lsb, frac, frac_exact, worst = 0.0, 1.0, 1.0, None
    else:
        flat = int(np.argmax(d))
        worst = tuple(int(i) for i in np.unravel_index(flat, d.shape))
        max_lsb = float(d.reshape(-1)[flat])
        frac = float(np.count_nonzero(d <= 1 + slack)) / n
        frac_exact = float(np.count_nonzero(d <= exact_tol)) / n
    top1: bool | None = None
    mismatches = 0
    if classify:
        mismatches = _top1_mismatch_rows(actual, expected)
        top1 = mismatches == 0
    return Agreement(max_lsb, frac, n, top1, worst, mismatches, frac_exact)


def _describe(actual: np.ndarray, expected: np.ndarray, ag: Agreement) -> str:
    text = str(ag)
    if ag.worst_index is not None:
        idx = ag.worst_index
        text += f" (actual={actual[idx]!r}, expected={expected[idx]!r})"
    return text


def _check_meta(actual: np.ndarray, expected: np.ndarray, check_dtype: bool, name: str) -> None:
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}shape mismatch: actual {actual.shape} vs {expected.shape}")
    if check_dtype and actual.dtype != expected.dtype:
        raise AssertionError(f"{name}dtype mismatch: actual {actual.dtype} vs {expected.dtype}")


def assert_single_op_contract(
    actual: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray | float | None = None,
    zero_point: np.ndarray | int | None = None,
    axis: int | None = None,
    *,
    block_size: int | None = None,
    exact: bool = False,
    check_dtype: bool = True,
    slack: float = FLOAT_SLACK_LSB,
    min_frac_exact: float = MIN_FRAC_EXACT,
    name: str = "",
) -> Agreement:
    """Single-operator contract: ``lsb_diff <= 1`` everywhere and ``frac_exact >= min_frac_exact``
    (:class:`Agreement`: the share of elements with ``lsb_diff == 0``, for dequantized float
    outputs ``<= slack``), or equality everywhere if ``exact``.

    ``min_frac_exact`` defaults to :data:`MIN_FRAC_EXACT` (0.999), right for every op ORT
    computes exactly up to ties; an op whose reference is float arithmetic passes its measured
    share (0 turns the check off).  Shapes must match and, with ``check_dtype``, dtypes too.
    ``exact`` compares values (NaN == NaN, -0.0 == 0.0) and needs no ``scale``; otherwise float
    outputs need ``scale``.
    Returns the :class:`Agreement` (with ``exact`` and no scale, ``max_lsb`` is the max absolute
    difference in value units for float outputs).
    """
    a, e = np.asarray(actual), np.asarray(expected)
    prefix = f"{name}: " if name else ""
    _check_meta(a, e, check_dtype, prefix)
    if exact:
        if scale is None and not _is_int(e.dtype) and not _is_narrow_float(e.dtype):
            scale = 1.0  # differences reported in value units
            axis = block_size = None
        ag = agreement(a, e, scale, zero_point, axis, block_size=block_size, slack=0.0)
        if ag.max_lsb != 0:
            raise AssertionError(f"{prefix}not exact: {_describe(a, e, ag)}")
        return ag
    ag = agreement(a, e, scale, zero_point, axis, block_size=block_size, slack=slack)
    if ag.max_lsb > 1 + slack:
        raise AssertionError(f"{prefix}more than 1 LSB off: {_describe(a, e, ag)}")
    if ag.frac_exact < min_frac_exact:
        raise AssertionError(
            f"{prefix}only {ag.frac_exact:.4%} exact (< {min_frac_exact:.2%}; the rest 1 LSB "
            f"off: a systematic bias, not near-ties): {_describe(a, e, ag)}"
        )
    return ag


def assert_model_contract(
    actual: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray | float | None,
    zero_point: np.ndarray | int | None = None,
    axis: int | None = None,
    *,
    block_size: int | None = None,
    classify: bool = False,
    max_lsb: float = 2.0,
    min_frac_within_1: float = 0.99,
    check_dtype: bool = True,
    slack: float = FLOAT_SLACK_LSB,
    name: str = "",
) -> Agreement:
    """Whole-model contract on one output.

    Requires ``max(lsb) <= max_lsb`` (2), ``mean(lsb <= 1) >= min_frac_within_1`` (0.99) and,
    if ``classify``, that every row (last axis = classes) has a class maximal in both outputs.
    ``scale`` may be ``None`` for integer outputs.  Returns the :class:`Agreement`.
    """
    a, e = np.asarray(actual), np.asarray(expected)
    prefix = f"{name}: " if name else ""
    _check_meta(a, e, check_dtype, prefix)
    ag = agreement(
        a, e, scale, zero_point, axis, block_size=block_size, classify=classify, slack=slack
    )
    problems = []
    if ag.max_lsb > max_lsb + slack:
        problems.append(f"max diff {ag.max_lsb:.4g} LSB > {max_lsb:g}")
    if ag.frac_within_1 < min_frac_within_1:
        problems.append(f"only {ag.frac_within_1:.4%} within 1 LSB (< {min_frac_within_1:.2%})")
    if classify and not ag.top1_equal:
        problems.append(f"top-1 class differs in {ag.top1_mismatch_rows} row(s)")
    if problems:
        raise AssertionError(f"{prefix}{'; '.join(problems)} [{_describe(a, e, ag)}]")
    return ag


def assert_builds_agree(model: onnx.ModelProto, vm_new, vm_plain, name: str,
                        min_cosine: float, seeds: tuple[int, ...] = (1, 2)) -> None:
    """Two builds of ``model`` (Relax VMs ``vm_new`` and ``vm_plain``, e.g. with and without
    a schedule) give bit-identical first outputs on random feeds, and ``vm_new``'s meets the
    ORT contract against ORT's reference path (optimizations off): the LSB contract for a
    quantized output, cosine ≥ ``min_cosine`` for a float one."""
    import tvm

    from .models import random_feeds

    names = [i.name for i in model.graph.input]
    qparams = output_qparams(model).get(model.graph.output[0].name)
    for seed in seeds:
        feeds = random_feeds(model, seed=seed)
        args = [tvm.runtime.tensor(feeds[n]) for n in names]
        got, want = vm_new["main"](*args), vm_plain["main"](*args)
        got = got[0] if isinstance(got, tvm.ir.Array | list | tuple) else got
        want = want[0] if isinstance(want, tvm.ir.Array | list | tuple) else want
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        reference = run_ort(model, feeds,
                            optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)[0]
        if qparams is not None:
            assert_model_contract(got.numpy(), reference, *qparams, name=f"{name}/{seed}")
        else:
            a, b = got.numpy().ravel().astype(np.float64), reference.ravel().astype(np.float64)
            cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            assert cosine >= min_cosine, cosine
