"""QNN ops emitted as Relax: the requantizes as the integer-IR ops of :mod:`.integer_ops`,
everything else as plain Relax integer arithmetic.

Each builder emits bindings into a :class:`relax.BlockBuilder` and returns the result var.
Names of the emitted vars start with ``qnn_`` so the rewritten module reads as QNN ops.
The math of each op is in its docstring; :mod:`.reference` has the same math in numpy.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from ..relax_utils import constant as const
from ..relax_utils import conv_pad_width
from ..relax_utils import partial_shape as shape_of
from ..relax_utils import tensor_dtype as dtype_of
from .integer_ops import Requantize, RequantizeSum
from .params import ACCUMULATORS, QParams

INT32_LIMIT = 2**31 - 1


def smallest_int_type(lo: int, hi: int) -> str:
    """Narrowest signed type (int8/int16/int32) that holds every value in [lo, hi]."""
    for name, bits in (("int8", 8), ("int16", 16), ("int32", 32)):
        if -(2 ** (bits - 1)) <= lo and hi < 2 ** (bits - 1):
            return name
    return "int64"


def requantize_by(
    bb: relax.BlockBuilder,
    value: relax.Expr,
    zero_point_in: np.ndarray,
    multiplier: np.ndarray,
    dst: QParams,
    name: str = "qnn_requantize",
    offset: np.ndarray | None = None,
) -> relax.Var:
    """``y = saturate(round_half_even((q - zp_in) · multiplier [+ offset]) + zp_out)`` into
    ``dst``, as one ``tvm_qdq.requantize`` (:mod:`.integer_ops`).

    ``zero_point_in``, ``multiplier`` and ``offset`` are already shaped to broadcast against
    ``q``. The product is taken in float64 with a float64 multiplier (exact scales of float32
    inputs), so the result is the exactly rounded real value except at ties closer than
    ~1e-12: more exact than ORT's float32 paths, which can round a near-tie the other way.
    """
    zp_out = dst.broadcast(dst.zero_point, len(shape_of(value))) if dst.has_zero_point \
        else np.zeros((), np.int64)
    op = Requantize(value, np.asarray(zero_point_in), np.asarray(multiplier, np.float64), zp_out,
                    dst.qtype.qmin, dst.qtype.qmax, dst.qtype.container,
                    None if offset is None else np.asarray(offset, np.float64))
    return bb.emit(op.call(), name_hint=name)


def requantize(
    bb: relax.BlockBuilder, value: relax.Expr, src: QParams, dst: QParams
) -> relax.Expr:
    """Requantize ``q`` from ``src`` to ``dst``:
    ``saturate(round_half_even((q - zp_in) · s_in / s_out) + zp_out)``.

    Identical parameters fold away (the value is returned as it is).
    """
    if src.same_as(dst):
        return value
    ndim = len(shape_of(value))
    s_in = src.broadcast(src.scale, ndim)
    s_out = dst.broadcast(dst.scale, ndim)
    multiplier = s_in.astype(np.float64) / s_out.astype(np.float64)
    return requantize_by(bb, value, src.broadcast(src.zero_point, ndim), multiplier, dst)


def zero_point_free_type(dtype: str, zero_point: np.ndarray) -> str:
    """The narrowest signed type (int16/int32/int64) holding ``q - zp`` for every ``q`` of
    ``dtype`` and every element ``zp`` of ``zero_point``."""
    info = np.iinfo(dtype)
    zp = np.asarray(zero_point, np.int64)
    lo, hi = int(info.min) - int(zp.max()), int(info.max) - int(zp.min())
    work = smallest_int_type(min(lo, int(info.min)), max(hi, int(info.max)))
    return "int16" if work == "int8" else work


def subtract_zero_point(bb: relax.BlockBuilder, value: relax.Expr, zero_point: np.ndarray
                        ) -> relax.Var:
    """``q - zp`` in :func:`zero_point_free_type` (``zero_point`` broadcasts against
    ``value``)."""
    zp = np.asarray(zero_point, np.int64)
    t = bb.emit(relax.op.astype(value, zero_point_free_type(dtype_of(value), zp)))
    work = dtype_of(t)
    if np.any(zp != 0):
        t = bb.emit(relax.op.subtract(t, const(zp, work)))
    return t


def shift_to_signed(bb: relax.BlockBuilder, value: relax.Expr, params: QParams) -> relax.Var:
    """``q - zp`` in the narrowest signed type that holds it exactly (int16/int32)."""
    return subtract_zero_point(bb, value, params.broadcast(params.zero_point,
                                                           len(shape_of(value))))


def accumulator_for(bound: int) -> str:
    """int32 when every partial sum provably stays below 2^31, else int64."""
    return "int32" if bound <= INT32_LIMIT else "int64"


def operand_magnitude(params: QParams) -> int:
    """Largest ``|q|`` a stored value can have (bounds raw, unshifted products)."""
    return max(abs(params.qtype.qmin), abs(params.qtype.qmax))


def accumulator_params(scale: np.ndarray, axis: int | None, dtype: str) -> QParams:
    scale = np.asarray(scale, dtype=np.float64)
    return QParams(scale, np.zeros(scale.shape, np.int64), ACCUMULATORS[dtype], axis)


CONV_OPS = {
    1: (relax.op.nn.conv1d, "NCW", "OIW"),
    2: (relax.op.nn.conv2d, "NCHW", "OIHW"),
}


def conv_integer(
    bb: relax.BlockBuilder,
    x: relax.Expr,
    x_qtype,
    zx: int | relax.Expr,
    w_shift: np.ndarray,
    strides: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    acc: str | None = None,
) -> tuple[relax.Var, str, str]:
    """Exact ``acc[o] = Σ_k (x_k - zx) · w'[o, k]`` for a constant, zero-point-free ``w'``.

    With a constant ``zx``: ``x`` is padded with ``zx`` (so padding contributes nothing) and
    ``acc = conv(x, w') - zx · Σ_k w'[o, k]``; the operands keep their storage types (u8 × s8
    for the usual case). With a runtime ``zx`` (dynamic quantization) and 8-bit ``x`` the same
    identity holds with ``x`` padded by the runtime ``zx`` (:func:`_pad_runtime`; padded taps
    give ``(zx - zx) · w' = 0``, as in ONNX ConvInteger, whose reference subtracts ``zx``
    before zero padding, and in ORT, which pads with ``zx``) and the correction
    ``zx · Σ_k w'[o, k]`` a runtime scalar times a per-channel constant: ``x`` stays
    uint8/int8, so the conv is a VNNI conv. Wider ``x`` has ``x - zx`` formed in int32 first.
    ``acc`` is the accumulator type (chosen from the exact bound
    ``(max|x| + max|zx|) · max_o Σ_k |w'[o, k]|`` when None, with the worst case
    ``max|zx| = max|x|`` for a runtime ``zx``); in int32 every partial sum and the correction
    wrap modulo 2^32 alike, so the result is ``Σ_k (x_k - zx) · w'[o, k]`` modulo 2^32 (exact
    whenever that fits). Returns (value, acc, weight dtype).
    """
    spatial = len(w_shift.shape) - 2
    op, data_layout, kernel_layout = CONV_OPS[spatial]
    out_ch = w_shift.shape[0]
    magnitude = max(abs(x_qtype.qmin), abs(x_qtype.qmax))
    abs_sum = np.abs(w_shift).reshape(out_ch, -1).sum(axis=1)
    const_zx = zx if isinstance(zx, int | np.integer) else None
    if acc is None:
        acc = accumulator_for((magnitude + abs(const_zx if const_zx is not None else magnitude))
                              * int(abs_sum.max()))
    w_dtype = smallest_int_type(int(w_shift.min()), int(w_shift.max()))
    data = x
    runtime_zx = const_zx is None and x_qtype.bits <= 8
    if runtime_zx:
        if any(padding):
            data = _pad_runtime(bb, x, zx, padding, spatial)
            padding = [0] * len(padding)
    elif const_zx is None:
        work = "int32"
        data = bb.emit(relax.op.subtract(bb.emit(relax.op.astype(x, work)),
                                         bb.emit(relax.op.astype(zx, work))))
    elif const_zx != 0 and any(padding):
        data = bb.emit(relax.op.nn.pad(x, conv_pad_width(padding, spatial), "constant", const_zx))
        padding = [0] * len(padding)
    value = bb.emit(
        op(data, const(w_shift, w_dtype), strides=strides, padding=padding, dilation=dilation,
           groups=groups, data_layout=data_layout, kernel_layout=kernel_layout, out_dtype=acc),
        "qnn_conv",
    )
    w_sum = w_shift.reshape(out_ch, -1).sum(axis=1).reshape((1, out_ch) + (1,) * spatial)
    if const_zx:
        value = bb.emit(relax.op.subtract(value, const(const_zx * w_sum, acc)))
    elif runtime_zx:
        zx_acc = bb.emit(relax.op.reshape(relax.op.astype(zx, acc), [1] * (spatial + 2)))
        value = bb.emit(relax.op.subtract(
            value, bb.emit(relax.op.multiply(zx_acc, const(w_sum, acc)))))
    return value, acc, w_dtype


def _pad_runtime(bb: relax.BlockBuilder, x: relax.Expr, value: relax.Expr,
                 padding: list[int], spatial: int) -> relax.Var:
    """``x`` padded with the runtime scalar ``value`` (conv padding: befores, then afters):
    ``where(border, value, pad(x, 0))`` with ``border`` a constant mask of the padded
    positions (``nn.pad`` only takes a constant pad value). Both ops are elementwise/pad, so
    they follow the channels-last layout of the x86 lowering and fuse into one copy.

    With a symbolic spatial size the mask cannot be a constant: it is computed,
    ``border = (pad(ones([1, 1, *spatial]), 0) == 0)`` (:func:`_border_mask`)."""
    width = conv_pad_width(padding, spatial)
    padded = bb.emit(relax.op.nn.pad(x, width, "constant", 0.0))
    spatial_shape = shape_of(x)[2:]
    fill = bb.emit(relax.op.reshape(relax.op.astype(value, dtype_of(x)), []))
    if not all(isinstance(d, int) for d in spatial_shape):
        return bb.emit(relax.op.where(_border_mask(bb, spatial_shape, width), fill, padded))
    inside = np.ones(spatial_shape, bool)
    border = ~np.pad(inside, [(width[4 + 2 * i], width[5 + 2 * i]) for i in range(spatial)])
    return bb.emit(relax.op.where(const(border.reshape((1, 1) + border.shape), "bool"),
                                  fill, padded))


def _border_mask(bb: relax.BlockBuilder, spatial_shape, width: list[int]) -> relax.Var:
    """``[1, 1, *padded]`` bool mask of the positions ``nn.pad(·, width)`` adds, for a partial
    ``spatial_shape``: ones of the input's spatial shape padded with zeros, compared to 0."""
    ones = relax.op.ones(relax.ShapeExpr([1, 1, *spatial_shape]), "uint8")
    inside = bb.emit(relax.op.nn.pad(ones, width, "constant", 0.0))
    return bb.emit(relax.op.equal(inside, const(0, "uint8")))


