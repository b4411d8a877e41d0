"""Pools on integer values.

* max pool (forward): ``max`` commutes with the increasing map ``q ↦ (q - zp)·s``, so it
  runs on ``q`` directly (padding never wins: it pads with the type's minimum).
* average pool (output rule): window sums of ``q - zp`` in int32 (a depthwise convolution
  with a ones kernel, zero padding), then ``y = round(sum · s_in / (count · s_out)) + zp_out``
  where ``count`` is the window size, or per position the number of real (unpadded)
  elements when ``count_include_pad`` is false.
* global average pool / mean over spatial axes (output rule): ``sum(q - zp)`` in int32, then
  the same requantize with ``count = H·W``.

The requantize of a sum is exact, ties included (DESIGN §2: round half to even). The
multiplier ``s_in / (count · s_out)`` of float32 scales is a rational ``a/b`` (both scales are
``m·2^e`` with 24-bit integers ``m``), so with ``u = 2·a·sum + b``::

    y = floor(u / 2b) - [u ≡ 0 (mod 2b) and floor(u / 2b) odd]

is ``round_half_even(sum · a / b)`` computed in int64, when ``2·a·max|sum| + b < 2^63``
(:func:`exact_ratio`; e.g. any 8-bit pool of ≤ 2^14 elements whose scales are within a factor
2^16 of each other). Otherwise the float64 requantize (``float64(sum) · float64(a/b)``) is
used; it misses a few exact ties (measured: 4.6 % of the ties of random scale pairs at
``count`` 9–196, e.g. ``-49686 / 196 = -253.5`` with equal scales rounded to -254).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from tvm import relax

from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.dims import is_static_shape, static_dims
from tvm_qdq.qnn.ops import const, requantize_by, shift_to_signed

from ..qtensor import QTensor, RewriteContext
from ..registry import forward_rule, output_rule

#: Largest magnitude of the int64 intermediates of the exact requantize.
INT64_LIMIT = 2**63 - 1


def exact_ratio(scale_in: float, scale_out: float, counts: np.ndarray, max_sum: int
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(a, b)`` int64 arrays with ``a/b = scale_in / (count · scale_out)`` in lowest terms per
    count, or None when ``2·a·max_sum + b`` could overflow int64."""
    counts = np.asarray(counts)
    a = np.empty(counts.shape, np.int64)
    b = np.empty(counts.shape, np.int64)
    ratio = Fraction(float(scale_in)) / Fraction(float(scale_out))
    for index, count in np.ndenumerate(counts):
        r = ratio / int(count)
        if 2 * r.numerator * max_sum + r.denominator > INT64_LIMIT or \
                2 * r.denominator > INT64_LIMIT:
            return None
        a[index], b[index] = r.numerator, r.denominator
    return a, b


def requantize_sum(ctx: RewriteContext, sums: relax.Expr, scale_in: float, counts: np.ndarray,
                   max_sum: int, out: QParams, name: str) -> relax.Expr:
    """``saturate(round_half_even(sum · s_in / (count · s_out)) + zp_out)``, exact in int64
    when :func:`exact_ratio` allows (module docstring), else the float64 requantize.

    ``max_sum`` bounds ``|sum|``; ``counts`` broadcasts against ``sums``.
    """
    counts = np.asarray(counts)
    pair = exact_ratio(scale_in, float(out.scale), counts, max_sum)
    if pair is None:
        multiplier = float(scale_in) / (counts.astype(np.float64) * float(out.scale))
        return requantize_by(ctx.bb, sums, np.zeros(()), multiplier, out, name)
    a, b = pair
    t = ctx.emit(relax.op.astype(sums, "int64"))
    u = ctx.emit(relax.op.add(relax.op.multiply(t, const(2 * a, "int64")), const(b, "int64")))
    twice_b = const(2 * b, "int64")
    y = ctx.emit(relax.op.floor_divide(u, twice_b))
    tie = relax.op.equal(relax.op.floor_mod(u, twice_b), const(0, "int64"))
    odd = relax.op.equal(relax.op.bitwise_and(y, const(1, "int64")), const(1, "int64"))
    y = ctx.emit(relax.op.subtract(y, relax.op.astype(relax.op.logical_and(tie, odd), "int64")))
    if out.has_zero_point:
        y = ctx.emit(relax.op.add(y, const(int(out.zero_point), "int64")))
    y = ctx.emit(relax.op.clip(y, out.qtype.qmin, out.qtype.qmax))
    return ctx.emit(relax.op.astype(y, out.qtype.container), name)


