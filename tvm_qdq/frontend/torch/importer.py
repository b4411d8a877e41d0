"""TorchScript → Relax: ``from_torch(model_or_scripted, example_inputs) -> IRModule``.

The importer walks the inlined TorchScript graph of ``forward`` once, as a partial
evaluator over shapes fixed by the example inputs:

* values known at import time stay Python values: module attributes (``prim::GetAttr`` on
  the module object, so parameters are constants and packed quantized weights are script
  objects), constants, sizes, dtypes, lists, and every ``aten`` op whose inputs are all
  known, which runs in PyTorch itself (``aten::size``, index arithmetic, ``position_ids``
  slices, ``zeros_like`` of an input, ...);
* ``prim::If`` / ``prim::Loop`` with a known condition / trip count are taken / unrolled (the
  scripted ``Linear.forward`` of a dynamic-quantized model branches on its weight dtype);
* every op on a run-time tensor is converted to Relax by :mod:`.aten` (float ops) or
  :mod:`.dynamic` (``quantized::linear_dynamic`` and friends, integer compute).

Ops that cannot be converted are all collected (kind and source location) and raised at the
end as one :class:`UnsupportedTorchOpsError`; values depending on them are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import tvm
from tvm import relax

from ...errors import ConversionError, TvmQdqError
from ...relax_utils import partial_shape
from . import aten, script_dims
from .errors import TorchImportError, UnsupportedForm, UnsupportedTorchOpsError
from .types import RELAX_TO_TORCH, SCALAR_TYPE_CODES, SCALAR_TYPES, TORCH_TO_RELAX


class _Unknown:
    """A value that depends on an op that could not be converted (already reported)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()

_LOCATION = re.compile(r"#\s*(\S+:\d+:\d+)\s*$")


def location(node: torch._C.Node) -> str:
    """``file.py:line:col`` of a TorchScript node (the innermost frame TorchScript kept)."""
    first = str(node).split("\n", 1)[0]
    found = _LOCATION.search(first)
    if found:
        return found.group(1)
    try:
        rng = node.sourceRange().strip().split("\n")
        return rng[0] if rng and rng[0] else ""
    except Exception:  # not every node keeps a source range
        return ""


def is_static(value: Any) -> bool:
    """True when ``value`` is known at import time (no Relax expression, nothing unknown)."""
    if isinstance(value, relax.Expr) or value is UNKNOWN:
        return False
    if isinstance(value, list | tuple):
        return all(is_static(v) for v in value)
    return True


def has_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, list | tuple):
        return any(has_unknown(v) for v in value)
    return False


def _schema(node: torch._C.Node) -> torch._C.FunctionSchema:
    """The parsed schema of an ``aten`` node (its exact overload)."""
    return torch._C.parse_schema(node.schema())


_MEMORY_FORMATS = {0: torch.contiguous_format, 1: torch.preserve_format,
                   2: torch.channels_last, 3: torch.channels_last_3d}
_LAYOUTS = {0: torch.strided}


