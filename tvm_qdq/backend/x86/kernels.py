"""Integer conv2d / matmul kernels for AVX-512 VNNI as TE computations, and weight packing.

Layouts
-------
* Activations of convolutions are **NHWC** (``x[n, h, w, c]``); outputs are NHWC too. The
  layout pass (:mod:`.layout`) keeps whole conv chains in NHWC.
* Matmul activations are row-major ``a[..., m, k]``; outputs ``[..., m, n]``.
* Constant weights are packed in numpy at compile time:

  - conv ``w[o, c, kh, kw]`` (OIHW) → ``wp[o // 16, t, kh, kw, c // 4, o % 16, c % 4]``
    (``int8``; ``C`` and ``O`` zero-padded to multiples of 4 and 16);
  - matmul ``b[k, n]`` → ``bp[n // 16, t, k // 4, n % 16, k % 4]`` (``K``, ``N`` padded);

  ``t`` indexes int8 terms summing to a wider weight (e.g. the int16 ``w - zw`` of uint8
  weights: ``|w'| ≤ 255`` → 3 terms of ``[-127, 127]``); int8 weights have one term.
  Such weights usually take the **offset form** instead (below): one int8 term.
  - depthwise conv ``w[c, 1, kh, kw]`` → ``wd[kh, kw, c]``.

  So one ``vpdpbusd`` multiplies 4 consecutive reduction elements of one activation row
  (broadcast) by a contiguous 64-byte block of ``wp``/``bp``, for 16 output channels.

Math
----
VNNI blocks (annotated :data:`~tvm_qdq.backend.kernel_tags.VNNI`) compute, exactly in int32
(wrapping)::

    acc[n, oh, ow, o] = Σ_{kh, kw, c} u(x)[n, oh·sh + kh·dh - pt, ow·sw + kw·dw - pl, c]
                                      · w[o, c, kh, kw]

where ``u(x)`` is the activation as uint8 (padding = the activation value 0):

* ``uint8``: ``u(x) = x``;
* ``int8``: ``u(x) = x + 128`` (a bit flip), and ``conv(x) = conv(u(x)) - 128 · Σ_{c,kh,kw} w``
  (the correction is a constant per output channel; exact modulo 2^32);
* ``uint16``: ``x = 256 · hi + lo`` with two uint8 planes; ``conv(x) = 256 · conv(hi) +
  conv(lo)``: two kernels, the ``hi`` one returns its int32 result, the ``lo`` one adds
  ``256 ·`` it in the output type (each partial sum is below 2^31 for ``K < 66051``).

**Offset form** (uint8 weights with a zero point: ``w' = w - zw`` spans ``[-255, 255]``, but
each output channel's values span at most 255): ``w'[o, k] = w''[o, k] + b[o]`` with
``w''`` int8 for a per-channel offset ``b[o]`` (:func:`channel_offsets`), so::

    Σ_k u_k · w'[o, k] = Σ_k u_k · w''[o, k] + b[o] · Σ_k u_k

``Σ_k u_k`` (the window sum of the padded plane) is the same VNNI kernel with one output
channel of all-ones weights (:func:`ones_weight`), a kernel of its own whose int32 result the
main kernel's epilogue reads (``sums``, times ``offsets[o]``): one extra 16-channel block
instead of a second (or third) int8 term for every block. Exact when every partial sum stays
below 2^31 (:func:`offset_fits_int32`).

Matmuls are the same with ``acc[..., m, n] = Σ_k u(a)[..., m, k] · b[k, n]``. The
depthwise kernel (a :data:`~tvm_qdq.backend.kernel_tags.DEPTHWISE` block) is a plain
vectorized multiply-accumulate over ``kh, kw`` in the output type. Padded input copies are
:data:`~tvm_qdq.backend.kernel_tags.SCRATCH` blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from ..kernel_geometry import ConvGeometry, MatmulGeometry
from ..kernel_tags import ACTIVATION_MATMUL, DEPTHWISE, SCRATCH, VNNI, tag

LANES = 16  # int32 lanes of a zmm register = output channels per VNNI block
KGROUP = 4  # uint8 elements per int32 lane in vpdpbusd

#: Annotation of a VNNI block whose row extent is padded to whole tiles of this many rows.
ROW_TILE_ATTR = "tvm_qdq.row_tile"

#: Activation dtypes the VNNI kernels take.
VNNI_ACT_DTYPES = ("uint8", "int8", "uint16")


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def to_u8(value: tirx.PrimExpr, dtype: str, part: str) -> tirx.PrimExpr:
    """One uint8 plane of an activation value (see the module docstring)."""
    if dtype == "uint8":
        return value
    if dtype == "int8":
        return (value.astype("int32") + 128).astype("uint8")
    if dtype == "uint16":
        if part == "lo":
            return (value & tirx.const(255, "uint16")).astype("uint8")
        return (value >> tirx.const(8, "uint16")).astype("uint8")
    raise ValueError(f"unsupported activation dtype {dtype}")


def _dim(d: tirx.PrimExpr) -> int | tirx.PrimExpr:
    """A tensor dimension: a Python int when it is a constant, else the symbolic expression."""
    return int(d) if isinstance(d, tirx.IntImm) else d


def padded_rows(rows: tirx.PrimExpr, row_tile: int) -> tirx.PrimExpr:
    """``⌈rows / row_tile⌉ · row_tile``: a symbolic row count rounded up to whole tiles."""
    return (rows + (row_tile - 1)) // row_tile * row_tile


def pad_u8(dtype: str) -> int:
    """The uint8 plane value of the padding value 0."""
    return 128 if dtype == "int8" else 0


# ----------------------------------------------------------------------------------------------
# Conv2d (NHWC, VNNI)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv2dSpec(ConvGeometry):
    """A 2-D convolution in NHWC: input ``[N, H, W, C]``, weight OIHW ``[O, C, KH, KW]``
    (the shape fields: :class:`~tvm_qdq.backend.kernel_geometry.ConvGeometry`)."""

    in_dtype: str
    out_dtype: str

    @property
    def c4(self) -> int:
        return _ceil(self.c, KGROUP) * KGROUP

    @property
    def o16(self) -> int:
        return _ceil(self.o, LANES) * LANES


#: Largest number of int8 terms a wider integer weight is split into (see split_int8).
MAX_TERMS = 4


def weight_terms(w: np.ndarray) -> int:
    """How many int8 terms ``split_int8`` needs for ``w`` (1 when it already fits int8)."""
    most = int(np.abs(w.astype(np.int64)).max()) if w.size else 0
    if int(w.min()) >= -128 and int(w.max()) <= 127:
        return 1
    return _ceil(most, 127)


def split_int8(w: np.ndarray, terms: int) -> np.ndarray:
    """``w`` (any integer weights) as ``terms`` int8 tensors (leading axis) that sum to it:
    term ``t`` is ``clip(w - Σ_{i<t} term_i, -127, 127)`` (exact when ``|w| ≤ 127·terms``)."""
    rest = w.astype(np.int64)
    out = np.zeros((terms, *w.shape), np.int8)
    for t in range(terms):
        lo, hi = (-128, 127) if terms == 1 else (-127, 127)
        part = np.clip(rest, lo, hi)
        out[t] = part
        rest = rest - part
    if np.any(rest):
        raise ValueError(f"weights need more than {terms} int8 terms")
    return out


def weight_rows(w: np.ndarray, out_axis: int) -> np.ndarray:
    """``w`` as int64 ``[O, K]``: one row per output channel (axis ``out_axis``) holding its
    reduction elements."""
    return np.moveaxis(w.astype(np.int64), out_axis, 0).reshape(w.shape[out_axis], -1)


def channel_offsets(rows: np.ndarray) -> np.ndarray | None:
    """Per-row offsets ``b[o]`` with ``rows[o] - b[o]`` in ``[-128, 127]``: the value of
    ``[max_k rows[o] - 127, min_k rows[o] + 128]`` nearest 0 (0 for rows that fit int8);
    None when a row spans more than 255."""
    lo, hi = rows.min(axis=1), rows.max(axis=1)
    if np.any(hi - lo > 255):
        return None
    return np.clip(0, hi - 127, lo + 128).astype(np.int64)


def offset_fits_int32(rows: np.ndarray, offsets: np.ndarray) -> bool:
    """True when the offset form stays exact in int32 for uint8 planes ``u ≤ 255``:
    ``255 · (max_o Σ_k |rows[o, k] - b[o]| + K · max_o |b[o]|) < 2^31`` bounds the main
    kernel's partial sums, the window sums, ``b[o] · Σu`` and their sum."""
    shifted = np.abs(rows - offsets[:, None]).sum(axis=1)
    k = rows.shape[1]
    return 255 * (int(shifted.max(initial=0)) + k * int(np.abs(offsets).max(initial=0))) < 2**31


