"""The integer matmul with a constant weight on AMX tiles, as a TE computation.

Same contract as :func:`.kernels.matmul_vnni` (``a[*batch, m, k] @ b[k, n]`` exactly in
int32, the activation as its uint8 plane ``u(a)``, the same epilogue terms), with the
layout AMX's ``tdpbusd`` needs (:mod:`.amx`)::

    acc[..., i, j] = Σ_{q < Kp/4, r < 4} u(a)[..., i, 4q + r] · bp[j // W, q, j % W, r]

* the weight is packed by :func:`pack_amx_weight` in column blocks of ``W`` = 16 or 32
  (:func:`amx_column_width`; one or two tiles), one int8 term (a wider weight takes the VNNI
  kernel, or the offset form);
* the reduction is zero-padded to ``Kp = ⌈k / 64⌉ · 64`` (the packed weight's rows ``k ≤
  4q + r < Kp`` are 0, so the plane's padding columns add nothing);
* rows are padded to whole blocks of ``row_tile`` (32) when ``row_tile`` is given: the plane
  is then a copy of ``Mp`` rows (rows ``i ≥ m`` hold the padding value and are never read
  back), because a tile load reads 16 whole rows of it.

The plane is a :data:`~tvm_qdq.backend.kernel_tags.SCRATCH` block (``a`` itself when it is
uint8 with ``k = Kp`` and no padded rows), the reduction an
:data:`~tvm_qdq.backend.kernel_tags.AMX` block carrying ``row_tile`` as
:data:`.kernels.ROW_TILE_ATTR` and ``W`` as :data:`.kernels.COL_TILE_ATTR`.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from ..kernel_tags import AMX, tag
from .amx import TILE_K, TILE_ROWS
from .kernels import (
    COL_TILE_ATTR,
    KGROUP,
    LANES,
    ROW_TILE_ATTR,
    MatmulSpec,
    finalize,
    matmul_plane,
    padded_rows,
    split_int8,
)


def amx_reduction(k: int) -> int:
    """``k`` rounded up to whole ``tdpbusd`` steps (:data:`.amx.TILE_K`)."""
    return -(-k // TILE_K) * TILE_K


def amx_row_tile(m: int | tirx.PrimExpr) -> int:
    """The ``row_tile`` of an AMX matmul with ``m`` rows: 0 (no padded rows) for a static
    ``m`` that whole tiles cover; else 16 when that pads fewer rows than 32 (a static ``m``),
    else 32 (blocks of two tiles: a block loads each slice of the weight once for 32 rows, so
    a few rows cost about what 32 do)."""
    if isinstance(m, int):
        if m % TILE_ROWS == 0:
            return 0
        if -(-m // TILE_ROWS) * TILE_ROWS < -(-m // (2 * TILE_ROWS)) * 2 * TILE_ROWS:
            return TILE_ROWS
    return 2 * TILE_ROWS


def amx_row_fraction(m: int) -> float:
    """The share of real rows in the tiles of a static ``m`` (:func:`amx_row_tile`)."""
    tile = amx_row_tile(m) or TILE_ROWS
    return m / (-(-m // tile) * tile)


def amx_column_width(n: int) -> int:
    """Columns per block of the packed weight: 32 (two tiles) when ``n`` rounded up to 16
    is a multiple of 32, else 16."""
    return 2 * LANES if -(-n // LANES) % 2 == 0 else LANES


def pack_amx_weight(b: np.ndarray, width: int) -> np.ndarray:
    """``b[K, N]`` (int8 values) → ``[Np/W, Kp/4, W, 4]`` int8 with ``W = width``, ``Kp``
    and ``Np`` zero-padded to multiples of 64 and ``W``: ``bp[j // W, q, j % W, r] =
    b[4q + r, j]``."""
    k, n = b.shape
    kp, np_ = amx_reduction(k), -(-n // width) * width
    full = np.zeros((kp, np_), np.int8)
    full[:k, :n] = split_int8(b, 1)[0]
    return np.ascontiguousarray(
        full.reshape(kp // KGROUP, KGROUP, np_ // width, width).transpose(2, 0, 3, 1))


def matmul_amx(
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
    """The exact integer matmul ``[*batch, m, n]`` on AMX (arguments as for
    :func:`.kernels.matmul_vnni`; ``bp`` packed by :func:`pack_amx_weight`)."""
    kp, width = int(bp.shape[1]) * KGROUP, int(bp.shape[2])
    n_acc = -(-spec.n // width) * width
    if kp % TILE_K or width % LANES:
        raise ValueError(f"AMX weight must have K a multiple of {TILE_K}, blocks of 16·c")
    if not isinstance(spec.m, int) and row_tile < 1:
        raise ValueError("a symbolic row count needs a row_tile (padded rows)")
    padded = row_tile > 0
    m_acc = padded_rows(spec.m, row_tile) if padded else spec.m
    plane = a if spec.in_dtype == "uint8" and kp == spec.k and not padded else \
        matmul_plane(a, spec, part, kp, m_acc if padded else None)
    rq = te.reduce_axis((0, kp // KGROUP), name="rq")
    rk = te.reduce_axis((0, KGROUP), name="rk")

    def body(*idx):
        row, col = idx[:-1], idx[-1]
        av = plane[(*row, rq * KGROUP + rk)]
        bv = bp[col // width, rq, col % width, rk]
        return te.sum(av.astype("int32") * bv.astype("int32"), axis=[rq, rk])

    attrs = {**tag(AMX), COL_TILE_ATTR: width}
    if padded:
        attrs[ROW_TILE_ATTR] = row_tile
    acc = te.compute((*spec.batch, m_acc, n_acc), body, name="tq_amx_matmul", attrs=attrs)
    out_dtype = "int32" if part == "hi" else spec.out_dtype
    return finalize(acc, spec.n, out_dtype, corr=corr, high=high, sums=sums, offsets=offsets,
                    rows=spec.m if padded else None)
