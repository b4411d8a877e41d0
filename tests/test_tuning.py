"""Tuning as data: the tile database, ``tvm-qdq tune`` (resume, prune) and ``compile`` using it."""

from __future__ import annotations

import json

import onnx
import pytest

import tvm_qdq
from tvm_qdq.backend.x86 import has_vnni, tuning, tuning_db
from tvm_qdq.backend.x86.schedules import Tile
from tvm_qdq.backend.x86.schedules import vnni as x86_schedule
from tvm_qdq.cli import main as cli_main
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.models import quantized_model, random_feeds

TARGET = "llvm -mcpu=test"


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return quantized_model("mlp", "u8s8_perchannel")


def _need_vnni() -> None:
    if not has_vnni(resolve_target("x86")):
        pytest.skip("host CPU has no AVX-512 VNNI")


def test_db_round_trip(tmp_path) -> None:
    path = tmp_path / "db.json"
    db = tuning_db.TuningDB(path)
    assert len(db) == 0
    db.put(TARGET, "123", Tile(4, 2))
    db.put(TARGET, "45", Tile(1, 3))
    db.put("other", "123", Tile(8, 1))
    db.save()
    data = json.loads(path.read_text())
    assert data == {"format": tuning_db.DB_FORMAT,
                    "targets": {TARGET: {"123": [4, 2], "45": [1, 3]}, "other": {"123": [8, 1]}}}
    again = tuning_db.TuningDB(path)
    assert len(again) == 3 and again.tiles == db.tiles
    assert again.get(TARGET, "123") == Tile(4, 2) and again.get(TARGET, "9") is None
    assert tuning_db.TuningDB(tmp_path / "missing.json").tiles == {}
    assert again.retain(TARGET, {"45", "7"}) == 1
    assert again.tiles == {TARGET: {"45": Tile(1, 3)}, "other": {"123": Tile(8, 1)}}
    empty = tuning_db.TuningDB(tmp_path / "empty.json")
    empty.save()
    assert json.loads(empty.path.read_text()) == {"format": 2, "targets": {}}


def test_reads_format_1(tmp_path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "tvm-qdq-tuning/1", "kernels": {
        f"123:{TARGET}": {"tile": [4, 2], "seconds": 1e-6, "model": "m"}}}))
    assert tuning_db.TuningDB(path).tiles == {TARGET: {"123": Tile(4, 2)}}


def test_tile_fits() -> None:
    assert tuning_db.tile_fits(Tile(4, 2), [1, 4, 4], 2)
    assert not tuning_db.tile_fits(Tile(3, 1), [1, 4, 4], 2)  # rows not in rectangles
    assert not tuning_db.tile_fits(Tile(4, 3), [1, 4, 4], 2)  # 3 does not divide 2 blocks


def test_db_path_resolution(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(tuning_db.DB_ENV, raising=False)
    assert tuning_db.resolve_db_path() == tuning_db.DEFAULT_DB
    assert tuning_db.resolve_db_path(False) is None
    assert tuning_db.resolve_db_path(tmp_path / "x.json") == tmp_path / "x.json"
    monkeypatch.setenv(tuning_db.DB_ENV, str(tmp_path / "env.json"))
    assert tuning_db.resolve_db_path() == tmp_path / "env.json"
    monkeypatch.setenv(tuning_db.DB_ENV, "off")
    assert tuning_db.resolve_db_path() is None
    assert tuning.default_log_path(tmp_path / "x.json") == tmp_path / "x.log.jsonl"


def test_committed_db_is_data_only() -> None:
    data = json.loads(tuning_db.DEFAULT_DB.read_text())
    assert data["format"] == tuning_db.DB_FORMAT and data["targets"]
    for table in data["targets"].values():
        for kernel, tile in table.items():
            assert kernel.isdigit() and len(tile) == 2 and all(isinstance(v, int) for v in tile)


def test_tune_resume_prune_and_compile_uses_stored_tiles(model, tmp_path, monkeypatch,
                                                         capsys) -> None:
    _need_vnni()
    path = tmp_path / "model.onnx"
    onnx.save_model(model, path)
    db_path = tmp_path / "db.json"
    log_path = tmp_path / "db.log.jsonl"

    # First run measures every kernel once (the second copy of the model measures nothing),
    # with visible progress; the database holds tiles, the log the measurements.
    assert cli_main(["tune", str(path), str(path), "--db", str(db_path),
                     "--candidates", "2"]) == 0
    out = capsys.readouterr().out
    assert "[1/" in out and "tile " in out and "[duplicate]" in out
    db = tuning_db.TuningDB(db_path)
    target = tuning_db.target_key(resolve_target("x86"))
    assert len(db) >= 1 and set(db.tiles) == {target}
    logged = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert {(m["target"], m["kernel"]) for m in logged} == {(target, k) for k in db.tiles[target]}
    for m in logged:
        assert m["machine"].get("cpu") and m["date"] and m["measured"] and m["name"]
        assert db.get(target, m["kernel"]) == Tile(*m["tile"])
        assert tuning_db.tile_fits(Tile(*m["tile"]), m["rows"], m["n_blocks"])

    # --resume measures nothing more.
    def no_measure(*args, **kwargs):
        raise AssertionError("resume must not measure a stored kernel")

    monkeypatch.setattr(tuning, "measure_tile", no_measure)
    assert cli_main(["tune", str(path), "--db", str(db_path), "--resume"]) == 0
    assert "[stored]" in capsys.readouterr().out
    assert tuning_db.TuningDB(db_path).tiles == db.tiles

    # --prune keeps the kernels the model produces, drops the others, measures nothing.
    db.put(target, "1", Tile(1, 1))
    db.put("another target", "1", Tile(1, 1))
    db.save()
    assert cli_main(["tune", str(path), "--db", str(db_path), "--prune"]) == 0
    assert "1 no given model produces dropped" in capsys.readouterr().out
    pruned = tuning_db.TuningDB(db_path)
    assert pruned.get(target, "1") is None and pruned.get("another target", "1") == Tile(1, 1)
    assert pruned.tiles[target] == {k: t for k, t in db.tiles[target].items() if k != "1"}

    # Store a tile the heuristic would not pick (1×1) and check compile schedules with it,
    # measuring nothing (measure_tile still raises).
    forced = tuning_db.TuningDB(db_path)
    for kernel in forced.tiles[target]:
        forced.put(target, kernel, Tile(1, 1))
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
    monkeypatch.setenv(tuning_db.DB_ENV, str(db_path))
    tvm_qdq.compile(model)
    assert seen and all(t == Tile(1, 1) for t in seen)
