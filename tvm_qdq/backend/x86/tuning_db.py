"""The tuning database: stored VNNI register tiles, as data, and the tile source read from it.

The file (:data:`DEFAULT_DB` is committed with the package) maps a target and a kernel to a
tile and holds nothing else::

    {"format": 2, "targets": {"<target JSON>": {"<structural hash>": [mr, nr], ...}, ...}}

The kernel is the fused VNNI PrimFunc (one ``vnni`` block and its fused epilogue) before
scheduling; its key is the structural hash of that function (:func:`kernel_key`).
How the tiles were chosen (times, the heuristic's tile, machine, date) is a measurement and
goes to a log (:mod:`.tuning`), not here.

A tile source (:data:`TileSource`) maps a fused VNNI PrimFunc to its tile, or None for the
heuristic :func:`.schedules.vnni.default_tile`; ``lower_integer_kernels(mod, target, tiles=...)``
hands it to the VNNI schedule. :func:`stored_tiles` gives the source of a database file
(``compile(..., tuning_db=...)``): a stored tile is used only while it fits its kernel
(:func:`tile_fits`), e.g. not after the accumulator budget shrank, and never for a kernel
with padded rows (:func:`is_padded_kernel`: its row tile is fixed by the kernel).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from ..kernel_tags import VNNI, without_tags
from ..tir_blocks import blocks_of_kind
from .kernels import ROW_TILE_ATTR
from .schedules.common import spatial_extents
from .schedules.vnni import MAX_ACCUMULATORS, Tile, valid_row_tiles

#: Maps a fused VNNI PrimFunc to its register tile (None: the heuristic's).
TileSource = Callable[[tirx.PrimFunc], Tile | None]

#: The database committed with the package (``tvm-qdq tune`` writes it by default).
DEFAULT_DB = Path(__file__).resolve().with_name("tuning_db.json")

#: Environment variable naming another database file (``off``/``none``/empty: no database).
DB_ENV = "TVM_QDQ_TUNING_DB"

#: Version of the database file format (1: one record of measurements per kernel).
DB_FORMAT = 2
_FORMAT_1 = "tvm-qdq-tuning/1"


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------


def kernel_key(func: tirx.PrimFunc) -> str:
    """The database key of a fused VNNI PrimFunc: the structural hash of the function without
    its blocks' role annotations (:data:`..kernel_tags.KERNEL_ATTR`), so that the key names
    the computation, whatever labels its blocks carry."""
    return str(tvm_ffi.structural_hash(without_tags(func)))


def target_key(target: tvm.target.Target) -> str:
    """The database key of a target: its JSON form."""
    return str(target)


def vnni_block(sch: s_tir.Schedule):
    """The block of ``sch``'s function annotated as the VNNI reduction, None when it has none."""
    found = blocks_of_kind(sch, VNNI)
    return found[0] if found else None


def is_vnni_kernel(func: tirx.PrimFunc) -> bool:
    """Whether ``func`` holds a VNNI reduction block (the functions that have a tile)."""
    return vnni_block(s_tir.Schedule(func)) is not None


def _has_symbolic_extent(sch: s_tir.Schedule, block) -> bool:
    return any(not isinstance(iv.dom.extent, tirx.IntImm) for iv in sch.get(block).iter_vars)


def is_symbolic_kernel(func: tirx.PrimFunc) -> bool:
    """Whether ``func``'s VNNI block has a symbolic extent (a row count known at run time
    only): its key is size-independent, its tile the heuristic's (not measured)."""
    sch = s_tir.Schedule(func)
    block = vnni_block(sch)
    return block is not None and _has_symbolic_extent(sch, block)


def is_padded_kernel(func: tirx.PrimFunc) -> bool:
    """Whether ``func``'s VNNI block has padded rows (:data:`.kernels.ROW_TILE_ATTR`: a
    symbolic row count, or a static one with poor divisors, :mod:`.padded_tiles`): its row
    tile is fixed by the kernel, so it is not tuned and no stored tile applies."""
    sch = s_tir.Schedule(func)
    block = vnni_block(sch)
    return block is not None and ROW_TILE_ATTR in sch.get(block).annotations


def kernel_shape(func: tirx.PrimFunc) -> tuple[list[int], int]:
    """(row extents before the channel axis, 16-channel column blocks) of the VNNI block
    (ValueError: ``func`` has none, a symbolic extent, or padded rows)."""
    sch = s_tir.Schedule(func)
    block = vnni_block(sch)
    if block is None:
        raise ValueError("no VNNI block")
    if _has_symbolic_extent(sch, block):
        raise ValueError("the VNNI block has a symbolic extent: no fixed kernel shape")
    if ROW_TILE_ATTR in sch.get(block).annotations:
        raise ValueError("the VNNI block has padded rows: its row tile is the kernel's")
    extents = [int(e) for e in spatial_extents(sch, block)]
    return extents[:-1], extents[-1] // 16


