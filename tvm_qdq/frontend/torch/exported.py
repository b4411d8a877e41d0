"""``torch.export`` programs → faithful Relax: PT2E QDQ and torchao dynamic int8.

TVM's ``from_exported_program`` converts the float ATen ops; this module adds a converter for
every quantization op the PyTorch 2 flows write, in the same vocabulary as the ONNX importer,
so the integer pass, the backends and the kernels serve both:

* PT2E (``torchao.quantization.pt2e``: ``prepare_pt2e`` → calibrate → ``convert_pt2e``)
  writes ``quantized_decomposed.quantize_per_tensor`` / ``dequantize_per_tensor`` /
  ``dequantize_per_channel`` around ``aten.conv2d`` / ``aten.linear``. PyTorch computes
  ``q = clamp(round_half_even(x · (1/s)) + zp, qmin, qmax)`` and ``x = (q − zp) · s``; they
  become ``R.quantize`` (``round_half_even(x / s)``: the same code except where ``x / s``
  and ``x · (1/s)`` round to different sides of a .5 tie, at most 1 LSB) and ``R.dequantize``
  (per tensor, or per channel along ``axis``), plus a clip when ``[qmin, qmax]`` is narrower
  than the type.
* torchao's dynamic int8 (``Int8DynamicActivationInt8WeightConfig``) writes
  ``torchao.choose_qparams_affine`` and ``torchao.quantize_affine`` (run-time activation
  quantization) and ``aten._int_mm`` (uint8 × int8 → int32) with the zero-point correction in
  plain integer ATen ops. The program is first decomposed to core ATen
  (``ExportedProgram.run_decompositions``): the torchao ops become PyTorch's own float32
  arithmetic (min/max, division, ``round``, clamp), which TVM's converters reproduce, so the
  run-time scale and zero point are PyTorch's bit for bit, and the weights' tensor subclasses
  become plain tensors; PT2E's ``quantized_decomposed`` ops are kept as they are.
  ``_int_mm`` becomes an integer ``R.matmul`` with an int32 result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import tvm
from tvm import relax

from .aten import softmax_reciprocal
from .errors import TorchImportError, UnsupportedTorchOpsError
from .symbolic import DynamicAxes, name_dims
from .types import TORCH_TO_RELAX

Converter = Callable[[Any, Any], relax.Expr]

_MISSING_PREFIX = "Unsupported function types"


def _arg(node, importer, i: int, name: str, default: Any = None) -> Any:
    """Argument ``i`` (or keyword ``name``) of an FX node: a Relax constant for a parameter,
    buffer or constant of the program (quantization parameters must be constants for the
    integer pass), a Relax expr for any other node input, else the Python value."""
    from torch import fx

    if i < len(node.args):
        value = node.args[i]
    else:
        value = node.kwargs.get(name, default)
    if isinstance(value, fx.Node):
        known = importer.tvm_qdq_constants.get(value.name)
        if known is not None:
            return relax.const(known.detach().cpu().numpy())
        return importer.env[value]
    return value


def _emit(importer, expr: relax.Expr) -> relax.Expr:
    return importer.block_builder.emit(expr)


def _dtype_name(dtype: torch.dtype) -> str:
    return TORCH_TO_RELAX[dtype]


def _type_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def _scalar_or_tensor(value: Any, dtype: str) -> relax.Expr:
    """A Python number as a Relax constant of ``dtype``, or a tensor cast to ``dtype``."""
    if isinstance(value, tvm.ir.Constant):
        return relax.const(value.value.numpy().astype(dtype))
    if isinstance(value, relax.Expr):
        return value if str(value.ty.dtype) == dtype else relax.op.astype(value, dtype)
    return relax.const(np.array(value, dtype=dtype))


def _narrow(importer, q: relax.Expr, qmin: int, qmax: int, dtype: str) -> relax.Expr:
    """Clip ``q`` to ``[qmin, qmax]`` when that range is narrower than ``dtype``'s."""
    low, high = _type_range(dtype)
    if (qmin, qmax) == (low, high):
        return q
    return relax.op.clip(_emit(importer, q), qmin, qmax)


def _quantize(node, importer, axis_index: int | None) -> relax.Expr:
    """``quantize_per_tensor`` / ``quantize_per_channel`` (args: x, scale, zp, [axis,]
    qmin, qmax, dtype) → ``R.quantize`` (+ clip to a narrower range)."""
    x = _arg(node, importer, 0, "input")
    offset = 0 if axis_index is None else 1
    axis = -1 if axis_index is None else int(_arg(node, importer, 3, "axis"))
    qmin = int(_arg(node, importer, 3 + offset, "quant_min"))
    qmax = int(_arg(node, importer, 4 + offset, "quant_max"))
    dtype = _dtype_name(_arg(node, importer, 5 + offset, "dtype"))
    scale = _scalar_or_tensor(_arg(node, importer, 1, "scale"), "float32")
    zero_point = _scalar_or_tensor(_arg(node, importer, 2, "zero_point"), dtype)
    q = relax.op.quantize(x, scale, zero_point, axis=axis, out_dtype=dtype)
    return _narrow(importer, q, qmin, qmax, dtype)


def _dequantize(node, importer, axis_index: int | None) -> relax.Expr:
    """``dequantize_per_tensor`` / ``dequantize_per_channel`` → ``R.dequantize``."""
    q = _arg(node, importer, 0, "input")
    axis = -1 if axis_index is None else int(_arg(node, importer, 3, "axis"))
    dtype = str(q.ty.dtype)
    scale = _scalar_or_tensor(_arg(node, importer, 1, "scale"), "float32")
    zero_point = _scalar_or_tensor(_arg(node, importer, 2, "zero_points" if axis_index
                                        is not None else "zero_point"), dtype)
    return relax.op.dequantize(q, scale, zero_point, axis=axis, out_dtype="float32")


