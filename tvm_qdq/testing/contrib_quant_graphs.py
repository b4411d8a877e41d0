"""Single-node graphs of ORT's quantized contrib ops with deterministic random data.

Each builder returns ``(model, feeds)``: the model has its weights, scales and zero points as
initializers and its activations as graph inputs; ``feeds`` holds the activations.

* :func:`dynamic_quantize_lstm` — ``com.microsoft.DynamicQuantizeLSTM`` (what
  ``quantize_dynamic`` writes for an LSTM): weights ``[dirs, in, 4H]`` int8/uint8, per
  direction or per gate-column scales.
* :func:`quantize_dynamic_lstm` — a float ONNX ``LSTM`` through ORT's ``quantize_dynamic``.
* :func:`qattention` — ``com.microsoft.QAttention`` (uint8 input, int8/uint8 weight, optional
  mask in the 1-D end-position or 2-D 0/1 form, per-tensor or per-column weight parameters).
* :func:`qembed_layer_norm` — ``com.microsoft.QEmbedLayerNormalization``.
* :func:`quantize_dynamic_bert_block` — a float ``EmbedLayerNormalization → Attention`` block
  quantized by ORT's ``quantize_dynamic`` (what ORT's optimizer + quantizer produce).
* :func:`isolate_node` — one node of a real model alone, fed ORT's own values of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from .qop_graphs import MS_DOMAIN, QopGraph

__all__ = ["LstmCase", "dynamic_quantize_lstm", "isolate_node", "qattention",
           "qembed_layer_norm", "quantize_dynamic_bert_block", "quantize_dynamic_lstm"]


def _quantize_dynamic(model: onnx.ModelProto, weight_type: str) -> onnx.ModelProto:
    """ORT's ``quantize_dynamic`` of ``model`` (``weight_type``: a ``QuantType`` name)."""
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "dynamic.onnx"
        onnx.save(model, src)
        quantize_dynamic(src, dst, weight_type=getattr(QuantType, weight_type))
        return onnx.load_model(dst)