def _fold_arg(value: Any, typ: str) -> Any:
    """A TorchScript value as the Python argument ``torch.ops`` expects for type ``typ``
    (dtype, memory format and layout enums are ints in TorchScript)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if "ScalarType" in typ:
            return SCALAR_TYPES[value]
        if "MemoryFormat" in typ:
            return _MEMORY_FORMATS[value]
        if "Layout" in typ:
            return _LAYOUTS[value]
    return value


class TorchScriptImporter:
    """Converts one TorchScript ``forward`` graph to a Relax ``main`` (see module docstring)."""

    def __init__(self, graph: torch._C.Graph, self_value: Any,
                 example_inputs: Sequence[torch.Tensor], input_names: Sequence[str],
                 input_shapes: Sequence[Sequence[Any]] | None = None):
        self.graph = graph
        #: each input's shape (ints, and ``tirx.Var`` s for symbolic dims)
        self.input_shapes = ([list(s) for s in input_shapes] if input_shapes is not None
                             else [list(x.shape) for x in example_inputs])
        #: whether some input dim is symbolic (:mod:`.script_dims` converters apply)
        self.symbolic = any(script_dims.has_dim(s) for s in self.input_shapes)
        self.self_value = self_value
        self.example_inputs = list(example_inputs)
        self.input_names = list(input_names)
        self.env: dict[int, Any] = {}
        self.unsupported: list[tuple[str, str, str]] = []
        self.bb = relax.BlockBuilder()
        self.node: torch._C.Node | None = None
        #: bounds a converter had to assume (a slice ``[:seq]`` of a static-length table)
        self.implicit_bounds: dict[str, int] = {}

    # --- helpers used by the converters ------------------------------------------------------
    def emit(self, expr: relax.Expr, name: str | None = None) -> relax.Expr:
        if isinstance(expr, relax.Var):
            return expr
        if name is None and self.node is not None:
            outs = list(self.node.outputs())
            name = _clean_name(outs[0].debugName()) if outs else None
        return self.bb.emit(expr, name_hint=name) if name else self.bb.emit(expr)

    def expr(self, value: Any, dtype: str | None = None) -> relax.Expr:
        """A Relax expression for ``value`` (constants become ``relax.const``), cast to
        ``dtype`` when given."""
        if script_dims.is_dim(value):
            raise UnsupportedForm("a symbolic size used as a tensor or compared: leave that "
                                  "axis out of dynamic=")
        if isinstance(value, relax.Expr):
            if dtype is not None and str(value.ty.dtype) != dtype:
                return self.emit(relax.op.astype(value, dtype))
            return value
        if isinstance(value, torch.Tensor):
            array = value.detach().cpu()
            if array.dtype == torch.bfloat16:
                array = array.float()
            array = array.numpy()
            target = dtype or TORCH_TO_RELAX[value.dtype]
            return relax.const(np.asarray(array).astype(target), target)
        if isinstance(value, bool | int | float):
            if dtype is None:
                dtype = ("bool" if isinstance(value, bool)
                         else "int64" if isinstance(value, int) else "float32")
            return relax.const(np.asarray(value).astype(dtype), dtype)
        raise TypeError(f"cannot use {type(value).__name__} {value!r} as a tensor")

    @staticmethod
    def torch_dtype(value: Any) -> torch.dtype:
        if script_dims.is_dim(value):
            return torch.int64
        if isinstance(value, relax.Expr):
            return RELAX_TO_TORCH[str(value.ty.dtype)]
        if isinstance(value, torch.Tensor):
            return value.dtype
        if isinstance(value, bool):
            return torch.bool
        if isinstance(value, int):
            return torch.int64
        if isinstance(value, float):
            return torch.float32
        raise TypeError(f"no dtype for {type(value).__name__}")

    @staticmethod
    def proxy(value: Any) -> Any:
        """A tiny torch value with ``value``'s dtype and rank class (for type promotion)."""
        if script_dims.is_dim(value):
            return 1
        if isinstance(value, relax.Expr):
            ndim = len(value.ty.shape.values)
            dt = RELAX_TO_TORCH[str(value.ty.dtype)]
            return torch.empty([1] * ndim, dtype=dt) if ndim else torch.empty((), dtype=dt)
        return value

    def result_dtype(self, *values: Any) -> str:
        """PyTorch's type promotion of ``values`` (``torch.result_type``) as a Relax dtype."""
        proxies = [self.proxy(v) for v in values if v is not None]
        if len(proxies) == 1:
            p = proxies[0]
            return TORCH_TO_RELAX[p.dtype if isinstance(p, torch.Tensor)
                                  else self.torch_dtype(p)]
        dt = torch.result_type(proxies[0], proxies[1])
        for p in proxies[2:]:
            dt = torch.promote_types(dt, torch.result_type(torch.empty((1,), dtype=dt), p))
        return TORCH_TO_RELAX[dt]

    def shape(self, value: Any) -> list[Any]:
        """``value``'s shape: ints, and ``PrimExpr`` s for symbolic dims."""
        if isinstance(value, relax.Expr):
            if self.symbolic:
                return list(partial_shape(value))
            return [int(d) for d in value.ty.shape.values]
        return list(value.shape)

    # --- walking the graph ------------------------------------------------------------------
    def set_outputs(self, node: torch._C.Node, result: Any) -> None:
        outs = list(node.outputs())
        if len(outs) == 1:
            self.env[outs[0].unique()] = result
            return
        if result is UNKNOWN:
            result = [UNKNOWN] * len(outs)
        if not isinstance(result, list | tuple) or len(result) != len(outs):
            raise TypeError(f"expected {len(outs)} results, got {result!r}")
        for out, value in zip(outs, result, strict=True):
            self.env[out.unique()] = value

    def report(self, node: torch._C.Node, why: str = "") -> None:
        outs = list(node.outputs())
        name = _clean_name(outs[0].debugName()) if outs else "<none>"
        self.unsupported.append((name, node.kind() + (f" ({why})" if why else ""),
                                 location(node)))
        for out in outs:
            self.env[out.unique()] = UNKNOWN

    def run_block(self, block: torch._C.Block) -> list[Any]:
        for node in block.nodes():
            self.run_node(node)
        return [self.env[v.unique()] for v in block.outputs()]

    def run_node(self, node: torch._C.Node) -> None:
        kind = node.kind()
        args = [self.env[v.unique()] for v in node.inputs()]
        handler = PRIM_HANDLERS.get(kind)
        if handler is not None:
            self.node = node
            handler(self, node, args)
            return
        if any(has_unknown(a) for a in args):
            # depends on an op already reported; report this one too if it is unknown itself
            if not self._known(kind):
                self.report(node)
            for out in node.outputs():
                self.env[out.unique()] = UNKNOWN
            return
        self.node = node
        try:
            result = self._convert(node, kind, args)
        except TvmQdqError:
            raise
        except UnsupportedForm as err:
            self.report(node, str(err))
            return
        except Exception as err:
            outs = list(node.outputs())
            name = _clean_name(outs[0].debugName()) if outs else "<none>"
            raise ConversionError(f"%{name} at {location(node) or '<unknown>'}", kind,
                                  f"{type(err).__name__}: {err}") from err
        self.set_outputs(node, result)

    @staticmethod
    def _known(kind: str) -> bool:
        base = kind[:-1] if kind.endswith("_") and not kind.endswith("__") else kind
        return kind in PRIM_HANDLERS or kind in aten.CONVERTERS or base in aten.CONVERTERS

    def _convert(self, node: torch._C.Node, kind: str, args: list[Any]) -> Any:
        base = kind[:-1] if kind.endswith("_") and not kind.endswith("__") else None
        tables = [script_dims.CONVERTERS, aten.CONVERTERS] if self.symbolic else [
            aten.CONVERTERS]
        converter = next((t[k] for t in tables for k in (kind, base) if k in t), None)
        static = all(is_static(a) for a in args)
        if static and kind.startswith("aten::") and kind not in aten.NEVER_FOLD:
            return self._fold(node, kind, args, in_place=base is not None)
        if converter is None:
            raise UnsupportedForm("")
        result = converter(self, node, args)
        if base is not None and args and isinstance(args[0], relax.Expr):
            # in-place op on a run-time tensor: later uses of the input see the result
            self.env[next(iter(node.inputs())).unique()] = result
        return result

    def _fold(self, node: torch._C.Node, kind: str, args: list[Any], in_place: bool) -> Any:
        """Run an ``aten`` op whose inputs are all known in PyTorch, at import time."""
        schema = _schema(node)
        packet = getattr(torch.ops.aten, schema.name.split("::", 1)[1])
        fn = getattr(packet, schema.overload_name or "default")
        call_args, call_kwargs = [], {}
        for value, arg in zip(args, schema.arguments, strict=False):
            value = _fold_arg(value, str(arg.type))
            if in_place and isinstance(value, torch.Tensor) and not call_args:
                value = value.clone()
            if arg.kwarg_only:
                call_kwargs[arg.name] = value
            else:
                call_args.append(value)
        with torch.no_grad():
            result = fn(*call_args, **call_kwargs)
        if in_place:
            self.env[next(iter(node.inputs())).unique()] = result
        return list(result) if isinstance(result, tuple) else result

    # --- entry ------------------------------------------------------------------------------
    def convert(self) -> tvm.IRModule:
        graph_inputs = list(self.graph.inputs())
        params = []
        for value, example, name, shape in zip(graph_inputs[1:], self.example_inputs,
                                               self.input_names, self.input_shapes,
                                               strict=True):
            dtype = TORCH_TO_RELAX.get(example.dtype)
            if dtype is None:
                raise TorchImportError(f"input '{name}': unsupported dtype {example.dtype}")
            var = relax.Var(name, relax.TensorType(shape, dtype))
            params.append(var)
            self.env[value.unique()] = var
        self.env[graph_inputs[0].unique()] = self.self_value
        with self.bb.function("main", params, attrs={"num_input": len(params)}):
            with self.bb.dataflow():
                outputs = self.run_block(self.graph.block())
                if self.unsupported:
                    raise UnsupportedTorchOpsError(self.unsupported)
                self.node = None
                value = outputs[0] if len(outputs) == 1 else tuple(outputs)
                fields = list(value) if isinstance(value, list | tuple) else [value]
                exprs = [self.expr(f) for f in fields]
                if isinstance(value, list | tuple):
                    out = self.bb.emit_output(relax.Tuple(exprs))
                else:
                    out = self.bb.emit_output(exprs[0])
            self.bb.emit_func_output(out)
        self.output_exprs = exprs
        return self.bb.get()


