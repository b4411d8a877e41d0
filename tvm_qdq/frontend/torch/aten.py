"""Converters of TorchScript ops on run-time tensors to Relax.

``CONVERTERS[kind](importer, node, args)`` returns the op's result (a Relax expression, or a
list for multi-output ops). ``args`` are the node's inputs in schema order: Relax expressions
for run-time tensors, Python values (ints, floats, lists, ``torch.Tensor`` constants, ...) for
everything known at import time. Ops whose inputs are all known never get here (the importer
runs them in PyTorch). In-place variants (``aten::clamp_min_``) use the functional converter.

Float semantics follow PyTorch: type promotion is ``torch.result_type`` of the operands;
``aten::div`` is true division; ``gelu`` is the erf form unless ``approximate='tanh'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tvm import relax

from . import dynamic
from .errors import UnsupportedForm
from .types import RELAX_TO_TORCH, SCALAR_TYPES, TORCH_TO_RELAX

Converter = Callable[[Any, Any, list], Any]
CONVERTERS: dict[str, Converter] = {}

#: Ops never run in PyTorch at import time even when every input is known (random ops).
NEVER_FOLD = {"aten::rand", "aten::randn", "aten::rand_like", "aten::randn_like",
              "aten::randint", "aten::bernoulli", "aten::normal", "aten::uniform_",
              "aten::multinomial"}

op = relax.op


def register(*kinds: str, table: dict[str, Converter] | None = None
             ) -> Callable[[Converter], Converter]:
    """Decorator: the function converts ``kinds`` (entered in ``table``, default
    :data:`CONVERTERS`)."""
    def wrap(fn: Converter) -> Converter:
        for kind in kinds:
            (CONVERTERS if table is None else table)[kind] = fn
        return fn
    return wrap


def _unsupported(why: str) -> Exception:
    return UnsupportedForm(why)


def _axis(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


# --- dynamic quantization -----------------------------------------------------------------------


@register("quantized::linear_dynamic", "quantized::linear_relu_dynamic")
def _linear_dynamic(imp, node, args):
    x, packed = imp.expr(args[0], "float32"), args[1]
    reduce_range = bool(args[2]) if len(args) > 2 else False
    weights = dynamic.DynamicLinearWeights.from_packed(packed)
    relu = node.kind() == "quantized::linear_relu_dynamic"
    return dynamic.linear_dynamic(imp.bb, x, weights, reduce_range, relu)


@register("quantized::linear_dynamic_fp16", "quantized::linear_relu_dynamic_fp16")
def _linear_fp16(imp, node, args):
    x, packed = imp.expr(args[0], "float32"), args[1]
    w, b = torch.ops.quantized.linear_unpack_fp16(packed)
    bias = None if b is None else b.detach().numpy()
    relu = node.kind() == "quantized::linear_relu_dynamic_fp16"
    return dynamic.linear_fp16(imp.bb, x, w.detach().float().numpy(), bias, relu)


# --- element-wise -------------------------------------------------------------------------------


def _binary(imp, a, b, fn, dtype: str | None = None):
    dtype = dtype or imp.result_dtype(a, b)
    return imp.emit(fn(imp.expr(a, dtype), imp.expr(b, dtype)))


def _scaled(imp, b, alpha):
    if alpha is None or alpha == 1:
        return b
    dtype = imp.result_dtype(b, alpha)
    return imp.emit(op.multiply(imp.expr(b, dtype), imp.expr(alpha, dtype)))


@register("aten::add")
def _add(imp, node, args):
    a, b = args[0], args[1]
    b = _scaled(imp, b, args[2] if len(args) > 2 else 1)
    return _binary(imp, a, b, op.add)


@register("aten::sub")
def _sub(imp, node, args):
    a, b = args[0], args[1]
    b = _scaled(imp, b, args[2] if len(args) > 2 else 1)
    return _binary(imp, a, b, op.subtract)


@register("aten::rsub")
def _rsub(imp, node, args):
    a, b = args[0], args[1]
    a = _scaled(imp, a, args[2] if len(args) > 2 else 1)
    return _binary(imp, b, a, op.subtract, imp.result_dtype(args[0], args[1]))


@register("aten::mul")
def _mul(imp, node, args):
    return _binary(imp, args[0], args[1], op.multiply)


@register("aten::div")
def _div(imp, node, args):
    a, b = args[0], args[1]
    mode = args[2] if len(args) > 2 else None
    dtype = imp.result_dtype(a, b)
    if mode is None:
        if not _is_float(dtype):
            dtype = "float32"
        return _binary(imp, a, b, op.divide, dtype)
    if mode == "floor":
        return _binary(imp, a, b, op.floor_divide, dtype)
    if mode == "trunc" and _is_float(dtype):
        return imp.emit(op.trunc(_binary(imp, a, b, op.divide, dtype)))
    raise _unsupported(f"rounding_mode={mode!r} on {dtype}")


@register("aten::pow")
def _pow(imp, node, args):
    a, b = args
    if isinstance(b, int | float) and b == 2:
        x = imp.expr(a, imp.result_dtype(a, b))
        return imp.emit(op.multiply(x, x))
    if isinstance(b, int | float) and b == 0.5:
        return imp.emit(op.sqrt(imp.expr(a, imp.result_dtype(a, b))))
    return _binary(imp, a, b, op.power)


def _compare(fn):
    def convert(imp, node, args):
        dtype = imp.result_dtype(args[0], args[1])
        return imp.emit(fn(imp.expr(args[0], dtype), imp.expr(args[1], dtype)))
    return convert


for _kind, _fn in (("eq", op.equal), ("ne", op.not_equal), ("lt", op.less),
                   ("le", op.less_equal), ("gt", op.greater), ("ge", op.greater_equal)):
    CONVERTERS[f"aten::{_kind}"] = _compare(_fn)


@register("aten::maximum", "aten::minimum")
def _max_min(imp, node, args):
    fn = op.maximum if node.kind() == "aten::maximum" else op.minimum
    return _binary(imp, args[0], args[1], fn)


def _unary(fn, float_only: bool = True):
    def convert(imp, node, args):
        x = args[0]
        dtype = str(x.ty.dtype)
        if float_only and not _is_float(dtype):
            x = imp.expr(x, "float32")
        return imp.emit(fn(x))
    return convert


for _kind, _fn, _float in (
    ("exp", op.exp, True), ("log", op.log, True), ("sqrt", op.sqrt, True),
    ("rsqrt", op.rsqrt, True), ("tanh", op.tanh, True), ("sigmoid", op.sigmoid, True),
    ("erf", op.erf, True), ("sin", op.sin, True), ("cos", op.cos, True),
    ("neg", op.negative, False), ("abs", op.abs, False), ("relu", op.nn.relu, False),
    ("floor", op.floor, False), ("ceil", op.ceil, False), ("round", op.round, False),
):
    CONVERTERS[f"aten::{_kind}"] = _unary(_fn, _float)


@register("aten::reciprocal")
def _reciprocal(imp, node, args):
    x = imp.expr(args[0], "float32") if not _is_float(str(args[0].ty.dtype)) else args[0]
    return imp.emit(op.divide(imp.expr(1.0, str(x.ty.dtype)), x))


@register("aten::gelu")
def _gelu(imp, node, args):
    approximate = args[1] if len(args) > 1 else "none"
    if approximate == "tanh":
        return imp.emit(op.nn.gelu_tanh(args[0]))
    return imp.emit(op.nn.gelu(args[0]))


@register("aten::silu")
def _silu(imp, node, args):
    return imp.emit(op.nn.silu(args[0]))


def _clamp_bound(imp, x, bound, fn):
    if bound is None:
        return x
    return imp.emit(fn(x, imp.expr(bound, str(x.ty.dtype))))


@register("aten::clamp", "aten::clip")
def _clamp(imp, node, args):
    x = args[0]
    lo = args[1] if len(args) > 1 else None
    hi = args[2] if len(args) > 2 else None
    x = imp.expr(x, imp.result_dtype(*(v for v in (x, lo, hi) if v is not None)))
    return _clamp_bound(imp, _clamp_bound(imp, x, lo, op.maximum), hi, op.minimum)


@register("aten::clamp_min")
def _clamp_min(imp, node, args):
    x = imp.expr(args[0], imp.result_dtype(args[0], args[1]))
    return _clamp_bound(imp, x, args[1], op.maximum)


@register("aten::clamp_max")
def _clamp_max(imp, node, args):
    x = imp.expr(args[0], imp.result_dtype(args[0], args[1]))
    return _clamp_bound(imp, x, args[1], op.minimum)


@register("aten::where")
def _where(imp, node, args):
    if len(args) != 3:
        raise _unsupported("where(condition) with one argument")
    cond, a, b = args
    dtype = imp.result_dtype(a, b)
    return imp.emit(op.where(imp.expr(cond, "bool"), imp.expr(a, dtype), imp.expr(b, dtype)))


@register("aten::masked_fill")
def _masked_fill(imp, node, args):
    x, mask, value = args
    dtype = str(x.ty.dtype) if isinstance(x, relax.Expr) else imp.result_dtype(x)
    return imp.emit(op.where(imp.expr(mask, "bool"), imp.expr(value, dtype),
                             imp.expr(x, dtype)))


# --- dtype / identity ---------------------------------------------------------------------------


@register("aten::contiguous", "aten::clone", "aten::detach", "aten::alias",
          "aten::lift_fresh", "aten::feature_dropout", "aten::alpha_dropout",
          "aten::dropout", "aten::feature_alpha_dropout")
def _identity(imp, node, args):
    kind = node.kind()
    if "dropout" in kind and len(args) > 2 and args[2]:
        raise _unsupported("dropout in training mode: call model.eval() before tracing "
                           "or scripting")
    return args[0]


def _dtype_arg(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value in SCALAR_TYPES:
        return TORCH_TO_RELAX[SCALAR_TYPES[value]]
    if isinstance(value, torch.dtype):
        return TORCH_TO_RELAX[value]
    return None


def _named(node, args: list, name: str, default: Any = None) -> Any:
    """The argument called ``name`` in the node's schema (``default`` if absent)."""
    schema = torch._C.parse_schema(node.schema())
    for arg, value in zip(schema.arguments, args, strict=False):
        if arg.name == name:
            return value
    return default


