"""Static shape folding: shape arithmetic computed at run time becomes constants at import.

PyTorch exports compute reshape targets, slice ends and position indices from the input
sizes at run time (``Shape → Gather → Unsqueeze → Concat → Reshape``, ``Shape → Slice`` end,
``Range(0, dim)``). Each such value computed from static dimensions only is a constant
(values that read a symbolic dimension stay computed, as Relax shape expressions); left as
it is, TVM's converters see a runtime tensor where they need a shape
(``Reshape requires the input new shape to be Shape``) or produce symbolic shapes that later
converters cannot handle.

``fold_shape_arithmetic`` replaces them by initializers before the Relax converters run:

1. infer static shapes (``onnx.shape_inference`` with data propagation);
2. a value is **known** when it is an initializer or ``Constant`` of a plain numeric type,
   or the output of ``Shape``/``Size`` of a tensor whose selected dimensions are static
   (``Shape(x)[start:end] = dims(x)[start:end]``, ``Size(x) = Π dims(x)``: computed here);
3. a node is **folded** when every input is known, it is a deterministic ``ai.onnx`` op
   without subgraphs, not a quantization op (Q/DQ stay visible to the integer pass), and
   either one input is *shape-derived* (computed from a ``Shape``/``Size``), or every input
   is small (at most ``SMALL_ELEMENTS``) and the result is an integer/bool tensor or a
   ``Constant`` (float work on constants, e.g. a weight's dequantization, is never done
   here). Its outputs are evaluated by ONNX Runtime itself (optimizations off, one session
   per wave of independent nodes), so a folded value is bit-identical to what ORT computes
   in the original graph (``Log``/``Exp`` of T5's position buckets included). An output
   larger than ``MAX_FOLDED_BYTES`` is not folded (the node stays and runs on static shapes);
4. the folded values read by the remaining nodes become initializers; folded nodes, and
   initializers only they read, are removed.

Steps 1-4 repeat until nothing more folds (a folded reshape target makes the reshape's
output shape static, which can make a later ``Shape`` foldable). What onnx's inference
cannot see (the shape of a contrib op's output) the importer folds during conversion, from
the static Relax shape, with ``shape_value`` and ``fold_node``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

SMALL_ELEMENTS = 1024  # a constant-only computation folds when each input is at most this big
MAX_FOLDED_BYTES = 1 << 20  # a folded value larger than this stays computed at run time
MAX_ROUNDS = 16

# ai.onnx ops never folded: quantization stays visible to the integer pass; random ops
# are not deterministic; control flow and sequences are not plain tensors.
NEVER_FOLD = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
    "QLinearMatMul", "ConvInteger", "MatMulInteger",
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct", "SequenceEmpty", "SequenceAt",
    "SequenceInsert", "SequenceErase", "SequenceLength", "SplitToSequence",
    "ConcatFromSequence", "Optional", "OptionalGetElement", "OptionalHasElement",
})

_PLAIN_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
    onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
    onnx.TensorProto.INT64, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
    onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL,
})


@dataclass
class _Known:
    """Values known before run time: name → array, and which of them come from shapes."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    shape_derived: set[str] = field(default_factory=set)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)  # read lazily

    def has(self, name: str) -> bool:
        return name == "" or name in self.values or name in self.initializers

    def get(self, name: str) -> np.ndarray:
        if name not in self.values:
            self.values[name] = numpy_helper.to_array(self.initializers[name])
        return self.values[name]

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.values:
            return tuple(self.values[name].shape)
        return tuple(int(d) for d in self.initializers[name].dims)

    def size(self, name: str) -> int:
        if name in self.values:
            return int(self.values[name].size)
        return int(np.prod(self.initializers[name].dims, dtype=np.int64))


def _is_default_domain(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx")


def _has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute)