def _clean_name(name: str) -> str:
    name = re.sub(r"\.\d+$", "", name)
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return name if name and not name[0].isdigit() else f"v{name}"


# --- prim ops (and Python-level list / scalar ops) ----------------------------------------------


def _prim_constant(imp: TorchScriptImporter, node, args) -> None:
    out = node.output()
    try:
        value = out.toIValue()
    except Exception:  # functions and other non-values: keep the node's attribute name
        value = ("<opaque>", node.s("name") if node.hasAttribute("name") else "")
    imp.env[out.unique()] = value


def _prim_getattr(imp: TorchScriptImporter, node, args) -> None:
    obj, name = args[0], node.s("name")
    if obj is UNKNOWN:
        imp.env[node.output().unique()] = UNKNOWN
        return
    if hasattr(obj, "getattr"):
        value = obj.getattr(name)
    else:
        value = getattr(obj, name)
    imp.env[node.output().unique()] = value


def _prim_list(imp: TorchScriptImporter, node, args) -> None:
    imp.env[node.output().unique()] = list(args)


def _prim_tuple(imp: TorchScriptImporter, node, args) -> None:
    imp.env[node.output().unique()] = tuple(args)


def _prim_unpack(imp: TorchScriptImporter, node, args) -> None:
    seq = args[0]
    imp.set_outputs(node, UNKNOWN if seq is UNKNOWN else list(seq))


