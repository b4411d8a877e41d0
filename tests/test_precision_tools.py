"""Precision map (inspect --precision) and the TensorQuantOverrides checker."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from onnxruntime.quantization import QuantType

import tvm_qdq
from tvm_qdq.cli import main as cli_main
from tvm_qdq.overrides import check_overrides, find_conflicts
from tvm_qdq.precision import precision_map, render, to_dot
from tvm_qdq.testing.mixed_models import mixed_case, seeds_graph
from tvm_qdq.testing.models import quantized_model


def test_precision_map_of_the_seeds_graph() -> None:
    pmap = precision_map(mixed_case("seeds_op4_u16"))
    types = {o.node: o.type for o in pmap.ops}
    assert types["Op4"] == "uint16" and types["Op5"] == "uint16"
    assert all(types[f"Op{i}"] == "uint8" for i in (1, 2, 3, 6, 7, 8))
    chains = {(b.from_type, b.to_type) for b in pmap.boundaries}
    assert chains == {("uint8", "uint16"), ("uint16", "uint8")}
    assert len(pmap.boundaries) == 3
    u16_regions = [r for r in pmap.regions if r["type"] == "uint16"]
    assert len(u16_regions) == 1 and set(u16_regions[0]["ops"]) == {"Op4", "Op5"}
    assert all(o.accumulator == "int32" for o in pmap.ops if o.op_type == "Conv")


@pytest.mark.parametrize("config", ["u16s8", "u8s8_perchannel"])
def test_precision_map_accumulators_agree_with_the_pass(config: str) -> None:
    model = quantized_model("resnet_cnn", config)
    pmap = precision_map(model)
    ops = [o for o in pmap.ops if o.accumulator]
    assert all((o.bound >= 2**31) == (o.accumulator == "int64") for o in ops)
    report = tvm_qdq.pass_report(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)))
    chosen = sorted(r.detail.rsplit(" ", 1)[-1] for r in report.integer
                    if r.op in ("relax.nn.conv2d", "relax.matmul"))
    assert chosen == sorted(o.accumulator for o in ops)


def test_inspect_returns_the_precision_map_as_data() -> None:
    info = tvm_qdq.inspect(mixed_case("seeds_op4_u16"))
    assert info["precision"]["boundaries"] and info["precision"]["regions"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' missing "
                    "(scripts/setup installs the Debian package 'graphviz')")
def test_precision_picture_and_cli(tmp_path, capsys) -> None:
    model = mixed_case("seeds_op4_u16")
    svg = render(to_dot(precision_map(model), model), tmp_path / "map.svg")
    assert svg.read_text().lstrip().startswith("<?xml") and "Op4" in svg.read_text()
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path)
    assert cli_main(["inspect", "--precision", str(path), "--graph",
                     str(tmp_path / "map.png")]) == 0
    out = capsys.readouterr().out
    assert "region" in out and "uint8 → uint16" in out
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"


def test_override_checker_finds_conflicts_and_shows_the_fix(tmp_path, capsys) -> None:
    model = seeds_graph()
    overrides = {"Op4_out": [{"quant_type": QuantType.QUInt16}]}
    report = check_overrides(model, overrides)
    assert not report.valid
    assert {(c.node, c.tensor) for c in report.conflicts} == {("Op4", "Op2_out"),
                                                              ("Op5", "Op4_out")}
    assert set(report.changes) == {"Op2_out", "Op3_out", "Op5_out"}
    assert report.fixed["Op2_out"][0]["convert"]["recv_nodes"] == {"Op4"}
    assert find_conflicts(model, report.fixed, QuantType.QUInt8) == []

    model_path, json_path = tmp_path / "f.onnx", tmp_path / "o.json"
    onnx.save_model(model, model_path)
    json_path.write_text(json.dumps({"Op4_out": [{"quant_type": "QUInt16"}]}))
    assert cli_main(["check-overrides", str(model_path), str(json_path)]) == 1
    assert "reads 'Op2_out' as QUInt8 but produces QUInt16" in capsys.readouterr().out


def test_consistent_overrides_pass() -> None:
    report = check_overrides(seeds_graph(), {})
    assert report.valid and report.changes == {}
