"""Layer-by-layer agreement of a QDQ model with ONNX Runtime's reference path.

A whole-model comparison hides where a difference starts: in a deep network one near-tie
flipped by 1 LSB in an early layer grows to several LSB downstream, and a layer that is
wrong by a few LSB can be hidden by the next ReLU or pooling. This module compares every
quantized intermediate tensor *locally*, each layer fed the same inputs in both runtimes:

1. :func:`quantized_tensors` names the outputs of the graph's ``QuantizeLinear`` nodes whose
   input is computed (not a constant): the quantized activations between layers.
2. ORT's reference session (graph optimizations off) runs the model with those tensors as
   extra graph outputs (:func:`expose`): the reference value of every one of them.
3. :func:`cut` rewrites the model so that each such tensor ``t`` is still computed (and is a
   graph output) but its consumers read a new graph input (``cut_in_<i>``) instead: the
   model falls apart into one piece per layer, whose quantized inputs are fed ORT's
   reference values of step 2.
4. tvm-qdq compiles the cut model once and runs it on those feeds; each piece's output is
   compared in LSB (integer codes) with ORT's reference (:func:`layer_agreement`).

So a tensor's difference is what its own layer adds (near-ties of its requantize, its float
island), never what it inherits. ORT's reference run of the cut model must reproduce the
reference values exactly; :func:`layer_agreement` checks it, which checks the cut itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from .oracle import run_ort

__all__ = ["CUT_PREFIX", "LayerAgreement", "quantized_tensors", "expose", "cut",
           "layer_agreement"]

#: Prefix of the graph inputs that replace the cut tensors for their consumers (``cut_in_0``,
#: ``cut_in_1``, ... in the order the tensors are given: plain names that TVM's importer keeps).
CUT_PREFIX = "cut_in_"
_QUANTIZE = {("QuantizeLinear", ""), ("QuantizeLinear", "ai.onnx"),
             ("QuantizeLinear", "com.microsoft")}
_REFERENCE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


@dataclass(frozen=True)
class LayerAgreement:
    """One quantized tensor of the cut model against ORT's reference, in LSB (codes)."""

    name: str
    n: int
    max_lsb: int
    differing: int
    frac_within_1: float

    @property
    def frac_exact(self) -> float:
        """Share of the elements equal to ORT's (1.0 for an empty tensor)."""
        return 1.0 - self.differing / self.n if self.n else 1.0

    def __str__(self) -> str:
        return (f"{self.name}: max {self.max_lsb} LSB, {self.frac_exact:.4%} exact, "
                f"{self.frac_within_1:.4%} within 1 of {self.n}")


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    """Initializers and outputs of ``Constant`` nodes (and of Q/DQ/Identity chains on them)."""
    names = {t.name for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" or (node.input and all(
                not i or i in names for i in node.input)):
            names.update(o for o in node.output if o)
    return names


def quantized_tensors(model: onnx.ModelProto) -> list[str]:
    """Outputs of the top-level ``QuantizeLinear`` nodes with a computed input, graph order."""
    constants = _constant_names(model.graph)
    return [node.output[0] for node in model.graph.node
            if (node.op_type, node.domain) in _QUANTIZE and node.input[0] not in constants]


def expose(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs are its own followed by ``names``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    existing = {o.name for o in out.graph.output}
    out.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names
                            if n not in existing)
    return out


def cut(model: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` cut at each tensor of ``values`` (name → a value of its dtype and
    shape): the tensor becomes a graph output, and every node that read it reads the new
    graph input ``f"{CUT_PREFIX}{i}"`` (``i``: its position in ``values``; same dtype and
    shape) instead."""
    out = expose(model, list(values))
    inputs = {name: f"{CUT_PREFIX}{i}" for i, name in enumerate(values)}
    graph = out.graph
    used = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {
        o for node in graph.node for o in node.output}
    clash = set(inputs.values()) & used
    if clash:
        raise ValueError(f"cannot cut: names already used: {sorted(clash)}")
    for node in out.graph.node:
        for i, name in enumerate(node.input):
            if name in inputs:
                node.input[i] = inputs[name]
    for name, value in values.items():
        out.graph.input.append(helper.make_tensor_value_info(
            inputs[name], helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
    return out


def _compare(name: str, actual: np.ndarray, expected: np.ndarray) -> LayerAgreement:
    diff = np.abs(np.asarray(actual).astype(np.int64) - np.asarray(expected).astype(np.int64))
    n = int(diff.size)
    return LayerAgreement(name, n, int(diff.max()) if n else 0, int(np.count_nonzero(diff)),
                          float(np.mean(diff <= 1)) if n else 1.0)


def layer_agreement(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray],
                    build: Callable[[onnx.ModelProto], Any]) -> list[LayerAgreement]:
    """Every quantized intermediate of ``model`` (:func:`quantized_tensors`), computed by
    ``build(cut_model)`` (a :class:`tvm_qdq.compile.Compiled`-like object with ``run``) from
    ORT's reference values of its layer's inputs, against ORT's reference; graph order.

    Raises AssertionError if ORT's own reference run of the cut model differs from its run of
    the whole model (the cut changed what a layer computes)."""
    names = quantized_tensors(model)
    if not names:
        return []
    exposed = expose(model, names)
    whole = dict(zip([o.name for o in exposed.graph.output],
                     run_ort(exposed, feeds, optimization_level=_REFERENCE), strict=True))
    reference = {n: whole[n] for n in names}
    pieces = cut(model, reference)
    cut_feeds = {**feeds, **{f"{CUT_PREFIX}{i}": v for i, v in enumerate(reference.values())}}
    out_names = [o.name for o in pieces.graph.output]
    ort_cut = dict(zip(out_names, run_ort(pieces, cut_feeds, optimization_level=_REFERENCE),
                       strict=True))
    for name in names:
        if not np.array_equal(ort_cut[name], reference[name]):
            raise AssertionError(f"ORT's reference run of the cut model differs at {name}")
    got = dict(zip(out_names, build(pieces).run(cut_feeds), strict=True))
    return [_compare(n, got[n], reference[n]) for n in names]
