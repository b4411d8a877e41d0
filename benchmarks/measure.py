"""One benchmark row measured in this process: tvm-qdq (stored tuning and untuned) and its
peers on the row's inputs, timed interleaved, with the agreement of every output.

``benchmarks/run.py`` runs :func:`measure` in one worker process per thread count and
:func:`measure_stock` (stock TVM) in one process per row; a row is a dict with one
``<runner>_ms`` median per :data:`RUNNERS` key, the spread of the rounds under ``timings``,
and the agreements ``vs_ref`` / ``vs_opt`` (tvm-qdq against ORT's reference path and default
session) and ``peer_agreement`` (each peer against the reference).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cases import Case, build_case, row_id
from peers import openvino_model, openvino_runner, ort_session
from timing import interleaved, median_ms

#: What is timed per row, and the names the table gives them.
RUNNERS = {"ort": "ORT", "openvino": "OpenVINO", "pytorch": "PyTorch", "tvm_qdq": "tvm-qdq",
           "tvm_qdq_untuned": "tvm-qdq untuned"}
#: The peers among :data:`RUNNERS`.
PEERS = ("ort", "openvino", "pytorch")
#: Per round and runner: untimed calls after the switch (the previous runner's spinning
#: threads still hold the cores), then timed calls whose median is the round's value.
SETTLE, BURST = 1, 5


def _agreement(model, actual: np.ndarray, expected: np.ndarray) -> dict:
    """``{"lsb": max, "within1": fraction}`` in LSB of the output scale, or
    ``{"abs": max, "cos": worst-row cosine}`` for a float output without a constant
    quantization scale."""
    from tvm_qdq.testing.oracle import agreement, output_qparams
    from tvm_qdq.testing.yardstick import min_row_cosine

    qparams = None
    if model is not None:
        qparams = output_qparams(model).get(model.graph.output[0].name)
    if qparams is None and np.issubdtype(np.asarray(expected).dtype, np.floating):
        a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
        if a.shape != e.shape:
            return {"abs": math.inf, "cos": -1.0}
        diff = np.abs(a - e)
        return {"abs": float(diff.max()) if diff.size else 0.0, "cos": min_row_cosine(a, e)}
    scale, zero_point = qparams if qparams is not None else (None, None)
    ag = agreement(actual, expected, scale, zero_point)
    return {"lsb": ag.max_lsb, "within1": ag.frac_within_1}


@dataclass
class Built:
    """tvm-qdq's build of one row (tuned or untuned), loaded or compiled."""

    compiled: object | None
    compile_s: float | None = None
    note: str = ""


def _build(case: Case, folder: Path, tuning_db: bool | None) -> Built:
    """Load ``folder`` (exported by the first worker) or compile ``case`` and export it;
    ``tuning_db=False``: without the stored tuning database."""
    import tvm_qdq

    try:
        if (folder / "meta.json").is_file():
            return Built(tvm_qdq.load(folder))
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compiled = tvm_qdq.compile(case.model, target="x86", tuning_db=tuning_db)
        built = Built(compiled, time.perf_counter() - start)
        fallback = [w for w in caught if "lowering failed" in str(w.message)]
        if fallback:  # say so: the row then runs TVM's unscheduled default build
            built.note = "x86 lowering FAILED, default build: " + str(fallback[0].message)[:120]
        compiled.export(folder)
        return built
    except Exception as err:  # a row tvm-qdq cannot build: say so in the table
        reason = str(err).strip().split("\n", 1)[0][:160]
        return Built(None, note=f"tvm-qdq failed: {type(err).__name__}: {reason}")