def _prim_tuple_index(imp: TorchScriptImporter, node, args) -> None:
    seq, idx = args
    imp.env[node.output().unique()] = UNKNOWN if seq is UNKNOWN else seq[idx]


def _prim_passthrough(imp: TorchScriptImporter, node, args) -> None:
    imp.set_outputs(node, args[0] if len(list(node.outputs())) == 1 else list(args))


def _prim_none(imp: TorchScriptImporter, node, args) -> None:
    for out in node.outputs():
        imp.env[out.unique()] = None


def _prim_num_to_tensor(imp: TorchScriptImporter, node, args) -> None:
    value = args[0]
    imp.env[node.output().unique()] = (
        torch.tensor(value) if is_static(value) else value)


def _prim_dtype(imp: TorchScriptImporter, node, args) -> None:
    value = args[0]
    imp.env[node.output().unique()] = (
        UNKNOWN if value is UNKNOWN else SCALAR_TYPE_CODES[imp.torch_dtype(value)])


def _prim_device(imp: TorchScriptImporter, node, args) -> None:
    imp.env[node.output().unique()] = torch.device("cpu")


def _prim_raise(imp: TorchScriptImporter, node, args) -> None:
    message = args[0] if args and isinstance(args[0], str) else "an exception"
    raise TorchImportError(f"the model raises at {location(node)}: {message}")