def ones_weight(shape: tuple[int, ...], out_axis: int) -> np.ndarray:
    """All-ones int8 weights of ``shape`` with one output channel (axis ``out_axis``): the
    kernel computing the window sums ``Σ_k u_k`` of the offset form."""
    single = list(shape)
    single[out_axis] = 1
    return np.ones(single, np.int8)


def pack_conv_weight(w: np.ndarray, terms: int = 1) -> np.ndarray:
    """OIHW integer weights → ``[O16/16, T, KH, KW, C4/4, 16, 4]`` int8 (``T = terms``
    int8 tensors summing to ``w``, see :func:`split_int8`)."""
    o, c, kh, kw = w.shape
    o16, c4 = _ceil(o, LANES) * LANES, _ceil(c, KGROUP) * KGROUP
    full = np.zeros((terms, o16, c4, kh, kw), np.int8)
    full[:, :o, :c] = split_int8(w, terms)
    packed = full.reshape(terms, o16 // LANES, LANES, c4 // KGROUP, KGROUP, kh, kw)
    return np.ascontiguousarray(packed.transpose(1, 0, 5, 6, 3, 2, 4))


def conv_correction(w: np.ndarray, in_dtype: str) -> np.ndarray | None:
    """Per output channel constant subtracted after the uint8 reduction (int8 inputs)."""
    if in_dtype != "int8":
        return None
    return (128 * w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1)).astype(np.int64)


