"""One compile for many sizes: models with symbolic batch / sequence / width dimensions.

``python benchmarks/dynamic_shapes.py`` compiles each model of :data:`MODELS` once, with its
symbolic input dimensions left symbolic (``bounds=`` gives their upper bounds), and runs it at
every size of the model's grid beside a static compile for that size (``shapes=``) and its
peer (ONNX Runtime with default session options; PyTorch eager for the TorchScript model),
timed interleaved in one process (medians over rounds).
It writes ``benchmarks/results/dynamic_shapes.{md,json}`` and, for a full run, the README
section between the ``dynamic:start`` / ``dynamic:end`` markers (a ``--smoke`` run, two sizes
per model, says so in the table's header).

Per row (model × size): the agreement of the one-compile build with ORT's reference path at
that size (:func:`measure._agreement`: LSB for quantized outputs, max |diff| and worst-row
cosine for float ones), whether its output is bit-identical to the static compile's, and
``dynamic / static`` (the cost of compiling once) and ``peer / dynamic`` (> 1: tvm-qdq faster).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cases import minilm_dynamic
from peers import ort_session
from report import describe_machine, render_dynamic_shapes, update_readme_section
from timing import interleaved_medians, worker_rows

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKERS = ("<!-- dynamic:start -->", "<!-- dynamic:end -->")

TEXT_SIZES = [(b, s) for b in (1, 4) for s in (8, 32, 77, 128, 256)]
TEXT_SMOKE = [(1, 8), (1, 77)]


@dataclass(frozen=True)
class DynamicModel:
    """A model with symbolic inputs: how to load it, its bounds, sizes and feeds per size."""

    name: str
    load: Callable[[], object]  # -> onnx.ModelProto
    bounds: dict[str, int]
    sizes: list[tuple[int, ...]]
    smoke: list[tuple[int, ...]]
    feeds: Callable[[tuple[int, ...]], dict[str, np.ndarray]]
    #: "onnx" (peer and oracle: ORT) or "torchscript" (``load`` gives ``(module, script,
    #: example inputs)``; peer and oracle: PyTorch eager)
    framework: str = "onnx"


def _minilm_feeds(size: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The benchmark's sentences, the first ``batch`` of them, padded or cut to ``seq``."""
    from tvm_qdq.testing import torch_models as tm

    batch, seq = size
    _, tokenizer = tm.load_minilm()
    ids, mask = tokenizer.batch(tm.SENTENCES[:batch], seq_len=seq)
    return {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}


def _corpus(name: str) -> Callable[[], object]:
    def load() -> object:
        import onnx

        from tvm_qdq.testing import real_corpus

        return onnx.load_model(real_corpus.model_path(name))

    return load