def _weights(rng: np.random.Generator, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    lo, hi = (-127, 128) if dtype == np.int8 else (0, 256)
    return rng.integers(lo, hi, size=shape).astype(dtype)


@dataclass(frozen=True)
class LstmCase:
    """One DynamicQuantizeLSTM configuration (``seq``, ``batch``, ``inputs``, ``hidden``)."""

    seq: int
    batch: int
    inputs: int
    hidden: int
    direction: str = "forward"
    weight_dtype: str = "int8"
    seed: int = 0
    per_channel: bool = False
    bias: bool = True
    peephole: bool = False
    initial_state: bool = False
    input_forget: bool = False
    clip: float | None = None
    activations: tuple[str, ...] | None = None


def dynamic_quantize_lstm(case: LstmCase) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A DynamicQuantizeLSTM node with outputs ``Y``, ``Y_h``, ``Y_c``; ``X`` is N(0, 1).

    Weight scales are ``~1/(20·K)`` so that the gate pre-activations span a few units (the
    sigmoid/tanh are neither saturated nor linear); uint8 weights get a zero point near 128.
    """
    rng = np.random.default_rng(case.seed)
    dtype = np.dtype(case.weight_dtype).type
    dirs = 2 if case.direction == "bidirectional" else 1
    t, b, i, h = case.seq, case.batch, case.inputs, case.hidden
    g = QopGraph()
    x = rng.normal(size=(t, b, i)).astype(np.float32)
    feeds = {"X": x}
    names = [g.input("X", x), g.init("W", _weights(rng, dtype, (dirs, i, 4 * h))),
             g.init("R", _weights(rng, dtype, (dirs, h, 4 * h)))]
    names.append(g.init("B", (rng.normal(size=(dirs, 8 * h)) * 0.3).astype(np.float32))
                 if case.bias else "")
    names.append("")  # sequence_lens
    if case.initial_state:
        feeds["initial_h"] = (rng.normal(size=(dirs, b, h)) * 0.5).astype(np.float32)
        feeds["initial_c"] = rng.normal(size=(dirs, b, h)).astype(np.float32)
        names += [g.input(k, feeds[k]) for k in ("initial_h", "initial_c")]
    else:
        names += ["", ""]
    names.append(g.init("P", (rng.normal(size=(dirs, 3 * h)) * 0.2).astype(np.float32))
                 if case.peephole else "")
    cols = 4 * h if case.per_channel else 1
    for name, k in (("W", i), ("R", h)):
        scale = (rng.uniform(0.5, 2.0, size=(dirs, cols)) / (20 * k)).astype(np.float32)
        if dtype == np.int8:
            zp = np.zeros((dirs, cols), np.int8)
        else:  # ORT requires one zero point per direction (repeated over the columns)
            zp = np.repeat(rng.integers(110, 146, size=(dirs, 1)), cols, axis=1).astype(dtype)
        shape = (dirs, cols) if case.per_channel else (dirs,)
        names += [g.init(f"{name}_scale", scale.reshape(shape)),
                  g.init(f"{name}_zero_point", zp.reshape(shape))]
    attrs: dict = {"direction": case.direction, "hidden_size": h,
                   "input_forget": int(case.input_forget)}
    if case.clip is not None:
        attrs["clip"] = case.clip
    if case.activations is not None:
        attrs["activations"] = list(case.activations)
    g.node("DynamicQuantizeLSTM", names, ["Y", "Y_h", "Y_c"], domain=MS_DOMAIN, **attrs)
    types = {"Y": (TensorProto.FLOAT, [t, dirs, b, h]), "Y_h": (TensorProto.FLOAT, [dirs, b, h]),
             "Y_c": (TensorProto.FLOAT, [dirs, b, h])}
    return g.model(["Y", "Y_h", "Y_c"], types), feeds


def qattention(batch: int, seq: int, input_hidden: int, hidden: int, heads: int,
               weight_dtype: str = "int8", seed: int = 0, mask: str | None = None,
               per_column: bool = False, unidirectional: bool = False, present: bool = False,
               ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A QAttention node (output ``y`` ``[B, S, hidden]``, and ``present`` ``[2, B, N, S,
    hidden/N]`` when asked); ``mask`` is None, "1d" (end positions ``[B]``) or "2d" (0/1
    ``[B, S]``, first key always kept)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(weight_dtype).type
    g = QopGraph()
    x = rng.integers(0, 256, size=(batch, seq, input_hidden)).astype(np.uint8)
    feeds = {"x": x}
    n = 3 * hidden if per_column else 1
    w_scale = (rng.uniform(0.5, 1.5, size=n) * 2e-3).astype(np.float32)
    w_zp = np.zeros(n, dtype) if dtype == np.int8 else rng.integers(110, 146, size=n).astype(dtype)
    names = [g.input("x", x), g.init("weight", _weights(rng, dtype, (input_hidden, 3 * hidden))),
             g.init("bias", (rng.normal(size=3 * hidden) * 0.1).astype(np.float32)),
             g.init("input_scale", np.float32(0.02)),
             g.init("weight_scale", w_scale if per_column else w_scale.reshape(()))]
    if mask == "1d":
        feeds["mask_index"] = rng.integers(1, seq + 1, size=batch).astype(np.int32)
    elif mask == "2d":
        feeds["mask_index"] = (rng.uniform(size=(batch, seq)) > 0.3).astype(np.int32)
        feeds["mask_index"][:, 0] = 1
    names.append(g.input("mask_index", feeds["mask_index"]) if mask else "")
    names += [g.init("input_zero_point", np.uint8(rng.integers(100, 156))),
              g.init("weight_zero_point", w_zp if per_column else w_zp.reshape(()))]
    outputs = ["y", "present"] if present else ["y"]
    g.node("QAttention", names, outputs, domain=MS_DOMAIN, num_heads=heads,
           unidirectional=int(unidirectional))
    types = {"y": (TensorProto.FLOAT, [batch, seq, hidden]),
             "present": (TensorProto.FLOAT, [2, batch, heads, seq, hidden // heads])}
    return g.model(outputs, types), feeds


def qembed_layer_norm(batch: int, seq: int, hidden: int, vocab: int, dtype_name: str = "uint8",
                      seed: int = 0, segment: bool = True, mask: bool = True,
                      ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A QEmbedLayerNormalization node with outputs ``y`` ``[B, S, H]`` and ``mask_index``."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype_name).type
    g = QopGraph()
    feeds = {"input_ids": rng.integers(0, vocab, size=(batch, seq)).astype(np.int32)}

    def zp() -> np.ndarray:
        return np.asarray(0 if dtype == np.int8 else rng.integers(100, 156), dtype)

    names = [g.input("input_ids", feeds["input_ids"])]
    if segment:
        feeds["segment_ids"] = rng.integers(0, 2, size=(batch, seq)).astype(np.int32)
        names.append(g.input("segment_ids", feeds["segment_ids"]))
    else:
        names.append("")
    names += [g.init("word", _weights(rng, dtype, (vocab, hidden))),
              g.init("position", _weights(rng, dtype, (seq + 3, hidden))),
              g.init("segment", _weights(rng, dtype, (2, hidden))) if segment else "",
              g.init("gamma", _weights(rng, dtype, (hidden,))),
              g.init("beta", _weights(rng, dtype, (hidden,)))]
    if mask:
        feeds["mask"] = (rng.uniform(size=(batch, seq)) > 0.3).astype(np.int32)
        names.append(g.input("mask", feeds["mask"]))
    else:
        names.append("")
    scales = {"word": 0.01, "position": 0.02, "segment": 0.015, "gamma": 0.008, "beta": 0.003}
    names += ["" if (k == "segment" and not segment) else g.init(f"{k}_scale", np.float32(v))
              for k, v in scales.items()]
    names += ["" if (k == "segment" and not segment) else g.init(f"{k}_zero_point", zp())
              for k in scales]
    g.node("QEmbedLayerNormalization", names, ["y", "mask_index"], domain=MS_DOMAIN,
           epsilon=1e-5)
    types = {"y": (TensorProto.FLOAT, [batch, seq, hidden]),
             "mask_index": (TensorProto.INT32, [batch])}
    return g.model(["y", "mask_index"], types), feeds


def quantize_dynamic_bert_block(batch: int, seq: int, hidden: int, heads: int, vocab: int,
                                seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``EmbedLayerNormalization → Attention`` (the ops ORT's transformer optimizer writes for
    a BERT embedding and self-attention), float, then ``quantize_dynamic`` (int8 weights): ORT
    makes it ``QEmbedLayerNormalization → DynamicQuantizeLinear → QAttention`` (the attention's
    input scale and zero point computed at run time). Feeds: ``input_ids``, ``segment_ids``,
    ``mask`` (0/1, first token kept)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int, std: float = 0.2, mean: float = 0.0) -> onnx.TensorProto:
        value = (mean + std * rng.normal(size=shape)).astype(np.float32)
        return numpy_helper.from_array(value, name)

    inits = [init("word", vocab, hidden), init("position", seq, hidden), init("segment", 2, hidden),
             init("gamma", hidden, mean=1.0), init("beta", hidden, std=0.1),
             init("qkv_weight", hidden, 3 * hidden), init("qkv_bias", 3 * hidden, std=0.1)]
    nodes = [
        helper.make_node("EmbedLayerNormalization",
                         ["input_ids", "segment_ids", "word", "position", "segment", "gamma",
                          "beta", "mask"], ["embedded", "mask_index"], domain=MS_DOMAIN,
                         epsilon=1e-12),
        helper.make_node("Attention", ["embedded", "qkv_weight", "qkv_bias", "mask_index"],
                         ["y"], domain=MS_DOMAIN, num_heads=heads),
    ]
    ints = [helper.make_tensor_value_info(n, TensorProto.INT32, [batch, seq])
            for n in ("input_ids", "segment_ids", "mask")]
    graph = helper.make_graph(
        nodes, "bert_block", ints,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, seq, hidden])], inits)
    model = helper.make_model(graph, ir_version=9, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid(MS_DOMAIN, 1)])
    quantized = _quantize_dynamic(model, "QInt8")
    mask = (rng.uniform(size=(batch, seq)) > 0.3).astype(np.int32)
    mask[:, 0] = 1
    feeds = {"input_ids": rng.integers(0, vocab, size=(batch, seq)).astype(np.int32),
             "segment_ids": rng.integers(0, 2, size=(batch, seq)).astype(np.int32),
             "mask": mask}
    return quantized, feeds


def isolate_node(model: onnx.ModelProto, op_type: str,
                 feeds: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The first ``op_type`` node of ``model`` alone, fed what ORT's reference path computes
    for its run-time inputs on ``feeds`` (its initializers stay initializers). Tensors whose
    type shape inference cannot tell (``com.microsoft`` outputs) are taken as float32.

    Separates a node's own agreement from what the layers before it contribute."""
    import onnxruntime as ort
    from onnx import helper

    from .oracle import run_ort

    node = next(n for n in model.graph.node if n.op_type == op_type)
    inits = {i.name: i for i in model.graph.initializer}
    runtime = [name for name in node.input if name and name not in inits]
    probe = onnx.shape_inference.infer_shapes(model)
    known = {vi.name: vi.type.tensor_type.elem_type for vi in
             (*probe.graph.input, *probe.graph.value_info, *probe.graph.output)}
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(
        n, known.get(n) or TensorProto.FLOAT, None) for n in runtime)
    values = run_ort(probe, feeds, optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    node_feeds = dict(zip(runtime, values, strict=True))
    inputs = [helper.make_tensor_value_info(
        n, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)) for n, v in node_feeds.items()]
    outputs = [helper.make_tensor_value_info(n, known.get(n) or TensorProto.FLOAT, None)
               for n in node.output if n]
    graph = helper.make_graph([node], f"{op_type}_alone", inputs, outputs,
                              [inits[n] for n in node.input if n in inits])
    alone = helper.make_model(graph, ir_version=model.ir_version, opset_imports=model.opset_import)
    return alone, node_feeds


