"""Measured VNNI register-tile search, stored as data (``tuning_db.json``).

For each fused VNNI PrimFunc, the :func:`.schedule.default_tile` heuristic ranks the register
tiles that fit (``mr`` rows whose tiles are rectangles × ``nr`` 16-channel blocks, at most
:data:`.schedule.MAX_ACCUMULATORS` accumulators); the best :data:`CANDIDATES` are built and
timed on this machine (best of repeats), and the fastest is kept.

Results live in a :class:`TuningDB`, a JSON file keyed by ``"<structural hash of the fused
PrimFunc>:<target JSON>"`` with the tile, its time, the heuristic's tile and time, the kernel
name, the model it came from and machine/date metadata. The database committed with the
package (:data:`DEFAULT_DB`, filled by ``tvm-qdq tune MODEL``) is read by ``tvm_qdq.compile``
by default; ``$TVM_QDQ_TUNING_DB`` (or ``compile(..., tuning_db=PATH)``) points elsewhere,
and ``off`` disables it. Compilation never measures anything: a kernel absent from the
database gets the heuristic tile.

How the database reaches the scheduler: :func:`.lower.lower_integer_kernels` with
``tune=True`` calls :func:`tune_module` on the fused module; inside :func:`use_database` that
call only looks tiles up (``measure=False``) or measures the missing ones and stores them
(``measure=True``, what ``tvm-qdq tune`` does). ``tune=True`` outside any
:func:`use_database` measures every kernel without storing anything (the old behaviour).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from ..kernel_tags import without_tags
from .profile import time_primfunc
from .schedules.common import spatial_extents as _spatial_extents
from .schedules.vnni import (
    MAX_ACCUMULATORS,
    Tile,
    default_tile,
    schedule_vnni,
    tile_score,
    valid_row_tiles,
    vnni_block,
)

#: Tiles measured per kernel (the heuristic's best first).
CANDIDATES = 6

#: The database committed with the package (``tvm-qdq tune`` writes it by default).
DEFAULT_DB = Path(__file__).resolve().with_name("tuning_db.json")

#: Environment variable naming another database file (``off``/``none``/empty: no database).
DB_ENV = "TVM_QDQ_TUNING_DB"

#: Version of the database file format.
DB_FORMAT = "tvm-qdq-tuning/1"

_MEMORY: dict[str, Tile] = {}


# ----------------------------------------------------------------------------------------------
# The database
# ----------------------------------------------------------------------------------------------


def machine_info() -> dict[str, object]:
    """What identifies the machine a tile was measured on (stored with each record)."""
    cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    return {"cpu": cpu, "arch": platform.machine(), "cores": os.cpu_count(),
            "system": platform.system(),
            "tvm_num_threads": os.environ.get("TVM_NUM_THREADS", "")}


def _round(seconds: float) -> float:
    return float(f"{seconds:.4g}")


@dataclass
class TuningRecord:
    """The measured best tile of one kernel (times in seconds, best of repeats)."""

    tile: Tile
    seconds: float | None = None
    default_tile: Tile | None = None
    default_seconds: float | None = None
    name: str = ""
    model: str = ""
    measured: dict[str, float] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)  # kernel shape (see kernel_shape)
    n_blocks: int = 0
    machine: dict[str, object] = field(default_factory=dict)
    date: str = ""

    def fits(self) -> bool:
        """Whether :attr:`tile` still fits the recorded kernel shape (unknown shape: yes)."""
        return not self.rows or tile_fits(self.tile, self.rows, self.n_blocks)

    def to_json(self) -> dict:
        out: dict[str, object] = {"tile": [self.tile.mr, self.tile.nr]}
        if self.seconds is not None:
            out["seconds"] = _round(self.seconds)
        if self.default_tile is not None:
            out["default_tile"] = [self.default_tile.mr, self.default_tile.nr]
        if self.default_seconds is not None:
            out["default_seconds"] = _round(self.default_seconds)
        out.update({"name": self.name, "model": self.model,
                    "measured": {k: _round(v) for k, v in self.measured.items()},
                    "rows": self.rows, "n_blocks": self.n_blocks,
                    "machine": self.machine, "date": self.date})
        return out

    @classmethod
    def from_json(cls, data: dict) -> TuningRecord:
        default = data.get("default_tile")
        return cls(
            tile=Tile(*data["tile"]),
            seconds=data.get("seconds"),
            default_tile=Tile(*default) if default else None,
            default_seconds=data.get("default_seconds"),
            name=data.get("name", ""),
            model=data.get("model", ""),
            measured=dict(data.get("measured", {})),
            rows=[int(r) for r in data.get("rows", [])],
            n_blocks=int(data.get("n_blocks", 0)),
            machine=dict(data.get("machine", {})),
            date=data.get("date", ""),
        )


class TuningDB:
    """A JSON file of :class:`TuningRecord` by kernel key (see :func:`kernel_key`).

    Reading a missing or unreadable file gives an empty database; :meth:`save` writes
    atomically with sorted keys (stable diffs when the file is committed).
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else None
        self.records: dict[str, TuningRecord] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
            for key, value in data.get("kernels", {}).items():
                try:
                    self.records[key] = TuningRecord.from_json(value)
                except (KeyError, TypeError):
                    continue

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> Tile | None:
        """The stored tile of ``key`` if it still fits its kernel, else None."""
        record = self.records.get(key)
        return record.tile if record is not None and record.fits() else None

    def put(self, key: str, record: TuningRecord) -> None:
        self.records[key] = record

    def save(self) -> None:
        """Write the file (no-op for an in-memory database)."""
        if self.path is None:
            return
        # One line per kernel: readable, and a re-tune changes only the lines it measured.
        lines = [f" {json.dumps(k)}: {json.dumps(self.records[k].to_json(), sort_keys=True)}"
                 for k in sorted(self.records)]
        text = (f'{{\n "format": {json.dumps(DB_FORMAT)},\n "kernels": {{\n'
                + ",\n".join(" " + line for line in lines) + "\n }\n}\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
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


_DB_CACHE: dict[Path, tuple[float, TuningDB]] = {}


def open_db(path: str | os.PathLike | None) -> TuningDB:
    """The database at ``path`` (re-read only when the file changed); None: empty."""
    if path is None:
        return TuningDB(None)
    path = Path(path).expanduser().resolve()
    mtime = path.stat().st_mtime if path.is_file() else -1.0
    cached = _DB_CACHE.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    db = TuningDB(path)
    _DB_CACHE[path] = (mtime, db)
    return db


# ----------------------------------------------------------------------------------------------
# Search
# ----------------------------------------------------------------------------------------------


def kernel_key(func: tirx.PrimFunc, target: tvm.target.Target) -> str:
    """``"<structural hash>:<target JSON>"``: the database key of a fused VNNI PrimFunc."""
    return f"{tvm_ffi.structural_hash(without_tags(func))}:{target}"


def kernel_shape(func: tirx.PrimFunc) -> tuple[list[int], int]:
    """(row extents before the channel axis, 16-channel column blocks) of the VNNI block."""
    sch = s_tir.Schedule(func)
    main = vnni_block(sch)
    extents = [int(e) for e in _spatial_extents(sch, main)]
    return extents[:-1], extents[-1] // 16


def tile_fits(tile: Tile, rows: list[int], n_blocks: int) -> bool:
    """Whether the scheduler accepts ``tile`` for a kernel of this shape (a stored tile is
    used only if it still does, e.g. after the accumulator budget changed)."""
    return (tile.mr * tile.nr <= MAX_ACCUMULATORS and n_blocks % tile.nr == 0
            and tile.mr in valid_row_tiles(rows, max(tile.mr, 64)))


def candidate_tiles(func: tirx.PrimFunc, limit: int = CANDIDATES) -> list[Tile]:
    """The register tiles that fit ``func``'s VNNI block, best heuristic score first."""
    rows, n_blocks = kernel_shape(func)
    tiles = [
        Tile(mr, nr)
        for nr in range(1, min(n_blocks, 4) + 1) if n_blocks % nr == 0
        for mr in valid_row_tiles(rows) if mr * nr <= MAX_ACCUMULATORS and mr <= 16
    ]
    first = default_tile(rows, n_blocks)
    tiles.sort(key=lambda t: (t != first, -tile_score(t.mr, t.nr)))
    return tiles[:limit]


def measure_tile(func: tirx.PrimFunc, target: tvm.target.Target,
                 candidates: int = CANDIDATES, name: str = "", model: str = ""
                 ) -> TuningRecord:
    """Time :func:`candidate_tiles` of ``func`` (the first is the heuristic's pick) and
    return the fastest as a record; a tile that fails to build is skipped."""
    tiles = candidate_tiles(func, candidates)
    rows, n_blocks = kernel_shape(func)
    measured: dict[str, float] = {}
    best: tuple[float, Tile] | None = None
    for tile in tiles:
        try:
            seconds = time_primfunc(schedule_vnni(func, tile), target, number=30, repeat=9)
        except (RuntimeError, ValueError):
            continue
        measured[f"{tile.mr}x{tile.nr}"] = seconds
        if best is None or seconds < best[0]:
            best = (seconds, tile)
    default = tiles[0] if tiles else None
    return TuningRecord(
        tile=best[1] if best is not None else Tile(1, 1),
        seconds=best[0] if best is not None else None,
        default_tile=default,
        default_seconds=measured.get(f"{default.mr}x{default.nr}") if default else None,
        name=name, model=model, measured=measured, rows=rows, n_blocks=n_blocks,
        machine=machine_info(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


@dataclass
class TuneEvent:
    """Progress of :func:`tune_module` inside ``use_database(..., measure=True)``."""

    index: int  # 1-based
    total: int
    name: str
    key: str
    status: str  # measure: "measured", "stored" (already in the database), "duplicate";
    # look-up only: "hit", "miss"
    record: TuningRecord | None
    wall_s: float


@dataclass
class _Session:
    db: TuningDB
    measure: bool
    resume: bool = True
    candidates: int = CANDIDATES
    model: str = ""
    progress: Callable[[TuneEvent], None] | None = None
    events: list[TuneEvent] = field(default_factory=list)
    done: set[str] = field(default_factory=set)


_SESSION: _Session | None = None


@contextlib.contextmanager
def use_database(db: TuningDB, *, measure: bool = False, resume: bool = True,
                 candidates: int = CANDIDATES, model: str = "",
                 progress: Callable[[TuneEvent], None] | None = None
                 ) -> Iterator[_Session]:
    """Make ``lower_integer_kernels(..., tune=True)`` use ``db``.

    ``measure=False``: tiles are only looked up (kernels absent from ``db`` keep the heuristic
    tile). ``measure=True``: kernels are measured and stored (and ``db`` saved after each);
    with ``resume`` a kernel already in ``db`` is not measured again. ``progress`` is called
    once per kernel. Yields the session (its ``events`` list the kernels seen).
    """
    global _SESSION
    previous = _SESSION
    _SESSION = _Session(db, measure, resume, candidates, model, progress)
    try:
        yield _SESSION
    finally:
        _SESSION = previous


def tune_tile(func: tirx.PrimFunc, target: tvm.target.Target) -> Tile:
    """The fastest of :func:`candidate_tiles` for ``func`` (measured once per process)."""
    key = kernel_key(func, target)
    if key not in _MEMORY:
        _MEMORY[key] = measure_tile(func, target).tile
    return _MEMORY[key]


def _vnni_functions(mod: tvm.IRModule) -> list[tuple[str, tirx.PrimFunc]]:
    return sorted(
        ((gvar.name_hint, func) for gvar, func in mod.functions.items()
         if isinstance(func, tirx.PrimFunc) and "tq_vnni" in gvar.name_hint),
        key=lambda item: item[0])


def tune_module(mod: tvm.IRModule, target: tvm.target.Target) -> dict[str, Tile]:
    """``{function name: tile}`` for the unscheduled VNNI PrimFuncs of ``mod`` (see the
    module docstring for what :func:`use_database` changes)."""
    session = _SESSION
    funcs = _vnni_functions(mod)
    if session is None:
        return {name: tune_tile(func, target) for name, func in funcs}
    tiles: dict[str, Tile] = {}
    for index, (name, func) in enumerate(funcs, 1):
        key = kernel_key(func, target)
        start = time.perf_counter()
        if not session.measure:
            tile = session.db.get(key)
            if tile is not None:
                tiles[name] = tile
            session.events.append(TuneEvent(index, len(funcs), name, key,
                                            "hit" if tile is not None else "miss",
                                            session.db.records.get(key), 0.0))
            continue
        stored = session.db.records.get(key)
        if stored is not None and not stored.rows:  # older record: add the kernel shape
            stored.rows, stored.n_blocks = kernel_shape(func)
            session.db.save()
        if key in session.done:
            status = "duplicate"
        elif session.resume and stored is not None and stored.fits():
            status = "stored"
        else:
            record = measure_tile(func, target, session.candidates, name, session.model)
            session.db.put(key, record)
            session.db.save()
            status = "measured"
        session.done.add(key)
        record = session.db.records.get(key)
        if record is not None:
            tiles[name] = record.tile
        event = TuneEvent(index, len(funcs), name, key, status, record,
                          time.perf_counter() - start)
        session.events.append(event)
        if session.progress is not None:
            session.progress(event)
    return tiles


def stored_tiles(mod: tvm.IRModule, target: tvm.target.Target, db: TuningDB
                 ) -> dict[str, Tile]:
    """``{function name: tile}`` of the fused VNNI PrimFuncs of ``mod`` found in ``db``."""
    with use_database(db, measure=False):
        return tune_module(mod, target)


def tune_model(model, target: str | dict | tvm.target.Target = "x86",
               db: TuningDB | None = None, *, resume: bool = True,
               candidates: int = CANDIDATES, label: str = "",
               progress: Callable[[TuneEvent], None] | None = None,
               done: set[str] | None = None) -> list[TuneEvent]:
    """Measure the VNNI tiles of every kernel of ``model`` and store them in ``db``.

    ``model``: what :func:`tvm_qdq.compile` takes (ONNX path/bytes/proto, or a Relax module
    such as ``tvm_qdq.from_torch``'s). The module goes through exactly the lowering of
    ``compile`` (integer rewrite, signedness legalization, kernel rewrite, fusion), so the keys
    are the ones ``compile`` looks up. ``db`` defaults to :func:`default_db_path`'s file;
    it is saved after every measured kernel, so an interrupted run loses at most one kernel
    and ``resume=True`` continues it. ``done``: keys already handled in this run (shared
    across several calls, so a kernel common to two models is measured once even without
    ``resume``; updated in place). Returns one event per kernel.
    """
    from tvm_qdq.backend.legalize_signedness import legalize_signedness

    from ...compile import _attr, to_integer
    from ...frontend.onnx import from_onnx
    from ...targets import resolve_target, target_family
    from .lower import lower_integer_kernels

    mod = model if isinstance(model, tvm.IRModule) else from_onnx(model)
    if _attr(mod, "tvm_qdq.stage") != "integer":
        mod = to_integer(mod)
    tgt = resolve_target(target)
    mod = legalize_signedness(mod, target_family(tgt))
    if db is None:
        db = TuningDB(default_db_path() or DEFAULT_DB)
    with use_database(db, measure=True, resume=resume, candidates=candidates, model=label,
                      progress=progress) as session:
        if done is not None:
            session.done = done
        lower_integer_kernels(mod, tgt, tune=True)
    return session.events


def format_event(event: TuneEvent, width: int = 48) -> str:
    """One progress line: ``[i/n] kernel: best tile and time (heuristic), wall time``."""
    name = event.name if len(event.name) <= width else event.name[: width - 1] + "…"
    record = event.record
    if record is None:
        return f"[{event.index}/{event.total}] {name}: no tile"
    text = f"[{event.index}/{event.total}] {name}: tile {record.tile.mr}x{record.tile.nr}"
    if record.seconds is not None:
        text += f" {1e3 * record.seconds:.4f} ms"
    if record.default_tile is not None and record.default_seconds and record.seconds:
        text += (f" (heuristic {record.default_tile.mr}x{record.default_tile.nr} "
                 f"{1e3 * record.default_seconds:.4f} ms, "
                 f"×{record.default_seconds / record.seconds:.2f})")
    if event.status == "measured":
        text += f", {event.wall_s:.1f} s"
    else:
        text += f" [{event.status}]"
    return text
