"""ONNX → faithful Relax: TVM's Relax ONNX importer plus tvm-qdq's quantized-op converters.

``from_onnx`` reuses TVM's converters for float ops and owns every quantized op (see
``CONVERTERS``). It lists every op it cannot import at once (node name and op), refuses
float8/float4/int2 types clearly, and wraps any converter failure in an error naming the node.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as tvm_onnx

from ...dtypes import UNSUPPORTED_ONNX_TYPES, to_container
from ...errors import (
    ConversionError,
    ModelLoadError,
    TvmQdqError,
    UnsupportedOpsError,
    UnsupportedTypeError,
    node_label,
)
from ...relax_utils import partial_shape
from . import (
    contrib_float,
    contrib_quant,
    float_ops,
    layer_norm,
    lstm,
    qdq,
    resize,
    stft,
    symbolic_slice,
)
from . import qoperator as qop
from .context import GRAPH_OUTPUT, ConvertContext, constant_value, onnx_type_name
from .qparams import NodeRef
from .shape_exprs import READS_SHAPE_VALUES, as_tensors, fold_symbolic
from .shape_folding import fold_node, fold_shape_arithmetic, shape_value
from .shapes import dynamic_shape_error, with_input_dims

Converter = Callable[[ConvertContext, list, dict], "relax.Expr | None"]

# (domain, op_type) → converter. A converter returning None defers to TVM's own converter.
CONVERTERS: dict[tuple[str, str], Converter] = {
    ("", "QuantizeLinear"): qdq.convert_quantize,
    ("", "DequantizeLinear"): qdq.convert_dequantize,
    ("com.microsoft", "QuantizeLinear"): qdq.convert_quantize,
    ("com.microsoft", "DequantizeLinear"): qdq.convert_dequantize,
    ("", "Clip"): float_ops.convert_clip,
    ("", "Pad"): float_ops.convert_pad,
    ("", "Gather"): float_ops.convert_gather,
    ("", "Range"): float_ops.convert_range,
    ("", "Slice"): symbolic_slice.convert_slice,
    ("", "Sigmoid"): float_ops.convert_sigmoid,
    ("", "Tanh"): float_ops.convert_tanh,
    ("", "Pow"): float_ops.convert_pow,
    ("", "Mul"): float_ops.convert_mul,
    ("", "Resize"): resize.convert_resize,
    ("", "LayerNormalization"): layer_norm.convert_layer_norm,
    ("", "QLinearConv"): qop.convert_qlinear_conv,
    ("", "QLinearMatMul"): qop.convert_qlinear_matmul,
    ("", "ConvInteger"): qop.convert_conv_integer,
    ("", "MatMulInteger"): qop.convert_matmul_integer,
    ("", "DynamicQuantizeLinear"): qop.convert_dynamic_quantize_linear,
    ("com.microsoft", "QGemm"): qop.convert_qgemm,
    ("com.microsoft", "QLinearAdd"): qop.convert_qlinear_add,
    ("com.microsoft", "QLinearMul"): qop.convert_qlinear_mul,
    ("com.microsoft", "QLinearSigmoid"): qop.convert_qlinear_sigmoid,
    ("com.microsoft", "QLinearLeakyRelu"): qop.convert_qlinear_leaky_relu,
    ("com.microsoft", "QLinearSoftmax"): qop.convert_qlinear_softmax,
    ("com.microsoft", "QLinearConcat"): qop.convert_qlinear_concat,
    ("com.microsoft", "QLinearAveragePool"): qop.convert_qlinear_average_pool,
    ("com.microsoft", "QLinearGlobalAveragePool"): qop.convert_qlinear_global_average_pool,
    ("com.microsoft", "QLinearWhere"): qop.convert_qlinear_where,
    ("com.microsoft", "MatMulInteger16"): qop.convert_matmul_integer16,
    ("com.microsoft", "DynamicQuantizeMatMul"): qop.convert_dynamic_quantize_matmul,
    ("com.microsoft", "MatMulIntegerToFloat"): qop.convert_matmul_integer_to_float,
}
# Contrib ops written by ORT's optimizers and quantizers, recurrent and signal ops: each
# module owns its table.
for _table in (contrib_float.CONVERTERS, contrib_quant.CONVERTERS, lstm.CONVERTERS,
               stft.CONVERTERS):
    CONVERTERS.update(_table)

# Ops TVM's importer knows but that tvm-qdq refuses (control flow and friends).
REFUSED = {"If", "Loop", "Scan"}


def _domain(node: onnx.NodeProto) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def load_model(model: str | os.PathLike | bytes | onnx.ModelProto) -> onnx.ModelProto:
    """Load an ONNX model from a path, bytes or ModelProto with a clear error on bad input."""
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, bytes):
            proto = onnx.load_from_string(model)
        else:
            with open(os.fspath(model), "rb") as f:
                proto = onnx.load_model_from_string(f.read())
    except FileNotFoundError as err:
        raise ModelLoadError(f"model file not found: {model}") from err
    except Exception as err:  # protobuf raises DecodeError and friends
        raise ModelLoadError(
            f"{model if not isinstance(model, bytes) else '<bytes>'} is not a readable ONNX model "
            f"(truncated or not ONNX): {err}"
        ) from err
    if not proto.graph.node and not proto.graph.output:
        raise ModelLoadError(f"{model!s:.200} holds no ONNX graph (truncated or not ONNX)")
    return proto


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every named tensor (inputs, initializers, inferred intermediates)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is only a help for types; the import goes on without it
        inferred = model
    g = inferred.graph
    types: dict[str, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    for node in g.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


def _check_types(model: onnx.ModelProto, types: dict[str, int]) -> None:
    """Refuse float8/float4/int2 tensors and Q/DQ output types, naming where they occur."""
    producers = {out: n for n in model.graph.node for out in n.output}
    for name, elem in types.items():
        if elem in UNSUPPORTED_ONNX_TYPES:
            node = producers.get(name)
            where = (
                f"tensor '{name}' (output of {node_label(node.name, node.op_type, node.domain)})"
                if node is not None
                else f"tensor '{name}'"
            )
            raise UnsupportedTypeError(where, UNSUPPORTED_ONNX_TYPES[elem])
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "output_dtype" and attr.i in UNSUPPORTED_ONNX_TYPES:
                raise UnsupportedTypeError(
                    node_label(node.name, node.op_type, node.domain),
                    UNSUPPORTED_ONNX_TYPES[attr.i],
                )


def unsupported_ops(graph: onnx.GraphProto) -> list[tuple[str, str, str]]:
    """(node name, op type, domain) of every node that neither tvm-qdq's table nor TVM's own
    converters import; needs no input shapes."""
    known = tvm_onnx._get_convert_map()
    missing = []
    for node in graph.node:
        dom = _domain(node)
        ok = (dom, node.op_type) in CONVERTERS or (
            dom == "" and node.op_type in known and node.op_type not in REFUSED
        )
        if not ok:
            missing.append((node.name, node.op_type, dom))
    return missing


def _input_dim_vars(inputs) -> set:
    """The symbolic dimension variables of the graph inputs (Relax vars)."""
    out = set()
    for var in inputs:
        for dim in partial_shape(var) or ():
            if not isinstance(dim, int):
                out.update(tvm.tirx.analysis.undefined_vars(dim, []))
    return out


def _first_unknown_shape(inputs, dim_vars: set) -> tuple[int, relax.Expr] | None:
    """(index, expr) of the first tensor input whose shape is not known at import time: no
    shape at all, or a dimension computed from data at run time (a variable that is not a
    graph input dimension, e.g. NonZero's count); shapes symbolic in the input dimensions
    ``dim_vars`` are known."""
    for index, expr in enumerate(inputs):
        if not isinstance(getattr(expr, "ty", None), relax.TensorType):
            continue
        dims = partial_shape(expr)
        if dims is None or any(not isinstance(d, int) and any(
                v not in dim_vars for v in tvm.tirx.analysis.undefined_vars(d, []))
                for d in dims):
            return index, expr
    return None


def _static_value(expr: relax.Expr | None) -> np.ndarray | None:
    """The value of a constant, or of a shape value TVM's converters made from static
    dimensions (``R.shape([2, 6])`` → int64 [2, 6], a prim value ``6`` → int64 6)."""
    if isinstance(expr, relax.ShapeExpr) and all(isinstance(v, tvm.tirx.IntImm)
                                                 for v in expr.values):
        return np.array([int(v) for v in expr.values], dtype=np.int64)
    if isinstance(expr, tvm.tirx.IntImm):
        return np.array(int(expr.value), dtype=np.int64)
    return constant_value(expr) if expr is not None else None


def _symbolic_note(inputs) -> str:
    """Which inputs of a failed node have symbolic dimensions (a hint, not a verdict)."""
    shapes = [(i, partial_shape(x)) for i, x in enumerate(inputs)
              if isinstance(getattr(x, "ty", None), relax.TensorType)]
    symbolic = [f"input {i} {list(map(str, dims))}" for i, dims in shapes
                if dims is not None and not all(isinstance(d, int) for d in dims)]
    if not symbolic:
        return ""
    return (f" (symbolic dimensions: {', '.join(symbolic)}; if this op needs them static, "
            "fix them with shapes={...})")


class QDQGraphImporter(tvm_onnx.ONNXGraphImporter):
    """TVM's Relax ONNX importer with tvm-qdq's converters for quantized ops.

    TVM calls ``_convert_operator`` once per node in graph order, so the node being converted
    is taken from a queue of the graph's nodes (its domain and name are not passed by TVM).
    """

    def __init__(self, model: onnx.ModelProto, types: dict[str, int],
                 bounds: dict[str, int] | None = None):
        super().__init__(shape_dict={}, dtype_dict="float32")
        self.bounds = dict(bounds or {})  # user bounds of symbolic dims, by name
        self.implicit_bounds: dict[str, int] = {}  # bounds converters had to assume
        self._model = model
        self._types = types
        self._queue: collections.deque[onnx.NodeProto] = collections.deque()
        self._shape_derived: set[str] = set()  # values folded from shapes during conversion
        self._outputs = {o.name for o in model.graph.output}
        self._producers = {out: n.op_type for n in model.graph.node for out in n.output if out}
        self._consumers: dict[str, list[str]] = collections.defaultdict(list)
        for n in model.graph.node:
            for name in n.input:
                self._consumers[name].append(n.op_type)
        for name in self._outputs:
            self._consumers[name].append(GRAPH_OUTPUT)
        self._dim_vars: set | None = None  # symbolic input dimensions, once inputs are parsed
        self.opsets = {
            (o.domain if o.domain != "ai.onnx" else ""): o.version for o in model.opset_import
        }

    # --- TVM hooks -----------------------------------------------------------------------
    def _check_for_unsupported_ops(self, graph: onnx.GraphProto) -> None:
        missing = unsupported_ops(graph)
        if missing:
            raise UnsupportedOpsError(missing)
        self._queue = collections.deque(graph.node)

    def _parse_array(self, tensor_proto: onnx.TensorProto) -> tvm.runtime.Tensor:
        array = onnx.numpy_helper.to_array(tensor_proto).reshape(tuple(tensor_proto.dims))
        return tvm.runtime.tensor(np.array(to_container(array), order="C", copy=None))

    def _new_var(self, var_name: str, shape: list, dtype: str = "float32") -> relax.Var:
        container = {"int4": "int8", "uint4": "uint8"}.get(str(dtype), dtype)
        return super()._new_var(var_name, shape, container)

    def _fold(self, node: onnx.NodeProto, inputs: list) -> relax.Expr | None:
        """Shape folding during conversion, for what the pre-pass could not see: a
        ``Shape``/``Size`` whose selected dimensions are static in Relax (e.g. after a
        contrib op onnx's inference does not know), a static ``R.shape``/``R.prim_value``
        TVM made of a shape, and the ai.onnx arithmetic on those values become constants
        (``shape_folding.fold_node``: evaluated by ORT)."""
        if _domain(node) != "" or node.op_type in REFUSED:
            return None
        if node.op_type in ("Shape", "Size"):
            dims = partial_shape(inputs[0]) if inputs and inputs[0] is not None else None
            if dims is None or node.output[0] in self._outputs:
                return None
            value = shape_value(node, tuple(d if isinstance(d, int) else None for d in dims))
            if value is None:  # a selected dimension is symbolic: TVM's ShapeExpr path
                return None
        else:
            values = [_static_value(x) for x in inputs]
            derived = [name in self._shape_derived
                       or isinstance(x, (relax.ShapeExpr, tvm.tirx.IntImm))
                       for name, x in zip(node.input, inputs, strict=False)]
            value = fold_node(node, values, derived, self._model)
            if value is None:
                return fold_symbolic(node, inputs, self._node_consumers(node))
        self._shape_derived.update(o for o in node.output if o)
        return relax.const(value, str(value.dtype))

    def _node_consumers(self, node: onnx.NodeProto) -> list[str]:
        return [op for out in node.output if out for op in self._consumers.get(out, ())]

    def _input_dims(self) -> set:
        if self._dim_vars is None:
            self._dim_vars = _input_dim_vars(
                [v for v in self._inputs.values() if isinstance(v, relax.Var)])
        return self._dim_vars

    def _convert_operator(self, op_name, inputs, attrs, opset):
        node = self._queue.popleft()
        assert node.op_type == op_name, (node.op_type, op_name)
        dom = _domain(node)
        ref = NodeRef(node.name, node.op_type, dom)
        try:
            folded = self._fold(node, list(inputs))
            if folded is not None:
                return folded
            converter = CONVERTERS.get((dom, op_name))
            if converter is not None:
                unknown = _first_unknown_shape(inputs, self._input_dims())
                if unknown is not None:
                    raise dynamic_shape_error(node_label(node.name, node.op_type, dom), *unknown)
                ctx = ConvertContext(
                    node=ref,
                    opset=self.opsets.get(dom, opset),
                    bb=self.bb,
                    onnx_node=node,
                    input_types=[
                        onnx_type_name(self._types[i]) if i in self._types else None
                        for i in node.input
                    ],
                    onnx_opset=opset,
                    producer_ops=[self._producers.get(i) for i in node.input],
                    consumer_ops=tuple(op for out in node.output if out
                                       for op in self._consumers.get(out, ())),
                    bounds=self.bounds,
                    implicit_bounds=self.implicit_bounds,
                )
                clean = {k: v for k, v in attrs.items() if k != "tvm_custom"}
                sym = converter(ctx, list(inputs), clean)
                if sym is not None:
                    return self.bb.normalize(sym)
            if dom == "" and op_name not in READS_SHAPE_VALUES:
                inputs = as_tensors(self.bb, inputs)
            return super()._convert_operator(op_name, inputs, attrs, opset)
        except TvmQdqError:
            raise
        except Exception as err:  # any TVM failure becomes an error naming the node
            unknown = _first_unknown_shape(inputs, self._input_dims())
            if unknown is not None:  # most likely why: say which shape is not known
                label = node_label(node.name, node.op_type, dom)
                cause = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
                raise dynamic_shape_error(label, *unknown, cause) from err
            raise ConversionError(node.name, op_name, f"{type(err).__name__}: {err}"
                                  + _symbolic_note(inputs), dom) from err


def from_onnx(model: str | os.PathLike | bytes | onnx.ModelProto,
              shapes: Mapping[str, Sequence[int | str | None]] | None = None,
              bounds: Mapping[str, int] | None = None) -> tvm.IRModule:
    """Import a (quantized) ONNX model as a faithful Relax module.

    Symbolic input dimensions stay symbolic: each ONNX ``dim_param`` name is one
    ``tirx.Var(name, "int64")`` shared by every input declaring it (``R.Tensor((batch, seq,
    384))``); an unnamed dimension ``i`` of input ``x`` is named ``x_dim{i}``.
    ``shapes={"x": [1, None, 384]}`` fixes some dimensions (ints) and keeps others symbolic
    (``None``, or a str naming it); ``bounds={"seq": 512}`` gives upper bounds by name, stored
    on ``main`` as ``tir_var_upper_bound``; every symbolic dimension gets
    ``tir_var_lower_bound`` 1; sizes the graph itself limits (a slice of a 512-row position
    table added to ``seq``-long tensors) are recorded as ``tvm_qdq.implicit_bounds``
    (checked at run time). An input with no shape at all, an unknown ``bounds`` name or a
    converter that needs a symbolic dimension static raises
    :class:`~tvm_qdq.frontend.onnx.shapes.InputShapeError` naming it.

    Run as it is, the module computes what ORT's reference (float) semantics compute:
    every QuantizeLinear/DequantizeLinear is an explicit ``R.quantize``/``R.dequantize``.
    The module's ``main`` takes the graph inputs in order; its attributes record the ONNX
    input and output names (``tvm_qdq.input_names`` / ``tvm_qdq.output_names``) and the
    declared element types (``tvm_qdq.input_types`` / ``tvm_qdq.output_types``, so 4-bit
    tensors are known as such).
    """
    proto = load_model(model)
    if proto.ir_version < 3:
        raise ModelLoadError(f"ONNX IR version {proto.ir_version} is too old (need >= 3)")
    dims = with_input_dims(proto, shapes, bounds)
    proto = fold_shape_arithmetic(dims.model)
    types = _elem_types(proto)
    _check_types(proto, types)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    importer = QDQGraphImporter(proto, types, dims.bounds)
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    with tvm.transform.PassContext(opt_level=0):
        mod = importer.from_onnx(proto.graph, opset)

    def type_name(name: str) -> str:
        return onnx_type_name(types.get(name, 0)) or "unknown"

    attrs = {
        "tvm_qdq.input_names": [i.name for i in inputs],
        "tvm_qdq.input_types": [type_name(i.name) for i in inputs],
        "tvm_qdq.output_names": [o.name for o in proto.graph.output],
        "tvm_qdq.output_types": [type_name(o.name) for o in proto.graph.output],
        "tvm_qdq.stage": "faithful",
    }
    if dims.names:
        mod["main"] = mod["main"].with_attrs(
            _bound_attrs(mod["main"], dims.bounds, importer.implicit_bounds))
    return mod.with_attrs(attrs) if hasattr(mod, "with_attrs") else _with_attrs(mod, attrs)


def _bound_attrs(main: relax.Function, bounds: dict[str, int],
                 implicit: dict[str, int]) -> dict:
    """``tir_var_lower_bound`` (1 for every symbolic dimension of ``main``'s parameters) and
    ``tir_var_upper_bound`` (the given ``bounds``), TVM's attributes for symbolic sizes, and
    ``tvm_qdq.implicit_bounds``: the bounds the import assumed (checked at run time, not
    used for memory planning)."""
    names = sorted({str(v) for p in main.params for d in (partial_shape(p) or ())
                    if not isinstance(d, int) for v in tvm.tirx.analysis.undefined_vars(d, [])})
    attrs: dict = {"tir_var_lower_bound": {name: 1 for name in names}}
    if bounds:
        attrs["tir_var_upper_bound"] = dict(bounds)
    if implicit:
        attrs["tvm_qdq.implicit_bounds"] = dict(implicit)
    return attrs


def _with_attrs(mod: tvm.IRModule, attrs: dict) -> tvm.IRModule:
    for key, value in attrs.items():
        mod = mod.with_attr(key, value)
    return mod