def tile_fits(tile: Tile, rows: list[int], n_blocks: int) -> bool:
    """Whether the scheduler accepts ``tile`` for a kernel of this shape:
    ``mr · nr ≤ MAX_ACCUMULATORS``, ``nr`` divides the column blocks and ``mr`` rows tile the
    row extents in rectangles."""
    return (tile.mr * tile.nr <= MAX_ACCUMULATORS and n_blocks % tile.nr == 0
            and tile.mr in valid_row_tiles(rows, max(tile.mr, 64)))


# ----------------------------------------------------------------------------------------------
# The file
# ----------------------------------------------------------------------------------------------


class TuningDB:
    """``{target key: {kernel key: Tile}}`` read from / written to a JSON file.

    A missing or unreadable file gives an empty database; :meth:`save` writes atomically with
    sorted keys, one kernel per line (a re-tune changes only the lines it measured). A file of
    format 1 (records with measurements) is read as its tiles.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else None
        self.tiles: dict[str, dict[str, Tile]] = {}
        if self.path is not None and self.path.is_file():
            try:
                self._read(json.loads(self.path.read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                self.tiles = {}

    def _read(self, data: dict) -> None:
        if data.get("format") == _FORMAT_1:
            for key, record in data.get("kernels", {}).items():
                kernel, target = key.split(":", 1)
                self.put(target, kernel, Tile(*record["tile"]))
            return
        for target, table in data.get("targets", {}).items():
            for kernel, tile in table.items():
                self.put(target, kernel, Tile(*tile))

    def __len__(self) -> int:
        return sum(len(table) for table in self.tiles.values())

    def get(self, target: str, kernel: str) -> Tile | None:
        return self.tiles.get(target, {}).get(kernel)

    def put(self, target: str, kernel: str, tile: Tile) -> None:
        self.tiles.setdefault(target, {})[kernel] = tile

    def retain(self, target: str, kernels: set[str]) -> int:
        """Drop the kernels of ``target`` not in ``kernels``; returns how many were dropped."""
        table = self.tiles.get(target, {})
        stale = [k for k in table if k not in kernels]
        for kernel in stale:
            del table[kernel]
        if not table:
            self.tiles.pop(target, None)
        return len(stale)

    def text(self) -> str:
        """The file's contents."""
        targets = []
        for target in sorted(self.tiles):
            table = self.tiles[target]
            lines = ",\n".join(f"   {json.dumps(k)}: [{table[k].mr}, {table[k].nr}]"
                               for k in sorted(table))
            targets.append(f"  {json.dumps(target)}: {{\n{lines}\n  }}")
        body = ",\n".join(targets)
        return (f'{{\n "format": {DB_FORMAT},\n "targets": {{'
                + (f"\n{body}\n }}" if targets else "}") + "\n}\n")

    def save(self) -> None:
        """Write the file (no-op for an in-memory database)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.text())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a committed data file
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def resolve_db_path(db: str | os.PathLike | bool | None = None) -> Path | None:
    """The database file for ``compile(..., tuning_db=db)``: None/True → :func:`default_db_path`,
    False or ``"off"`` → no database, anything else → that path."""
    if db is None or db is True:
        return default_db_path()
    if db is False or str(db).strip().lower() in ("", "off", "none"):
        return None
    return Path(db).expanduser()


def default_db_path() -> Path | None:
    """``$TVM_QDQ_TUNING_DB`` if set (``off``/``none``/empty: None), else :data:`DEFAULT_DB`."""
    env = os.environ.get(DB_ENV)
    if env is None:
        return DEFAULT_DB
    if env.strip().lower() in ("", "off", "none", "0"):
        return None
    return Path(env).expanduser()


# ----------------------------------------------------------------------------------------------
# The tile source of a database
# ----------------------------------------------------------------------------------------------


def database_tiles(db: TuningDB, target: tvm.target.Target) -> TileSource:
    """The tile source of ``db``'s table for ``target``: the stored tile of a kernel when it
    fits the kernel, else None."""
    table = db.tiles.get(target_key(target), {})

    def source(func: tirx.PrimFunc) -> Tile | None:
        tile = table.get(kernel_key(func))
        if tile is None:
            return None
        try:
            return tile if tile_fits(tile, *kernel_shape(func)) else None
        except ValueError:  # not a VNNI kernel
            return None

    return source


def stored_tiles(db: str | os.PathLike | bool | None, target: tvm.target.Target
                 ) -> TileSource | None:
    """The tile source ``compile(..., tuning_db=db)`` schedules with (see
    :func:`resolve_db_path`); None when the database has no tile for ``target``."""
    path = resolve_db_path(db)
    found = TuningDB(path) if path is not None else TuningDB(None)
    return database_tiles(found, target) if found.tiles.get(target_key(target)) else None