@register("aten::to")
def _to(imp, node, args):
    x = args[0]
    other = _named(node, args, "other")
    if isinstance(other, relax.Expr):  # to(other): the other tensor's dtype
        return imp.expr(x, str(other.ty.dtype))
    if isinstance(other, torch.Tensor):
        return imp.expr(x, TORCH_TO_RELAX[other.dtype])
    dtype = _dtype_arg(_named(node, args, "dtype"))
    return x if dtype is None else imp.expr(x, dtype)  # device / memory format only


@register("aten::type_as")
def _type_as(imp, node, args):
    return imp.expr(args[0], imp.result_dtype(args[1]))


@register("aten::float")
def _float(imp, node, args):
    return imp.expr(args[0], "float32")


# --- shapes -------------------------------------------------------------------------------------


@register("aten::size")
def _size(imp, node, args):
    shape = imp.shape(args[0])
    if len(args) > 1:
        return shape[args[1]]
    return shape


@register("aten::dim")
def _dim(imp, node, args):
    return len(imp.shape(args[0]))


@register("aten::numel")
def _numel(imp, node, args):
    return int(np.prod(imp.shape(args[0])))


@register("aten::zeros_like", "aten::ones_like", "aten::full_like")
def _like(imp, node, args):
    x = args[0]
    shape = imp.shape(x)
    kind = node.kind()
    fill = args[1] if kind == "aten::full_like" else (0 if kind == "aten::zeros_like" else 1)
    dt_arg = _named(node, args, "dtype")
    dtype = SCALAR_TYPES[dt_arg] if isinstance(dt_arg, int) else RELAX_TO_TORCH[str(x.ty.dtype)]
    return torch.full(shape, fill, dtype=dtype)