def _int_mm(node, importer) -> relax.Expr:
    """``aten._int_mm(a, b)``: 8-bit × 8-bit matrix product with an exact int32 result."""
    a, b = _arg(node, importer, 0, "self"), _arg(node, importer, 1, "mat2")
    return relax.op.matmul(a, b, out_dtype="int32")


def _extremum(node, importer, reduce: Callable) -> relax.Expr:
    """``aten.amin`` / ``aten.amax`` (x, dims, keepdim): min / max over ``dims`` (all when
    empty), which torchao's run-time quantization reads (TVM 0.27 has no converter)."""
    x = _arg(node, importer, 0, "self")
    dims = _arg(node, importer, 1, "dim", [])
    keepdim = bool(_arg(node, importer, 2, "keepdim", False))
    return reduce(x, list(dims) or None, keepdims=keepdim)


def _softmax(node, importer) -> relax.Expr:
    """``aten._softmax(x, dim, half_to_float)`` in ATen's reciprocal-multiply form, so the
    probabilities (and the next run-time quantization's scale) match PyTorch's closely."""
    x = _arg(node, importer, 0, "self")
    dim = int(_arg(node, importer, 1, "dim"))
    return softmax_reciprocal(importer.block_builder.emit, x, dim % len(x.ty.shape))


def _emitted(convert: Callable[..., relax.Expr], *extra: Any) -> Converter:
    """A converter whose result is bound in the block (TVM's importer expects a bound var)."""
    return lambda node, importer: importer.block_builder.emit(convert(node, importer, *extra))


CONVERTERS: dict[str, Converter] = {
    "quantize_per_tensor.default": _emitted(_quantize, None),
    "quantize_per_tensor.tensor": _emitted(_quantize, None),
    "quantize_per_channel.default": _emitted(_quantize, 3),
    "dequantize_per_tensor.default": _emitted(_dequantize, None),
    "dequantize_per_tensor.tensor": _emitted(_dequantize, None),
    "dequantize_per_channel.default": _emitted(_dequantize, 3),
    "_int_mm.default": _emitted(_int_mm),
    "amin.default": _emitted(_extremum, relax.op.min),
    "_softmax.default": _softmax,
    "amax.default": _emitted(_extremum, relax.op.max),
}


def _program_constants(program: torch.export.ExportedProgram) -> dict[str, torch.Tensor]:
    """Placeholder name → value, for every parameter, buffer and lifted constant."""
    state = dict(program.state_dict)
    state.update(program.constants)
    values = {}
    for spec in program.graph_signature.input_specs:
        if spec.target is not None and spec.target in state:
            value = state[spec.target]
            if isinstance(value, torch.Tensor):
                values[spec.arg.name] = value
    return values


def _with_constants(convert: Converter, constants: dict[str, torch.Tensor]) -> Converter:
    def run(node, importer):
        importer.tvm_qdq_constants = constants
        return convert(node, importer)

    return run


def _missing_ops(program: torch.export.ExportedProgram) -> list[tuple[str, str, str]]:
    """Every call of the program that neither TVM's converters nor ours import."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    known = set(ExportedProgramImporter().create_convert_map()) | set(CONVERTERS)
    missing = []
    for node in program.graph.nodes:
        if node.op == "call_function" and node.target.__name__ not in known:
            trace = node.meta.get("stack_trace", "") or ""
            where = trace.strip().splitlines()[-2].strip() if trace.strip() else ""
            missing.append((node.name, str(node.target), where))
    return missing


def from_exported(program: torch.export.ExportedProgram, *,
                  input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None,
                  dynamic: DynamicAxes | None = None,
                  bounds: Mapping[str, int] | None = None) -> tvm.IRModule:
    """Import a ``torch.export`` program as a faithful Relax module (see the module text).

    The module is marked ``tvm_qdq.stage = "faithful"``: ``tvm_qdq.compile`` (or
    ``to_integer``) rewrites the QDQ around conv/linear into integer compute; torchao's
    ``_int_mm`` is integer already. Input names default to the program's user inputs.
    Axes the program exported dynamic (``dynamic_shapes``) stay symbolic, named by
    ``dynamic`` (``{"x": {1: "seq"}}``) or ``{input}_dim{axis}``, bounded by the program's
    ranges and ``bounds`` (:func:`.symbolic.name_dims`).
    Raises :class:`UnsupportedTorchOpsError` listing every op neither converter set knows.
    """
    from tvm.relax.frontend.torch import from_exported_program

    from ..fold_layout import fold_constant_layout
    from .importer import with_signature

    program = program.run_decompositions()
    missing = _missing_ops(program)
    if missing:
        raise UnsupportedTorchOpsError(missing, source="torch.export")
    constants = _program_constants(program)
    converters = {name: _with_constants(fn, constants) for name, fn in CONVERTERS.items()}
    mod = from_exported_program(program, custom_convert_map=converters,
                                run_ep_decomposition=False)  # decomposed above
    params = mod["main"].params
    user_inputs = [s.arg.name for s in program.graph_signature.input_specs
                   if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    names = list(input_names) if input_names is not None else user_inputs
    if len(names) != len(params):
        raise TorchImportError(f"{len(names)} input name(s) for {len(params)} input(s)")
    mod = fold_constant_layout(name_dims(mod, names, dynamic, bounds))
    ret = mod["main"].body.body
    outs = list(ret.ty.fields) if isinstance(ret.ty, relax.TupleType) else [ret.ty]
    return with_signature(mod, names, [str(p.ty.dtype) for p in params],
                          [str(o.dtype) for o in outs], output_names,
                          stage="faithful", source="torch.export")
