"""A small measured search over VNNI register tiles (``lower_integer_kernels(..., tune=True)``).

For each fused VNNI PrimFunc, the :func:`.schedule.default_tile` heuristic ranks the register
tiles that fit (``mr`` rows whose tiles are rectangles × ``nr`` 16-channel blocks, at most
:data:`.schedule.MAX_ACCUMULATORS` accumulators); the best :data:`CANDIDATES` are built and
timed on this machine (best of repeats, one thread), and the fastest is kept. Results are
cached in memory and, when ``$TVM_QDQ_TILE_CACHE`` names a JSON file, on disk, keyed by the
PrimFunc's structural hash and the target.

Measured on Zen 4: the heuristic is within ~5-10 % of the best tile on the test models, which
is within the timing noise of a shared machine, so the search is opt-in (it adds about a
second per kernel to the build) and best used on a quiet machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from .profile import time_primfunc
from .schedule import (
    MAX_ACCUMULATORS,
    Tile,
    _blocks,
    _inline_elementwise,
    _name,
    _spatial_extents,
    default_tile,
    schedule_vnni,
    tile_score,
    valid_row_tiles,
)

#: Tiles measured per kernel (the heuristic's best first).
CANDIDATES = 6

_MEMORY: dict[str, tuple[int, int]] = {}


def _cache_file() -> Path | None:
    path = os.environ.get("TVM_QDQ_TILE_CACHE")
    return Path(path).expanduser() if path else None


def _load_disk() -> dict[str, list[int]]:
    path = _cache_file()
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _store_disk(key: str, tile: Tile) -> None:
    path = _cache_file()
    if path is None:
        return
    data = _load_disk()
    data[key] = [tile.mr, tile.nr]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def candidate_tiles(func: tirx.PrimFunc, limit: int = CANDIDATES) -> list[Tile]:
    """The register tiles that fit ``func``'s VNNI block, best heuristic score first."""
    sch = s_tir.Schedule(func)
    _inline_elementwise(sch, keep=lambda n: n.startswith(("tq_vnni", "tq_scratch")))
    main = next(b for b in _blocks(sch) if _name(sch, b).startswith("tq_vnni"))
    extents = _spatial_extents(sch, main)
    rows, n_blocks = extents[:-1], extents[-1] // 16
    tiles = [
        Tile(mr, nr)
        for nr in range(1, min(n_blocks, 4) + 1) if n_blocks % nr == 0
        for mr in valid_row_tiles(rows) if mr * nr <= MAX_ACCUMULATORS and mr <= 16
    ]
    first = default_tile(rows, n_blocks)
    tiles.sort(key=lambda t: (t != first, -tile_score(t.mr, t.nr)))
    return tiles[:limit]


def tune_tile(func: tirx.PrimFunc, target: tvm.target.Target) -> Tile:
    """The fastest of :func:`candidate_tiles` for ``func`` on this machine (cached)."""
    key = f"{tvm_ffi.structural_hash(func)}:{target}"
    if key in _MEMORY:
        return Tile(*_MEMORY[key])
    disk = _load_disk()
    if key in disk:
        _MEMORY[key] = tuple(disk[key])
        return Tile(*disk[key])
    best: tuple[float, Tile] | None = None
    for tile in candidate_tiles(func):
        try:
            seconds = time_primfunc(schedule_vnni(func, tile), target, number=30, repeat=9)
        except (RuntimeError, ValueError):
            continue
        if best is None or seconds < best[0]:
            best = (seconds, tile)
    tile = best[1] if best is not None else Tile(1, 1)
    _MEMORY[key] = (tile.mr, tile.nr)
    _store_disk(key, tile)
    return tile


def tune_module(mod: tvm.IRModule, target: tvm.target.Target) -> dict[str, Tile]:
    """``{function name: tile}`` for every unscheduled VNNI PrimFunc of ``mod``."""
    tiles = {}
    for gvar, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc) and "tq_vnni" in gvar.name_hint:
            tiles[gvar.name_hint] = tune_tile(func, target)
    return tiles
