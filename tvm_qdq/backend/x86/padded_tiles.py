"""Padded-rows form for STATIC shapes with poor divisors (a shape-only choice, no measurement).

The VNNI matmul / conv kernels and the activation matmul (:mod:`.kernels`) have two forms:

* **dividing**: the register tile's ``mr`` rows divide the row count ``m`` (and the
  activation matmul's ``nr · lanes`` columns divide ``n``), so ``m = 77 = 7 · 11`` only has
  ``mr ∈ {1, 7, 11}``, and ``n = 77`` no vector width at all;
* **padded**: the accumulation covers ``mp = ⌈m / mr⌉ · mr`` rows (reading row
  ``min(i, m - 1)``; the activation matmul also ``⌈n / c⌉ · c`` zero columns), the epilogue
  writes only the ``m`` (``n``) real ones: any ``mr``, at the price of the wasted rows.

The merit of a tile is :func:`.schedules.vnni.tile_score` (accumulators hide the multiply-add
latency up to 16; ``mr`` broadcasts + ``nr`` loads per step), scaled for the activation
matmul by the vector width used (``lanes / 16``) and for the padded form by the fraction of
real work::

    merit_padded(mr, nr) = tile_score(mr, nr) · m / (⌈m/mr⌉·mr) [· n / (⌈n/(16·nr)⌉·16·nr)]

A static shape takes the padded form only when its best padded merit exceeds the best
dividing tile's merit (the tile the scheduler picks today) by the factor
:data:`PADDED_MARGIN` (:func:`clearly_better`), so shapes that divide well keep exactly
their kernels, schedules and tuning-database keys. Tiles taller than ``m`` are not
considered (they only add padding).

The margin covers what ``tile_score`` does not see: the padded kernel's separate epilogue
stage over the real rows and the wasted rows' loads; below :data:`PADDED_MIN_MACS` the fixed
costs (epilogue stage, loop overhead) outweigh a better tile. Both constants come from
bare-kernel timings (``benchmarks/results/padded_tiles.md``).

The activation matmul takes integer operands (int32 sums) or, for static shapes, float32
ones (float32 sums over ``k`` in increasing order, as TVM's matmul: the same bits; e.g. the
float ``Q·Kᵀ`` of T5 under dynamic quantization, which at 77 tokens fell to TVM's generic
schedule).

The activation matmul's merit doubles for a form that runs two reduction steps per
``vpdpwssd`` (:data:`.schedules.matmul.PAIRS_INTRIN`: int16 operands on a VNNI target): the
padded form always can (it pads ``k`` to even), the dividing one only with an even ``k``
and 16-lane vectors.
"""

from __future__ import annotations

import math

from .schedules.matmul import LANES, MatmulTile, default_matmul_tile
from .schedules.matmul import MAX_ACCUMULATORS as MATMUL_ACCUMULATORS
from .schedules.vnni import best_column_tile, default_tile, tile_score

#: Tallest register tile considered (as :func:`.schedules.vnni.default_tile`).
MAX_ROW_TILE = 16
#: Factor by which the padded form's merit must exceed the dividing form's (see above).
PADDED_MARGIN = 1.2
#: Fewest multiply-accumulates (as the dividing form executes them) of a VNNI kernel that
#: may take the padded form (see above).
PADDED_MIN_MACS = 1 << 22


def clearly_better(padded: float, dividing: float) -> bool:
    """``padded > dividing + (PADDED_MARGIN - 1) · |dividing|``: ``PADDED_MARGIN`` × a
    positive merit (``tile_score`` is negative for one-accumulator tiles)."""
    return padded > dividing + (PADDED_MARGIN - 1) * abs(dividing)


def real_fraction(extent: int, tile: int) -> float:
    """``extent / (⌈extent / tile⌉ · tile)``: the share of a padded extent that is real."""
    return extent / (-(-extent // tile) * tile)


def vnni_padded_row_tile(dims: list[int], n_blocks: int, reduction: int) -> int:
    """The ``row_tile`` of the padded form for a VNNI kernel with STATIC row extents
    ``dims`` (``[*batch, m]`` of a matmul, ``[N, OH, OW]`` of a conv: the padded axis is the
    last), ``n_blocks`` 16-channel column blocks and ``reduction`` elements per output, or 0
    to keep the dividing form (always below :data:`PADDED_MIN_MACS` MACs).

    Dividing: ``tile_score`` of :func:`.schedules.vnni.default_tile` (``mr`` tiles ``dims`` in
    rectangles). Padded: ``max_{mr ≤ min(16, m)} tile_score(mr, nr(mr)) · m / (⌈m/mr⌉·mr)``
    with ``nr(mr)`` = :func:`.schedules.vnni.best_column_tile`. Padded only when larger than
    :data:`PADDED_MARGIN` × dividing (ties between padded tiles: the smaller ``mr``)."""
    if math.prod(dims) * n_blocks * LANES * reduction < PADDED_MIN_MACS:
        return 0
    m = dims[-1]
    best = default_tile(dims, n_blocks)
    dividing = tile_score(best.mr, best.nr)
    row_tile, padded = 0, -math.inf
    for mr in range(1, min(MAX_ROW_TILE, m) + 1):
        merit = tile_score(mr, best_column_tile(mr, n_blocks)) * real_fraction(m, mr)
        if merit > padded:
            row_tile, padded = mr, merit
    return row_tile if clearly_better(padded, dividing) else 0


def activation_padded_tile(m: int, n: int, k: int = 0, pairs: bool = False
                           ) -> MatmulTile | None:
    """The tile (16-lane vectors) of the padded activation matmul
    (:func:`.kernels.activation_matmul`) for a STATIC ``m × n`` output with reduction ``k``,
    or None to keep the dividing form (:func:`.schedules.matmul.default_matmul_tile`).
    ``pairs``: the target and operands allow ``vpdpwssd`` (int16 on VNNI).

    Dividing merit: ``tile_score(mr, nr) · lanes / 16`` of ``default_matmul_tile(m, n)``
    (× 2 with ``pairs``, an even ``k`` and 16 lanes), 0 when it has none (``n`` > 16 with no
    vector width dividing it). Padded merit: ``tile_score(mr, nr) · m/(⌈m/mr⌉·mr) ·
    n/(⌈n/(16·nr)⌉·16·nr)`` (× 2 with ``pairs``) over ``mr ≤ min(16, m)``,
    ``nr ≤ min(4, ⌈n/16⌉)``, ``mr · nr ≤ 16``. Padded only when larger than
    :data:`PADDED_MARGIN` × dividing (ties between padded tiles: the first in ``(nr, mr)``
    order)."""
    try:
        tile = default_matmul_tile(m, n)
        paired = pairs and k % 2 == 0 and tile.lanes == LANES
        dividing = tile_score(tile.mr, tile.nr) * tile.lanes / LANES * (2 if paired else 1)
    except ValueError:  # no vector width: the matmul would fall to a generic schedule
        dividing = 0.0
    best, best_merit = None, -math.inf
    for nr in range(1, min(4, math.ceil(n / LANES)) + 1):
        for mr in range(1, min(MAX_ROW_TILE, m) + 1):
            if mr * nr > MATMUL_ACCUMULATORS:
                continue
            merit = tile_score(mr, nr) * real_fraction(m, mr) * real_fraction(n, nr * LANES)
            merit *= 2 if pairs else 1
            if merit > best_merit:
                best, best_merit = MatmulTile(mr, nr, LANES), merit
    return best if clearly_better(best_merit, dividing) else None
