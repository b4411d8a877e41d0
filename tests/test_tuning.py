"""Tuning as data: the tile database, ``tvm-qdq tune`` (resume) and ``compile`` using it."""

from __future__ import annotations

import json

import onnx
import pytest

import tvm_qdq
from tvm_qdq.backend.x86 import has_vnni, tuning
from tvm_qdq.backend.x86.schedules import Tile
from tvm_qdq.backend.x86.schedules import vnni as x86_schedule
from tvm_qdq.cli import main as cli_main
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.models import quantized_model, random_feeds


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return quantized_model("mlp", "u8s8_perchannel")


def _need_vnni() -> None:
    if not has_vnni(resolve_target("x86")):
        pytest.skip("host CPU has no AVX-512 VNNI")


def test_db_round_trip(tmp_path) -> None:
    path = tmp_path / "db.json"
    db = tuning.TuningDB(path)
    assert len(db) == 0
    record = tuning.TuningRecord(Tile(4, 2), 1.5e-6, Tile(8, 2), 2.0e-6, name="k", model="m",
                                 measured={"8x2": 2e-6, "4x2": 1.5e-6},
                                 machine={"cpu": "znver4"}, date="2026-01-01 00:00 UTC")
    db.put("123:llvm", record)
    db.save()
    data = json.loads(path.read_text())
    assert data["format"] == tuning.DB_FORMAT
    again = tuning.TuningDB(path)
    assert "123:llvm" in again and again.get("123:llvm") == Tile(4, 2)
    assert again.records["123:llvm"] == record
    assert tuning.TuningDB(tmp_path / "missing.json").records == {}


def test_stored_tile_must_fit() -> None:
    db = tuning.TuningDB(None)
    db.put("fits", tuning.TuningRecord(Tile(4, 2), rows=[1, 4, 4], n_blocks=2))
    db.put("stale", tuning.TuningRecord(Tile(3, 1), rows=[1, 4, 4], n_blocks=2))
    db.put("unknown", tuning.TuningRecord(Tile(3, 1)))
    assert db.get("fits") == Tile(4, 2)
    assert db.get("stale") is None  # the heuristic decides instead
    assert db.get("unknown") == Tile(3, 1)


def test_db_path_resolution(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(tuning.DB_ENV, raising=False)
    assert tuning.resolve_db_path() == tuning.DEFAULT_DB
    assert tuning.resolve_db_path(False) is None
    assert tuning.resolve_db_path(tmp_path / "x.json") == tmp_path / "x.json"
    monkeypatch.setenv(tuning.DB_ENV, str(tmp_path / "env.json"))
    assert tuning.resolve_db_path() == tmp_path / "env.json"
    monkeypatch.setenv(tuning.DB_ENV, "off")
    assert tuning.resolve_db_path() is None


def test_tune_resume_and_compile_uses_stored_tiles(model, tmp_path, monkeypatch,
                                                   capsys) -> None:
    _need_vnni()
    path = tmp_path / "model.onnx"
    onnx.save_model(model, path)
    db_path = tmp_path / "db.json"

    # First run measures every kernel once (the second copy of the model measures nothing),
    # with visible progress.
    assert cli_main(["tune", str(path), str(path), "--db", str(db_path),
                     "--candidates", "2"]) == 0
    out = capsys.readouterr().out
    assert "[1/" in out and "tile " in out and "[duplicate]" in out
    db = tuning.TuningDB(db_path)
    assert len(db) >= 1
    for record in db.records.values():
        assert record.machine.get("cpu") and record.date and record.measured
        assert record.rows and record.n_blocks and record.fits()

    # --resume measures nothing more.
    def no_measure(*args, **kwargs):
        raise AssertionError("resume must not measure a stored kernel")

    monkeypatch.setattr(tuning, "measure_tile", no_measure)
    assert cli_main(["tune", str(path), "--db", str(db_path), "--resume"]) == 0
    assert "[stored]" in capsys.readouterr().out
    assert tuning.TuningDB(db_path).records == db.records

    # Store a tile the heuristic would not pick (1×1) and check compile schedules with it,
    # measuring nothing (measure_tile still raises).
    forced = tuning.TuningDB(db_path)
    for record in forced.records.values():
        record.tile = Tile(1, 1)
    forced.save()
    seen: list[Tile | None] = []
    original = x86_schedule.schedule_vnni

    def spy(func, tile=None, parallel=None):
        seen.append(tile)
        return original(func, tile, parallel)

    monkeypatch.setattr(x86_schedule, "schedule_vnni", spy)
    compiled = tvm_qdq.compile(model, tuning_db=db_path)
    assert seen and all(t == Tile(1, 1) for t in seen)
    feeds = random_feeds(model)
    expected = tvm_qdq.compile(model, tuning_db=False).run(feeds)[0]
    assert (compiled.run(feeds)[0] == expected).all()

    # Without a database the heuristic picks (no tile passed).
    seen.clear()
    tvm_qdq.compile(model, tuning_db=False)
    assert seen and all(t is None for t in seen)

    # The environment variable points compile at a database too.
    seen.clear()
    monkeypatch.setenv(tuning.DB_ENV, str(db_path))
    tvm_qdq.compile(model)
    assert seen and all(t == Tile(1, 1) for t in seen)