def matmul_integer_const(
    bb: relax.BlockBuilder,
    a: relax.Expr,
    a_qtype,
    za: int | np.ndarray | relax.Expr,
    b_shift: np.ndarray,
    acc: str | None = None,
) -> tuple[relax.Var, str, str]:
    """Exact ``acc[.., n] = Σ_k (a_k - za) · B'[k, n]`` for a constant zero-point-free ``B'``.

    ``acc = a @ B' - za · Σ_k B'[k, n]``: the correction is a constant when ``za`` is (a scalar,
    or per-row values of shape ``[M]``), and a runtime scalar times a constant vector when
    ``za`` is computed at run time. Returns (value, accumulator type, B' dtype).
    """
    magnitude = max(abs(a_qtype.qmin), abs(a_qtype.qmax))
    abs_sum = np.abs(b_shift).sum(axis=0)
    colsum = b_shift.sum(axis=0)
    if acc is None:
        zmax = int(np.max(np.abs(za))) if not isinstance(za, relax.Expr) else magnitude
        acc = accumulator_for((magnitude + zmax) * int(abs_sum.max()))
    b_dtype = smallest_int_type(int(b_shift.min()), int(b_shift.max()))
    value = bb.emit(relax.op.matmul(a, const(b_shift, b_dtype), out_dtype=acc), "qnn_matmul")
    if isinstance(za, relax.Expr):
        term = bb.emit(relax.op.multiply(bb.emit(relax.op.astype(za, acc)), const(colsum, acc)))
        value = bb.emit(relax.op.subtract(value, term))
    elif np.any(np.asarray(za) != 0):
        za = np.asarray(za, np.int64)
        term = za * colsum if za.ndim == 0 else za.reshape(-1, 1) * colsum.reshape(1, -1)
        value = bb.emit(relax.op.subtract(value, const(term, acc)))
    return value, acc, b_dtype


