"""Command line: ``tvm-qdq inspect|compile|run|tune|check-overrides|demo``."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def parse_shape(text: str) -> tuple[str, list[int]]:
    """``NAME=1x3x224x224`` (or ``NAME=1,3,224,224``) → ``("NAME", [1, 3, 224, 224])``."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = [int(d) for d in dims.replace(",", "x").split("x")] if sep and name else None
    except ValueError:
        shape = None
    if shape is None or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(
            f"--shape {text!r}: expected NAME=DIMS with positive sizes, e.g. input=1x3x224x224")
    return name, shape


def _shapes(args) -> dict[str, list[int]] | None:
    """The ``--shape`` options as ``shapes=`` for ``from_onnx`` (None when none given)."""
    return dict(args.shape) if args.shape else None


def _cmd_inspect(args) -> int:
    import os

    from .inspect import export_signature, format_inspection, format_signature, inspect

    if os.path.isdir(args.model):  # an export: its inputs, outputs and bounds
        sig = export_signature(args.model)
        print(json.dumps(sig, indent=1) if args.json else "\n".join(
            [f"format: {sig['format']}", f"target: {sig['target']}", *format_signature(sig)]))
        return 0
    info = inspect(args.model, shapes=_shapes(args))
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(format_inspection(info))
    if args.precision or args.graph:
        from .frontend.onnx import load_model
        from .precision import format_precision, precision_map, render, to_dot

        proto = load_model(args.model)
        pmap = precision_map(proto)
        if not args.json:
            print()
            print(format_precision(pmap))
        if args.graph:
            print(f"precision graph written to {render(to_dot(pmap, proto), args.graph)}")
    return 1 if info["error"] else 0


def _target(text: str):
    return json.loads(text) if text.strip().startswith("{") else text


def _cmd_compile(args) -> int:
    from .compile import compile

    start = time.perf_counter()
    compiled = compile(args.model, target=_target(args.target), shapes=_shapes(args))
    out = compiled.export(args.output)
    print(f"compiled {args.model} for {compiled.target} in {time.perf_counter() - start:.1f} s "
          f"→ {out}")
    if compiled.symbolic:
        from .inspect import format_signature

        print("\n".join(format_signature(compiled.signature())))
    return 0


def _cmd_run(args) -> int:
    from .compile import compile, load

    if args.model.endswith(".onnx"):
        compiled = compile(args.model, target=_target(args.target), shapes=_shapes(args))
    else:
        compiled = load(args.model)
    with np.load(args.inputs) as data:
        feeds = {k: data[k] for k in data.files}
    outputs = compiled.run(feeds)
    for name, value in zip(compiled.output_names, outputs, strict=True):
        print(f"{name}: {value.dtype} {list(value.shape)}  first: {value.reshape(-1)[:8]}")
    if args.output:
        np.savez(args.output, **dict(zip(compiled.output_names, outputs, strict=True)))
        print(f"outputs written to {args.output}")
    return 0


def _cmd_tune(args) -> int:
    import os

    # Tiles are timed with the TVM thread pool; it reads TVM_NUM_THREADS when TVM starts.
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    from .backend.x86.tuning import format_event, prune_db, tune_model
    from .backend.x86.tuning_db import TuningDB, default_db_path
    from .frontend.onnx import from_onnx

    path = args.db or default_db_path()
    if path is None:
        print("tvm-qdq: error: no tuning database (TVM_QDQ_TUNING_DB is off); use --db",
              file=sys.stderr)
        return 2
    db = TuningDB(path)
    sources = [from_onnx(m, shapes=_shapes(args)) if args.shape else m for m in args.models]
    if args.prune:
        before = len(db)
        dropped = prune_db(db, sources, _target(args.target))
        db.save()
        print(f"{db.path}: {before} kernels, {dropped} no given model produces dropped, "
              f"{len(db)} kept")
        return 0
    print(f"tuning database {db.path} ({len(db)} kernels stored)"
          + (", resuming" if args.resume else ""))
    total_start = time.perf_counter()
    measured = 0
    done: set[str] = set()  # a kernel shared by several models is measured once
    for model, source in zip(args.models, sources, strict=True):
        start = time.perf_counter()
        print(f"{model}:", flush=True)
        events = tune_model(source, _target(args.target), db, resume=args.resume,
                            candidates=args.candidates, label=os.path.basename(model),
                            progress=lambda e: print("  " + format_event(e), flush=True),
                            done=done)
        count = sum(e.status == "measured" for e in events)
        measured += count
        print(f"  {len(events)} kernels, {count} measured in {time.perf_counter() - start:.1f} s")
    print(f"{measured} kernels measured in {time.perf_counter() - total_start:.1f} s; "
          f"{len(db)} stored in {db.path}")
    return 0


