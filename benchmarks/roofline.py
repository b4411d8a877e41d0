"""Roofline of the x86 VNNI kernels: this CPU's int8 peak and the biggest kernels against it.

    .venv/bin/python benchmarks/roofline.py                  # every model, u8s8_perchannel
    .venv/bin/python benchmarks/roofline.py --rows minilm_l6/u8s8_perchannel --all
    .venv/bin/python benchmarks/roofline.py --json out.json

``benchmarks/run.py`` runs it after the latency rows and puts its table under the latency
table (README and ``benchmarks/results/latest.md``).

Peak: a TIR kernel of independent ``vpdpbusd`` accumulator chains (a register tile of
``rows × 16-lane`` blocks over operands that stay in L1, scheduled and tensorized exactly like
the model kernels), best of a few tile shapes, one core (TVM_NUM_THREADS=1 is forced).
One vpdpbusd = 16 lanes × 4 uint8·int8 products = 64 MACs.

Models: the benchmark's models (``benchmarks/cases.py`` ``build_case``) in their QDQ u8/s8
per-channel form; the real-weight ones (EfficientNet-Lite0, all-MiniLM-L6-v2) when the
``bench`` extra is installed.

Kernels: each model is lowered as ``tvm_qdq.compile`` lowers it (stored tiles of the tuning
database). The largest conv and the largest matmul of each model (by MACs, as executed:
channel padding to multiples of 4 / 16 included) are built and timed on their own (best of
repeats, random inputs, hot cache) and reported at % of peak — as fused (with the requantize
epilogue the integer pass emits, residual adds included) and bare (the same VNNI kernel
writing its int32 accumulators, no epilogue) — with whether the built kernel's assembly
contains ``vpdpbusd``; ``--all`` also lists every kernel of each model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ["TVM_NUM_THREADS"] = "1"  # one core: must be set before TVM starts its pool

from cases import ROWS as BENCHMARK_ROWS  # noqa: E402 - after the thread count
from cases import build_case  # noqa: E402
from report import render_roofline  # noqa: E402

#: Benchmark rows measured by default: every model in its QDQ u8/s8 per-channel form (the
#: real-weight models need the ``bench`` extra; skipped without it).
ROWS = [(model, config) for model, config in BENCHMARK_ROWS if config == "u8s8_perchannel"]


def _models(rows: list[tuple[str, str]]) -> list[tuple[str, str, object]]:
    """(name, config, ONNX model) of every row, built as ``benchmarks/run.py`` builds it."""
    models = []
    for name, config in rows:
        try:
            models.append((name, config, build_case(name, config).model))
        except ImportError as err:  # the bench extra is not installed
            print(f"skipping {name}: {err}", file=sys.stderr)
    return models


def _largest(lowered, kind: str) -> list:
    """(GlobalVar, PrimFunc) of the ``kind`` ("conv2d"/"matmul") VNNI kernels of ``lowered``
    with the most multiply-accumulates (every one of them on a tie)."""
    from tvm import tirx

    from tvm_qdq.backend.x86.profile import kernel_macs

    found = []
    for gvar, func in lowered.functions.items():
        if isinstance(func, tirx.PrimFunc):
            macs, k = kernel_macs(func)
            if k == kind and macs:
                found.append((macs, gvar, func))
    if not found:
        return []
    most = max(m for m, _, _ in found)
    return [(g, f) for m, g, f in found if m == most]


def _dot_instruction(func, target) -> str | None:
    """The int8 dot-product instruction in the assembly of ``func`` built alone for
    ``target``: ``tdpbusd`` (AMX), ``vpdpbusd`` (VNNI) or None."""
    import tvm

    from tvm_qdq.backend.x86 import asm_of

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    asm = asm_of(lib)
    return next((op for op in ("tdpbusd", "vpdpbusd") if op in asm), None)


def ort_matmul_gmacs(shape: tuple[int, int, int], repeat: int = 30) -> float:
    """One-thread GMAC/s of ONNX Runtime's ``MatMulInteger`` (uint8 × int8 constant weight,
    default session options) on ``shape`` = ``(M, K, N)``: the median of ``repeat`` runs."""
    import time

    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = shape
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 128, (k, n), dtype=np.int8), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options)
    feeds = {"a": rng.integers(0, 256, (m, k), dtype=np.uint8)}
    for _ in range(5):
        session.run(None, feeds)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return m * k * n / float(np.median(times)) / 1e9


def measure(rows: list[tuple[str, str]], list_all: bool = False) -> dict:
    """Peak and, per model, its largest conv and matmul (see the module docstring)."""
    import tvm

    import tvm_qdq
    from tvm_qdq.backend.legalize_signedness import legalize_signedness
    from tvm_qdq.backend.x86 import LoweringReport, has_vnni, lower_integer_kernels
    from tvm_qdq.backend.x86.amx import has_amx
    from tvm_qdq.backend.x86.profile import (
        AMX_PEAK_SHAPE,
        amx_gmacs,
        bare_kernel_seconds,
        kernel_macs,
        kernel_times,
        time_primfunc,
        vnni_peak_gmacs,
    )
    from tvm_qdq.backend.x86.tuning_db import stored_tiles
    from tvm_qdq.targets import resolve_target

    target = resolve_target("x86")
    if not has_vnni(target):
        raise SystemExit(f"{target} has no AVX-512 VNNI")
    peak = vnni_peak_gmacs(target)
    print(f"VNNI peak: {peak:.1f} GMAC/s per core ({tvm.target.codegen.llvm_get_system_cpu()})",
          file=sys.stderr)
    amx = None
    if has_amx(target):
        amx = {"shape": list(AMX_PEAK_SHAPE), "gmacs": amx_gmacs(target),
               "ort_gmacs": ort_matmul_gmacs(AMX_PEAK_SHAPE)}
        print(f"AMX matmul {AMX_PEAK_SHAPE}: {amx['gmacs']:.1f} GMAC/s, ORT "
              f"{amx['ort_gmacs']:.1f}", file=sys.stderr)
    tiles = stored_tiles(None, target)  # the stored tiles, as tvm_qdq.compile uses them
    out = []
    for name, config, model in _models(rows):
        report = LoweringReport()
        # the module tvm_qdq.compile lowers for x86
        mod = legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86")
        lowered = lower_integer_kernels(mod, target, tiles=tiles, report=report)
        bare = {}
        for kind in ("vnni_conv2d", "vnni_matmul"):
            of_kind = [k for k in report.kernels if k["kind"] == kind]
            if of_kind:
                k = max(of_kind, key=lambda k: k["macs"])
                seconds, macs = bare_kernel_seconds(kind, k["spec"], target,
                                                    k.get("weight_terms", 1))
                bare[kind.split("_")[1]] = 100 * macs / seconds / 1e9 / peak
        if list_all:
            for k in kernel_times(lowered, target):
                out.append({"model": name, "config": config, "kernel": k.name, "kind": k.kind,
                            "macs": k.macs, "us": k.seconds * 1e6, "gmacs": k.gmacs,
                            "pct_peak": 100 * k.gmacs / peak if k.macs else None,
                            "largest": False, "of_same_size": None, "bare_pct_peak": None,
                            "dot": None})
        for kind in ("conv2d", "matmul"):
            tied = _largest(lowered, kind)
            if not tied:
                continue
            # several kernels of the same size (e.g. one per layer): report the median one
            timed = sorted(((time_primfunc(func, target), gvar, func) for gvar, func in tied),
                           key=lambda t: t[0])
            seconds, gvar, func = timed[(len(timed) - 1) // 2]
            macs, _ = kernel_macs(func)
            gmacs = macs / seconds / 1e9
            out.append({"model": name, "config": config, "kernel": gvar.name_hint,
                        "kind": kind, "macs": macs, "us": seconds * 1e6, "gmacs": gmacs,
                        "pct_peak": 100 * gmacs / peak, "largest": True, "of_same_size":
                        len(tied), "bare_pct_peak": bare.get(kind),
                        "dot": _dot_instruction(func, target)})
        print(f"{name}/{config}: measured", file=sys.stderr)
    return {"peak_gmacs": peak, "amx": amx, "rows": out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", metavar="MODEL/CONFIG",
                        help="benchmark rows (default: every model's u8s8_perchannel form)")
    parser.add_argument("--all", action="store_true", help="also list every kernel")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    rows = [tuple(r.split("/", 1)) for r in args.rows] if args.rows else ROWS
    result = measure(rows, args.all)
    print(render_roofline(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