def quantize_dynamic_lstm(seq: int, batch: int, inputs: int, hidden: int,
                          direction: str = "forward", seed: int = 0,
                          weight_type: str = "QInt8") -> tuple[onnx.ModelProto,
                                                               dict[str, np.ndarray]]:
    """A float ONNX ``LSTM`` (with bias and a run-time initial state) quantized by ORT's
    ``quantize_dynamic``, which rewrites it as ``DynamicQuantizeLSTM`` (weights transposed to
    ``[dirs, in, 4H]``, per direction scales). Feeds ``X``, ``initial_h``, ``initial_c``."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    inits = [numpy_helper.from_array((rng.normal(size=shape) * std).astype(np.float32), name)
             for name, shape, std in (("W", (dirs, 4 * hidden, inputs), 0.3),
                                      ("R", (dirs, 4 * hidden, hidden), 0.3),
                                      ("B", (dirs, 8 * hidden), 0.2))]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "initial_h", "initial_c"],
                            ["Y", "Y_h", "Y_c"], direction=direction, hidden_size=hidden)
    state = [dirs, batch, hidden]
    graph = helper.make_graph(
        [node], "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, batch, inputs]),
         helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, state),
         helper.make_tensor_value_info("initial_c", TensorProto.FLOAT, state)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [seq, dirs, batch, hidden]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, state),
         helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, state)], inits)
    model = helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])
    quantized = _quantize_dynamic(model, weight_type)
    feeds = {"X": rng.normal(size=(seq, batch, inputs)).astype(np.float32),
             "initial_h": (rng.normal(size=state) * 0.5).astype(np.float32),
             "initial_c": rng.normal(size=state).astype(np.float32)}
    return quantized, feeds
