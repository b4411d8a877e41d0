"""Saving a failing graph (or batch) for replay: its spec, model, feeds and report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from .builder import build_specs
from .checking import CheckResult
from .spec import GraphSpec, spec_id


def save_failure(specs: Sequence[GraphSpec], result: CheckResult | None,
                 root: str | os.PathLike[str]) -> Path:
    """Write ``root/<id>/{spec.json, model.onnx, feeds.npz, report.txt}``; return the folder.

    ``spec.json`` is enough to replay (``check_specs([load_spec(path)])``); the model and
    feeds are there for other tools.
    """
    folder = Path(root) / spec_id(specs)
    folder.mkdir(parents=True, exist_ok=True)
    if len(specs) == 1:
        (folder / "spec.json").write_text(specs[0].to_json() + "\n")
    for i, s in enumerate(specs):
        (folder / f"spec_{i}.json").write_text(s.to_json() + "\n")
    try:
        built = build_specs(specs)
        onnx.save(built.model, str(folder / "model.onnx"))
        np.savez(folder / "feeds.npz", **built.feeds)
    except Exception as err:  # noqa: BLE001 - the specs are what matters
        (folder / "build_error.txt").write_text(repr(err))
    if result is not None:
        (folder / "report.txt").write_text(result.summary() + "\n")
    return folder