def _cmd_check_overrides(args) -> int:
    from .frontend.onnx import load_model
    from .overrides import check_overrides, format_report, overrides_from_json

    with open(args.overrides) as f:
        overrides = overrides_from_json(json.load(f))
    report = check_overrides(load_model(args.model), overrides)
    print(format_report(report))
    return 0 if report.valid else 1


def _cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(threads=args.threads)


def _add_shape_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", action="append", type=parse_shape, metavar="NAME=DIMS",
                        help="fix an input declared with symbolic sizes, e.g. "
                             "--shape input=1x3x224x224 (repeat for each input)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tvm-qdq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="formats, quantized ops, dtypes, integer vs float ops "
                                       "(of an export: inputs, outputs, bounds)")
    p.add_argument("model", help=".onnx model, or a compiled model's export directory")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--precision", action="store_true",
                   help="print precision regions, conversion chains and accumulators")
    p.add_argument("--graph", help="write the precision map picture here (.svg/.png/.dot)")
    _add_shape_option(p)
    p.set_defaults(fn=_cmd_inspect)
    p = sub.add_parser("compile", help="compile a model and export it to a directory")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--target", default="x86", help="preset name or TVM target JSON")
    _add_shape_option(p)
    p.set_defaults(fn=_cmd_compile)
    p = sub.add_parser("run", help="run a model (.onnx or exported directory) on inputs")
    p.add_argument("model")
    p.add_argument("--inputs", required=True, help=".npz file with one array per input name")
    p.add_argument("--target", default="x86")
    p.add_argument("-o", "--output", help="write outputs to this .npz file")
    _add_shape_option(p)
    p.set_defaults(fn=_cmd_run)
    p = sub.add_parser("tune", help="measure the best VNNI register tile of every kernel and "
                                     "store it in the tuning database compile reads")
    p.add_argument("models", nargs="+", metavar="MODEL", help="quantized .onnx model(s)")
    p.add_argument("--db", help="database file (default: $TVM_QDQ_TUNING_DB or the one "
                                "committed in tvm_qdq/backend/x86/tuning_db.json)")
    p.add_argument("--resume", action="store_true",
                   help="skip kernels already in the database (else measure them again)")
    p.add_argument("--prune", action="store_true",
                   help="measure nothing: drop the target's kernels that none of the models "
                        "produces")
    p.add_argument("--target", default="x86", help="preset name or TVM target JSON")
    p.add_argument("--candidates", type=int, default=6, help="tiles measured per kernel")
    p.add_argument("--threads", type=int, default=1,
                   help="TVM_NUM_THREADS while timing (unless already set; default 1)")
    _add_shape_option(p)
    p.set_defaults(fn=_cmd_tune)
    p = sub.add_parser("check-overrides",
                       help="find type conflicts in ORT TensorQuantOverrides and show the fix")
    p.add_argument("model", help="the float ONNX model the overrides are for")
    p.add_argument("overrides", help='JSON: {"tensor": [{"quant_type": "QUInt16"}], ...}')
    p.set_defaults(fn=_cmd_check_overrides)
    p = sub.add_parser("demo", help="import → integer → compile → run → compare with ORT")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(fn=_cmd_demo)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except Exception as err:
        from .errors import TvmQdqError
        from .frontend.onnx.shapes import InputShapeError

        if isinstance(err, TvmQdqError):
            print(f"tvm-qdq: error: {err}", file=sys.stderr)
            if isinstance(err, InputShapeError):
                print("tvm-qdq: on the command line: --shape NAME=DIMS, e.g. "
                      "--shape input=1x3x224x224", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
