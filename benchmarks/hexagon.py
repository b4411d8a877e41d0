"""Hexagon benchmark: instructions executed per inference under qemu-hexagon, per model and per
kernel, with the HVX share and the ``vrmpy`` count (the stand-in for device latency; qemu's
wall time is not one). Also checks each model's outputs against tvm-qdq's x86 build.

    .venv/bin/python benchmarks/hexagon.py [--models resnet_cnn:u8s8_perchannel ...]
                                            [--json out.json] [--kernels]

Packets are VLIW packets (≈ issue cycles on an in-order core); instructions exclude constant
extenders. Needs the Debian packages qemu-user, clang-16 and lld-16.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import tvm_qdq
from tvm_qdq.target.hexagon import compile_model, missing_tools
from tvm_qdq.testing.mixed_models import mixed_case
from tvm_qdq.testing.models import quantized_model, random_feeds

DEFAULT_MODELS = ["resnet_cnn:u8s8_perchannel", "resnet_cnn:u16s8", "mlp:u8s8_perchannel",
                  "mlp:u16s8", "mixed:seeds_op4_u16"]


def _model(spec: str):
    name, config = spec.split(":")
    return mixed_case(config) if name == "mixed" else quantized_model(name, config)


def bench(spec: str, requantize: str = "float") -> dict:
    """Compile ``spec`` for Hexagon and x86, run both, profile the Hexagon run."""
    model = _model(spec)
    start = time.perf_counter()
    hexagon = compile_model(model, "hexagon", requantize=requantize)
    compile_s = time.perf_counter() - start
    feeds = random_feeds(model, seed=1)
    outputs, profile = hexagon.profile(feeds)
    expected = tvm_qdq.compile(model, "x86").run(feeds)
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
            "bit_exact_vs_x86": exact, "packets": profile.packets,
            "instructions": profile.instructions, "hvx": profile.hvx,
            "hvx_share": round(profile.hvx_share, 4),
            "vrmpy": sum(k.vrmpy for k in profile.kernels), "kernels": kernels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--requantize", default="float", choices=("float",))
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--kernels", action="store_true", help="print the per-kernel table")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"skipped: Hexagon toolchain missing: {', '.join(missing)}")
        return 0
    results = [bench(m, args.requantize) for m in args.models]
    print("| model | bit-exact vs x86 | instructions | packets | HVX share | vrmpy | compile s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['bit_exact_vs_x86']} | {r['instructions']:,} | "
              f"{r['packets']:,} | {100 * r['hvx_share']:.1f}% | {r['vrmpy']:,} | "
              f"{r['compile_s']} |")
    if args.kernels:
        for r in results:
            print(f"\n{r['model']} per kernel:\n")
            print("| kernel | instructions | packets | HVX share | vrmpy | schedule |")
            print("|---|---|---|---|---|---|")
            for k in r["kernels"]:
                print(f"| {k['name']} | {k['instructions']:,} | {k['packets']:,} | "
                      f"{100 * k['hvx_share']:.1f}% | {k['vrmpy']:,} | {k['schedule']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(r["bit_exact_vs_x86"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