def _token_feeds(vocab: int, names: tuple[str, ...]) -> Callable[[tuple[int, ...]], dict]:
    """Token ids in [1000, vocab), full attention (and segment 0) at ``(batch, seq)``."""

    def make(size: tuple[int, ...]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        feeds = {"input_ids": rng.integers(1000, vocab, size, dtype=np.int64),
                 "attention_mask": np.ones(size, np.int64)}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros(size, np.int64)
        return feeds

    return make


def _crnn_feeds(size: tuple[int, ...]) -> dict[str, np.ndarray]:
    from tvm_qdq.testing.real_corpus import _smooth_image

    (width,) = size
    return {"input1": _smooth_image(np.random.default_rng(0), (1, 1, 64, width), -1, 1)}


#: The symbolic axes of the TorchScript MiniLM (``from_torch(..., dynamic=)``).
TORCH_AXES = {"input_ids": {0: "batch", 1: "sequence"},
              "attention_mask": {0: "batch", 1: "sequence"}}


def _quantized_trace(encoder, vocab: int) -> tuple[object, object, tuple]:
    """``(quantize_dynamic(encoder), its TorchScript trace at 2×16 tokens, the example)``."""
    import torch

    from tvm_qdq.testing import torch_models as tm

    qmodel = tm.quantize_dynamic(encoder)
    ids, mask = tm.token_batch(2, 16, vocab, seed=3)
    with torch.no_grad():
        return qmodel, torch.jit.trace(qmodel, (ids, mask)), (ids, mask)


def _minilm_torchscript() -> tuple[object, object, tuple]:
    """all-MiniLM-L6-v2 through ``torch.ao.quantization.quantize_dynamic``, traced at 2×16."""
    from tvm_qdq.testing import torch_models as tm

    encoder, _ = tm.load_minilm()
    return _quantized_trace(encoder, 30522)


#: The random BERT encoder of the ``bert_tiny`` rows, with positions for 256 tokens.
BERT_POSITIONS = 256


def _bert_torchscript() -> tuple[object, object, tuple]:
    """The benchmark's random BERT encoder (hidden 64, 2 layers, pooled) through
    ``quantize_dynamic``, with :data:`BERT_POSITIONS` positions, traced at 2×16."""
    from tvm_qdq.testing import torch_models as tm

    config = tm.BertConfig(max_position_embeddings=BERT_POSITIONS)
    return _quantized_trace(tm.SentenceEncoder(tm.random_bert(config, seed=0)).eval(),
                            config.vocab_size)


def _bert_feeds(size: tuple[int, ...]) -> dict[str, np.ndarray]:
    from tvm_qdq.testing import torch_models as tm

    ids, mask = tm.token_batch(*size, tm.BertConfig().vocab_size, seed=3)
    return {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}


MODELS: tuple[DynamicModel, ...] = (
    DynamicModel("minilm_l6/u8s8_perchannel", lambda: minilm_dynamic("u8s8_perchannel"),
                 {"batch": 4, "sequence": 256}, TEXT_SIZES, TEXT_SMOKE, _minilm_feeds),
    DynamicModel("minilm_l6/dyn_s8", lambda: minilm_dynamic("dyn_s8"),
                 {"batch": 4, "sequence": 256}, TEXT_SIZES, TEXT_SMOKE, _minilm_feeds),
    DynamicModel("minilm_l6/torchscript_dynamic", _minilm_torchscript,
                 {"batch": 4, "sequence": 256}, TEXT_SIZES, TEXT_SMOKE, _minilm_feeds,
                 framework="torchscript"),
    DynamicModel("bert_tiny/torchscript_dynamic", _bert_torchscript,
                 {"batch": 4, "sequence": BERT_POSITIONS}, TEXT_SIZES, TEXT_SMOKE, _bert_feeds,
                 framework="torchscript"),
    DynamicModel("t5_encoder_dyn_matmulinteger", _corpus("t5_encoder_dyn_matmulinteger"),
                 {"batch_size": 4, "encoder_sequence_length": 256}, TEXT_SIZES, TEXT_SMOKE,
                 _token_feeds(32100, ("input_ids", "attention_mask"))),
    DynamicModel("crnn_dyn_convinteger_lstm", _corpus("crnn_dyn_convinteger_lstm"),
                 {"image_width": 256}, [(96,), (160,), (256,)], [(96,), (256,)], _crnn_feeds),
)
BY_NAME = {m.name: m for m in MODELS}


def _size_text(size: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in size)


@dataclass
class Frontend:
    """How :func:`measure_model` compiles, runs, checks and races one model: ``compile``
    (keyword arguments: ``bounds=`` once, or the feeds of one size), ``run`` (a compiled model
    on feeds), ``reference`` (the oracle's output), ``peer`` (a runner on feeds), and
    ``model``, the ONNX file :func:`measure._agreement` reads output scales from (None:
    float outputs compared as they are)."""

    name: str
    compile_dynamic: Callable[[], object]
    compile_static: Callable[[dict[str, np.ndarray]], object]
    run: Callable[[object, dict[str, np.ndarray]], list]
    reference: Callable[[dict[str, np.ndarray]], np.ndarray]
    peer: Callable[[dict[str, np.ndarray]], Callable[[], object]]
    model: object | None


def _onnx_frontend(entry: DynamicModel, threads: int) -> Frontend:
    """ONNX models: ORT is the oracle (its reference path) and the peer (default options)."""
    import tvm_qdq

    proto = entry.load()

    def peer(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        session = ort_session(proto, threads)  # a fresh session per size
        return lambda: session.run(None, feeds)

    return Frontend(
        "ORT",
        lambda: tvm_qdq.compile(proto, "x86", bounds=entry.bounds),
        lambda feeds: tvm_qdq.compile(proto, "x86", shapes={k: list(v.shape)
                                                            for k, v in feeds.items()}),
        lambda compiled, feeds: compiled.run(feeds),
        lambda feeds: ort_session(proto, threads, optimized=False).run(None, feeds)[0],
        peer,
        proto)


def _torchscript_frontend(entry: DynamicModel, threads: int) -> Frontend:
    """TorchScript models: ``from_torch(..., dynamic=TORCH_AXES)`` once, a static import per
    size; PyTorch eager is the oracle and the peer."""
    import torch

    import tvm_qdq

    torch.set_num_threads(threads)
    module, script, example = entry.load()

    def eager(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(v) for v in feeds.values())).numpy()

    def static(feeds: dict[str, np.ndarray]) -> object:
        inputs = tuple(torch.from_numpy(v) for v in feeds.values())
        return tvm_qdq.compile(tvm_qdq.from_torch(script, inputs), "x86")

    return Frontend(
        "PyTorch",
        lambda: tvm_qdq.compile(tvm_qdq.from_torch(script, example, dynamic=TORCH_AXES,
                                                   bounds=entry.bounds), "x86"),
        static,
        lambda compiled, feeds: compiled.run(list(feeds.values())),
        eager,
        lambda feeds: lambda: eager(feeds),
        None)


def measure_model(entry: DynamicModel, threads: int, smoke: bool, budget_s: float,
                  max_rounds: int) -> list[dict]:
    """Rows of one model: compiled once (symbolic), then per size beside a static compile
    and the peer (:class:`Frontend`)."""
    from measure import _agreement

    make = _torchscript_frontend if entry.framework == "torchscript" else _onnx_frontend
    fe = make(entry, threads)
    base = {"model": entry.name, "threads": threads, "bounds": entry.bounds, "peer": fe.name}
    try:
        t0 = time.perf_counter()
        dynamic = fe.compile_dynamic()
        compile_s = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - a failure is a table entry
        return [dict(base, error=f"{type(err).__name__}: {str(err)[:200]}")]
    rows = []
    for size in (entry.smoke if smoke else entry.sizes):
        feeds = entry.feeds(size)
        row = dict(base, size=_size_text(size), compile_s=compile_s)
        actual = fe.run(dynamic, feeds)[0]
        row["agreement"] = _agreement(fe.model, actual, fe.reference(feeds))
        runners: dict[str, Callable[[], object]] = {
            "dynamic": lambda f=feeds: fe.run(dynamic, f)}
        try:
            t0 = time.perf_counter()
            static = fe.compile_static(feeds)
            row["static_compile_s"] = time.perf_counter() - t0
            row["identical_to_static"] = bool(np.array_equal(fe.run(static, feeds)[0], actual))
            runners["static"] = lambda f=feeds, c=static: fe.run(c, f)
        except Exception as err:  # noqa: BLE001 - a failure is a table entry
            row["static_error"] = f"{type(err).__name__}: {str(err)[:200]}"
        runners["peer"] = fe.peer(feeds)
        row["ms"] = interleaved_medians(runners, budget_s, max_rounds)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", metavar="NAME", choices=sorted(BY_NAME))
    parser.add_argument("--smoke", action="store_true", help="two sizes per model")
    parser.add_argument("--budget", type=float, default=6.0, help="seconds per size")
    parser.add_argument("--max-rounds", type=int, default=30)
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.models or [m.name for m in MODELS]
    if args.worker is not None:
        rows = [r for n in names for r in measure_model(BY_NAME[n], args.worker, args.smoke,
                                                        args.budget, args.max_rounds)]
        print(json.dumps(rows))
        return 0
    extra = ["--smoke"] if args.smoke else []
    rows = worker_rows(__file__, args.threads, ["--budget", str(args.budget), "--max-rounds",
                                                str(args.max_rounds), "--models", *names,
                                                *extra])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = render_dynamic_shapes(rows, describe_machine(os_name=False), date, args.smoke)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "dynamic_shapes_smoke" if args.smoke else "dynamic_shapes"
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / f"{stem}.md").write_text(table + "\n")
    print(table)
    if not (args.no_readme or args.models):
        update_readme_section(ROOT / "README.md", MARKERS, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
