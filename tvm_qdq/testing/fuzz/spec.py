"""What a fuzz graph is: the generator's configuration and the replayable :class:`GraphSpec`.

A spec is a JSON-serialisable list of *records* (graph inputs, ops, outputs) with every random
choice already made, plus a seed for the integer weights and the feeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .onnx_types import ACT_TYPES, WEIGHT_TYPES

#: Features that hit open tvm-qdq bugs (each has a strict-xfail regression test): the
#: generator avoids them unless ``FuzzConfig(known_bugs=frozenset())``.  Remove a tag here
#: when its bug is fixed.  Empty: the bugs found so far are fixed (docs/FUZZING.md).
KNOWN_BUGS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FuzzConfig:
    """What the strategies may generate.

    ``qoperator`` (QLinearConv / QLinearMatMul instead of DQ → op → Q, for about half of the
    eligible Conv / const-weight MatMul ops) is on by default.  ``act4`` allows 4-bit
    activations (QuantizeLinear to int4/uint4), outside today's supported set, so off.
    """

    max_ops: int = 4
    max_graphs: int = 8
    max_dim: int = 9
    act_types: tuple[str, ...] = ACT_TYPES
    weight_types: tuple[str, ...] = WEIGHT_TYPES
    per_axis_activations: bool = True
    blocked_weights: bool = True
    qoperator: bool = True
    act4: bool = False
    known_bugs: frozenset[str] = KNOWN_BUGS


@dataclass
class GraphSpec:
    """Everything needed to rebuild one graph: opset, seed and the records in order."""

    opset: int
    seed: int
    records: list[dict] = field(default_factory=list)
    prefix: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> GraphSpec:
        data = json.loads(text)
        return GraphSpec(data["opset"], data["seed"], data["records"], data.get("prefix", ""))

    def output_name(self, tensor: str) -> str:
        """Graph output name of tensor ``tensor``."""
        return f"{self.prefix}y_{tensor}"

    @property
    def num_ops(self) -> int:
        return sum(1 for r in self.records if r["kind"] == "op")

    def describe(self) -> str:
        """One line per record, for failure messages."""
        lines = [f"opset {self.opset}, seed {self.seed}"]
        for r in self.records:
            if r["kind"] == "input":
                lines.append(f"  input {r['name']} {r['shape']} {r['q']['dtype']}")
            elif r["kind"] == "op":
                outs = ", ".join(r["outputs"])
                ins = ", ".join(str(i.get("t", i.get("c", i.get("new", "")))) for i in r["inputs"])
                dtypes = ",".join(q["dtype"] for q in r["q"])
                lines.append(f"  {outs} = {r['op']}({ins}) {r['attrs']} → {dtypes}")
            else:
                lines.append(f"  output {r['tensor']} ({r['form']})")
        return "\n".join(lines)


def load_spec(path: str | os.PathLike[str]) -> GraphSpec:
    """Read a spec saved by :func:`save_failure` (or written by hand) from JSON."""
    return GraphSpec.from_json(Path(path).read_text())


def spec_id(specs: Sequence[GraphSpec]) -> str:
    """Short stable hash of a list of specs (names failure folders)."""
    text = "\n".join(s.to_json() for s in specs)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
