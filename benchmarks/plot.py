"""The benchmark picture: tvm-qdq's speed-up over the best peer, and the latencies behind it.

Left panel: per row (grouped by model), best peer / tvm-qdq at 1 and 2 threads as horizontal
bars on a log scale with a line at 1.0 (right of it: tvm-qdq faster). Right panel, same rows:
the median latency of every peer and of tvm-qdq (tuned, untuned) with the min–max spread of the
rounds, 1 thread filled, 2 threads hollow. Input: the row dicts of ``benchmarks/run.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: Runner key → (legend name, colour, marker).
SERIES = {
    "ort": ("ONNX Runtime", "tab:blue", "o"),
    "openvino": ("OpenVINO", "tab:purple", "s"),
    "pytorch": ("PyTorch", "tab:orange", "D"),
    "tvm_qdq": ("tvm-qdq", "tab:green", "^"),
    "tvm_qdq_untuned": ("tvm-qdq untuned", "tab:olive", "v"),
}
THREAD_COLOURS = {1: "tab:green", 2: "tab:cyan"}


def _layout(rows: list[dict]) -> tuple[list[tuple[str, str]], dict[tuple[str, str], float],
                                       list[tuple[float, str]]]:
    """The (model, config) pairs in table order, their y positions, and one header position
    per model (rows of a model follow its header)."""
    pairs = list(dict.fromkeys((r["model"], r["config"]) for r in rows))
    ys: dict[tuple[str, str], float] = {}
    headers: list[tuple[float, str]] = []
    y = 0.0
    for model in dict.fromkeys(m for m, _ in pairs):
        headers.append((y, model))
        y += 1
        for pair in (p for p in pairs if p[0] == model):
            ys[pair] = y
            y += 1
        y += 0.4
    return pairs, ys, headers


def _label_rows(ax, ys: dict[tuple[str, str], float], headers: list[tuple[float, str]]) -> None:
    ticks = [y for y, _ in headers] + list(ys.values())
    labels = [model for _, model in headers] + [config for _, config in ys]
    ax.set_yticks(ticks, labels, fontsize=8)
    for tick, label in zip(ax.get_yticklabels(), labels, strict=True):
        if label in {m for _, m in headers}:
            tick.set_fontweight("bold")
    ax.set_ylim(max(ticks) + 0.8, -0.8)
    for y, _ in headers[1:]:
        ax.axhline(y - 0.7, color="0.85", lw=0.8)


def _speedup_panel(ax, rows: list[dict], ys: dict, threads: list[int]) -> None:
    """Best peer / tvm-qdq per row and thread count; hatched: left out of the geomean."""
    height = 0.8 / len(threads)
    for i, t in enumerate(threads):
        for r in (r for r in rows if r["threads"] == t):
            y = ys[(r["model"], r["config"])] + (i - (len(threads) - 1) / 2) * height
            ratio = r.get("best_over_tvm_qdq")
            if ratio is None:
                ax.text(1.0, y, " no peer in contract / no result", va="center", fontsize=6,
                        color="0.4")
                continue
            ax.barh(y, ratio - 1.0, height=height, left=1.0,  # from the 1.0 line
                    color=THREAD_COLOURS.get(t, "0.5"), hatch=None if r["in_geomean"] else "//",
                    edgecolor="0.3", lw=0.3, label=f"{t} thread{'s' * (t > 1)}")
            peer = SERIES[r["best_peer"]][0] if r["best_peer"] in SERIES else ""
            ax.text(ratio, y, f" {ratio:.2f}× {peer}", va="center", fontsize=6)
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ax.set_xlim(min(low, 0.5), high * 3)  # room for the labels
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlabel("best peer latency / tvm-qdq latency (log; > 1: tvm-qdq faster)")
    ax.set_title("tvm-qdq's speed-up over the best peer (hatched: flagged)", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="best")


def _latency_panel(ax, rows: list[dict], ys: dict, threads: list[int]) -> None:
    """Median ms of every runner, min–max error bars; 1 thread filled, others hollow."""
    keys = [k for k in SERIES if any(r.get(f"{k}_ms") for r in rows)]
    step = 0.8 / max(1, len(keys) * len(threads))
    labelled: set[str] = set()
    for j, t in enumerate(threads):
        for i, key in enumerate(keys):
            name, colour, marker = SERIES[key]
            sub = [r for r in rows if r["threads"] == t and r.get(f"{key}_ms")]
            if not sub:
                continue
            offset = (j * len(keys) + i - (len(keys) * len(threads) - 1) / 2) * step
            y = [ys[(r["model"], r["config"])] + offset for r in sub]
            med = [r[f"{key}_ms"] for r in sub]
            spread = [r.get("timings", {}).get(key) or {} for r in sub]
            low = [m - s.get("min", m) for m, s in zip(med, spread, strict=True)]
            high = [s.get("max", m) - m for m, s in zip(med, spread, strict=True)]
            ax.errorbar(med, y, xerr=[low, high], fmt=marker, ms=3.5, color=colour,
                        mfc=colour if j == 0 else "white", elinewidth=0.6, capsize=0,
                        label=None if key in labelled else name)
            labelled.add(key)
    ax.set_xscale("log")
    ax.set_xlabel("median latency, ms (log; bars: min–max over the rounds)")
    ax.set_title("latencies per model (filled: 1 thread, hollow: 2 threads)", fontsize=9)
    ax.grid(axis="x", which="major", color="0.9")


def plot(rows: list[dict], path: Path, title: str = "") -> None:
    """Write the two-panel PNG to ``path`` (nothing, with a message, without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e .[bench]): no plot", file=sys.stderr)
        return
    if not rows:
        return
    pairs, ys, headers = _layout(rows)
    threads = sorted({r["threads"] for r in rows})
    height = 1.6 + 0.3 * (len(pairs) + len(headers))
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, height), sharey=True,
                                      gridspec_kw={"width_ratios": [1, 1.1]})
    _speedup_panel(left, rows, ys, threads)
    _latency_panel(right, rows, ys, threads)
    _label_rows(left, ys, headers)
    handles, labels = right.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", ncol=len(labels), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
