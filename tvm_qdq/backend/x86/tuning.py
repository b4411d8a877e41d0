"""Measured VNNI register-tile search (``tvm-qdq tune``): fills the tuning database.

For each fused VNNI PrimFunc of a model, the :func:`.schedules.vnni.default_tile` heuristic ranks
the register tiles that fit (``mr`` rows whose tiles are rectangles × ``nr`` 16-channel
blocks, at most :data:`.schedules.vnni.MAX_ACCUMULATORS` accumulators); the best :data:`CANDIDATES`
are built and timed on this machine (best of repeats), and the fastest goes to the database
(:mod:`.tuning_db`, tiles only). What was measured (every candidate's time, the heuristic's
tile and time, kernel name, model, machine, date) is appended to a log, one JSON line per
kernel (:func:`default_log_path`).

Kernels with padded rows (a symbolic row count, or a static one with poor divisors:
:mod:`.padded_tiles`) are skipped: their row tile is fixed by the kernel.

Compilation never measures: it reads tiles through :func:`.tuning_db.stored_tiles`.
:func:`prune_db` drops the kernels no given model produces (nothing is measured for it).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import tvm
from tvm import tirx

from .profile import time_primfunc
from .schedules.vnni import (
    MAX_ACCUMULATORS,
    Tile,
    default_tile,
    schedule_vnni,
    tile_score,
    valid_row_tiles,
)
from .tuning_db import (
    DEFAULT_DB,
    TuningDB,
    is_padded_kernel,
    is_symbolic_kernel,
    is_vnni_kernel,
    kernel_key,
    kernel_shape,
    target_key,
    tile_fits,
)

#: Tiles measured per kernel (the heuristic's best first).
CANDIDATES = 6


def default_log_path(db_path: Path) -> Path:
    """Where measurements for the database ``db_path`` are logged: for the committed database
    in a source checkout ``benchmarks/results/tuning_log.jsonl``, else next to the database
    (``<name>.log.jsonl``)."""
    results = DEFAULT_DB.parents[3] / "benchmarks" / "results"
    if Path(db_path).resolve() == DEFAULT_DB and results.is_dir():
        return results / "tuning_log.jsonl"
    return Path(db_path).with_suffix(".log.jsonl")


def machine_info() -> dict[str, object]:
    """What identifies the machine a tile was measured on (logged with each measurement)."""
    cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    return {"cpu": cpu, "arch": platform.machine(), "cores": os.cpu_count(),
            "system": platform.system(),
            "tvm_num_threads": os.environ.get("TVM_NUM_THREADS", "")}


def _round(seconds: float) -> float:
    return float(f"{seconds:.4g}")


def _tile_json(tile: Tile | None) -> list[int] | None:
    return None if tile is None else [tile.mr, tile.nr]


@dataclass
class Measurement:
    """The candidate tiles of one kernel timed (seconds, best of repeats) and the fastest."""

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

    def log_line(self, target: str, kernel: str) -> str:
        """One line of the log: the measurement with its database keys."""
        data = {"target": target, "kernel": kernel, "tile": _tile_json(self.tile),
                "seconds": None if self.seconds is None else _round(self.seconds),
                "default_tile": _tile_json(self.default_tile),
                "default_seconds": (None if self.default_seconds is None
                                    else _round(self.default_seconds)),
                "name": self.name, "model": self.model,
                "measured": {k: _round(v) for k, v in self.measured.items()},
                "rows": self.rows, "n_blocks": self.n_blocks, "machine": self.machine,
                "date": self.date}
        return json.dumps(data, sort_keys=True)


def append_log(path: Path, lines: Iterable[str]) -> None:
    """Append lines to the log at ``path`` (created with its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)