def _onnx_peers(case: Case, threads: int, row: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """ORT (default session) and OpenVINO (latency hint) runners of an ONNX row, their
    agreement with ORT's reference path in ``row["peer_agreement"]``; also returns ORT's
    reference and default outputs."""
    session = ort_session(case.model, threads)
    expected = session.run(None, case.feeds)[0]
    reference = ort_session(case.model, threads, optimized=False).run(None, case.feeds)[0]
    runners = {"ort": lambda: session.run(None, case.feeds)}
    row["peer_agreement"]["ort"] = _agreement(case.model, expected, reference)
    compiled, error = openvino_model(case.model, threads)
    if compiled is None:
        row["openvino_error"] = error
        return runners, reference, expected
    run, first_output = openvino_runner(compiled, case.feeds)
    try:
        run()
    except Exception as err:  # noqa: BLE001 - a refusal at run time is a table entry
        row["openvino_error"] = type(err).__name__
        return runners, reference, expected
    runners["openvino"] = run
    row["peer_agreement"]["openvino"] = _agreement(case.model, first_output(), reference)
    return runners, reference, expected


def _new_row(model_name: str, config: str, threads: int) -> dict:
    row: dict = {"model": model_name, "config": config, "threads": threads,
                 "compile_s": None, "untuned_compile_s": None, "vs_ref": None, "vs_opt": None,
                 "peer_agreement": {}, "openvino_error": None, "timings": {}, "note": ""}
    for key in RUNNERS:
        row[f"{key}_ms"] = None
    return row


def add_note(row: dict, text: str) -> None:
    if text:
        row["note"] = f"{row['note']}; {text}" if row["note"] else text


def measure_row(model_name: str, config: str, threads: int, compiled_dir: Path,
                budget_s: float, rounds: int, max_rounds: int) -> dict | None:
    """One row at ``threads`` threads: every runner interleaved (:func:`timing.interleaved`),
    agreements; None when an optional package is missing."""
    rid = row_id(model_name, config)
    try:
        case = build_case(model_name, config)
    except ImportError as err:
        print(f"skipping {rid}: {err}", file=sys.stderr)
        return None
    row = _new_row(model_name, config, threads)
    add_note(row, case.note)
    from tvm_qdq.backend.vm import thread_pool_spin_count

    row["tvm_spin_count"] = thread_pool_spin_count()
    folder = compiled_dir / rid.replace("/", "__")
    tuned = _build(case, folder, None)
    untuned = _build(case, folder.with_name(folder.name + "__untuned"), False)
    row["compile_s"], row["untuned_compile_s"] = tuned.compile_s, untuned.compile_s
    add_note(row, tuned.note)
    runners: dict[str, Callable[[], object]] = {}
    if case.onnx:
        runners, reference, expected = _onnx_peers(case, threads, row)
    else:
        runners["pytorch"] = case.torch_fn
        reference, expected = case.torch_out, None
        row["peer_agreement"]["pytorch"] = _agreement(None, case.torch_out, case.torch_out)
    for key, built in (("tvm_qdq", tuned), ("tvm_qdq_untuned", untuned)):
        if built.compiled is not None:
            runners[key] = lambda c=built.compiled, f=case.feeds: c.run(f)
    if tuned.compiled is not None:
        actual = tuned.compiled.run(case.feeds)[0]
        row["vs_ref"] = _agreement(case.model if case.onnx else None, actual, reference)
        if expected is not None:
            row["vs_opt"] = _agreement(case.model, actual, expected)
    timings = interleaved(runners, budget_s, min_rounds=rounds, max_rounds=max_rounds,
                          burst=BURST, settle=SETTLE)
    for key, timing in timings.items():
        row[f"{key}_ms"] = timing.median
        row["timings"][key] = timing.as_dict()
    return row


def measure(threads: int, rows: list[tuple[str, str]], compiled_dir: Path, budget_s: float,
            rounds: int, max_rounds: int) -> list[dict]:
    """Every row at ``threads`` threads in this process; one dict per row."""
    warnings.simplefilter("ignore")
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    out = []
    for model_name, config in rows:
        row = measure_row(model_name, config, threads, compiled_dir, budget_s, rounds,
                          max_rounds)
        if row is None:
            continue
        out.append(row)
        times = ", ".join(f"{RUNNERS[k]} {row[f'{k}_ms']:.3f}" for k in RUNNERS
                          if row[f"{k}_ms"] is not None)
        print(f"[{threads}t] {row_id(model_name, config)}: {times} ms; vs ref {row['vs_ref']}; "
              f"peers {row['peer_agreement']} {row['note']}", file=sys.stderr, flush=True)
    return out


def measure_stock(model_name: str, config: str, repeat: int, budget_s: float) -> dict:
    """Stock TVM Relax on one row: ``from_onnx`` + default ``tvm.compile`` + median."""
    warnings.simplefilter("ignore")
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx as stock_from_onnx

    from tvm_qdq.targets import resolve_target

    case = build_case(model_name, config)
    start = time.perf_counter()
    try:
        mod = stock_from_onnx(case.model)
    except Exception as err:
        return {"error": f"n/a (import: {type(err).__name__})"}
    try:
        executable = tvm.compile(mod, target=resolve_target("x86"))
    except Exception as err:
        return {"error": f"n/a (build: {type(err).__name__})"}
    compile_s = time.perf_counter() - start
    vm = relax.VirtualMachine(executable, tvm.cpu())
    args = [tvm.runtime.tensor(case.feeds[i.name]) for i in case.model.graph.input
            if i.name in case.feeds]
    ms = median_ms(lambda: vm["main"](*args), repeat, budget_s=budget_s, warmup=1)
    return {"ms": ms, "compile_s": compile_s}