def _prim_if(imp: TorchScriptImporter, node, args) -> None:
    cond = args[0]
    outs = list(node.outputs())
    if has_unknown(cond):
        for out in outs:
            imp.env[out.unique()] = UNKNOWN
        return
    if not is_static(cond):
        imp.report(node, "condition on a symbolic size: leave that axis out of dynamic="
                   if script_dims.has_dim(cond) else "condition on a run-time tensor")
        return
    if isinstance(cond, torch.Tensor):
        cond = bool(cond.item())
    blocks = list(node.blocks())
    results = imp.run_block(blocks[0] if cond else blocks[1])
    for out, value in zip(outs, results, strict=True):
        imp.env[out.unique()] = value


def _prim_loop(imp: TorchScriptImporter, node, args) -> None:
    trip, cond, carried = args[0], args[1], list(args[2:])
    outs = list(node.outputs())
    if not (is_static(trip) and is_static(cond)):
        if has_unknown(trip) or has_unknown(cond):
            for out in outs:
                imp.env[out.unique()] = UNKNOWN
            return
        imp.report(node, "trip count or condition depends on a run-time tensor")
        return
    block = next(iter(node.blocks()))
    block_inputs = list(block.inputs())
    i = 0
    while bool(cond) and i < int(trip):
        imp.env[block_inputs[0].unique()] = i
        for value, inp in zip(carried, block_inputs[1:], strict=True):
            imp.env[inp.unique()] = value
        results = imp.run_block(block)
        cond, carried = results[0], results[1:]
        if not is_static(cond):
            imp.report(node, "loop condition depends on a run-time tensor")
            return
        i += 1
    for out, value in zip(outs, carried, strict=True):
        imp.env[out.unique()] = value


def _list_getitem(imp: TorchScriptImporter, node, args) -> None:
    seq, idx = args
    if isinstance(seq, list | tuple) and isinstance(idx, int):
        imp.env[node.output().unique()] = seq[idx]
    else:  # a tensor __getitem__ or unknowns: the generic path
        _generic(imp, node, args)


def _list_len(imp: TorchScriptImporter, node, args) -> None:
    seq = args[0]
    if isinstance(seq, list | tuple):
        imp.env[node.output().unique()] = len(seq)
    elif isinstance(seq, relax.Expr):
        imp.env[node.output().unique()] = imp.shape(seq)[0]
    else:
        _generic(imp, node, args)


def _is(imp: TorchScriptImporter, node, args) -> None:
    a, b = args
    same = (a is None) == (b is None) if (a is None or b is None) else a is b
    imp.env[node.output().unique()] = same if node.kind() == "aten::__is__" else not same


def _ignore(imp: TorchScriptImporter, node, args) -> None:
    for out in node.outputs():
        imp.env[out.unique()] = None


def _py_builtin(fn):
    def handler(imp: TorchScriptImporter, node, args) -> None:
        if not all(is_static(a) for a in args):
            _generic(imp, node, args)
            return
        values = args[0] if len(args) == 1 else args
        imp.env[node.output().unique()] = fn(values)
    return handler


def _generic(imp: TorchScriptImporter, node, args) -> None:
    kind = node.kind()
    if any(has_unknown(a) for a in args):
        for out in node.outputs():
            imp.env[out.unique()] = UNKNOWN
        return
    try:
        imp.set_outputs(node, imp._convert(node, kind, args))
    except UnsupportedForm as err:
        imp.report(node, str(err))


PRIM_HANDLERS = {
    "prim::Constant": _prim_constant,
    "prim::GetAttr": _prim_getattr,
    "prim::ListConstruct": _prim_list,
    "prim::TupleConstruct": _prim_tuple,
    "prim::ListUnpack": _prim_unpack,
    "prim::TupleUnpack": _prim_unpack,
    "prim::TupleIndex": _prim_tuple_index,
    "prim::unchecked_cast": _prim_passthrough,
    "prim::Uninitialized": _prim_none,
    "prim::NumToTensor": _prim_num_to_tensor,
    "prim::dtype": _prim_dtype,
    "prim::device": _prim_device,
    "prim::RaiseException": _prim_raise,
    "prim::If": _prim_if,
    "prim::Loop": _prim_loop,
    "prim::min": _py_builtin(min),
    "prim::max": _py_builtin(max),
    "aten::__getitem__": _list_getitem,
    "aten::len": _list_len,
    "aten::__is__": _is,
    "aten::__isnot__": _is,
    "aten::warn": _ignore,
    "prim::Print": _ignore,
}


