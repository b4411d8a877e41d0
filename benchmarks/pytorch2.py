"""PyTorch 2 quantized programs: tvm-qdq beside PyTorch eager, torch.compile and ORT.

``python benchmarks/pytorch2.py`` builds four programs with PyTorch's current quantization
flows (``tvm_qdq/testing/pt2_models.py``): a CNN and a BERT-style encoder through PT2E
(``X86InductorQuantizer``), an MLP and all-MiniLM-L6-v2 through torchao's dynamic int8. For
each, at 1 and 2 threads, it measures interleaved medians of PyTorch eager (the converted
program as PyTorch runs it), ``torch.compile`` (Inductor, CPU) where it builds, ONNX Runtime
on the program's ONNX export where ``torch.onnx.export(dynamo=True)`` succeeds, and tvm-qdq
(stored tuning, and untuned). Writes ``benchmarks/results/pytorch2.{md,json}`` and the README
table between the ``pt2:start`` / ``pt2:end`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from peers import ort_session
from report import render_pytorch2, update_readme_section
from timing import interleaved_medians, worker_rows

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKERS = ("<!-- pt2:start -->", "<!-- pt2:end -->")
ROWS = ("cnn_pt2e_x86", "bert_pt2e_x86", "mlp_torchao_dynamic", "minilm_torchao_dynamic")


def build(row: str):
    """(exported program, eager module, example inputs as a tuple) of a benchmark row."""
    import torch

    from tvm_qdq.testing import pt2_models, torch_models

    torch.manual_seed(0)
    if row == "cnn_pt2e_x86":
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        calibration = [(torch.rand(1, 3, 32, 32) * 2 - 1,) for _ in range(4)]
        program, module = pt2_models.pt2e_static(pt2_models.SmallCNN(), (x,), calibration)
        return program, module, (x,)
    if row == "bert_pt2e_x86":
        bert = torch_models.random_bert()
        inputs = torch_models.token_batch(1, 32, bert.config.vocab_size)
        calibration = [torch_models.token_batch(1, 32, bert.config.vocab_size, seed=s)
                       for s in range(4)]
        program, module = pt2_models.pt2e_static(bert, inputs, calibration)
        return program, module, inputs
    if row == "mlp_torchao_dynamic":
        x = torch.randn(8, 32)
        program = pt2_models.torchao_dynamic(torch_models.MLP(), (x,))
        return program, program.module(), (x,)
    if row == "minilm_torchao_dynamic":
        encoder, _ = torch_models.load_minilm()
        inputs = torch_models.token_batch(1, 128, 30000)
        program = pt2_models.torchao_dynamic(encoder, inputs)
        return program, program.module(), inputs
    raise ValueError(row)


def _onnx_session(program, inputs, threads: int, folder: Path):
    """ORT (:func:`peers.ort_session`) on the program's ONNX export, or the reason there is
    none."""
    import torch

    path = folder / "model.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(program, inputs, dynamo=True, verbose=False).save(str(path))
        session = ort_session(path, threads)
    except Exception as err:  # noqa: BLE001 - a failed export is a table entry
        return None, type(err).__name__
    names = [i.name for i in session.get_inputs()]
    return (session, names), None


def measure_row(row: str, threads: int, budget_s: float, max_rounds: int) -> dict:
    import torch

    import tvm_qdq

    torch.set_num_threads(threads)
    program, module, inputs = build(row)
    arrays = [i.numpy() for i in inputs]
    result: dict = {"row": row, "threads": threads}
    start = time.perf_counter()
    integer = tvm_qdq.to_integer(tvm_qdq.from_torch(program))
    tuned = tvm_qdq.compile(integer, "x86")
    result["compile_s"] = time.perf_counter() - start
    untuned = tvm_qdq.compile(integer, "x86", tuning_db=False)

    def eager() -> object:
        with torch.no_grad():
            return module(*inputs)

    runners: dict[str, Callable[[], object]] = {
        "pytorch": eager,
        "tvm_qdq": lambda: tuned.run(arrays),
        "tvm_qdq_untuned": lambda: untuned.run(arrays),
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = torch.compile(module)
            with torch.no_grad():
                compiled(*inputs)

        def inductor() -> object:
            with torch.no_grad():
                return compiled(*inputs)

        runners["torch_compile"] = inductor
    except Exception as err:  # noqa: BLE001 - Inductor may not build here
        result["torch_compile_error"] = type(err).__name__
    with tempfile.TemporaryDirectory() as tmp:
        session, error = _onnx_session(program, inputs, threads, Path(tmp))
        if session is not None:
            session, names = session
            feeds = dict(zip(names, arrays, strict=True))
            runners["ort"] = lambda: session.run(None, feeds)
        else:
            result["ort_error"] = error
        result["ms"] = interleaved_medians(runners, budget_s, max_rounds)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--budget", type=float, default=15.0, help="seconds per row")
    parser.add_argument("--max-rounds", type=int, default=40)
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        rows = [measure_row(r, args.worker, args.budget, args.max_rounds) for r in args.rows]
        print(json.dumps(rows))
        return 0
    rows = worker_rows(__file__, args.threads, ["--budget", str(args.budget), "--max-rounds",
                                                str(args.max_rounds), "--rows", *args.rows])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = render_pytorch2(rows, date)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pytorch2.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "pytorch2.md").write_text(table + "\n")
    print(table)
    if not args.no_readme and args.rows == list(ROWS):
        update_readme_section(ROOT / "README.md", MARKERS, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