def _resolve_shape(shape: list[int], numel: int) -> list[int]:
    shape = [int(s) for s in shape]
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        shape[shape.index(-1)] = numel // known
    return shape


@register("aten::view", "aten::reshape")
def _reshape(imp, node, args):
    x = args[0]
    numel = int(np.prod(imp.shape(x)))
    return imp.emit(op.reshape(x, _resolve_shape(list(args[1]), numel)))


@register("aten::flatten")
def _flatten(imp, node, args):
    x = args[0]
    shape = imp.shape(x)
    start = _axis(args[1] if len(args) > 1 else 0, len(shape))
    end = _axis(args[2] if len(args) > 2 else -1, len(shape))
    new = shape[:start] + [int(np.prod(shape[start:end + 1]))] + shape[end + 1:]
    return imp.emit(op.reshape(x, new))


@register("aten::permute")
def _permute(imp, node, args):
    x = args[0]
    ndim = len(imp.shape(x))
    return imp.emit(op.permute_dims(x, [_axis(d, ndim) for d in args[1]]))


@register("aten::transpose")
def _transpose(imp, node, args):
    x, d0, d1 = args
    ndim = len(imp.shape(x))
    axes = list(range(ndim))
    d0, d1 = _axis(d0, ndim), _axis(d1, ndim)
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return imp.emit(op.permute_dims(x, axes))


