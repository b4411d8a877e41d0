"""What the benchmarks report and how: derived columns, the markdown tables, the results files
and the README sections.

* the latency table of ``benchmarks/run.py``: :func:`derive` adds the best peer, the ratios
  best peer / tvm-qdq and the 2-thread flags to the measured rows (:mod:`measure`);
  :func:`render` makes the table with its header and one geomean line per thread count;
  :func:`write_results` writes ``latest.{md,json,csv,png}`` (:func:`flat_row`: one CSV record);
* the tables of ``roofline.py``, ``real_models.py``, ``pytorch2.py`` and ``hexagon.py``:
  :func:`render_roofline`, :func:`render_real_models`, :func:`render_pytorch2`,
  :func:`render_hexagon`;
* :func:`update_readme_section`: a table between two marker lines of the README.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
from pathlib import Path

from cases import row_id
from measure import BURST, PEERS, RUNNERS, SETTLE, add_note
from peers import PEER_RULE, best_peer, within_contract
from plot import plot

#: A runner is flagged at 2 threads when its median exceeds this multiple of its 1-thread one
#: (equal times, within the noise, are how small models scale; not a fault).
SLOWER = 1.10


def describe_machine(os_name: bool = True) -> str:
    """``arch cpu, N cores[, OS]`` of this machine (the CPU as LLVM names it)."""
    import tvm

    cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    text = f"{platform.machine()} {cpu}, {os.cpu_count()} cores"
    return f"{text}, {platform.system()}" if os_name else text


def update_readme_section(readme: Path, markers: tuple[str, str], table: str) -> None:
    """Replace what stands between the two marker lines of ``readme`` by ``table``."""
    text = readme.read_text()
    start, end = markers
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def fmt_ms(value: float | None) -> str:
    """A latency in ms for a table: 3 significant digits, whole ms from 100 on."""
    if value is None:
        return "–"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


# ----------------------------------------------------------------------------------------------
# The latency table of benchmarks/run.py
# ----------------------------------------------------------------------------------------------


def _fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ms(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _agree(ag: dict | None) -> str:
    if ag is None:
        return "–"
    if "abs" in ag:
        return f"abs {ag['abs']:.2g}" + (f", cos {ag['cos']:.4f}" if "cos" in ag else "")
    return f"{ag['lsb']:.0f} ({100 * ag['within1']:.1f}%)"


def _geomean(values: list[float | None]) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _timed(row: dict, key: str) -> str:
    """Median ms with the spread over the rounds in percent of it: ``0.180 −2/+5%``."""
    timing = row["timings"].get(key)
    if timing is None:
        return _ms(row.get(f"{key}_ms"))
    med = timing["median"]
    low, high = 100 * (med - timing["min"]) / med, 100 * (timing["max"] - med) / med
    return f"{_ms(med)} −{low:.0f}/+{high:.0f}%"


def _one_thread(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["config"]): r for r in rows if r["threads"] == 1}


def derive(rows: list[dict]) -> None:
    """Add the best peer, the ratios, the peers out of contract and the 2-thread flags."""
    single = _one_thread(rows)
    for r in rows:
        peer_ms = {k: r.get(f"{k}_ms") for k in PEERS}
        r["best_peer"] = best_peer(peer_ms, r["peer_agreement"])
        r["best_peer_ms"] = peer_ms[r["best_peer"]] if r["best_peer"] else None
        r["best_over_tvm_qdq"] = _ratio(r["best_peer_ms"], r["tvm_qdq_ms"])
        r["best_over_untuned"] = _ratio(r["best_peer_ms"], r["tvm_qdq_untuned_ms"])
        r["ort_over_tvm_qdq"] = _ratio(r["ort_ms"], r["tvm_qdq_ms"])
        if r["vs_ref"] is not None and not within_contract(r["vs_ref"]):
            add_note(r, "tvm-qdq itself outside the contract")
        out = [f"{RUNNERS[k]} {_agree(ag)}" for k, ag in r["peer_agreement"].items()
               if not within_contract(ag)]
        if out:
            add_note(r, "out of contract, no peer: " + ", ".join(out))
        one = single.get((r["model"], r["config"]))
        slower = [] if r["threads"] == 1 or one is None else [
            k for k in RUNNERS if r.get(f"{k}_ms") and one.get(f"{k}_ms")
            and r[f"{k}_ms"] > SLOWER * one[f"{k}_ms"]]
        r["slower_than_1_thread"] = slower
        if slower:
            add_note(r, f"FLAG > {SLOWER:.2f}× its 1-thread time: "
                      + ", ".join(RUNNERS[k] for k in slower))
        r["in_geomean"] = r["best_over_tvm_qdq"] is not None and not (
            {"tvm_qdq", r["best_peer"]} & set(slower))


def _header(date: str, machine: str, wall_s: float | None, spin: str) -> str:
    took = f" ({wall_s / 60:.0f} min)" if wall_s else ""
    return (
        f"Measured {date} on {machine} by `benchmarks/run.py`{took}. Every peer at its own "
        "defaults: ONNX Runtime's default session options (intra-op thread spinning on), "
        "OpenVINO with `PERFORMANCE_HINT=LATENCY`, PyTorch with its default OpenMP wait "
        f"policy; tvm-qdq's TVM thread pool spins {spin} iterations before sleeping "
        "(`TVM_THREAD_POOL_SPIN_COUNT`) and does not pin its workers to cores "
        "(`TVM_BIND_THREADS=0`), both set for a model's first run unless given. Times: "
        "median over interleaved rounds (at least 5; in each round every peer and both "
        "tvm-qdq builds take turns: a wait until the previous one's threads stop spinning "
        f"(ONNX Runtime's spin on for about 26 ms after its last call), {SETTLE} untimed "
        f"call, then {BURST} timed calls, their median is the round's value) and "
        "the spread of the rounds (−min/+max, % of the median); `untuned` = tvm-qdq with "
        "`tuning_db=False`. Best peer: the faster of ORT and OpenVINO among those whose "
        f"output agrees with ORT's reference path as tvm-qdq must ({PEER_RULE}); PyTorch on "
        "`torch_dynamic` rows (their reference). Ratio > 1: tvm-qdq faster. Agreement of "
        "tvm-qdq: max difference in LSB of the output scale (share ≤ 1 LSB), or the largest "
        "absolute difference and worst-row cosine of a float output, with ORT's reference "
        "path (optimizations off) and ORT's default session. Stock TVM is `from_onnx` + "
        "default `tvm.compile`: unscheduled serial loops, measured once and shown at both "
        f"thread counts, no geomean. A row over {SLOWER:.2f}× slower at 2 threads than at 1 is "
        "flagged and, "
        "when that concerns tvm-qdq or the best peer, left out of the 2-thread geomean.")


COLUMNS = ("| model | config | threads | ORT ms | OpenVINO ms | PyTorch ms | best peer | "
           "tvm-qdq ms | untuned ms | best peer / tvm-qdq | stock TVM ms (unscheduled default "
           "build) | vs ORT ref | vs ORT opt | compile s | note |")


def _openvino_cell(r: dict) -> str:
    if r.get("openvino_ms") is not None:
        return _timed(r, "openvino")
    return f"n/a ({r['openvino_error']})" if r.get("openvino_error") else "–"


def _row_line(r: dict) -> str:
    stock = r.get("stock_tvm_ms")
    stock_text = _ms(stock) if stock is not None else r.get("stock_note") or "–"
    best = RUNNERS[r["best_peer"]] if r["best_peer"] else "none"
    return (f"| {r['model']} | {r['config']} | {r['threads']} | {_timed(r, 'ort')} | "
            f"{_openvino_cell(r)} | {_timed(r, 'pytorch')} | {best} | {_timed(r, 'tvm_qdq')} | "
            f"{_timed(r, 'tvm_qdq_untuned')} | {_fmt(r['best_over_tvm_qdq'], 2)} | "
            f"{stock_text} | {_agree(r['vs_ref'])} | {_agree(r['vs_opt'])} | "
            f"{_fmt(r['compile_s'], 1)} | {r['note']} |")


def _left_out(sub: list[dict]) -> str:
    """Why rows of one thread count are not in its geomean."""
    reasons = {"no peer within the contract": [r for r in sub if r["best_over_tvm_qdq"] is None
                                                and r["tvm_qdq_ms"] is not None],
               "flagged": [r for r in sub if r["best_over_tvm_qdq"] is not None
                           and not r["in_geomean"]]}
    return "".join(f"; {why}: {', '.join(row_id(r['model'], r['config']) for r in rs)}"
                   for why, rs in reasons.items() if rs)


def _geomean_line(rows: list[dict], threads: int) -> str:
    """Best peer / tvm-qdq (and / untuned) over the rows in the geomean; ORT / tvm-qdq over
    every row ORT ran and that is not flagged, whatever its agreement."""
    sub = [r for r in rows if r["threads"] == threads]
    used = [r for r in sub if r["in_geomean"]]
    best = _geomean([r["best_over_tvm_qdq"] for r in used])
    untuned = _geomean([r["best_over_untuned"] for r in used])
    ort = _geomean([r["ort_over_tvm_qdq"] for r in sub
                    if not {"ort", "tvm_qdq"} & set(r["slower_than_1_thread"])])
    note = (f"{len(used)} rows; best peer / untuned {_fmt(untuned, 2)}; ORT / tvm-qdq "
            f"(any agreement) {_fmt(ort, 2)}{_left_out(sub)}")
    return (f"| **geomean** | | {threads} | | | | | | | {_fmt(best, 2)} | | | | | {note} |")


def render(rows: list[dict], machine: str, date: str, wall_s: float | None) -> str:
    """The markdown table: :func:`_header`, one line per row and thread count, geomeans."""
    spin = ", ".join(sorted({str(r.get("tvm_spin_count")) for r in rows})) or "?"
    rule = "|---" * COLUMNS.count(" | ") + "|---|"
    lines = [_header(date, machine, wall_s, spin), "", COLUMNS, rule]
    lines += [_row_line(r) for r in rows]
    lines += [_geomean_line(rows, t) for t in sorted({r["threads"] for r in rows})]
    return "\n".join(lines)


def flat_row(r: dict) -> dict:
    """One CSV record: agreements and timings spread into columns."""
    nested = ("vs_ref", "vs_opt", "peer_agreement", "timings", "slower_than_1_thread")
    f = {k: v for k, v in r.items() if k not in nested}
    for side in ("ref", "opt"):
        ag = r.get(f"vs_{side}") or {}
        f[f"max_lsb_vs_ort_{side}"] = ag.get("lsb")
        f[f"within_1_lsb_{side}"] = ag.get("within1")
        f[f"max_abs_vs_{side}"] = ag.get("abs")
        f[f"cos_vs_{side}"] = ag.get("cos")
    for key in RUNNERS:
        timing = r["timings"].get(key) or {}
        f[f"{key}_min_ms"], f[f"{key}_max_ms"] = timing.get("min"), timing.get("max")
        f[f"{key}_rounds"] = timing.get("rounds")
    for key in PEERS:
        ag = r["peer_agreement"].get(key)
        f[f"{key}_agreement"] = _agree(ag) if ag else None
        f[f"{key}_within_contract"] = within_contract(ag) if ag else None
    f["slower_than_1_thread"] = " ".join(r["slower_than_1_thread"])
    return f


def write_results(rows: list[dict], out: Path, table: str, date: str,
                  roofline: dict | None = None) -> None:
    """``latest.md`` (``table``), ``latest.json`` (every row, the roofline), ``latest.csv``
    (:func:`flat_row`) and ``latest.png`` (:func:`plot.plot`) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(table + "\n")
    (out / "latest.json").write_text(json.dumps({"date": date, "machine": describe_machine(),
                                                 "peer_rule": PEER_RULE, "rows": rows,
                                                 "roofline": roofline}, indent=1))
    flat = [flat_row(r) for r in rows]
    fields = list(dict.fromkeys(k for f in flat for k in f))
    with open(out / "latest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    plot(rows, out / "latest.png", title=f"tvm-qdq vs its peers, {date}")


# ----------------------------------------------------------------------------------------------
# The tables of the other benchmark scripts
# ----------------------------------------------------------------------------------------------


def render_roofline(result: dict) -> str:
    """Markdown: the peak (and, on an AMX host, the AMX kernel's and ORT's int8 matmul
    throughput), then one line per kernel (the largest conv and matmul of each model, every
    kernel with ``--all``)."""
    lines = [
        f"Roofline: int8 VNNI peak **{result['peak_gmacs']:.1f} GMAC/s** per core "
        "(independent vpdpbusd chains, operands in L1, `benchmarks/roofline.py`); each "
        "model's largest conv and matmul (QDQ u8/s8 form, stored tiles), timed alone on one "
        "core: fused (with its requantize epilogue) and bare (the same VNNI kernel writing "
        "int32, no epilogue; not measured for AMX kernels). When a model has several kernels "
        "of that size (one per layer), the median one is shown; % of peak is of the VNNI "
        "peak, so an AMX kernel can pass 100%.",
    ]
    amx = result.get("amx")
    if amx:
        m, k, n = amx["shape"]
        lines += ["", f"AMX: tvm-qdq's AMX matmul kernel on {m}×{k} @ {k}×{n} (uint8 × int8, "
                  f"one core) **{amx['gmacs']:.1f} GMAC/s**; ONNX Runtime's MatMulInteger on "
                  f"the same shape {amx['ort_gmacs']:.1f} GMAC/s (above the VNNI peak: ORT "
                  "uses AMX too)."]
    lines += [
        "",
        "| model | kernel | kind | MACs | µs | GMAC/s | % of peak | bare: % of peak "
        "| int8 dot in asm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        pct = f"{r['pct_peak']:.0f}%" if r["pct_peak"] is not None else ""
        bare = f"{r['bare_pct_peak']:.0f}%" if r.get("bare_pct_peak") is not None else ""
        dot = r.get("dot", {True: "vpdpbusd", False: None}.get(r.get("vpdpbusd")))
        asm = dot if dot else ("**no**" if r.get("largest") else "")
        name = r["kernel"] if len(r["kernel"]) <= 40 else r["kernel"][:37] + "..."
        label = f"`{name}`"
        if (r.get("of_same_size") or 1) > 1:
            label += f" (median of {r['of_same_size']})"
        lines.append(
            f"| {r['model']} | {label} | {r['kind']} | {r['macs']} | {r['us']:.1f} | "
            f"{r['gmacs']:.1f} | {pct} | {bare} | {asm} |")
    return "\n".join(lines)


def render_real_models(rows: list[dict], machine: str, date: str) -> str:
    """The table of ``benchmarks/real_models.py`` (markdown; also the README's)."""
    lines = [
        f"Measured {date} on {machine} by `benchmarks/real_models.py` (interleaved medians; "
        "ratio > 1: tvm-qdq faster than the better peer). Agreement with ORT's reference "
        "path: max |diff| against how far ORT's own output moves under a relative 1e-6 input "
        "change, worst-row cosine; `ok` when within the yardstick (DESIGN.md §2).",
        "",
        "| model | source | format | threads | import | integer conv/matmul | agreement | "
        "ORT ms | OpenVINO ms | tvm-qdq ms | untuned ms | best peer / tvm-qdq |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms = r.get("ms", {})
        if r.get("import") == "ok":
            integer = (f"{r['quantized_nodes']} quantized, {r['float_compute']} float"
                       if r["quantized_nodes"] else "weight-only: float by design")
            ag = r["agreement"]
            moved = "–" if ag["movement"] is None else f"{ag['movement']:.2g}"
            agree = (f"{'ok' if ag['ok'] else 'OUT'}: {ag['max_abs']:.2g} vs {moved}, "
                     f"cos {ag['cosine']:.5f}")
            if "top1" in ag:
                agree += ", top-1 " + ("same" if ag["top1"] else "DIFFERS")
        else:
            integer, agree = "–", "–"
        peers = [v for k, v in ms.items() if k in ("ort", "openvino")]
        ratio = (f"{min(peers) / ms['tvm_qdq']:.2f}" if peers and "tvm_qdq" in ms else "–")
        ov = fmt_ms(ms.get("openvino")) if "openvino" in ms else \
            f"n/a ({r.get('openvino_error', '–')})"
        lines.append(
            f"| {r['model']} | {r['source']} | {r['format']} | {r['threads']} | "
            f"{r['import']} | {integer} | {agree} | {fmt_ms(ms.get('ort'))} | {ov} | "
            f"{fmt_ms(ms.get('tvm_qdq'))} | {fmt_ms(ms.get('tvm_qdq_untuned'))} | {ratio} |")
    return "\n".join(lines)


def render_dynamic_shapes(rows: list[dict], machine: str, date: str,
                          smoke: bool = False) -> str:
    """The table of ``benchmarks/dynamic_shapes.py`` (markdown; also the README's)."""
    run = "`benchmarks/dynamic_shapes.py --smoke` (two sizes per model, not the full grid)" \
        if smoke else "`benchmarks/dynamic_shapes.py`"
    lines = [
        f"Measured {date} on {machine} by {run}: each model compiled "
        "once with symbolic dims (`bounds=` as shown), run at every size beside a static "
        "compile for that size and the peer (ORT for ONNX models, PyTorch eager for "
        "TorchScript ones; interleaved medians). Agreement: the one-compile build against "
        "the oracle at that size (ORT's reference path, or PyTorch; LSB, or max |diff| and "
        "worst-row cosine for float outputs).",
        "",
        "| model | bounds | threads | size | compile s (once) | agreement | = static | "
        "peer | peer ms | static ms | dynamic ms | dynamic / static | peer / dynamic |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bounds = ", ".join(f"{k} ≤ {v}" for k, v in r.get("bounds", {}).items())
        if "error" in r:
            lines.append(f"| {r['model']} | {bounds} | {r['threads']} | – | – | "
                         f"{r['error']} | – | – | – | – | – | – | – |")
            continue
        ms = r["ms"]
        peer = ms.get("peer", ms.get("ort"))
        same = {True: "yes", False: "NO"}.get(r.get("identical_to_static"), "–")
        lines.append(
            f"| {r['model']} | {bounds} | {r['threads']} | {r['size']} | "
            f"{r['compile_s']:.1f} | {_agree(r.get('agreement'))} | {same} | "
            f"{r.get('peer', 'ORT')} | {fmt_ms(peer)} | {fmt_ms(ms.get('static'))} | "
            f"{fmt_ms(ms.get('dynamic'))} | "
            f"{_fmt(_ratio(ms.get('dynamic'), ms.get('static')), 2)} | "
            f"{_fmt(_ratio(peer, ms.get('dynamic')), 2)} |")
    return "\n".join(lines)


def render_pytorch2(rows: list[dict], date: str) -> str:
    """The table of ``benchmarks/pytorch2.py`` (markdown; also the README's)."""
    lines = [
        f"Measured {date} by `benchmarks/pytorch2.py` (interleaved medians; ratio > 1: tvm-qdq "
        "faster). PyTorch eager runs the converted program as PyTorch does; `torch.compile` is "
        "Inductor on CPU; ORT runs the program's `torch.onnx.export(dynamo=True)` file.",
        "",
        "| program | threads | PyTorch ms | torch.compile ms | ORT ms | tvm-qdq ms | untuned ms "
        "| PyTorch / tvm-qdq | torch.compile / tvm-qdq |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms = r["ms"]
        ours = ms["tvm_qdq"]
        inductor = (fmt_ms(ms["torch_compile"]) if "torch_compile" in ms
                    else f"n/a ({r.get('torch_compile_error')})")
        ort = fmt_ms(ms["ort"]) if "ort" in ms else f"n/a ({r.get('ort_error')})"
        vs_inductor = f"{ms['torch_compile'] / ours:.2f}" if "torch_compile" in ms else "–"
        lines.append(f"| {r['row']} | {r['threads']} | {fmt_ms(ms['pytorch'])} | {inductor} | "
                     f"{ort} | {fmt_ms(ours)} | {fmt_ms(ms['tvm_qdq_untuned'])} | "
                     f"{ms['pytorch'] / ours:.2f} | {vs_inductor} |")
    return "\n".join(lines)


def render_hexagon(results: list[dict], kernels: bool) -> str:
    """The summary table of ``benchmarks/hexagon.py`` (and per-kernel tables) as markdown."""
    lines = ["| model | requantize | vs x86 | instructions | packets | HVX share | vrmpy | "
             "compile s |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        agree = "bit-exact" if r["bit_exact_vs_x86"] else f"max {r['max_lsb_vs_x86']:g} LSB"
        lines.append(f"| {r['model']} | {r['requantize']} | {agree} | {r['instructions']:,} | "
                     f"{r['packets']:,} | {100 * r['hvx_share']:.1f}% | {r['vrmpy']:,} | "
                     f"{r['compile_s']} |")
    if kernels:
        for r in results:
            lines += ["", f"{r['model']} (requantize={r['requantize']}) per kernel:", "",
                      "| kernel | instructions | packets | HVX share | vrmpy | schedule |",
                      "|---|---|---|---|---|---|"]
            for k in r["kernels"]:
                lines.append(f"| {k['name']} | {k['instructions']:,} | {k['packets']:,} | "
                             f"{100 * k['hvx_share']:.1f}% | {k['vrmpy']:,} | "
                             f"{k['schedule']} |")
    return "\n".join(lines)
