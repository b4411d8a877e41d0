"""Expose a model's intermediate integer tensors as extra graph outputs, to compare them
(in LSB: integer codes, or exact int32 accumulators) between ORT and tvm-qdq.

The whole-model tests compare the final outputs only (e.g. 10 logits); a quantized tensor in
the middle of the network holds thousands of codes and shows a rounding fault that the
classifier's output may hide.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from .oracle import Agreement

__all__ = ["QUANTIZED_PRODUCERS", "intermediate_agreements", "with_intermediate_outputs"]

#: Ops whose first output is an integer tensor worth comparing, with the index of the input
#: holding the output zero point (its type is the output's type) for the ``com.microsoft``
#: ops ONNX shape inference cannot type; ``None``: shape inference types it.
QUANTIZED_PRODUCERS: dict[str, int | None] = {
    "QuantizeLinear": None,
    "DynamicQuantizeLinear": None,
    "QLinearConv": None,
    "QLinearMatMul": None,
    "ConvInteger": None,
    "MatMulInteger": None,
    "QLinearAdd": 7,
    "QLinearMul": 7,
    "QLinearGlobalAveragePool": 4,
    "QLinearAveragePool": 4,
    "QLinearSigmoid": 4,
    "QLinearLeakyRelu": 4,
    "QGemm": 8,
}

_INTEGER_TYPES = {TensorProto.UINT8, TensorProto.INT8, TensorProto.UINT16, TensorProto.INT16,
                  TensorProto.INT32}


def with_intermediate_outputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """``(copy of model with extra outputs, names of the extra outputs)``: the first output of
    every node in :data:`QUANTIZED_PRODUCERS` that is not already a graph output and whose
    integer element type is known (ONNX shape inference, else the type of the node's output
    zero point initializer). The original outputs keep their positions."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    inits = {t.name: t.data_type for t in model.graph.initializer}
    existing = {o.name for o in model.graph.output}
    names: list[str] = []
    infos = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_PRODUCERS or not node.output or not node.output[0]:
            continue
        name = node.output[0]
        if name in existing or name in names:
            continue
        elem = types.get(name, TensorProto.UNDEFINED)
        zp_index = QUANTIZED_PRODUCERS[node.op_type]
        if elem == TensorProto.UNDEFINED and zp_index is not None and len(node.input) > zp_index:
            elem = inits.get(node.input[zp_index], TensorProto.UNDEFINED)
        if elem not in _INTEGER_TYPES:
            continue
        names.append(name)
        infos.append(helper.make_tensor_value_info(name, elem, None))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.output.extend(infos)
    return out, names


def intermediate_agreements(model: onnx.ModelProto, seeds: tuple[int, ...] = (1, 2)
                            ) -> list[tuple[int, str, Agreement]]:
    """Compile ``model`` with its intermediate integer tensors as extra outputs
    (:func:`with_intermediate_outputs`) and compare each with ORT's reference path (graph
    optimizations off, every node as written) on ``random_feeds(model, seed)``:
    ``[(seed, tensor name, Agreement in LSB)]`` (integer tensors: exact code differences)."""
    import onnxruntime as ort

    import tvm_qdq

    from .models import random_feeds
    from .oracle import agreement, run_ort

    probe, names = with_intermediate_outputs(model)
    first = len(model.graph.output)
    compiled = tvm_qdq.compile(probe)
    result = []
    for seed in seeds:
        feeds = random_feeds(model, seed=seed)
        ours = compiled.run(feeds)[first:]
        ref = run_ort(probe, feeds,
                      optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)[first:]
        for name, a, e in zip(names, ours, ref, strict=True):
            if a.shape != e.shape or a.dtype != e.dtype:
                raise AssertionError(f"{name}: {a.dtype}{a.shape} vs ORT {e.dtype}{e.shape}")
            result.append((seed, name, agreement(a, e)))
    return result