def _u8_plane(x: te.Tensor, spec: Conv2dSpec, part: str) -> te.Tensor:
    """``u(x)`` (or the ``part`` byte of a uint16 ``x``), spatially padded, ``C`` padded to
    ``C4``: ``[N, Hp, Wp, C4]`` uint8 (``x`` itself when it already is that)."""
    pt, pl, pb, pr = spec.padding
    hp, wp = spec.h + pt + pb, spec.w + pl + pr
    if spec.in_dtype == "uint8" and not any(spec.padding) and spec.c4 == spec.c:
        return x
    pad = tirx.const(pad_u8(spec.in_dtype), "uint8")

    def body(n, h, w, c):
        inside = tirx.all(h >= pt, h < pt + spec.h, w >= pl, w < pl + spec.w, c < spec.c)
        hi = tirx.max(tirx.min(h - pt, spec.h - 1), 0) if (pt or pb) else h
        wi = tirx.max(tirx.min(w - pl, spec.w - 1), 0) if (pl or pr) else w
        ci = tirx.min(c, spec.c - 1) if spec.c4 != spec.c else c
        return tirx.if_then_else(inside, to_u8(x[n, hi, wi, ci], spec.in_dtype, part), pad)

    return te.compute((spec.n, hp, wp, spec.c4), body, name="tq_scratch",
                      attrs=tag(SCRATCH))


