"""docs/ARCHITECTURE.md's "Where things live" table matches the tree: every path it names
exists, and every module of the product, the passes and the benchmarks is named (itself, in a
``{a,b}.py`` group, or by its folder)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGES = ("tvm_qdq", "relay_passes", "benchmarks")


def _table_paths() -> list[str]:
    text = DOC.read_text()
    section = text.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    paths = []
    for line in section.splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = line.strip("|").split("|")
        for token in re.findall(r"`([^`]+)`", cells[-1]):
            paths.extend(_expand(token))
    return paths


def _expand(token: str) -> list[str]:
    """``a/{b,c}.py`` → ``a/b.py``, ``a/c.py``."""
    parts = re.split(r"\{([^}]*)\}", token)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def _modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if path.name == "__init__.py" and rel != "tvm_qdq/__init__.py":
                continue
            found.append(rel)
    return found


def test_every_named_path_exists() -> None:
    missing = [p for p in _table_paths() if not (ROOT / p).exists()]
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_every_module_is_named() -> None:
    named = _table_paths()
    folders = tuple(p for p in named if p.endswith("/"))
    unnamed = [m for m in _modules() if m not in named and not m.startswith(folders)]
    assert not unnamed, f"modules missing from ARCHITECTURE.md's table: {unnamed}"
