"""The yardstick for real float outputs (boxes, logits, embeddings), DESIGN.md §2.

A float output of a quantized model is not compared in LSB: one input code that lands on the
other side of a rounding boundary moves it by a whole step of some inner scale. The
difference to ORT's reference path is acceptable when it does not exceed how far ORT's own
reference output moves when the float inputs change by a relative ``1e-6``:

    movement = max over trials t of  max | ORT(x · (1 + 1e-6 · u_t)) − ORT(x) |,
    u_t ~ uniform(−1, 1) per element,

or when every row (last axis) has cosine ≥ 0.9999 with ORT's output. A model whose inputs
are all integer (token ids) is moved where its float computation starts: the float tensors
computed from the integer inputs and constants alone (the embedding lookups, the mask's cast)
are cut out as inputs (:func:`tvm_qdq.testing.layerwise.cut`) and moved by the same relative
``1e-6``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from .oracle import run_ort

RELATIVE_STEP = 1e-6
MIN_COSINE = 0.9999


def reference(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """ORT's reference path: graph optimizations off, every node as written."""
    return run_ort(model, feeds, optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)


_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                onnx.TensorProto.BFLOAT16}


def float_entries(model: onnx.ModelProto) -> list[str]:
    """The float tensors a model computes from its integer inputs and constants alone, where
    its float computation starts (for a text encoder: embedding lookups, the mask's cast)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.output)}
    constant = {i.name for i in model.graph.initializer} | {""}
    from_inputs = {i.name for i in model.graph.input
                   if i.type.tensor_type.elem_type not in _FLOAT_TYPES} - constant
    entries = []
    for node in model.graph.node:
        if not all(name in constant or name in from_inputs for name in node.input):
            continue
        if all(name in constant for name in node.input):
            constant.update(node.output)  # constants (dequantized weights) do not move
            continue
        for out in node.output:
            if types.get(out) in _FLOAT_TYPES:
                entries.append(out)
            else:
                from_inputs.add(out)
    return entries


def _moved(values: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each float array times ``1 + 1e-6·u``, ``u`` uniform in [−1, 1]; others unchanged."""
    moved = {}
    for name, value in values.items():
        if np.issubdtype(value.dtype, np.floating):
            factor = 1 + RELATIVE_STEP * rng.uniform(-1, 1, value.shape)
            value = (value.astype(np.float64) * factor).astype(value.dtype)
        moved[name] = value
    return moved


def input_sensitivity(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray],
                      base: list[np.ndarray], *, trials: int = 2, seed: int = 0
                      ) -> list[float] | None:
    """Per output, the movement defined above (None when the model has no float tensor)."""
    from .layerwise import CUT_PREFIX, cut, expose

    rng = np.random.default_rng(seed)
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load_model(model)
    moving, feeds_of = proto, dict(feeds)
    if not any(np.issubdtype(v.dtype, np.floating) for v in feeds.values()):
        entries = float_entries(proto)
        if not entries:
            return None
        outputs = reference(expose(proto, entries), feeds)
        values = dict(zip(entries, outputs[len(base):], strict=True))
        moving = cut(proto, values)
        feeds_of.update({f"{CUT_PREFIX}{i}": v for i, v in enumerate(values.values())})
    movement = [0.0] * len(base)
    for _ in range(trials):
        outputs = reference(moving, _moved(feeds_of, rng))
        for i, (new, old) in enumerate(zip(outputs[:len(base)], base, strict=True)):
            diff = np.abs(new.astype(np.float64) - old.astype(np.float64))
            movement[i] = max(movement[i], float(diff.max(initial=0.0)))
    return movement


def min_row_cosine(actual: np.ndarray, expected: np.ndarray) -> float:
    """Lowest cosine similarity over the rows (last axis) of two same-shaped arrays."""
    a = actual.astype(np.float64).reshape(-1, actual.shape[-1] if actual.ndim else 1)
    e = expected.astype(np.float64).reshape(a.shape)
    dot = np.sum(a * e, axis=-1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(e, axis=-1)
    both_zero = norms == 0
    cos = np.where(both_zero, np.where(np.all(a == e, axis=-1), 1.0, 0.0),
                   dot / np.where(both_zero, 1.0, norms))
    return float(cos.min(initial=1.0))


@dataclass(frozen=True)
class FloatVerdict:
    """How a float output compares with ORT's: within the yardstick when ``ok``."""

    max_abs: float
    movement: float | None
    cosine: float

    @property
    def ok(self) -> bool:
        within_movement = self.movement is not None and self.max_abs <= self.movement
        return within_movement or self.cosine >= MIN_COSINE

    def __str__(self) -> str:
        moved = "n/a (integer inputs)" if self.movement is None else f"{self.movement:.3g}"
        return (f"max |diff| {self.max_abs:.3g} (ORT moves {moved} under a relative 1e-6 "
                f"input change), worst-row cosine {self.cosine:.6f}")


def judge(actual: np.ndarray, expected: np.ndarray, movement: float | None) -> FloatVerdict:
    """Compare one float output with ORT's reference output under the yardstick."""
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    return FloatVerdict(float(diff.max(initial=0.0)), movement,
                        min_row_cosine(actual, expected))