def _max_abs_shifted(params: QParams) -> int:
    """``max |q - zp|`` over the codes of ``params``' type (per-tensor)."""
    zp = int(params.zero_point)
    return max(abs(params.qtype.qmin - zp), abs(params.qtype.qmax - zp))


@forward_rule("relax.nn.max_pool2d", "relax.nn.max_pool1d")
def max_pool(ctx: RewriteContext, call) -> QTensor | None:
    q = ctx.qtensor(call.args[0])
    if q is None or not q.params.per_tensor:
        return None
    value = ctx.emit(relax.Call(call.op, [q.value], call.attrs, call.ty_args), "qnn_max_pool")
    ctx.record(call.op.name, str(value.name), "integer", "max on integers")
    return QTensor(value, q.params)


def _window_counts(shape, pool, strides, dilation, padding, include_pad) -> np.ndarray:
    """Number of elements each output window averages over (numpy, compile time).

    Uniform (one count, the window size) when padded positions count or there is no padding
    (every window then lies inside the input); per position otherwise, which needs the
    spatial sizes (:class:`~tvm_qdq.qnn.dims.NeedsStaticDim` when one is symbolic)."""
    if include_pad:
        return np.asarray(float(pool[0] * pool[1]))
    if not is_static_shape(shape[2:]) and not any(padding):
        return np.asarray(float(pool[0] * pool[1]))
    h, w = static_dims(shape, [2, 3], "average pool with uncounted padding")
    ones = np.pad(np.ones((h, w)), ((padding[0], padding[2]), (padding[1], padding[3])))
    oh = (h + padding[0] + padding[2] - dilation[0] * (pool[0] - 1) - 1) // strides[0] + 1
    ow = (w + padding[1] + padding[3] - dilation[1] * (pool[1] - 1) - 1) // strides[1] + 1
    counts = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            counts[i, j] = ones[
                i * strides[0] : i * strides[0] + dilation[0] * (pool[0] - 1) + 1 : dilation[0],
                j * strides[1] : j * strides[1] + dilation[1] * (pool[1] - 1) + 1 : dilation[1],
            ].sum()
    return counts.reshape(1, 1, oh, ow)


@output_rule("relax.nn.avg_pool2d")
def avg_pool2d(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    q = ctx.qtensor(call.args[0])
    a = call.attrs
    if q is None or not q.params.per_tensor or not out.per_tensor or bool(a.ceil_mode):
        return None
    if str(a.layout) != "NCHW":
        return None
    pool = [int(p) for p in a.pool_size]
    strides = [int(s) for s in a.strides]
    dilation = [int(d) for d in a.dilation]
    padding = [int(p) for p in a.padding]
    (channels,) = q.static_dims([1], "average pool")
    counts = _window_counts(q.shape, pool, strides, dilation, padding,
                            bool(a.count_include_pad))
    shifted = ctx.emit(relax.op.astype(shift_to_signed(ctx.bb, q.value, q.params), "int32"))
    sums = ctx.emit(
        relax.op.nn.conv2d(
            shifted,
            const(np.ones((channels, 1, *pool)), "int32"),
            strides=strides,
            padding=padding,
            dilation=dilation,
            groups=channels,
            out_dtype="int32",
        ),
        "qnn_window_sum",
    )
    ctx.record(call.op.name, str(sums.name), "integer", "int32 window sums")
    max_sum = int(np.max(counts)) * _max_abs_shifted(q.params)
    return requantize_sum(ctx, sums, float(q.params.scale), counts.astype(np.int64), max_sum,
                          out, "qnn_avg_pool")


@output_rule("relax.mean")
def mean(ctx: RewriteContext, call, out: QParams) -> relax.Expr | None:
    q = ctx.qtensor(call.args[0])
    if q is None or not q.params.per_tensor or not out.per_tensor or call.attrs.axis is None:
        return None
    axes = [int(ax) % q.ndim for ax in call.attrs.axis]
    count = int(np.prod(q.static_dims(axes, "mean")))
    shifted = ctx.emit(relax.op.astype(shift_to_signed(ctx.bb, q.value, q.params), "int32"))
    sums = ctx.emit(relax.op.sum(shifted, axis=axes, keepdims=bool(call.attrs.keepdims)),
                    "qnn_sum")
    ctx.record(call.op.name, str(sums.name), "integer", "int32 sum")
    return requantize_sum(ctx, sums, float(q.params.scale), np.asarray(count),
                          count * _max_abs_shifted(q.params), out, "qnn_mean")
