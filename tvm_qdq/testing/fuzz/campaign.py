"""Fuzz campaigns: batches of random graphs checked until a budget, counted and reported."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .checking import CheckResult, check_specs
from .failures import save_failure
from .generate import random_specs
from .spec import FuzzConfig, GraphSpec, spec_id


@dataclass
class CampaignStats:
    """Counters of a fuzz run (printed by ``scripts/fuzz``, recorded in docs/FUZZING.md)."""

    batches: int = 0
    graphs: int = 0
    ops: int = 0
    failures: int = 0
    explained: int = 0
    contract_explained: int = 0
    exact_graphs: int = 0
    triaged: int = 0
    judged: dict[str, int] = field(default_factory=dict)  # OpJudgement.category → ops
    generator_errors: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)
    dtype_counts: dict[str, int] = field(default_factory=dict)
    failure_dirs: list[str] = field(default_factory=list)
    explained_notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    unique: set[str] = field(default_factory=set)

    def add(self, specs: Sequence[GraphSpec]) -> None:
        self.batches += 1
        self.graphs += len(specs)
        for s in specs:
            self.unique.add(spec_id([dataclasses.replace(s, prefix="")]))
            for r in s.records:
                if r["kind"] == "op":
                    self.ops += 1
                    self.op_counts[r["op"]] = self.op_counts.get(r["op"], 0) + 1
                    for q in r["q"]:
                        self.dtype_counts[q["dtype"]] = self.dtype_counts.get(q["dtype"], 0) + 1
                elif r["kind"] == "input":
                    dt = r["q"]["dtype"]
                    self.dtype_counts[dt] = self.dtype_counts.get(dt, 0) + 1

    def add_result(self, result: CheckResult) -> None:
        """Count a batch's graph outcomes and the per-op judgements of its triaged graphs."""
        self.exact_graphs += result.exact_graphs
        self.triaged += result.triaged
        self.explained += len(result.explained)
        self.contract_explained += result.contract_explained
        self.explained_notes += result.explained
        for j in result.judgements:
            self.judged[j.category] = self.judged.get(j.category, 0) + 1

    def report(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.op_counts.items()))
        dts = ", ".join(f"{k} {v}" for k, v in sorted(self.dtype_counts.items()))
        j = self.judged
        lines = [
            f"graphs tried: {self.graphs} ({len(self.unique)} distinct) in {self.batches} "
            f"compiled models, {self.ops} ops, {self.seconds:.0f} s",
            f"failures: {self.failures}; generator errors: {self.generator_errors}",
            f"graphs with bit-exact outputs: {self.exact_graphs}; triaged (an output differs): "
            f"{self.triaged}, of which explained (every difference an ORT float32 near-tie): "
            f"{self.explained} ({self.contract_explained} beyond the graph contract)",
            f"ops judged in triage: exact {j.get('exact', 0)}, explained near-ties "
            f"{j.get('tie', 0)}, unexplained {j.get('fail', 0)}; re-judged downstream of a "
            f"divergence on ORT's inputs: {j.get('rejudged_pass', 0)} passed, "
            f"{j.get('rejudged_fail', 0)} failed",
            f"ops: {ops}",
            f"tensor types: {dts}",
        ]
        lines += [f"failure saved: {d}" for d in self.failure_dirs]
        lines += [f"explained: {n}" for n in self.explained_notes]
        return "\n".join(lines)


def isolate(specs: Sequence[GraphSpec]) -> list[tuple[GraphSpec, CheckResult]]:
    """The graphs of a failing batch that fail on their own (with their results)."""
    failing = []
    for spec in specs:
        alone = dataclasses.replace(spec, prefix="")
        result = check_specs([alone])
        if not result.ok:
            failing.append((alone, result))
    return failing


def _log(text: str) -> None:
    print(text, flush=True)


def run_campaign(graphs: int, seed: int, out: str | os.PathLike[str],
                 config: FuzzConfig | None = None, log: Callable[[str], None] = _log,
                 stats: CampaignStats | None = None) -> CampaignStats:
    """Fuzz until ``graphs`` graphs were tried, saving each failure under ``out``.

    Batch ``k`` is :func:`random_specs` of seed ``seed · 1 000 003 + k`` (so a campaign is
    reproducible).  A failure does not stop the run: the failing batch is reduced to the
    graphs that fail on their own, each saved with :func:`save_failure`.
    """
    import time

    config = config or FuzzConfig()
    stats = stats or CampaignStats()
    start = time.time()
    last_log = start
    k = 0
    while stats.graphs < graphs:
        specs = random_specs(seed * 1_000_003 + k, config)
        k += 1
        stats.add(specs)
        try:
            result = check_specs(specs)
        except Exception as err:  # noqa: BLE001 - ORT refused the graph: generator bug
            stats.generator_errors += 1
            folder = save_failure(specs, None, Path(out) / "generator")
            log(f"generator error ({type(err).__name__}: {err}); saved {folder}")
            continue
        stats.add_result(result)
        for note in result.explained:
            log(f"explained: {note}")
        if not result.ok:
            failing = isolate(specs) or [(s, result) for s in result.failing_specs]
            for spec, res in failing:
                stats.failures += 1
                folder = save_failure([spec], res, out)
                stats.failure_dirs.append(str(folder))
                log(f"FAILURE saved in {folder}:\n{res.summary()}")
        stats.seconds = time.time() - start
        if time.time() - last_log > 120:
            last_log = time.time()
            log(f"[{stats.seconds:.0f} s] {stats.graphs} graphs ({len(stats.unique)} distinct), "
                f"{stats.failures} failure(s), {stats.explained} explained")
    return stats