# ----------------------------------------------------------------------------------------------
# Search
# ----------------------------------------------------------------------------------------------


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
                 ) -> Measurement:
    """Time :func:`candidate_tiles` of ``func`` (the first is the heuristic's pick) and
    return the fastest with every time; a tile that fails to build is skipped."""
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
    return Measurement(
        tile=best[1] if best is not None else Tile(1, 1),
        seconds=best[0] if best is not None else None,
        default_tile=default,
        default_seconds=measured.get(f"{default.mr}x{default.nr}") if default else None,
        name=name, model=model, measured=measured, rows=rows, n_blocks=n_blocks,
        machine=machine_info(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def vnni_kernels(model, target: str | dict | tvm.target.Target = "x86"
                 ) -> list[tuple[str, tirx.PrimFunc]]:
    """``(function name, PrimFunc)`` of the fused VNNI kernels of ``model``, by name.

    ``model``: what :func:`tvm_qdq.compile` takes (ONNX path/bytes/proto, or a Relax module
    such as ``tvm_qdq.from_torch``'s). The module goes through exactly the lowering of
    ``compile`` up to scheduling (integer rewrite, signedness legalization, kernel rewrite,
    fusion), so the functions hash to the keys ``compile`` looks up.
    """
    from ...compile import _attr, to_integer
    from ...frontend.onnx import from_onnx
    from ...targets import resolve_target, target_family
    from ..legalize_signedness import legalize_signedness
    from .lower import fuse_integer_kernels

    mod = model if isinstance(model, tvm.IRModule) else from_onnx(model)
    if _attr(mod, "tvm_qdq.stage") != "integer":
        mod = to_integer(mod)
    tgt = resolve_target(target)
    fused = fuse_integer_kernels(legalize_signedness(mod, target_family(tgt)), tgt)
    return sorted(((gvar.name_hint, func) for gvar, func in fused.functions.items()
                   if isinstance(func, tirx.PrimFunc) and is_vnni_kernel(func)),
                  key=lambda item: item[0])


@dataclass
class TuneEvent:
    """What :func:`tune_model` did with one kernel."""

    index: int  # 1-based
    total: int
    name: str
    key: str
    #: "measured", "stored" (already in the database), "duplicate", "symbolic" (a kernel
    #: with a symbolic row count: not measured, it compiles with the heuristic tile),
    #: "padded" (static rows padded to the kernel's row tile, :mod:`.padded_tiles`: not
    #: measured either)
    status: str
    tile: Tile | None
    measurement: Measurement | None
    wall_s: float


def tune_model(model, target: str | dict | tvm.target.Target, db: TuningDB, *,
               resume: bool = True, candidates: int = CANDIDATES, label: str = "",
               progress: Callable[[TuneEvent], None] | None = None,
               done: set[str] | None = None, log: Path | None = None) -> list[TuneEvent]:
    """Measure the VNNI tiles of every kernel of ``model`` (see :func:`vnni_kernels`) and
    store them in ``db``, logging each measurement to ``log`` (default
    :func:`default_log_path` of ``db``; none for an in-memory database).

    ``db`` is saved after every measured kernel, so an interrupted run loses at most one
    kernel and ``resume=True`` continues it (a stored tile that still fits is kept).
    ``done``: keys already handled in this run (shared across several calls, so a kernel
    common to two models is measured once even without ``resume``; updated in place).
    ``progress`` is called once per kernel. Returns one event per kernel.
    """
    from ...targets import resolve_target

    tgt = resolve_target(target)
    target_name = target_key(tgt)
    if log is None and db.path is not None:
        log = default_log_path(db.path)
    done = done if done is not None else set()
    funcs = vnni_kernels(model, tgt)
    events = []
    for index, (name, func) in enumerate(funcs, 1):
        key = kernel_key(func)
        start = time.perf_counter()
        stored = db.get(target_name, key)
        measurement = None
        if key in done:
            status = "duplicate"
        elif is_symbolic_kernel(func):
            status = "symbolic"  # size-dependent timing: compiles with the heuristic tile
        elif is_padded_kernel(func):
            status = "padded"  # static rows padded to the kernel's row tile: not tuned
        elif resume and stored is not None and tile_fits(stored, *kernel_shape(func)):
            status = "stored"
        else:
            measurement = measure_tile(func, tgt, candidates, name, label)
            db.put(target_name, key, measurement.tile)
            db.save()
            if log is not None:
                append_log(log, [measurement.log_line(target_name, key)])
            status = "measured"
        done.add(key)
        event = TuneEvent(index, len(funcs), name, key, status, db.get(target_name, key),
                          measurement, time.perf_counter() - start)
        events.append(event)
        if progress is not None:
            progress(event)
    return events


def prune_db(db: TuningDB, models: Iterable, target: str | dict | tvm.target.Target = "x86"
             ) -> int:
    """Drop ``target``'s kernels that none of ``models`` produces (tables of other targets
    are kept); returns how many were dropped. Nothing is measured."""
    from ...targets import resolve_target

    tgt = resolve_target(target)
    keys = {kernel_key(func) for model in models for _, func in vnni_kernels(model, tgt)}
    return db.retain(target_key(tgt), keys)


def format_event(event: TuneEvent, width: int = 48) -> str:
    """One progress line: ``[i/n] kernel: best tile and time (heuristic), wall time``."""
    name = event.name if len(event.name) <= width else event.name[: width - 1] + "…"
    if event.tile is None:
        return f"[{event.index}/{event.total}] {name}: no tile"
    text = f"[{event.index}/{event.total}] {name}: tile {event.tile.mr}x{event.tile.nr}"
    m = event.measurement
    if m is not None and m.seconds is not None:
        text += f" {1e3 * m.seconds:.4f} ms"
        if m.default_tile is not None and m.default_seconds:
            text += (f" (heuristic {m.default_tile.mr}x{m.default_tile.nr} "
                     f"{1e3 * m.default_seconds:.4f} ms, ×{m.default_seconds / m.seconds:.2f})")
    if event.status == "measured":
        text += f", {event.wall_s:.1f} s"
    else:
        text += f" [{event.status}]"
    return text