# --- public entry -------------------------------------------------------------------------------


def _as_inputs(example_inputs: Any) -> list[torch.Tensor]:
    if isinstance(example_inputs, torch.Tensor):
        return [example_inputs]
    inputs = list(example_inputs)
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise TorchImportError(f"example input {i} is a {type(x).__name__}, not a tensor")
    return inputs


def _to_script(model: Any, inputs: list[torch.Tensor]) -> torch.jit.ScriptModule:
    if isinstance(model, torch.jit.ScriptModule):
        if model.training:
            raise TorchImportError("the TorchScript module is in training mode; script or "
                                   "trace the model after model.eval()")
        return model
    if isinstance(model, torch.nn.Module):
        model.eval()
        with torch.no_grad():
            return torch.jit.trace(model, tuple(inputs), check_trace=False)
    raise TorchImportError(f"expected a torch.nn.Module or a TorchScript module, got "
                           f"{type(model).__name__}")


def from_torch(model_or_scripted: Any, example_inputs: Any = None, *,
               input_names: Sequence[str] | None = None,
               output_names: Sequence[str] | None = None,
               dynamic: Mapping[str, Mapping[int, str]] | None = None,
               bounds: Mapping[str, int] | None = None) -> tvm.IRModule:
    """Import a ``torch.export`` program, or a TorchScript module, as a Relax module.

    A ``torch.export.ExportedProgram`` (PT2E QDQ, torchao dynamic int8, or float) goes
    through :func:`.exported.from_exported` (a faithful module that ``tvm_qdq.compile``
    rewrites to integer); ``example_inputs`` is not needed, the program fixes the shapes.

    Symbolic dimensions: the axes a program was exported dynamic with (``dynamic_shapes``)
    stay symbolic; ``dynamic={"x": {1: "seq"}}`` names them (others are named
    ``{input}_dim{axis}``) and ``bounds={"seq": 512}`` bounds them below the program's own
    maximum. A plain ``nn.Module`` given with ``dynamic`` is exported with ``torch.export``
    (those axes dynamic, ``bounds`` as their maxima) and imported as a program. A TorchScript
    module given with ``dynamic`` keeps those axes symbolic in ``main`` (one ``tirx.Var`` per
    dimension name, lower bound 1, ``bounds`` as upper bounds): its sizes become ``PrimExpr`` s
    and the shape ops on them Relax ops (:mod:`.script_dims`); the trace must not have
    specialized on those sizes (a slice to a size is assumed in bounds, so bound ``seq`` by
    the model's position table).

    What follows describes the TorchScript path.

    ``model_or_scripted``: a ``torch.jit.ScriptModule`` from ``torch.jit.trace`` or
    ``torch.jit.script`` (in eval mode), or a plain ``nn.Module``, which is traced (after
    ``.eval()``) with ``example_inputs``. ``example_inputs``: a tensor or a sequence of
    tensors in ``forward``'s argument order; their shapes (but ``dynamic``'s axes) and dtypes
    become the input types of ``main``.

    Dynamic-quantized linears (``quantized::linear_dynamic``, ``linear_relu_dynamic``: int8
    weights per tensor or per channel, activations quantized to uint8 at run time with
    PyTorch's own numerics; ``linear_dynamic_fp16``) become integer ``R.matmul`` (uint8 ×
    int8 → int32) with the run-time quantization and the dequantization around them (see
    :mod:`.dynamic`); float ops become plain Relax ops (:mod:`.aten`). The integer numerics
    are those of PyTorch's fbgemm kernels, used by the ``x86`` and ``fbgemm`` quantized
    engines (PyTorch's default on x86); weights packed under ``qnnpack`` (which ignores
    ``reduce_range``) are not told apart.

    The returned module carries the attributes ``tvm_qdq.stage = "integer"`` (so
    ``tvm_qdq.compile`` builds it as it is), ``tvm_qdq.input_names`` / ``input_types`` (the
    ``forward`` argument names, or ``input_names``) and ``tvm_qdq.output_names`` /
    ``output_types`` (``output_0``, ... unless ``output_names`` is given).

    Raises :class:`UnsupportedTorchOpsError` listing every op it cannot convert, with its
    source location.
    """
    from .exported import from_exported

    if isinstance(model_or_scripted, torch.export.ExportedProgram):
        return from_exported(model_or_scripted, input_names=input_names,
                             output_names=output_names, dynamic=dynamic, bounds=bounds)
    if example_inputs is None:
        raise TorchImportError("example_inputs are needed to trace a module (or pass a "
                               "torch.export.ExportedProgram)")
    inputs = _as_inputs(example_inputs)
    if (dynamic or bounds) and not isinstance(model_or_scripted, torch.jit.ScriptModule):
        return _from_dynamic_module(model_or_scripted, inputs, input_names, output_names,
                                    dynamic or {}, bounds)
    scripted = _to_script(model_or_scripted, inputs)
    graph = scripted.inlined_graph
    graph_inputs = list(graph.inputs())
    if len(graph_inputs) - 1 != len(inputs):
        raise TorchImportError(f"forward takes {len(graph_inputs) - 1} input(s), "
                               f"{len(inputs)} example input(s) given")
    names = list(input_names) if input_names is not None else [
        _clean_name(v.debugName()) for v in graph_inputs[1:]]
    if len(names) != len(inputs):
        raise TorchImportError(f"{len(names)} input name(s) for {len(inputs)} input(s)")
    shapes = script_dims.input_shapes(inputs, names, dynamic or {})
    importer = TorchScriptImporter(graph, scripted._c, inputs, names, shapes)
    mod = importer.convert()
    if dynamic or bounds:
        dim_names = sorted({dim for axes in (dynamic or {}).values() for dim in axes.values()})
        mod = script_dims.with_bounds(mod, dim_names, bounds, importer.implicit_bounds)
    outs = importer.output_exprs
    return with_signature(mod, names, [TORCH_TO_RELAX[x.dtype] for x in inputs],
                          [str(e.ty.dtype) for e in outs], output_names,
                          stage="integer", source="torchscript")