@register("aten::t")
def _t(imp, node, args):
    x = args[0]
    return x if len(imp.shape(x)) < 2 else imp.emit(op.permute_dims(x, [1, 0]))


@register("aten::unsqueeze")
def _unsqueeze(imp, node, args):
    x, dim = args
    return imp.emit(op.expand_dims(x, _axis(dim, len(imp.shape(x)) + 1)))


@register("aten::squeeze")
def _squeeze(imp, node, args):
    x = args[0]
    shape = imp.shape(x)
    if len(args) == 1:
        axes = [i for i, s in enumerate(shape) if s == 1]
    else:
        dims = args[1] if isinstance(args[1], list | tuple) else [args[1]]
        axes = [_axis(d, len(shape)) for d in dims if shape[_axis(d, len(shape))] == 1]
    return imp.emit(op.squeeze(x, axes)) if axes else x


@register("aten::slice")
def _slice(imp, node, args):
    x = args[0]
    shape = imp.shape(x)
    dim = _axis(args[1] if len(args) > 1 else 0, len(shape))
    start = args[2] if len(args) > 2 and args[2] is not None else 0
    end = args[3] if len(args) > 3 and args[3] is not None else shape[dim]
    step = args[4] if len(args) > 4 else 1
    start, end, _ = slice(start, end, step).indices(shape[dim])
    if start == 0 and end >= shape[dim] and step == 1:
        return x
    return imp.emit(op.strided_slice(x, axes=[dim], begin=[start], end=[max(end, start)],
                                     strides=[step]))


@register("aten::select")
def _select(imp, node, args):
    x, dim, index = args
    shape = imp.shape(x)
    dim = _axis(dim, len(shape))
    index = index + shape[dim] if index < 0 else index
    part = imp.emit(op.strided_slice(x, axes=[dim], begin=[index], end=[index + 1]))
    return imp.emit(op.squeeze(part, [dim]))


@register("aten::expand")
def _expand(imp, node, args):
    x, sizes = args[0], list(args[1])
    shape = imp.shape(x)
    lead = len(sizes) - len(shape)
    target = [s if s != -1 else shape[i - lead] for i, s in enumerate(sizes)]
    return x if target == shape else imp.emit(op.broadcast_to(x, target))


@register("aten::expand_as")
def _expand_as(imp, node, args):
    x, other = args
    target = imp.shape(other)
    if isinstance(x, relax.Expr) and imp.shape(x) == target:
        return x
    return imp.emit(op.broadcast_to(imp.expr(x), target))


@register("aten::cat", "aten::concat")
def _cat(imp, node, args):
    tensors, dim = list(args[0]), args[1] if len(args) > 1 else 0
    dtype = imp.result_dtype(*tensors)
    exprs = [imp.expr(t, dtype) for t in tensors]
    ndim = len(imp.shape(exprs[0]))
    return imp.emit(op.concat(exprs, axis=_axis(dim, ndim)))


