"""Hexagon benchmark: instructions executed per inference under qemu-hexagon, per model and per
kernel, with the HVX share and the ``vrmpy`` count (the stand-in for device latency; qemu's
wall time is not one), for each requantize variant (``fixed``: multiplier + shift integer
code, the default; ``float``: float64, bit-exact with x86). Also compares each model's
outputs with tvm-qdq's x86 build (bit-exact, or the largest difference in output LSB).

    .venv/bin/python benchmarks/hexagon.py [--models resnet_cnn:u8s8_perchannel ...]
                                            [--requantize fixed float] [--kernels]
                                            [--json out.json] [--markdown out.md]

``--save`` writes ``benchmarks/results/hexagon.{json,md}``. The real-weight rows
(:data:`REAL_MODELS`, e.g. ``efficientnet_lite0:u8s8_perchannel``) run on their own
image-like inputs (``cases.build_case``); the others on seed-1 random inputs.

Packets are VLIW packets (≈ issue cycles on an in-order core); instructions exclude constant
extenders. Needs the Debian packages qemu-user, clang-16 and lld-16.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from cases import build_case, synthetic_model
from report import render_hexagon

import tvm_qdq
from tvm_qdq.backend.hexagon import missing_tools
from tvm_qdq.testing.models import random_feeds
from tvm_qdq.testing.oracle import agreement, output_qparams

RESULTS = Path(__file__).parent / "results"

DEFAULT_MODELS = ["resnet_cnn:u8s8_perchannel", "resnet_cnn:u16s8", "mlp:u8s8_perchannel",
                  "mlp:u16s8", "mlp:u16u8", "mixed:seeds_op4_u16",
                  # BERT-style encoder: float islands (Softmax, LayerNorm) without libm
                  "transformer_encoder:u8s8_perchannel", "transformer_encoder:u16s8",
                  "transformer_encoder:qop_u8s8", "mixed:transformer_region_u16",
                  # real weights, depthwise-heavy (skipped when its packages are missing)
                  "efficientnet_lite0:u8s8_perchannel"]


#: Models with real weights (:func:`cases.build_case`: their own image-like inputs).
REAL_MODELS = ("efficientnet_lite0",)


def _model(spec: str):
    """The ONNX model of ``model:config`` and its feeds (None: seed-1 random inputs):
    :func:`cases.build_case` for :data:`REAL_MODELS`, else :func:`cases.synthetic_model`."""
    name, config = spec.split(":")
    if name in REAL_MODELS:
        case = build_case(name, config)
        return case.model, case.feeds
    return synthetic_model(name, config), None


def _max_lsb(model, outputs: list, expected: list) -> float:
    """Largest difference, in LSB of each output's scale, between two runs."""
    qparams = output_qparams(model)
    worst = 0.0
    for out, got, want in zip(model.graph.output, outputs, expected, strict=True):
        q = qparams.get(out.name)
        ag = agreement(got, want, q[0] if q else None, q[1] if q else None, None)
        worst = max(worst, ag.max_lsb)
    return worst


def bench(spec: str, requantize: str = "fixed", x86_outputs: dict | None = None,
          loaded: tuple | None = None) -> dict:
    """Compile ``spec`` for Hexagon (and x86 unless ``x86_outputs`` has it), run both,
    profile the Hexagon run (``loaded``: what :func:`_model` returned for ``spec``)."""
    model, feeds = loaded or _model(spec)
    start = time.perf_counter()
    hexagon = tvm_qdq.compile(model, "hexagon", requantize=requantize)
    compile_s = time.perf_counter() - start
    feeds = random_feeds(model, seed=1) if feeds is None else feeds
    outputs, profile = hexagon.profile(feeds)
    cache = x86_outputs if x86_outputs is not None else {}
    if spec not in cache:
        cache[spec] = tvm_qdq.compile(model, "x86").run(feeds)
    expected = cache[spec]
    exact = all(np.array_equal(a, b) for a, b in zip(outputs, expected, strict=True))
    mix = hexagon.instruction_mix()
    kernels = []
    for k in profile.kernels:
        row = k.to_dict()
        row["function"] = hexagon.meta["functions"].get(k.name, "")
        row["schedule"] = hexagon.meta["notes"].get("schedules", {}).get(k.name, "")
        row["static_vrmpy"] = mix.get(k.name, {}).get("vrmpy", 0)
        kernels.append(row)
    return {"model": spec, "requantize": requantize, "compile_s": round(compile_s, 1),
            "bit_exact_vs_x86": exact,
            "max_lsb_vs_x86": round(_max_lsb(model, outputs, expected), 3),
            "packets": profile.packets,
            "instructions": profile.instructions, "hvx": profile.hvx,
            "hvx_share": round(profile.hvx_share, 4),
            "vrmpy": sum(k.vrmpy for k in profile.kernels), "kernels": kernels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--requantize", nargs="*", default=["fixed", "float"],
                        choices=("fixed", "float"))
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--markdown", help="write the tables here")
    parser.add_argument("--save", action="store_true",
                        help="write benchmarks/results/hexagon.{json,md} (with --kernels)")
    parser.add_argument("--kernels", action="store_true", help="print the per-kernel table")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"skipped: Hexagon toolchain missing: {', '.join(missing)}")
        return 0
    x86: dict = {}
    results = []
    for spec in args.models:
        try:
            loaded = _model(spec)
        except ImportError as err:  # a real model's optional packages
            print(f"skipped {spec}: {err}")
            continue
        results += [bench(spec, rq, x86, loaded) for rq in args.requantize]
    kernels = args.kernels or args.save
    table = render_hexagon(results, kernels)
    print(table)
    header = (f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
              f"`benchmarks/hexagon.py` under qemu-hexagon (-cpu v67, v68 code, 128-byte HVX) "
              f"on {platform.machine()}: instructions executed per inference (one run, seed-1 "
              f"random inputs). `fixed` is the default requantize.\n\n")
    json_path = args.json or (RESULTS / "hexagon.json" if args.save else None)
    md_path = args.markdown or (RESULTS / "hexagon.md" if args.save else None)
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1))
    if md_path:
        Path(md_path).write_text(header + table + "\n")
    ok = all(r["bit_exact_vs_x86"] or (r["requantize"] == "fixed" and r["max_lsb_vs_x86"] <= 2)
             for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