def _from_dynamic_module(model: Any, inputs: list[torch.Tensor],
                         input_names: Sequence[str] | None,
                         output_names: Sequence[str] | None,
                         dynamic: Mapping[str, Mapping[int, str]],
                         bounds: Mapping[str, int] | None) -> tvm.IRModule:
    """A plain module with symbolic dims: ``torch.export`` with ``dynamic``'s axes, then the
    program's import (:func:`from_torch`)."""
    import inspect

    from .exported import from_exported
    from .symbolic import export_dynamic

    if not isinstance(model, torch.nn.Module):
        raise TorchImportError(f"expected a torch.nn.Module, a TorchScript module or a "
                               f"torch.export.ExportedProgram, got {type(model).__name__}")
    names = list(input_names) if input_names is not None else [
        p for p in inspect.signature(model.forward).parameters][:len(inputs)]
    program = export_dynamic(model, tuple(inputs), names, dynamic, bounds)
    return from_exported(program, input_names=names, output_names=output_names,
                         dynamic=dynamic, bounds=bounds)


def with_signature(mod: tvm.IRModule, input_names: list[str], input_types: list[str],
                   output_types: list[str], output_names: Sequence[str] | None, *,
                   stage: str, source: str) -> tvm.IRModule:
    """``mod`` with the attributes ``tvm_qdq.compile`` reads: input/output names and types
    (outputs named ``output_0``, ... unless ``output_names``), the stage and the source."""
    out_names = (list(output_names) if output_names is not None
                 else [f"output_{i}" for i in range(len(output_types))])
    if len(out_names) != len(output_types):
        raise TorchImportError(f"{len(out_names)} output name(s) for {len(output_types)} "
                               "output(s)")
    attrs = {
        "tvm_qdq.input_names": list(input_names),
        "tvm_qdq.input_types": list(input_types),
        "tvm_qdq.output_names": out_names,
        "tvm_qdq.output_types": list(output_types),
        "tvm_qdq.stage": stage,
        "tvm_qdq.source": source,
    }
    for key, value in attrs.items():
        mod = mod.with_attr(key, value)
    return mod