def _without_large_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A light copy for shape inference: initializers above ``SMALL_ELEMENTS`` become graph
    inputs of the same type and shape (inference needs only their shapes; data propagation
    reads values of small ones only), so a large model is not serialized again."""
    g = model.graph
    small, large = [], []
    for init in g.initializer:
        count = int(np.prod(init.dims, dtype=np.int64))
        (small if count <= SMALL_ELEMENTS else large).append(init)
    declared = {i.name for i in g.input}
    inputs = list(g.input) + [
        onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
        for i in large if i.name not in declared]
    graph = onnx.helper.make_graph(list(g.node), g.name, inputs, list(g.output), small,
                                   value_info=list(g.value_info))
    light = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    light.ir_version = model.ir_version
    return light


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Every tensor whose shape onnx's shape inference (with data propagation) knows, None
    for each symbolic (or unknown) dimension."""
    try:
        inferred = onnx.shape_inference.infer_shapes(_without_large_initializers(model),
                                                     strict_mode=False, data_prop=True)
    except Exception:  # inference is a help: without it only declared shapes are used
        inferred = model
    g = inferred.graph
    shapes: dict[str, tuple[int | None, ...]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            shapes[vi.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else None
                                    for d in tt.shape.dim)
    for init in g.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes


def _shape_of(node: onnx.NodeProto, dims: tuple[int | None, ...]) -> np.ndarray | None:
    """Shape(x) = dims(x)[start:end] (opset 15 start/end, negative = from the back, clamped);
    Size(x) = Π dims(x). ``dims`` may hold None for symbolic dimensions: None when a
    selected one is symbolic (the value is then computed at run time)."""
    if node.op_type == "Size":
        if any(d is None for d in dims):
            return None
        return np.array(int(np.prod(dims, dtype=np.int64)), dtype=np.int64)
    rank = len(dims)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    selected = dims[start:end]
    if any(d is None for d in selected):
        return None
    return np.array(selected, dtype=np.int64)


@contextlib.contextmanager
def _no_ort_telemetry() -> Iterator[None]:
    """ORT 1.32 writes a device id under ``$HOME/.cache`` when it is first imported unless
    ``ORT_DISABLE_TELEMETRY`` is set; the importer writes nothing, so it is set meanwhile."""
    before = os.environ.get("ORT_DISABLE_TELEMETRY")
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["ORT_DISABLE_TELEMETRY"]
        else:
            os.environ["ORT_DISABLE_TELEMETRY"] = before


def _evaluate(nodes: list[onnx.NodeProto], known: _Known,
              model: onnx.ModelProto) -> dict[str, np.ndarray] | None:
    """Outputs of ``nodes`` (inputs all known, mutually independent) as ORT computes them
    with graph optimizations off; None when ORT refuses the batch."""
    feeds = {i: known.get(i) for n in nodes for i in n.input if i}
    return _run_ort(nodes, feeds, model)


def _run_ort(nodes: list[onnx.NodeProto], feeds: dict[str, np.ndarray],
             model: onnx.ModelProto) -> dict[str, np.ndarray] | None:
    """``nodes`` run alone in ORT (optimizations off, ``model``'s ai.onnx opset) on ``feeds``;
    None when ORT refuses them or a result is not a plain numeric tensor."""
    graph = onnx.helper.make_graph(
        list(nodes), "fold",
        [onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for name, v in feeds.items()],
        [onnx.helper.make_empty_tensor_value_info(o) for n in nodes for o in n.output if o],
    )
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    small = onnx.helper.make_model(graph, opset_imports=opsets)
    small.ir_version = model.ir_version
    try:
        with _no_ort_telemetry():
            import onnxruntime as ort  # imported here: importing it can write under $HOME

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.intra_op_num_threads = 1
            options.log_severity_level = 4
            session = ort.InferenceSession(small.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, feeds)
    except Exception:
        return None
    out: dict[str, np.ndarray] = {}
    for name, value in zip(names, results, strict=True):
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            return None
        out[name] = value
    return out


def _initial_known(model: onnx.ModelProto) -> _Known:
    known = _Known()
    for init in model.graph.initializer:
        if init.data_type in _PLAIN_TYPES:
            known.initializers[init.name] = init
    return known


def _foldable_op(node: onnx.NodeProto, outputs: set[str]) -> bool:
    """A deterministic ai.onnx op without subgraphs whose results are not graph outputs."""
    return (_is_default_domain(node) and node.op_type not in NEVER_FOLD
            and not _has_subgraph(node) and not any(o in outputs for o in node.output)
            and not (node.op_type == "Constant" and _too_large_constant(node)))


def _ready(node: onnx.NodeProto, known: _Known) -> bool:
    """Every input known, and one of them shape-derived or all of them small."""
    inputs = [i for i in node.input if i]
    if not all(known.has(i) for i in inputs):
        return False
    return any(i in known.shape_derived for i in inputs) or all(
        known.size(i) <= SMALL_ELEMENTS for i in inputs)


def _keep(node: onnx.NodeProto, values: list[np.ndarray], derived: bool) -> bool:
    """Whether evaluated outputs are folded: none above ``MAX_FOLDED_BYTES``; without a
    shape-derived input only a ``Constant`` or an integer/bool result (a float computation on
    constants, e.g. a weight's dequantization, is left to the converters and passes)."""
    if any(v.nbytes > MAX_FOLDED_BYTES for v in values):
        return False
    return derived or node.op_type == "Constant" or all(v.dtype.kind in "biu" for v in values)


def _too_large_constant(node: onnx.NodeProto) -> bool:
    """A ``Constant`` holding a tensor above ``MAX_FOLDED_BYTES`` (not worth evaluating)."""
    for attr in node.attribute:
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
            if attr.t.data_type not in _PLAIN_TYPES:
                return True
            item = onnx.helper.tensor_dtype_to_np_dtype(attr.t.data_type).itemsize
            return int(np.prod(attr.t.dims, dtype=np.int64)) * item > MAX_FOLDED_BYTES
    return False


def _fold_round(model: onnx.ModelProto, known: _Known, folded: set[int],
                refused: set[tuple[str, ...]]) -> bool:
    """One round (steps 1-3): mark newly foldable nodes (their indices into ``folded``) and
    evaluate them wave by wave. Returns whether anything new was folded."""
    shapes = _static_shapes(model)
    outputs = {o.name for o in model.graph.output}
    pending = [(index, node) for index, node in enumerate(model.graph.node)
               if index not in folded and tuple(node.output) not in refused
               and _foldable_op(node, outputs)]
    progress = False
    while True:
        wave: list[tuple[int, onnx.NodeProto]] = []
        for index, node in pending:
            if node.op_type in ("Shape", "Size"):
                source = node.input[0]
                dims = known.shape(source) if known.has(source) else shapes.get(source)
                value = _shape_of(node, tuple(dims)) if dims is not None else None
                if value is not None:
                    known.values[node.output[0]] = value
                    known.shape_derived.add(node.output[0])
                    folded.add(index)
                    progress = True
            elif _ready(node, known):
                wave.append((index, node))
        if not wave:
            return progress
        results = _evaluate([n for _, n in wave], known, model)
        for index, node in wave:
            values = results if results is not None else _evaluate([node], known, model)
            outs = [o for o in node.output if o]
            derived = any(i in known.shape_derived for i in node.input if i)
            if values is None or not _keep(node, [values[o] for o in outs], derived):
                refused.add(tuple(node.output))
                continue
            for o in outs:
                known.values[o] = values[o]
                if derived:
                    known.shape_derived.add(o)
            folded.add(index)
            progress = True
        pending = [(index, node) for index, node in pending
                   if index not in folded and tuple(node.output) not in refused]


def _subgraph_inputs(graph: onnx.GraphProto) -> Iterable[str]:
    """Names read by nodes of ``graph``'s subgraphs (outer-scope references included)."""
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                for inner in sub.node:
                    yield from inner.input
                yield from _subgraph_inputs(sub)


def _rewrite(model: onnx.ModelProto, known: _Known, folded: set[int]) -> onnx.ModelProto:
    """Step 4: drop folded nodes, add the folded values the other nodes read as initializers,
    drop initializers nothing reads any more."""
    g = model.graph
    kept = [n for i, n in enumerate(g.node) if i not in folded]
    read = {i for n in kept for i in n.input if i} | set(_subgraph_inputs(g))
    read |= {o.name for o in g.output}
    graph_inputs = {i.name for i in g.input}
    produced = {o for i in folded for o in g.node[i].output if o}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    inits = [i for i in g.initializer if i.name in read or i.name in graph_inputs]
    inits += [numpy_helper.from_array(np.asarray(known.values[name]), name)
              for name in sorted(produced & read)]
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    return out


def fold_shape_arithmetic(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every value computed only from static shapes and small constants
    replaced by an initializer (see the module docstring). The caller's model is untouched;
    a model with nothing to fold is returned as it is."""
    known = _initial_known(model)
    folded: set[int] = set()
    refused: set[tuple[str, ...]] = set()
    current = model
    changed = False
    for _ in range(MAX_ROUNDS):
        if not _fold_round(current, known, folded, refused):
            break
        changed = True
        current = _rewrite(current, known, folded)
        folded = set()
    return current if changed else model


def shape_value(node: onnx.NodeProto, dims: tuple[int | None, ...]) -> np.ndarray | None:
    """The value of a ``Shape``/``Size`` node whose input has the shape ``dims`` (None for a
    symbolic dimension); None when the value depends on a symbolic dimension."""
    return _shape_of(node, dims)


def fold_node(node: onnx.NodeProto, values: list[np.ndarray | None], derived: list[bool],
              model: onnx.ModelProto) -> np.ndarray | None:
    """The one output of ``node`` as a constant, for folding during conversion (where a
    static shape is known that onnx's inference did not see, e.g. after a contrib op): a
    foldable single-output op (not producing a graph output) whose inputs all have values
    (``values``, aligned with ``node.input``) and one of them shape-derived (``derived``),
    evaluated by ORT. None when the node does not fold."""
    outs = [o for o in node.output if o]
    graph_outputs = {o.name for o in model.graph.output}
    present = [(name, v, d) for name, v, d in zip(node.input, values, derived, strict=False)
               if name]
    if (len(outs) != 1 or node.op_type in ("Shape", "Size")
            or not _foldable_op(node, graph_outputs)
            or any(v is None for _, v, _ in present) or not any(d for _, _, d in present)):
        return None
    result = _run_ort([node], {name: np.asarray(v) for name, v, _ in present}, model)
    if result is None or not _keep(node, [result[outs[0]]], True):
        return None
    return result[outs[0]]