@register("aten::chunk")
def _chunk(imp, node, args):
    x, chunks = args[0], args[1]
    dim = args[2] if len(args) > 2 else 0
    size = imp.shape(x)[dim]
    step = -(-size // chunks)
    return _split_at(imp, x, list(range(step, size, step)), dim)


@register("aten::split", "aten::split_with_sizes")
def _split(imp, node, args):
    x, sizes = args[0], args[1]
    dim = args[2] if len(args) > 2 else 0
    size = imp.shape(x)[dim]
    if isinstance(sizes, int):
        points = list(range(sizes, size, sizes))
    else:
        points = list(np.cumsum(sizes)[:-1].astype(int))
    return _split_at(imp, x, points, dim)


def _split_at(imp, x, points: list[int], dim: int):
    dim = _axis(dim, len(imp.shape(x)))
    parts = imp.emit(op.split(x, [int(p) for p in points], axis=dim))
    return [imp.emit(relax.TupleGetItem(parts, i)) for i in range(len(points) + 1)]


# --- reductions ---------------------------------------------------------------------------------


def _dims(arg, ndim: int) -> list[int] | None:
    if arg is None:
        return None
    dims = arg if isinstance(arg, list | tuple) else [arg]
    return [_axis(d, ndim) for d in dims] if dims else None


def _reduce(fn):
    def convert(imp, node, args):
        x = args[0]
        ndim = len(imp.shape(x))
        if len(args) >= 3 and isinstance(args[2], bool):  # (self, dim, keepdim, dtype?)
            dims, keep = _dims(args[1], ndim), args[2]
            dtype_arg = args[3] if len(args) > 3 else None
        else:  # (self, dtype?)
            dims, keep = None, False
            dtype_arg = args[1] if len(args) > 1 else None
        dtype = _dtype_arg(dtype_arg)
        if dtype is None and fn is op.sum and not _is_float(str(x.ty.dtype)):
            dtype = "int64"
        if dtype is not None:
            x = imp.expr(x, dtype)
        return imp.emit(fn(x, dims, keep))
    return convert


CONVERTERS["aten::sum"] = _reduce(op.sum)
CONVERTERS["aten::mean"] = _reduce(op.mean)
CONVERTERS["aten::amax"] = lambda imp, node, args: imp.emit(
    op.max(args[0], _dims(args[1], len(imp.shape(args[0]))), args[2] if len(args) > 2 else False))
CONVERTERS["aten::amin"] = lambda imp, node, args: imp.emit(
    op.min(args[0], _dims(args[1], len(imp.shape(args[0]))), args[2] if len(args) > 2 else False))


def _vector_norm(imp, x, p, dims, keep):
    if p in (2, 2.0, None):
        return imp.emit(op.sqrt(imp.emit(op.sum(imp.emit(op.multiply(x, x)), dims, keep))))
    if p in (1, 1.0):
        return imp.emit(op.sum(imp.emit(op.abs(x)), dims, keep))
    if p == float("inf"):
        return imp.emit(op.max(imp.emit(op.abs(x)), dims, keep))
    raise _unsupported(f"norm with p={p}")


@register("aten::norm")
def _norm(imp, node, args):
    x = args[0]
    ndim = len(imp.shape(x))
    p = args[1] if len(args) > 1 else 2
    dims = _dims(args[2], ndim) if len(args) > 2 else None
    keep = bool(args[3]) if len(args) > 3 else False
    return _vector_norm(imp, x, p, dims, keep)


@register("aten::linalg_vector_norm")
def _linalg_vector_norm(imp, node, args):
    x = args[0]
    ndim = len(imp.shape(x))
    p = args[1] if len(args) > 1 else 2
    dims = _dims(args[2], ndim) if len(args) > 2 else None
    keep = bool(args[3]) if len(args) > 3 else False
    return _vector_norm(imp, x, p, dims, keep)


@register("aten::softmax", "aten::_softmax")
def _softmax(imp, node, args):
    """``e = exp(x - max(x))``, ``y = e · (1 / Σ e)``: the reciprocal-multiply form of ATen's
    vectorized CPU softmax (3× fewer 1-ulp differences from PyTorch than ``R.nn.softmax``'s
    division, which matters because the next dynamic linear's scale comes from its max)."""
    x, dim = args[0], args[1]
    dtype = _dtype_arg(args[2]) if len(args) > 2 and not isinstance(args[2], bool) else None
    x = imp.expr(x, dtype) if dtype else x
    return softmax_reciprocal(imp.emit, x, _axis(dim, len(imp.shape(x))))


def softmax_reciprocal(emit: Callable[[relax.Expr], relax.Expr], x: relax.Expr,
                       axis: int) -> relax.Expr:
    """``e = exp(x − max(x))``, ``y = e · (1 / Σ e)`` along ``axis`` (ATen's CPU form)."""
    e = emit(op.exp(op.subtract(x, emit(op.max(x, [axis], True)))))
    total = emit(op.sum(e, [axis], True))
    recip = emit(op.divide(relax.const(np.array(1.0, str(x.ty.dtype))), total))
    return emit(op.multiply(e, recip))


@register("aten::log_softmax")
def _log_softmax(imp, node, args):
    x, dim = args[0], args[1]
    return imp.emit(op.nn.log_softmax(x, _axis(dim, len(imp.shape(x)))))


# --- linear algebra and NN ------------------------------------------------------------------------


@register("aten::matmul", "aten::mm", "aten::bmm")
def _matmul(imp, node, args):
    dtype = imp.result_dtype(args[0], args[1])
    return imp.emit(op.matmul(imp.expr(args[0], dtype), imp.expr(args[1], dtype)))


@register("aten::linear")
def _linear(imp, node, args):
    x, w = imp.expr(args[0]), args[1]
    b = args[2] if len(args) > 2 else None
    dtype = str(x.ty.dtype)
    wt = imp.emit(op.permute_dims(imp.expr(w, dtype), [1, 0]))
    y = imp.emit(op.matmul(x, wt))
    return imp.emit(op.add(y, imp.expr(b, dtype))) if b is not None else y


@register("aten::addmm")
def _addmm(imp, node, args):
    bias, a, b = args[0], args[1], args[2]
    beta = args[3] if len(args) > 3 else 1
    alpha = args[4] if len(args) > 4 else 1
    dtype = imp.result_dtype(a, b)
    y = imp.emit(op.matmul(imp.expr(a, dtype), imp.expr(b, dtype)))
    y = _scaled(imp, y, alpha)
    return imp.emit(op.add(y, imp.expr(_scaled(imp, bias, beta), dtype)))


@register("aten::embedding")
def _embedding(imp, node, args):
    weight, indices = imp.expr(args[0]), imp.expr(args[1], "int32")
    shape = imp.shape(indices)
    flat = imp.emit(op.reshape(indices, [int(np.prod(shape))]))
    rows = imp.emit(op.take(weight, flat, axis=0))
    return imp.emit(op.reshape(rows, [*shape, imp.shape(weight)[-1]]))


@register("aten::layer_norm")
def _layer_norm(imp, node, args):
    x, normalized = args[0], list(args[1])
    gamma = args[2] if len(args) > 2 else None
    beta = args[3] if len(args) > 3 else None
    eps = args[4] if len(args) > 4 else 1e-5
    dtype = str(x.ty.dtype)
    gamma = imp.expr(gamma, dtype) if gamma is not None else imp.expr(
        np_const(np.ones(normalized), dtype))
    beta = imp.expr(beta, dtype) if beta is not None else imp.expr(
        np_const(np.zeros(normalized), dtype))
    ndim = len(imp.shape(x))
    axes = list(range(ndim - len(normalized), ndim))
    return imp.emit(op.nn.layer_norm(x, gamma, beta, axes, float(eps)))


def np_const(array: np.ndarray, dtype: str) -> relax.Expr:
    return relax.const(np.asarray(array).astype(dtype), dtype)
