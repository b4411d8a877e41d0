"""Independent numpy references for QOperator nodes ONNX Runtime cannot run.

ONNX Runtime 1.32 has no kernel for some legal nodes: ``QLinearConv``/``QLinearMatMul`` with
int8 activations and uint8 weights, ``QLinearMatMul`` with a per-row ``a`` scale / zero point,
``ConvInteger`` with a per-channel weight zero point.  The importer turns these nodes into
``Q(op(DQ(...)))``; an oracle built the same way would share its mistakes.  The functions here
are written from the operator definitions instead (ONNX ``QLinearConv``, ``QLinearMatMul``,
``ConvInteger``), in exact integer arithmetic:

* integer convolution / matrix product: ``acc = Σ (x - zx)(w - zw)`` in ``int64``
  (no overflow, no float rounding), plus the ``int32`` bias;
* output: ``y = saturate(round_half_even(acc · sx · sw / sy) + zy)``, the real multiplier
  evaluated in ``float64`` from the ``float32``/``float16`` parameters (per channel / per row /
  per column as broadcast), the product ``acc · m`` rounded once.

:func:`run_single_node` evaluates a single-node model (activations from the feeds, everything
else from initializers) with these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = [
    "conv_integer",
    "qlinear_conv",
    "qlinear_matmul",
    "requantize_accumulator",
    "run_single_node",
]


def _i64(a: np.ndarray | np.generic | int) -> np.ndarray:
    return np.asarray(a).astype(np.int64)


def _per_channel(v: np.ndarray | np.generic | int, ndim: int, axis: int) -> np.ndarray:
    """Scalar / one-element ``v`` as is, a 1-D ``v`` reshaped to broadcast along ``axis``."""
    v = np.asarray(v)
    if v.size == 1:
        return v.reshape(())
    return v.reshape([-1 if d == axis % ndim else 1 for d in range(ndim)])


def requantize_accumulator(acc: np.ndarray, multiplier: np.ndarray | float, zero_point,
                           dtype: np.dtype | type) -> np.ndarray:
    """``saturate(round_half_even(acc · multiplier) + zero_point)`` into ``dtype``.

    ``acc`` is an exact integer accumulator, ``multiplier`` the real scale ratio (float64),
    broadcast against ``acc``; ``np.rint`` rounds half to even.
    """
    info = np.iinfo(dtype)
    real = acc.astype(np.float64) * np.asarray(multiplier, dtype=np.float64)
    q = np.rint(real) + np.asarray(zero_point).astype(np.float64)
    return np.clip(q, info.min, info.max).astype(dtype)


def conv_integer(x: np.ndarray, w: np.ndarray, x_zero_point=0, w_zero_point=0, *,
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, group: int = 1) -> np.ndarray:
    """Integer N-D convolution ``acc[n, o, p] = Σ_{c, k} (x[n, c, p·s + k·d - pad] - zx)
    · (w[o, c, k] - zw[o])`` in ``int64``, ``x`` zero-padded *after* the zero point is
    subtracted (padding contributes 0, as in ``ConvInteger``'s definition with
    ``x_zero_point`` as the pad value).  ``x``: ``[N, C, *spatial]``, ``w``:
    ``[M, C / group, *kernel]``, ``w_zero_point`` scalar or per output channel ``[M]``,
    ``pads`` ``[begin..., end...]``.  Returns ``int64`` ``[N, M, *out]``.
    """
    xs = _i64(x) - _i64(x_zero_point)
    ws = _i64(w) - _per_channel(_i64(w_zero_point), w.ndim, 0)
    n_sp = x.ndim - 2
    strides = list(strides or [1] * n_sp)
    dilations = list(dilations or [1] * n_sp)
    pads = list(pads or [0] * (2 * n_sp))
    xp = np.pad(xs, [(0, 0), (0, 0)] + [(pads[i], pads[i + n_sp]) for i in range(n_sp)])
    kernel = w.shape[2:]
    out_sp = [(xp.shape[2 + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
              for i in range(n_sp)]
    m, c_per_group = w.shape[0], w.shape[1]
    m_per_group = m // group
    acc = np.zeros((x.shape[0], m, *out_sp), dtype=np.int64)
    for k_idx in np.ndindex(*kernel):
        window = tuple(slice(k_idx[i] * dilations[i],
                             k_idx[i] * dilations[i] + strides[i] * (out_sp[i] - 1) + 1,
                             strides[i]) for i in range(n_sp))
        patch = xp[(slice(None), slice(None), *window)]  # [N, C, *out]
        for g in range(group):
            xg = patch[:, g * c_per_group:(g + 1) * c_per_group]
            wg = ws[g * m_per_group:(g + 1) * m_per_group][(slice(None), slice(None), *k_idx)]
            acc[:, g * m_per_group:(g + 1) * m_per_group] += np.einsum("nc...,mc->nm...", xg, wg)
    return acc


def qlinear_conv(x: np.ndarray, x_scale, x_zero_point, w: np.ndarray, w_scale, w_zero_point,
                 y_scale, y_zero_point, bias: np.ndarray | None = None, **attrs) -> np.ndarray:
    """ONNX ``QLinearConv``: ``y = saturate(round_half_even((acc + B) · sx · sw[o] / sy) + zy)``
    with ``acc`` from :func:`conv_integer` (per-channel ``w_scale``/``w_zero_point`` on the
    output channel axis) and the ``int32`` bias ``B`` per output channel.  ``attrs``:
    ``strides``, ``pads``, ``dilations``, ``group``.  Output type: ``y_zero_point``'s.
    """
    acc = conv_integer(x, w, x_zero_point, w_zero_point, **attrs)
    if bias is not None:
        acc = acc + _per_channel(_i64(bias), acc.ndim, 1)
    ratio = (np.float64(np.asarray(x_scale)) * np.asarray(w_scale, dtype=np.float64)
             / np.float64(np.asarray(y_scale)))
    return requantize_accumulator(acc, _per_channel(ratio, acc.ndim, 1), y_zero_point,
                                  np.asarray(y_zero_point).dtype)


def qlinear_matmul(a: np.ndarray, a_scale, a_zero_point, b: np.ndarray, b_scale, b_zero_point,
                   y_scale, y_zero_point) -> np.ndarray:
    """ONNX ``QLinearMatMul``: ``y[..., m, n] = saturate(round_half_even(Σ_k (a[..., m, k] -
    za[m]) · (b[..., k, n] - zb[n]) · sa[m] · sb[n] / sy) + zy)`` in exact integers.

    ``a``'s parameters are per tensor or per row (a 1-D ``[M]``, axis -2); ``b``'s per tensor
    or per column (1-D ``[N]`` or the N-D ``[..., 1, N]`` form), broadcast numpy-style.
    """
    def row(v):
        v = np.asarray(v)
        return v.reshape(()) if v.size == 1 else v.reshape(-1, 1)

    def col(v):
        v = np.asarray(v)
        return v.reshape(()) if v.size == 1 else v

    acc = np.matmul(_i64(a) - _i64(row(a_zero_point)), _i64(b) - _i64(col(b_zero_point)))
    ratio = (row(a_scale).astype(np.float64) * col(b_scale).astype(np.float64)
             / np.float64(np.asarray(y_scale)))
    return requantize_accumulator(acc, ratio, y_zero_point, np.asarray(y_zero_point).dtype)


# --------------------------------------------------------------------------------------------
# Single-node models
# --------------------------------------------------------------------------------------------


def _conv_attrs(attrs: Mapping[str, object]) -> dict[str, object]:
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("auto_pad is not supported by the numpy reference")
    return {k: attrs[k] for k in ("strides", "pads", "dilations", "group") if k in attrs}


def _qlinear_conv_node(v: list[np.ndarray | None], attrs: Mapping[str, object]) -> np.ndarray:
    return qlinear_conv(*v[:8], bias=v[8] if len(v) > 8 else None, **_conv_attrs(attrs))


def _conv_integer_node(v: list[np.ndarray | None], attrs: Mapping[str, object]) -> np.ndarray:
    x, w = v[0], v[1]
    xz = v[2] if len(v) > 2 and v[2] is not None else 0
    wz = v[3] if len(v) > 3 and v[3] is not None else 0
    return conv_integer(x, w, xz, wz, **_conv_attrs(attrs)).astype(np.int32)


def _qlinear_matmul_node(v: list[np.ndarray | None], attrs: Mapping[str, object]) -> np.ndarray:
    del attrs
    return qlinear_matmul(*v[:8])


_NODES: dict[str, Callable[[list[np.ndarray | None], Mapping[str, object]], np.ndarray]] = {
    "QLinearConv": _qlinear_conv_node,
    "QLinearMatMul": _qlinear_matmul_node,
    "ConvInteger": _conv_integer_node,
}


def run_single_node(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Evaluate the one node of ``model`` (default domain ``QLinearConv``, ``QLinearMatMul``
    or ``ConvInteger``) with the references above; inputs come from ``feeds`` or initializers,
    empty names are absent optional inputs.  Returns ``[y]``.
    """
    (node,) = model.graph.node
    if node.domain not in ("", "ai.onnx") or node.op_type not in _NODES:
        raise NotImplementedError(f"no numpy reference for {node.domain}:{node.op_type}")
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values: list[np.ndarray | None] = []
    for name in node.input:
        if not name:
            values.append(None)
        elif name in feeds:
            values.append(np.asarray(feeds[name]))
        elif name in inits:
            values.append(inits[name])
        else:
            raise ValueError(f"input {name!r} is neither fed nor an initializer")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return [_NODES[node.op_type](values, attrs)]
