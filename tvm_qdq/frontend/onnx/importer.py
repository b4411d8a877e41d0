"""ONNX → faithful Relax: TVM's Relax ONNX importer plus tvm-qdq's quantized-op converters.

``from_onnx`` reuses TVM's converters for float ops and owns every quantized op (see
``CONVERTERS``). It lists every op it cannot import at once (node name and op), refuses
float8/float4/int2 types clearly, and wraps any converter failure in an error naming the node.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable

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
from . import contrib_float, contrib_quant, float_ops, layer_norm, lstm, qdq, resize, stft
from . import qoperator as qop
from .context import GRAPH_OUTPUT, ConvertContext, constant_value, onnx_type_name
from .qparams import NodeRef
from .shape_folding import fold_node, fold_shape_arithmetic, shape_value
from .shapes import dynamic_shape_error, known_shape, with_static_inputs

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
    ("", "Sigmoid"): float_ops.convert_sigmoid,
    ("", "Tanh"): float_ops.convert_tanh,
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


def _first_dynamic_input(inputs) -> tuple[int, relax.Expr] | None:
    """(index, expr) of the first tensor input whose shape is not static, if any."""
    for index, expr in enumerate(inputs):
        ty = getattr(expr, "ty", None)
        if isinstance(ty, relax.TensorType) and known_shape(expr) is None:
            return index, expr
    return None


class QDQGraphImporter(tvm_onnx.ONNXGraphImporter):
    """TVM's Relax ONNX importer with tvm-qdq's converters for quantized ops.

    TVM calls ``_convert_operator`` once per node in graph order, so the node being converted
    is taken from a queue of the graph's nodes (its domain and name are not passed by TVM).
    """

    def __init__(self, model: onnx.ModelProto, types: dict[str, int]):
        super().__init__(shape_dict={}, dtype_dict="float32")
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
        ``Shape``/``Size`` of a tensor whose Relax shape is static (e.g. after a contrib op
        onnx's inference does not know) and the ai.onnx arithmetic on its value become
        constants (``shape_folding.fold_node``: evaluated by ORT)."""
        if _domain(node) != "" or node.op_type in REFUSED:
            return None
        if node.op_type in ("Shape", "Size"):
            dims = known_shape(inputs[0]) if inputs and inputs[0] is not None else None
            if dims is None or node.output[0] in self._outputs:
                return None
            value = shape_value(node, dims)
        else:
            values = [constant_value(x) if x is not None else None for x in inputs]
            derived = [name in self._shape_derived for name in node.input]
            value = fold_node(node, values, derived, self._model)
            if value is None:
                return None
        self._shape_derived.update(o for o in node.output if o)
        return relax.const(value, str(value.dtype))

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
                )
                clean = {k: v for k, v in attrs.items() if k != "tvm_custom"}
                sym = converter(ctx, list(inputs), clean)
                if sym is not None:
                    return self.bb.normalize(sym)
            return super()._convert_operator(op_name, inputs, attrs, opset)
        except TvmQdqError:
            raise
        except Exception as err:  # any TVM failure becomes an error naming the node
            dynamic = _first_dynamic_input(inputs)
            if dynamic is not None:  # most likely why: say which shape is not static
                label = node_label(node.name, node.op_type, dom)
                cause = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
                raise dynamic_shape_error(label, *dynamic, cause) from err
            raise ConversionError(node.name, op_name, f"{type(err).__name__}: {err}", dom) from err


def from_onnx(model: str | os.PathLike | bytes | onnx.ModelProto,
              shapes: dict[str, list[int]] | None = None) -> tvm.IRModule:
    """Import a (quantized) ONNX model as a faithful Relax module.

    Every graph input needs a static shape: ``shapes={"x": [1, 3, 224, 224]}`` fixes inputs
    declared with symbolic or unnamed dimensions (or none); an input left dynamic raises
    :class:`~tvm_qdq.frontend.onnx.shapes.InputShapeError` naming it and the dimension.

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
    proto = fold_shape_arithmetic(with_static_inputs(proto, shapes))
    types = _elem_types(proto)
    _check_types(proto, types)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    importer = QDQGraphImporter(proto, types)
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
    return mod.with_attrs(attrs) if hasattr(mod, "with_attrs") else _with_attrs(mod, attrs)


def _with_attrs(mod: tvm.IRModule, attrs: dict) -> tvm.IRModule:
    for key, value in attrs.items():
        mod = mod.with_attr(key, value)
    return mod