def conv2d_nhwc_vnni(
    x: te.Tensor,
    wp: te.Tensor,
    spec: Conv2dSpec,
    *,
    corr: te.Tensor | None = None,
    part: str = "",
    high: te.Tensor | None = None,
    sums: te.Tensor | None = None,
    offsets: te.Tensor | None = None,
    row_tile: int = 0,
) -> te.Tensor:
    """The exact integer convolution (NHWC) ``[N, OH, OW, O]``.

    ``part`` selects the byte of a uint16 input (``"lo"``/``"hi"``); ``high`` is the int32
    result of the ``"hi"`` part, added as ``256 · high`` (in ``spec.out_dtype``); ``corr`` is
    subtracted per output channel (int8 inputs); ``offsets[o] · sums[n, oh, ow, 0]`` is added
    (the offset form: ``sums`` the window sums). A symbolic ``OW`` (or a static one given a
    ``row_tile``, see :mod:`.padded_tiles`) takes the padded-rows form of :func:`matmul_vnni`
    along ``OW`` (output column ``min(ow, OW - 1)``, ``row_tile``).
    """
    sh, sw = spec.strides
    dh, dw = spec.dilation
    plane = _u8_plane(x, spec, part)
    rt = te.reduce_axis((0, int(wp.shape[1])), name="rt")
    rh = te.reduce_axis((0, spec.kh), name="rh")
    rw = te.reduce_axis((0, spec.kw), name="rw")
    rq = te.reduce_axis((0, spec.c4 // KGROUP), name="rq")
    rk = te.reduce_axis((0, KGROUP), name="rk")

    padded = _needs_row_tile(spec.ow, row_tile)

    def body(n, h, w, o):
        if padded:
            w = tirx.min(w, spec.ow - 1)
        a = plane[n, h * sh + rh * dh, w * sw + rw * dw, rq * KGROUP + rk]
        b = wp[o // LANES, rt, rh, rw, rq, o % LANES, rk]
        return te.sum(a.astype("int32") * b.astype("int32"), axis=[rt, rh, rw, rq, rk])

    ow_acc = padded_rows(spec.ow, row_tile) if padded else spec.ow
    acc = te.compute((spec.n, spec.oh, ow_acc, spec.o16), body, name="tq_vnni_conv",
                     attrs=_vnni_attrs(row_tile if padded else 0))
    out_dtype = "int32" if part == "hi" else spec.out_dtype
    return finalize(acc, spec.o, out_dtype, corr=corr, high=high, sums=sums, offsets=offsets,
                     rows=spec.ow if padded else None)


def _needs_row_tile(rows: int | tirx.PrimExpr, row_tile: int) -> bool:
    """Whether a kernel with ``rows`` output rows takes the padded-rows form: a symbolic row
    count (``row_tile`` must then be given), or a static one given a ``row_tile`` (chosen by
    :func:`.padded_tiles.vnni_padded_row_tile` when no tile dividing it is as good)."""
    if isinstance(rows, int):
        return row_tile > 0
    if row_tile < 1:
        raise ValueError("a symbolic row count needs a row_tile (padded rows)")
    return True


def _vnni_attrs(row_tile: int) -> dict:
    """``te.compute`` attributes of a VNNI block (with :data:`ROW_TILE_ATTR` when padded)."""
    attrs = tag(VNNI)
    if row_tile:
        attrs[ROW_TILE_ATTR] = row_tile
    return attrs


def finalize(
    acc: te.Tensor, n_out: int, out_dtype: str, *, corr: te.Tensor | None = None,
    high: te.Tensor | None = None, sums: te.Tensor | None = None,
    offsets: te.Tensor | None = None, rows: tirx.PrimExpr | None = None,
) -> te.Tensor:
    """``acc[..., :n_out] + 256 · high + offsets[o] · sums[..., 0] - corr`` in ``out_dtype``
    (each term only if given); ``rows``: the real row count of an ``acc`` whose rows are
    padded (the result then always is a stage of its own over ``rows`` rows)."""
    if rows is None and corr is None and high is None and sums is None and \
            n_out == int(acc.shape[-1]) and out_dtype == "int32":
        return acc
    shape = [_dim(d) for d in acc.shape[:-1]]
    if rows is not None:
        shape[-1] = rows
    shape.append(n_out)

    def body(*idx):
        total = acc[idx].astype(out_dtype)
        if high is not None:
            total = total + high[idx].astype(out_dtype) * tirx.const(256, out_dtype)
        if sums is not None:
            total = total + offsets[idx[-1]].astype(out_dtype) * \
                sums[(*idx[:-1], 0)].astype(out_dtype)
        if corr is not None:
            total = total - corr[idx[-1]].astype(out_dtype)
        return total

    return te.compute(shape, body, name="tq_finalize")


# ----------------------------------------------------------------------------------------------
# Matmul (VNNI)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatmulSpec(MatmulGeometry):
    """``a[*batch, m, k] @ b[k, n]`` with a constant ``b``."""

    in_dtype: str
    out_dtype: str

    @property
    def k4(self) -> int:
        return _ceil(self.k, KGROUP) * KGROUP

    @property
    def n16(self) -> int:
        return _ceil(self.n, LANES) * LANES


def pack_matmul_weight(b: np.ndarray, terms: int = 1) -> np.ndarray:
    """``b[K, N]`` (integers) → ``[N16/16, T, K4/4, 16, 4]`` int8 (``T = terms``)."""
    k, n = b.shape
    k4, n16 = _ceil(k, KGROUP) * KGROUP, _ceil(n, LANES) * LANES
    full = np.zeros((terms, k4, n16), np.int8)
    full[:, :k, :n] = split_int8(b, terms)
    packed = full.reshape(terms, k4 // KGROUP, KGROUP, n16 // LANES, LANES)
    return np.ascontiguousarray(packed.transpose(3, 0, 1, 4, 2))


def matmul_correction(b: np.ndarray, in_dtype: str) -> np.ndarray | None:
    """Per column constant subtracted after the uint8 reduction (int8 inputs)."""
    if in_dtype != "int8":
        return None
    return (128 * b.astype(np.int64).sum(axis=0)).astype(np.int64)


def matmul_plane(a: te.Tensor, spec: MatmulSpec, part: str, k_total: int,
                 rows: tirx.PrimExpr | int | None = None) -> te.Tensor:
    """``u(a)`` (or the ``part`` byte of a uint16 ``a``) as a uint8
    :data:`~tvm_qdq.backend.kernel_tags.SCRATCH` copy ``[*batch, m, k_total]``: columns
    ``k ≥ spec.k`` and, when ``rows`` is given (``[*batch, rows, k_total]``), rows
    ``i ≥ spec.m`` hold the padding value (the reads are clamped inside ``a``)."""
    pad = tirx.const(pad_u8(spec.in_dtype), "uint8")

    def pad_body(*idx):
        batch, (i, c) = idx[:-2], idx[-2:]
        inside = c < spec.k
        src_c = tirx.min(c, spec.k - 1) if k_total != spec.k else c
        if rows is not None:
            inside = tirx.all(inside, i < spec.m)
            i = tirx.min(i, spec.m - 1)
        return tirx.if_then_else(inside, to_u8(a[(*batch, i, src_c)], spec.in_dtype, part),
                                 pad)

    return te.compute((*spec.batch, spec.m if rows is None else rows, k_total), pad_body,
                      name="tq_scratch", attrs=tag(SCRATCH))


def matmul_vnni(
    a: te.Tensor,
    bp: te.Tensor,
    spec: MatmulSpec,
    *,
    corr: te.Tensor | None = None,
    part: str = "",
    high: te.Tensor | None = None,
    sums: te.Tensor | None = None,
    offsets: te.Tensor | None = None,
    row_tile: int = 0,
) -> te.Tensor:
    """The exact integer matmul ``[*batch, m, n]`` (``part``/``high``/``corr``/``sums``/
    ``offsets`` as for :func:`conv2d_nhwc_vnni`; ``sums[..., m, 0] = Σ_k u(a)[..., m, k]``).

    **Padded rows** (a symbolic ``m``, ``row_tile`` > 0 required; or a static ``m`` given a
    ``row_tile``, see :mod:`.padded_tiles`): the accumulation stage runs
    over ``mp = ⌈m / row_tile⌉ · row_tile`` rows and reads row ``min(i, m - 1)`` of ``a`` (rows
    ``i ≥ m`` repeat the last row and are never read), so every register tile of ``row_tile``
    rows is whole; the result (and any fused epilogue) is a stage over the ``m`` real rows.
    The VNNI block carries ``row_tile`` as the annotation :data:`ROW_TILE_ATTR`.
    """
    plane = a if spec.in_dtype == "uint8" and spec.k4 == spec.k else \
        matmul_plane(a, spec, part, spec.k4)
    rt = te.reduce_axis((0, int(bp.shape[1])), name="rt")
    rq = te.reduce_axis((0, spec.k4 // KGROUP), name="rq")
    rk = te.reduce_axis((0, KGROUP), name="rk")
    padded = _needs_row_tile(spec.m, row_tile)

    def body(*idx):
        row, col = idx[:-1], idx[-1]
        if padded:
            row = (*row[:-1], tirx.min(row[-1], spec.m - 1))
        av = plane[(*row, rq * KGROUP + rk)]
        bv = bp[col // LANES, rt, rq, col % LANES, rk]
        return te.sum(av.astype("int32") * bv.astype("int32"), axis=[rt, rq, rk])

    m_acc = padded_rows(spec.m, row_tile) if padded else spec.m
    acc = te.compute((*spec.batch, m_acc, spec.n16), body, name="tq_vnni_matmul",
                     attrs=_vnni_attrs(row_tile if padded else 0))
    out_dtype = "int32" if part == "hi" else spec.out_dtype
    return finalize(acc, spec.n, out_dtype, corr=corr, high=high, sums=sums, offsets=offsets,
                     rows=spec.m if padded else None)


# ----------------------------------------------------------------------------------------------
# Activation × activation matmul (symbolic rows / columns)
# ----------------------------------------------------------------------------------------------

#: Annotation of a padded activation matmul block: its column tile (a multiple of 16).
COL_TILE_ATTR = "tvm_qdq.col_tile"


def activation_matmul(a: te.Tensor, b: te.Tensor, *, row_tile: int, col_tile: int,
                      even_k: bool = False) -> te.Tensor:
    """``c[*batch, m, n] = Σ_k a[*batch, m, k] · b[*batch, k, n]`` in int32 (integer operands
    of at most 16 bits; the same batch dims), or in float32 (float32 operands: the sum over
    ``k`` in increasing order, as TVM's matmul), for a symbolic ``m`` / ``n`` / ``k`` or a
    static shape with poor divisors (:func:`.padded_tiles.activation_padded_tile`).

    Padded like :func:`matmul_vnni`: the accumulation runs over ``⌈m / row_tile⌉ · row_tile``
    rows (reading row ``min(i, m - 1)`` of ``a``) and ``⌈n / col_tile⌉ · col_tile`` columns of
    a :data:`~tvm_qdq.backend.kernel_tags.SCRATCH` copy of ``b`` whose extra columns are 0 (``b``
    itself when ``col_tile`` divides a static ``n``); the result is a stage over the real
    ``m × n``. ``even_k`` (for two reduction steps per instruction): a reduction length ``k``
    that may be odd runs over its even part ``2⌊k/2⌋``, and the result stage adds the last
    product ``a[..., i, k − 1] · b[..., k − 1, j]`` when ``k`` is odd (exact in int32 like
    the rest; no copy of ``a``).
    The block is annotated :data:`~tvm_qdq.backend.kernel_tags.ACTIVATION_MATMUL` with
    :data:`ROW_TILE_ATTR` and :data:`COL_TILE_ATTR`.
    """
    *batch, m, k = (_dim(d) for d in a.shape)
    n = _dim(b.shape[-1])
    mp, np_ = padded_rows(m, row_tile), padded_rows(n, col_tile)
    odd_tail = even_k and not (isinstance(k, int) and k % 2 == 0)
    kp = k // 2 * 2 if odd_tail else k
    zero = tirx.const(0, b.dtype)
    b_pad = b if isinstance(n, int) and n % col_tile == 0 else te.compute(
        (*batch, k, np_), lambda *idx: tirx.if_then_else(
            idx[-1] < n, b[(*idx[:-2], idx[-2], tirx.min(idx[-1], n - 1))], zero),
        name="tq_scratch_cols", attrs=tag(SCRATCH))
    rk = te.reduce_axis((0, kp), name="rk")
    acc_dtype = "float32" if a.dtype == "float32" else "int32"

    def body(*idx):
        av = a[(*idx[:-2], tirx.min(idx[-2], m - 1), rk)].astype(acc_dtype)
        return te.sum(av * b_pad[(*idx[:-2], rk, idx[-1])].astype(acc_dtype), axis=[rk])

    attrs = {**tag(ACTIVATION_MATMUL), ROW_TILE_ATTR: row_tile, COL_TILE_ATTR: col_tile}
    acc = te.compute((*batch, mp, np_), body, name="tq_act_matmul", attrs=attrs)
    if not odd_tail:
        return te.compute((*batch, m, n), lambda *idx: acc[idx], name="tq_finalize")
    last = tirx.max(k - 1, 0)

    def with_tail(*idx):
        product = a[(*idx[:-1], last)].astype(acc_dtype) * \
            b[(*idx[:-2], last, idx[-1])].astype(acc_dtype)
        return acc[idx] + tirx.Select(k % 2 == 1, product, tirx.const(0, acc_dtype))

    return te.compute((*batch, m, n), with_tail, name="tq_finalize")


# ----------------------------------------------------------------------------------------------
# Depthwise conv2d (NHWC, vectorized over channels)
# ----------------------------------------------------------------------------------------------


def pack_depthwise_weight(w: np.ndarray) -> np.ndarray:
    """``w[C, 1, KH, KW]`` → ``wd[KH, KW, C]`` (same integer dtype)."""
    return np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))


def depthwise_conv2d_nhwc(x: te.Tensor, wd: te.Tensor, spec: Conv2dSpec) -> te.Tensor:
    """``out[n, oh, ow, c] = Σ_{kh, kw} x[n, oh·sh + kh·dh - pt, ow·sw + kw·dw - pl, c] ·
    wd[kh, kw, c]`` in ``spec.out_dtype`` (zero padding)."""
    pt, pl, pb, pr = spec.padding
    sh, sw = spec.strides
    dh, dw = spec.dilation
    acc = spec.out_dtype
    if any(spec.padding):
        zero = tirx.const(0, spec.in_dtype)

        def pad_body(n, h, w, c):
            inside = tirx.all(h >= pt, h < pt + spec.h, w >= pl, w < pl + spec.w)
            return tirx.if_then_else(inside, x[n, h - pt, w - pl, c], zero)

        hp, wp = spec.h + pt + pb, spec.w + pl + pr
        src = te.compute((spec.n, hp, wp, spec.c), pad_body, name="tq_scratch_dw",
                         attrs=tag(SCRATCH))
    else:
        src = x
    rh = te.reduce_axis((0, spec.kh), name="rh")
    rw = te.reduce_axis((0, spec.kw), name="rw")

    def body(n, h, w, c):
        xv = src[n, h * sh + rh * dh, w * sw + rw * dw, c]
        return te.sum(xv.astype(acc) * wd[rh, rw, c].astype(acc), axis=[rh, rw])

    return te.compute((spec.n, spec.oh, spec.ow, spec.c), body, name="tq_dw_conv",
                      attrs=tag(DEPTHWISE))
