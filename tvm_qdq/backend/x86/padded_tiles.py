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

A static shape takes the padded form only when its best padded merit is **strictly** larger
than the best dividing tile's merit (the tile the scheduler picks today), so shapes that divide
well keep exactly their kernels, schedules and tuning-database keys. Tiles taller than ``m``
are not considered (they only add padding).
"""

from __future__ import annotations

import math

from .schedules.matmul import LANES, MatmulTile, default_matmul_tile
from .schedules.matmul import MAX_ACCUMULATORS as MATMUL_ACCUMULATORS
from .schedules.vnni import best_column_tile, default_tile, tile_score

#: Tallest register tile considered (as :func:`.schedules.vnni.default_tile`).
MAX_ROW_TILE = 16


def real_fraction(extent: int, tile: int) -> float:
    """``extent / (⌈extent / tile⌉ · tile)``: the share of a padded extent that is real."""
    return extent / (-(-extent // tile) * tile)


def vnni_padded_row_tile(dims: list[int], n_blocks: int) -> int:
    """The ``row_tile`` of the padded form for a VNNI kernel with STATIC row extents
    ``dims`` (``[*batch, m]`` of a matmul, ``[N, OH, OW]`` of a conv: the padded axis is the
    last) and ``n_blocks`` 16-channel column blocks, or 0 to keep the dividing form.

    Dividing: ``tile_score`` of :func:`.schedules.vnni.default_tile` (``mr`` tiles ``dims`` in
    rectangles). Padded: ``max_{mr ≤ min(16, m)} tile_score(mr, nr(mr)) · m / (⌈m/mr⌉·mr)``
    with ``nr(mr)`` = :func:`.schedules.vnni.best_column_tile`. Padded only when strictly
    better (ties: the smaller ``mr``)."""
    m = dims[-1]
    best = default_tile(dims, n_blocks)
    dividing = tile_score(best.mr, best.nr)
    row_tile, padded = 0, dividing
    for mr in range(1, min(MAX_ROW_TILE, m) + 1):
        merit = tile_score(mr, best_column_tile(mr, n_blocks)) * real_fraction(m, mr)
        if merit > padded:
            row_tile, padded = mr, merit
    return row_tile


def _matmul_merit(tile: MatmulTile) -> float:
    return tile_score(tile.mr, tile.nr) * tile.lanes / LANES


def activation_padded_tile(m: int, n: int) -> MatmulTile | None:
    """The tile (16-lane vectors) of the padded activation matmul
    (:func:`.kernels.activation_matmul`) for a STATIC ``m × n`` output, or None to keep the
    dividing form (:func:`.schedules.matmul.default_matmul_tile`).

    Dividing merit: ``tile_score(mr, nr) · lanes / 16`` of ``default_matmul_tile(m, n)``, 0
    when it has none (``n`` > 16 with no vector width dividing it). Padded merit:
    ``tile_score(mr, nr) · m/(⌈m/mr⌉·mr) · n/(⌈n/(16·nr)⌉·16·nr)`` over ``mr ≤ min(16, m)``,
    ``nr ≤ min(4, ⌈n/16⌉)``, ``mr · nr ≤ 16``. Padded only when strictly better (ties: the
    first in ``(nr, mr)`` order)."""
    try:
        dividing = _matmul_merit(default_matmul_tile(m, n))
    except ValueError:  # no vector width: the matmul would fall to a generic schedule
        dividing = 0.0
    best, best_merit = None, dividing
    for nr in range(1, min(4, math.ceil(n / LANES)) + 1):
        for mr in range(1, min(MAX_ROW_TILE, m) + 1):
            if mr * nr > MATMUL_ACCUMULATORS:
                continue
            merit = tile_score(mr, nr) * real_fraction(m, mr) * real_fraction(n, nr * LANES)
            if merit > best_merit:
                best, best_merit = MatmulTile(mr, nr, LANES), merit
    return best
