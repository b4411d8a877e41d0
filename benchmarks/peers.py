"""The peers of the benchmarks at their own defaults, and who counts as a peer.

Shared by ``benchmarks/measure.py`` (the rows of ``run.py``), ``real_models.py`` and
``pytorch2.py``:

* :func:`ort_session`: ONNX Runtime's CPU session with its default session options (thread
  spinning on), only the thread count set;
* :func:`openvino_model`: OpenVINO's compiled CPU model with ``PERFORMANCE_HINT=LATENCY``, or
  the reason it refused the model;
* :func:`within_contract` / :func:`best_peer`: a peer's output counts when it agrees with ORT's
  reference path as closely as tvm-qdq must (:data:`PEER_RULE`).

How they are timed: ``benchmarks/timing.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

#: The agreement a peer (or tvm-qdq) must reach with ORT's reference path to count.
PEER_RULE = ("quantized output: max ≤ 2 LSB and ≥ 99% of the elements within 1 LSB (the "
             "model contract of tvm_qdq.testing.oracle); float output: worst-row cosine "
             "≥ 0.999 (rows = the last axis)")
MAX_LSB = 2.0
MIN_WITHIN_1 = 0.99
MIN_COSINE = 0.999


def ort_session(model: object, threads: int, optimized: bool = True):
    """ONNX Runtime CPU session at its default options (spinning on), ``threads`` intra-op
    threads; ``optimized=False`` is the reference path (every node as written).
    ``model``: an ``onnx.ModelProto``, serialized bytes or a path."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, (bytes, str)) else (
        str(model) if isinstance(model, Path) else model.SerializeToString())
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def openvino_model(model: object, threads: int,
                   shapes: Mapping[str, list[int]] | None = None) -> tuple[object, str | None]:
    """``(compiled model, None)`` with ``PERFORMANCE_HINT=LATENCY`` and ``threads`` inference
    threads, or ``(None, reason)`` when OpenVINO is missing or refuses the model.
    ``model``: a path, or an ``onnx.ModelProto`` (read from memory)."""
    try:
        import openvino as ov
    except ImportError:
        return None, "not installed"
    try:
        core = ov.Core()
        if isinstance(model, (str, Path)):
            ov_model = core.read_model(str(model))
        else:
            ov_model = core.read_model(model.SerializeToString(), ov.Tensor(shape=[0],
                                                                            type=ov.Type.u8))
        if shapes:
            ov_model.reshape({name: ov.PartialShape(dims) for name, dims in shapes.items()})
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                  "NUM_STREAMS": 1}
        return core.compile_model(ov_model, "CPU", config), None
    except Exception as err:  # noqa: BLE001 - a refusal is a table entry
        return None, _reason(err)


def _reason(err: Exception, width: int = 60) -> str:
    """The error's class and its last message line (OpenVINO's first lines are locations)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    last = lines[-1].replace("|", "/") if lines else ""
    return f"{type(err).__name__}: {last[:width]}" if last else type(err).__name__


def openvino_runner(compiled: object, feeds: Mapping[str, object]
                    ) -> tuple[Callable[[], object], Callable[[], object]]:
    """``(run, first_output)``: one inference of ``feeds``, and the first output of the
    latest inference as a numpy array."""
    request = compiled.create_infer_request()
    feeds = dict(feeds)

    def run() -> object:
        return request.infer(feeds)

    def first_output() -> object:
        return request.get_output_tensor(0).data.copy()

    return run, first_output


def within_contract(agreement: Mapping[str, float] | None) -> bool:
    """Whether an agreement record (``measure.py``'s ``{"lsb", "within1"}`` or ``{"abs", "cos"}``)
    meets :data:`PEER_RULE`. A float record without a cosine does not count."""
    if not agreement:
        return False
    if "lsb" in agreement:
        return agreement["lsb"] <= MAX_LSB and agreement["within1"] >= MIN_WITHIN_1
    return agreement.get("cos", -1.0) >= MIN_COSINE


def best_peer(ms: Mapping[str, float | None], agreements: Mapping[str, Mapping | None]
              ) -> str | None:
    """The fastest peer (a key of ``ms``) whose agreement is :func:`within_contract`."""
    eligible = [(v, k) for k, v in ms.items() if v is not None
                and within_contract(agreements.get(k))]
    return min(eligible)[1] if eligible else None