def fixed_point_multipliers(ratios: list[np.ndarray], operand_bits: int) -> tuple[list, int]:
    """Integers ``K_i = round(ratio_i · 2^S)`` with the largest shift ``S`` (≤ 40) that keeps
    ``Σ_i |x_i| · K_i < 2^62`` for operands of ``operand_bits`` bits."""
    largest = max(float(np.max(np.abs(r))) for r in ratios)
    headroom = 62 - (operand_bits + 1) - int(np.ceil(np.log2(len(ratios))))
    shift = int(min(40, headroom - max(0, int(np.ceil(np.log2(max(largest, 1e-30)))))))
    return [np.rint(np.asarray(r, np.float64) * 2.0**shift).astype(np.int64) for r in ratios], shift


def add_integer(
    bb: relax.BlockBuilder,
    terms: list[tuple[relax.Expr, np.ndarray, np.ndarray]],
    dst: QParams,
    operand_bits: int,
    name: str = "qnn_add",
) -> relax.Var:
    """``y = saturate(round_half_even(Σ_i (q_i - zp_i) · r_i) + zp_out)`` in integer
    arithmetic, as one ``tvm_qdq.requantize_sum`` (:mod:`.integer_ops`).

    ``terms`` are ``(q_i, zp_i, r_i)``: an integer tensor, its zero point and its real
    multiplier ``s_i / s_out`` (both broadcastable; a constant ``q_i`` comes zero-point free
    with ``zp_i = 0``). The multipliers become fixed-point integers ``K_i = round(r_i · 2^S)``
    (:func:`fixed_point_multipliers`); the int64 sum ``Σ (q_i - zp_i) · K_i`` is rounded back
    by ``S`` bits. The error of ``K_i`` is below ``|x| · 2^-S`` (≪ 1e-4 LSB), so the result
    equals the exact real rounding except at ties closer than that.
    """
    ints, shift = fixed_point_multipliers([r for _, _, r in terms], operand_bits)
    op = RequantizeSum(tuple((q, np.asarray(zp)) for q, zp, _ in terms), tuple(ints), shift,
                       np.asarray(dst.zero_point), dst.qtype.qmin, dst.qtype.qmax,
                       dst.qtype.container)
    return bb.emit(op.call(), name)
