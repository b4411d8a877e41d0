"""Roofline of the x86 VNNI kernels: this CPU's int8 peak and the biggest kernels against it.

    .venv/bin/python benchmarks/roofline.py                  # u8s8_perchannel models
    .venv/bin/python benchmarks/roofline.py --configs u8s8_perchannel u16s8 --all
    .venv/bin/python benchmarks/roofline.py --json out.json

Peak: a TIR kernel of independent ``vpdpbusd`` accumulator chains (a register tile of
``rows × 16-lane`` blocks over operands that stay in L1, scheduled and tensorized exactly like
the model kernels), best of a few tile shapes, one core (TVM_NUM_THREADS=1 is forced).
One vpdpbusd = 16 lanes × 4 uint8·int8 products = 64 MACs.

Models: the synthetic benchmark models in each ``--configs`` configuration, and
EfficientNet-Lite0 (real weights, when the ``bench`` extra is installed).

Kernels: each model is lowered with ``tvm_qdq.target.x86.lower_integer_kernels``; every fused
PrimFunc is built and timed on its own (best of repeats, random inputs, hot cache). The
largest conv and the largest matmul of each model (by MACs, as executed: channel padding to
multiples of 4 / 16 included) are reported at % of peak — as fused (with the requantize
epilogue the integer pass emits, residual adds included) and bare (the same VNNI kernel
writing its int32 accumulators, no epilogue); ``--all`` lists every kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ["TVM_NUM_THREADS"] = "1"  # one core: must be set before TVM starts its pool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ["resnet_cnn", "mlp", "transformer_encoder"]
#: Benchmark model with real weights (``benchmarks/run.py``); measured when its packages (the
#: ``bench`` extra) are installed, in its one configuration.
REAL_MODELS = {"efficientnet_lite0": "u8s8_perchannel"}


def _models(configs: list[str]) -> list[tuple[str, str, object]]:
    """(name, config, ONNX model) of every model measured (see the module docstring)."""
    from tvm_qdq.testing.models import quantized_model

    models = [(name, config, quantized_model(name, config))
              for config in configs for name in MODELS]
    try:
        from tvm_qdq.testing.real_models import efficientnet_lite0_qdq

        models.append(("efficientnet_lite0", REAL_MODELS["efficientnet_lite0"],
                       efficientnet_lite0_qdq()))
    except ImportError as err:  # the bench extra is not installed
        print(f"skipping efficientnet_lite0: {err}", file=sys.stderr)
    return models


def measure(configs: list[str], list_all: bool) -> dict:
    """Peak and per-model kernel rows (see the module docstring)."""
    import tvm

    import tvm_qdq
    from tvm_qdq.target import resolve_target
    from tvm_qdq.target.x86 import LoweringReport, has_vnni, lower_integer_kernels
    from tvm_qdq.target.x86.profile import bare_kernel_seconds, kernel_times, vnni_peak_gmacs

    target = resolve_target("x86")
    if not has_vnni(target):
        raise SystemExit(f"{target} has no AVX-512 VNNI")
    peak = vnni_peak_gmacs(target)
    print(f"VNNI peak: {peak:.1f} GMAC/s per core ({tvm.target.codegen.llvm_get_system_cpu()})",
          file=sys.stderr)
    rows = []
    for name, config, model in _models(configs):
        report = LoweringReport()
        lowered = lower_integer_kernels(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)),
                                        target, report=report)
        kernels = kernel_times(lowered, target)
        bare = {}
        for kind in ("vnni_conv2d", "vnni_matmul"):
            of_kind = [k for k in report.kernels if k["kind"] == kind]
            if of_kind:
                k = max(of_kind, key=lambda k: k["macs"])
                seconds, macs = bare_kernel_seconds(kind, k["spec"], target,
                                                    k.get("weight_terms", 1))
                bare[kind.split("_")[1]] = {"us": seconds * 1e6, "macs": macs,
                                            "pct_peak": 100 * macs / seconds / 1e9 / peak}
        total = sum(k.seconds for k in kernels)
        picked = []  # the largest conv / matmul (every one of them on a tie)
        for kind in ("conv2d", "matmul"):
            of_kind = [k for k in kernels if k.kind == kind]
            if of_kind:
                most = max(k.macs for k in of_kind)
                picked += [k for k in of_kind if k.macs == most]
        chosen = kernels if list_all else picked
        for k in chosen:
            rows.append({
                "model": name, "config": config, "kernel": k.name, "kind": k.kind,
                "macs": k.macs, "us": k.seconds * 1e6, "gmacs": k.gmacs,
                "pct_peak": 100 * k.gmacs / peak if k.macs else None,
                "share_of_model": 100 * k.seconds / total,
                "largest": k in picked,
                "bare_pct_peak": bare[k.kind]["pct_peak"]
                if k in picked and k.kind in bare else None,
            })
        print(f"{name}/{config}: {len(kernels)} kernels, {total * 1e6:.1f} us in kernels",
              file=sys.stderr)
    return {"peak_gmacs": peak, "rows": rows}


def render(result: dict) -> str:
    lines = [
        f"int8 VNNI peak: **{result['peak_gmacs']:.1f} GMAC/s** per core "
        "(independent vpdpbusd chains, operands in L1).",
        "",
        "| model | config | kernel | kind | MACs | µs | GMAC/s | % of peak | bare: % of peak "
        "| % of model |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        pct = f"{r['pct_peak']:.0f}%" if r["pct_peak"] is not None else ""
        bare = f"{r['bare_pct_peak']:.0f}%" if r.get("bare_pct_peak") is not None else ""
        mark = " **(largest)**" if r["largest"] else ""
        name = r["kernel"] if len(r["kernel"]) <= 48 else r["kernel"][:45] + "..."
        lines.append(
            f"| {r['model']} | {r['config']} | `{name}`{mark} | {r['kind']} | {r['macs']} | "
            f"{r['us']:.2f} | {r['gmacs']:.1f} | {pct} | {bare} | {r['share_of_model']:.0f}% |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=["u8s8_perchannel"])
    parser.add_argument("--all", action="store_true", help="list every kernel")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    result = measure(args.configs, args.all)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
