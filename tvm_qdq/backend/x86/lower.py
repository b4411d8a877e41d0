"""``lower_integer_kernels``: integer Relax module → scheduled x86 kernels (before tvm.compile).

Steps (all on the Relax module the integer pass produced):

0. **Exact float64 rounding** (:mod:`.rounding`): int64 fixed-point requantize chains whose
   values provably stay below 2^53 are rewritten to their (bit-identical) float64 form.
1. **Kernels and layout** (:func:`rewrite_kernels`). Every ``R.nn.conv2d`` / ``R.nn.conv1d``
   (a 1-D map ``[N, C, W]`` is the 2-D map ``[N, C, 1, W]``) with a uint8 / int8 / uint16
   activation, a constant weight whose values fit int8, ``groups == 1`` (or a few groups, as a
   block-diagonal weight) and an int32/int64 result becomes a ``call_tir`` to a VNNI kernel
   (:mod:`.kernels`) in **NHWC** with the weight packed in numpy; a depthwise conv
   (``groups == C == O``) becomes a
   channel-vectorized NHWC kernel; ``R.matmul(a, constant b)`` with the same dtypes becomes a
   VNNI matmul. NHWC is propagated forward through layout-agnostic ops (elementwise,
   quantize/dequantize, pad, pooling, spatial reductions, reshapes of ``1×1`` maps), so a conv
   chain transposes once at its input and once where a layout-dependent op needs NCHW.
2. ``LegalizeOps``, ``AnnotateTIROpPattern``, ``FoldConstant``, ``FuseOps``, ``FuseTIR``: the
   kernels are ``kOutEWiseFusable``, so each requantize epilogue (and residual adds) fuses into
   its conv / matmul.
3. **Schedules** (:mod:`.schedule`) for every PrimFunc.

The result only holds ``call_tir`` to scheduled PrimFuncs; ``tvm.compile(mod, target)`` with
the default pipeline finishes it (its ``LegalizeOps`` has nothing left to do).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import tvm
from tvm import relax, tirx

from . import kernels as K
from .fast_math import use_fast_math
from .group_scalars import group_scalar_chains
from .intrin import has_vnni
from .profile import kernel_macs
from .rounding import exact_float_rounding
from .schedule import schedule_function
from .tuning_db import TileSource

#: ``op_pattern`` of the kernels: an output-elementwise-fusable reduction (FuseOps kinds).
OUT_EWISE_FUSABLE = 4

_NCHW_TO_NHWC = (0, 2, 3, 1)
_NHWC_TO_NCHW = (0, 3, 1, 2)
#: Position of each NCHW axis in NHWC.
_AXIS_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}
#: Position of each NCW axis in the NHWC form of its ``[N, C, 1, W]`` view.
_AXIS_NWC = {0: 0, 1: 3, 2: 2}

_UNARY = {
    "relax.astype", "relax.round", "relax.clip", "relax.floor", "relax.ceil", "relax.negative",
    "relax.abs", "relax.nn.relu", "relax.exp", "relax.sqrt", "relax.rsqrt", "relax.sigmoid",
    "relax.tanh", "relax.erf", "relax.log", "relax.square", "relax.sign", "relax.logical_not",
    "relax.bitwise_not", "relax.trunc", "relax.nn.leakyrelu", "relax.nn.silu", "relax.nn.gelu",
    "relax.nn.gelu_tanh",
}
_NARY = {
    "relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.floor_divide",
    "relax.maximum", "relax.minimum", "relax.power", "relax.equal", "relax.not_equal",
    "relax.less", "relax.less_equal", "relax.greater", "relax.greater_equal",
    "relax.bitwise_and", "relax.bitwise_or", "relax.bitwise_xor", "relax.left_shift",
    "relax.right_shift", "relax.mod", "relax.floor_mod", "relax.where",
    "relax.logical_and", "relax.logical_or",
}
_QDQ = {"relax.quantize", "relax.dequantize"}
_POOL = {"relax.nn.max_pool2d", "relax.nn.avg_pool2d"}
_REDUCE = {"relax.sum", "relax.mean", "relax.max", "relax.min", "relax.prod"}


@dataclass
class LoweringReport:
    """What :func:`lower_integer_kernels` did: kernels emitted and schedules applied."""

    kernels: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    schedules: dict[str, str] = field(default_factory=dict)
    #: int64 rounding shifts rewritten to their exact float64 form (:mod:`.rounding`).
    float_roundings: int = 0

    def to_json(self) -> str:
        return json.dumps({"kernels": self.kernels, "skipped": self.skipped,
                           "schedules": self.schedules,
                           "float_roundings": self.float_roundings})


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _ty(expr: relax.Expr):
    return expr.ty if hasattr(expr, "ty") else expr.struct_info


def _shape(expr: relax.Expr) -> list[int] | None:
    ty = _ty(expr)
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    try:
        return [int(d) for d in ty.shape.values]
    except (TypeError, AttributeError):
        return None


def _as_2d(shape: Sequence[int]) -> list[int]:
    """``[N, C, W]`` (a 1-D map) as the 2-D map ``[N, C, 1, W]`` it equals."""
    n, c, w = shape
    return [n, c, 1, w]


def _dtype(expr: relax.Expr) -> str:
    return str(_ty(expr).dtype)


def _const_value(expr: relax.Expr) -> np.ndarray | None:
    if isinstance(expr, tvm.ir.Constant) and hasattr(expr.value, "numpy"):
        return expr.value.numpy()
    return None


def _ints(values) -> list[int]:
    return [int(v) for v in values]


#: Grouped convs with at most this many groups run as one VNNI conv with a block-diagonal
#: weight (``groups``× the MACs, each at VNNI speed); more groups stay TVM's grouped conv.
MAX_DENSE_GROUPS = 8


def block_diagonal_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """The dense ``[O, C, KH, KW]`` weight of a grouped conv's ``[O, C/G, KH, KW]``:
    ``W[o, g·C/G + c] = w[o, c]`` for ``g = o // (O/G)``, zero elsewhere, so that
    ``conv(x, W) = grouped_conv(x, w)`` term for term."""
    o, cg = int(w.shape[0]), int(w.shape[1])
    og = o // groups
    dense = np.zeros((o, cg * groups) + tuple(w.shape[2:]), w.dtype)
    for g in range(groups):
        dense[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = w[g * og:(g + 1) * og]
    return dense


def _vnni_weight_ok(w: np.ndarray, out_dtype: str, rows_axis: int) -> str | None:
    """None when the VNNI kernels can take the integer weights ``w``, else the reason.

    Weights are split into at most ``K.MAX_TERMS`` int8 terms. With an int64 result the int32
    VNNI partial sums must not wrap: ``255 · max_o Σ_k |w[o, k]| < 2^31``.
    """
    if w.size == 0 or not np.issubdtype(w.dtype, np.integer):
        return "weights not integer"
    if K.weight_terms(w) > K.MAX_TERMS:
        return f"weights need {K.weight_terms(w)} int8 terms"
    if out_dtype == "int64":
        per_out = np.abs(np.moveaxis(w.astype(np.int64), rows_axis, 0)).reshape(
            w.shape[rows_axis], -1).sum(axis=1)
        if 255 * int(per_out.max()) >= 2**31:
            return "int32 partial sums could overflow"
    return None


# ----------------------------------------------------------------------------------------------
# The Relax rewrite
# ----------------------------------------------------------------------------------------------


class _Rewriter:
    """Re-emits one dataflow block, tracking for each original var its NCHW and/or NHWC form.

    A 3-D ``[N, C, W]`` tensor (conv1d's NCW) is the 2-D map ``[N, C, 1, W]``: its NHWC form
    is the 4-D ``[N, 1, W, C]`` (the same bytes as NWC), so a conv1d chain stays channels-last
    through its epilogues exactly like a conv2d chain.
    """

    def __init__(self, bb: relax.BlockBuilder, vnni: bool, report: LoweringReport):
        self.bb = bb
        self.vnni = vnni
        self.report = report
        self.plain: dict[relax.Var, relax.Expr] = {}
        self.nhwc: dict[relax.Var, relax.Expr] = {}

    # -- layout bookkeeping --------------------------------------------------------------------

    def get_plain(self, expr: relax.Expr) -> relax.Expr:
        if isinstance(expr, relax.Var):
            if expr in self.plain:
                return self.plain[expr]
            if expr in self.nhwc:
                value = self.bb.emit(relax.op.permute_dims(self.nhwc[expr], _NHWC_TO_NCHW))
                shape = _shape(expr)
                if shape is not None and len(shape) == 3:  # [N, C, 1, W] → [N, C, W]
                    value = self.bb.emit(relax.op.reshape(value, shape))
                self.plain[expr] = value
                return value
            return expr
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([self.get_plain(f) for f in expr.fields])
        return expr

    def get_nhwc(self, expr: relax.Var) -> relax.Expr:
        if expr in self.nhwc:
            return self.nhwc[expr]
        plain = self.get_plain(expr)
        shape = _shape(expr)
        if shape is not None and len(shape) == 3:  # [N, C, W] → [N, C, 1, W]
            plain = self.bb.emit(relax.op.reshape(plain, _as_2d(shape)))
        value = self.bb.emit(relax.op.permute_dims(plain, _NCHW_TO_NHWC))
        self.nhwc[expr] = value
        return value

    def is_nhwc(self, expr: relax.Expr) -> bool:
        return isinstance(expr, relax.Var) and expr in self.nhwc

    # -- bindings ------------------------------------------------------------------------------

    def visit(self, binding) -> None:
        var = binding.var
        if isinstance(binding, relax.VarBinding) and isinstance(binding.value, relax.Call):
            call = binding.value
            op = call.op.name if isinstance(call.op, tvm.ir.Op) else None
            handler = self._handler(op)
            if handler is not None:
                result = handler(var, call)
                if result is not None:
                    value, layout = result
                    new_var = self.bb.emit(value, name_hint=str(var.name))
                    (self.nhwc if layout == "nhwc" else self.plain)[var] = new_var
                    return
        self._emit_plain(binding)

    def _emit_plain(self, binding) -> None:
        var = binding.var
        if isinstance(binding, relax.VarBinding):
            value = self._substitute(binding.value)
            new_var = self.bb.emit(value, name_hint=str(var.name))
        else:  # MatchCast
            value = self._substitute(binding.value)
            new_var = self.bb.match_cast(value, binding.ty if hasattr(binding, "ty")
                                         else binding.struct_info, name_hint=str(var.name))
        self.plain[var] = new_var

    def _substitute(self, expr: relax.Expr) -> relax.Expr:
        """``expr`` with every free var replaced by its NCHW (original layout) form."""
        free = relax.analysis.free_vars(expr)
        mapping = {v: self.get_plain(v) for v in free}
        mapping = {k: v for k, v in mapping.items() if not v.same_as(k)}
        if not mapping:
            return expr
        return _Substitute(mapping).visit_expr(expr)

    def _handler(self, op: str | None) -> Callable | None:
        if op is None:
            return None
        if op == "relax.astype":
            return self._astype
        if op in ("relax.nn.conv1d", "relax.nn.conv2d"):
            return self._conv_call
        if op == "relax.matmul":
            return self._matmul
        if op in _UNARY or op in _NARY:
            return self._elementwise
        if op in _QDQ:
            return self._qdq
        if op == "relax.nn.pad":
            return self._pad
        if op in _POOL:
            return self._pool
        if op in _REDUCE:
            return self._reduce
        if op == "relax.reshape":
            return self._reshape
        return None

    # -- layout-following ops ------------------------------------------------------------------

    def _astype(self, var, call):
        value = _const_value(call.args[0])
        dtype = str(call.attrs.dtype)
        if value is not None and np.issubdtype(value.dtype, np.integer) and (
                dtype.startswith(("int", "uint")) or dtype in ("float32", "float64")):
            # Integer constants: numpy's conversion is TVM's (wrap / round to nearest even);
            # folding here saves FoldConstant one LLVM build per constant.
            return relax.const(value.astype(dtype), dtype), "plain"
        return self._elementwise(var, call)

    def _elementwise(self, var, call):
        args = list(call.args)
        if not any(self.is_nhwc(a) for a in args):
            return None
        out_shape = _shape(var)
        if out_shape is None or len(out_shape) not in (3, 4):
            return None
        rank = len(out_shape)
        new_args = []
        for a in args:
            if isinstance(a, relax.Var):
                shape = _shape(a)
                if shape is None or (len(shape) != rank and len(shape) != 0):
                    return None
                new_args.append(self.get_nhwc(a) if len(shape) == rank else self.get_plain(a))
            elif isinstance(a, tvm.ir.Constant):
                value = _const_value(a)
                if value is None or value.ndim == 0:
                    new_args.append(a)
                elif value.ndim > rank:
                    return None
                else:
                    full = value.reshape((1,) * (rank - value.ndim) + value.shape)
                    if rank == 3:
                        full = full.reshape(_as_2d(full.shape))
                    new_args.append(relax.const(np.ascontiguousarray(
                        full.transpose(_NCHW_TO_NHWC)), str(value.dtype)))
            elif isinstance(a, relax.PrimValue | relax.ShapeExpr | relax.StringImm):
                new_args.append(a)
            else:
                return None
        return relax.Call(call.op, new_args, call.attrs, call.ty_args), "nhwc"

    def _qdq(self, var, call):
        data = call.args[0]
        rank = len(_shape(var) or [])
        if not self.is_nhwc(data) or rank not in (3, 4):
            return None
        axis = int(call.attrs.axis) % rank
        axis = _AXIS_NHWC[axis] if rank == 4 else _AXIS_NWC[axis]
        for p in call.args[1:]:
            shape = _shape(p)
            if shape is None or len(shape) > 1 or isinstance(p, relax.Var) and p in self.nhwc:
                return None
        fn = relax.op.quantize if call.op.name == "relax.quantize" else relax.op.dequantize
        args = [self.get_nhwc(data), *(self.get_plain(p) for p in call.args[1:])]
        return fn(*args, axis=axis, out_dtype=str(call.attrs.out_dtype)), "nhwc"

    def _pad(self, var, call):
        data = call.args[0]
        if not self.is_nhwc(data) or str(call.attrs.pad_mode) != "constant":
            return None
        width = _ints(call.attrs.pad_width)
        if len(width) == 6:  # [N, C, W] as [N, C, 1, W]: nothing added along the unit height
            width = width[:4] + [0, 0] + width[4:]
        if len(width) != 8:
            return None
        pairs = [width[2 * i: 2 * i + 2] for i in range(4)]
        new = [v for i in _NCHW_TO_NHWC for v in pairs[i]]
        value = call.args[1] if len(call.args) > 1 else float(call.attrs.pad_value)
        return relax.op.nn.pad(self.get_nhwc(data), new, "constant", value), "nhwc"

    def _pool(self, var, call):
        data = call.args[0]
        attrs = call.attrs
        if not self.is_nhwc(data) or str(attrs.layout) != "NCHW":
            return None
        if attrs.out_layout is not None and str(attrs.out_layout) not in ("NCHW", ""):
            return None
        fn = relax.op.nn.max_pool2d if call.op.name == "relax.nn.max_pool2d" \
            else relax.op.nn.avg_pool2d
        return fn(self.get_nhwc(data), _ints(attrs.pool_size), _ints(attrs.strides),
                  _ints(attrs.padding), _ints(attrs.dilation), bool(attrs.ceil_mode),
                  bool(attrs.count_include_pad), layout="NHWC", out_layout="NHWC"), "nhwc"

    def _reduce(self, var, call):
        data = call.args[0]
        attrs = call.attrs
        if not self.is_nhwc(data) or attrs.axis is None or len(_shape(data) or []) != 4:
            return None
        axes = sorted({int(a) % 4 for a in attrs.axis})
        keep = bool(attrs.keepdims)
        if not keep:
            remaining = [a for a in range(4) if a not in axes]
            in_nhwc = sorted(remaining, key=lambda a: _AXIS_NHWC[a])
            if remaining != in_nhwc:
                return None
        fn = {"relax.sum": relax.op.sum, "relax.mean": relax.op.mean, "relax.max": relax.op.max,
              "relax.min": relax.op.min, "relax.prod": relax.op.prod}[call.op.name]
        value = fn(self.get_nhwc(data), [_AXIS_NHWC[a] for a in axes], keep)
        return value, ("nhwc" if keep else "plain")

    def _reshape(self, var, call):
        data = call.args[0]
        shape = _shape(data)
        if not self.is_nhwc(data) or shape is None or len(shape) != 4 or shape[2] != 1 or \
                shape[3] != 1:
            return None
        # [N, C, 1, 1] and [N, 1, 1, C] hold the same bytes in the same order.
        return relax.op.reshape(self.get_nhwc(data), call.args[1]), "plain"

    # -- kernels -------------------------------------------------------------------------------

    def _conv_call(self, var, call):
        """``R.nn.conv2d`` (NCHW/OIHW) or ``R.nn.conv1d`` (NCW/OIW) → :meth:`_conv`. A conv1d
        ``[N, C, W] * [O, C/g, KW]`` is the conv2d of ``[N, C, 1, W]`` with ``[O, C/g, 1, KW]``
        (stride and dilation 1, no padding along the unit height): the same sums, so the same
        kernels."""
        attrs = call.attrs
        x, w = call.args
        wv, xs = _const_value(w), _shape(x)
        rank = 3 if call.op.name == "relax.nn.conv1d" else 4
        layouts = ("NCW", "OIW") if rank == 3 else ("NCHW", "OIHW")
        op = call.op.name.rsplit(".", 1)[-1]
        reason = None
        if (str(attrs.data_layout), str(attrs.kernel_layout)) != layouts or (
                attrs.out_layout is not None and str(attrs.out_layout) != layouts[0]):
            reason = "layout"
        elif wv is None or xs is None or len(xs) != rank or wv.ndim != rank:
            reason = "weight not constant / dynamic shape"
        if reason is not None:
            self.report.skipped.append({"op": op, "var": str(var.name), "reason": reason})
            return None
        strides, pad, dilation = (_ints(a) for a in (attrs.strides, attrs.padding,
                                                      attrs.dilation))
        if rank == 3:
            xs, wv = _as_2d(xs), wv[:, :, None, :]
            strides, pad, dilation = [1, *strides], [0, pad[0], 0, pad[1]], [1, *dilation]
        return self._conv(var, op, x, xs, wv, tuple(strides), tuple(pad), tuple(dilation),
                          int(attrs.groups), str(attrs.out_dtype))

    def _conv(self, var, op: str, x, xs: list[int], wv: np.ndarray, strides: tuple,
              padding: tuple, dilation: tuple, groups: int, out_dtype: str):
        """An NCHW/OIHW integer conv (``xs``: the 4-D input shape, ``wv``: the 4-D weight) as
        a kernel producing NHWC: VNNI for ``groups == 1``; grouped convs with few groups as
        one VNNI conv with the block-diagonal weight ``W[o, c] = w[o, c - g·C/G]`` for ``c``
        in group ``g = o // (O/G)``, else 0 (exact: the added terms are 0); depthwise as the
        channel-vectorized kernel."""
        in_dtype, name = _dtype(x), str(var.name)
        if in_dtype not in K.VNNI_ACT_DTYPES or out_dtype not in ("int32", "int64"):
            self.report.skipped.append({"op": op, "var": name,
                                        "reason": f"dtypes {in_dtype} → {out_dtype}"})
            return None
        spec = K.Conv2dSpec(
            n=xs[0], h=xs[2], w=xs[3], c=xs[1], o=int(wv.shape[0]), kh=int(wv.shape[2]),
            kw=int(wv.shape[3]), strides=strides, padding=padding, dilation=dilation,
            in_dtype=in_dtype, out_dtype=out_dtype,
        )
        if 1 < groups <= MAX_DENSE_GROUPS and groups != spec.c and wv.shape[1] * groups == spec.c:
            wv = block_diagonal_weight(wv, groups)
            groups = 1
        weight_issue = _vnni_weight_ok(wv, out_dtype, 0)
        if groups == 1 and self.vnni and weight_issue is None and wv.shape[1] == spec.c:
            return self._emit_vnni_conv(name, x, wv, spec), "nhwc"
        if groups == spec.c == spec.o and wv.shape[1] == 1:
            # int16 weights (when they fit) with 8/16-bit activations: the int32 products of
            # two 16-bit values compile to vpmaddwd instead of the slower vpmulld.
            small = in_dtype in ("uint8", "int8") and int(wv.min()) >= -(2**15) and \
                int(wv.max()) < 2**15
            w_dtype = "int16" if small else out_dtype
            wd = K.pack_depthwise_weight(wv).astype(w_dtype)
            self.report.kernels.append({"kind": "depthwise", "var": name, "macs": spec.macs,
                                        "spec": asdict(spec)})
            return self.bb.call_te(
                _with_spec(K.depthwise_conv2d_nhwc, spec), self.get_nhwc(x),
                relax.const(wd, w_dtype),
                primfunc_name_hint="tq_depthwise_conv2d",
                primfunc_attrs={"op_pattern": OUT_EWISE_FUSABLE}), "nhwc"
        self.report.skipped.append({"op": op, "var": name,
                                    "reason": f"groups={groups}, {weight_issue or 'no VNNI'}"})
        return None

    def _emit_vnni_conv(self, name: str, x, wv: np.ndarray, spec: K.Conv2dSpec):
        x_nhwc = self.get_nhwc(x)
        terms = K.weight_terms(wv)
        wp = relax.const(K.pack_conv_weight(wv, terms), "int8")
        corr = K.conv_correction(wv, spec.in_dtype)
        kwargs = {}
        if corr is not None:
            kwargs["corr"] = relax.const(corr.astype(spec.out_dtype), spec.out_dtype)
        attrs = {"op_pattern": OUT_EWISE_FUSABLE}
        if spec.in_dtype == "uint16":
            kwargs["high"] = self.bb.emit(self.bb.call_te(
                _with_spec(K.conv2d_nhwc_vnni, spec), x_nhwc, wp, part="hi",
                primfunc_name_hint="tq_vnni_conv2d", primfunc_attrs=attrs), name_hint=name + "_hi")
            kwargs["part"] = "lo"
        self.report.kernels.append({
            "kind": "vnni_conv2d", "var": name, "macs": spec.macs, "weight_terms": terms,
            "spec": asdict(spec)})
        return self.bb.call_te(_with_spec(K.conv2d_nhwc_vnni, spec), x_nhwc, wp,
                               primfunc_name_hint="tq_vnni_conv2d", primfunc_attrs=attrs,
                               **kwargs)

    def _matmul(self, var, call):
        a, b = call.args
        bv = _const_value(b)
        a_shape = _shape(a)
        out_dtype = str(call.attrs.out_dtype)
        if not self.vnni or bv is None or bv.ndim != 2 or a_shape is None or len(a_shape) < 2:
            return None
        in_dtype = _dtype(a)
        name = str(var.name)
        weight_issue = _vnni_weight_ok(bv, out_dtype, 1)
        if in_dtype not in K.VNNI_ACT_DTYPES or out_dtype not in ("int32", "int64") or \
                weight_issue is not None:
            self.report.skipped.append({"op": "matmul", "var": name, "reason": weight_issue or
                                        f"{in_dtype}×{bv.dtype} → {out_dtype}"})
            return None
        spec = K.MatmulSpec(batch=tuple(a_shape[:-2]), m=a_shape[-2], k=a_shape[-1],
                            n=int(bv.shape[1]), in_dtype=in_dtype, out_dtype=out_dtype)
        terms = K.weight_terms(bv)
        bp = relax.const(K.pack_matmul_weight(bv, terms), "int8")
        corr = K.matmul_correction(bv, in_dtype)
        kwargs = {}
        if corr is not None:
            kwargs["corr"] = relax.const(corr.astype(out_dtype), out_dtype)
        attrs = {"op_pattern": OUT_EWISE_FUSABLE}
        a_plain = self.get_plain(a)
        if in_dtype == "uint16":
            kwargs["high"] = self.bb.emit(self.bb.call_te(
                _with_spec(K.matmul_vnni, spec), a_plain, bp, part="hi",
                primfunc_name_hint="tq_vnni_matmul",
                primfunc_attrs=attrs), name_hint=name + "_hi")
            kwargs["part"] = "lo"
        self.report.kernels.append({"kind": "vnni_matmul", "var": name, "macs": spec.macs,
                                    "weight_terms": terms, "spec": asdict(spec)})
        return self.bb.call_te(_with_spec(K.matmul_vnni, spec), a_plain, bp,
                               primfunc_name_hint="tq_vnni_matmul", primfunc_attrs=attrs,
                               **kwargs), "plain"


def _with_spec(fn: Callable, spec) -> Callable:
    """``fn(*tensors, spec, **kw)`` as a TE function of tensors only (for ``call_te``)."""

    def te_func(*tensors, **kwargs):
        return fn(*tensors, spec, **kwargs)

    return te_func


@relax.expr_functor.mutator
class _Substitute(relax.PyExprMutator):
    """Replace vars by expressions (at use sites)."""

    def __init__(self, mapping: dict) -> None:
        super().__init__()
        self.mapping = mapping

    def visit_var_(self, op: relax.Var) -> relax.Expr:
        return self.mapping.get(op, op)

    def visit_dataflow_var_(self, op: relax.DataflowVar) -> relax.Expr:
        return self.mapping.get(op, op)


def rewrite_kernels(mod: tvm.IRModule, target: tvm.target.Target,
                    report: LoweringReport | None = None) -> tvm.IRModule:
    """Step 1: conv2d/matmul → x86 kernels (``call_tir``), NHWC propagated (see module doc)."""
    report = report if report is not None else LoweringReport()
    vnni = has_vnni(target)
    bb = relax.BlockBuilder()
    new_funcs: dict[str, relax.Function] = {}
    for gvar, func in mod.functions.items():
        if not isinstance(func, relax.Function):
            continue
        new_funcs[gvar.name_hint] = _rewrite_function(bb, gvar.name_hint, func, vnni, report)
    out = bb.get()
    for gvar, func in mod.functions.items():
        if not isinstance(func, relax.Function) and gvar.name_hint not in [
                g.name_hint for g in out.functions]:
            out[gvar] = func  # the same GlobalVar: the rewritten calls still refer to it
    if mod.attrs is not None:
        out = out.with_attrs(dict(mod.attrs))
    return out


def _rewrite_function(bb: relax.BlockBuilder, name: str, func: relax.Function, vnni: bool,
                      report: LoweringReport) -> relax.Function:
    attrs = dict(func.attrs) if func.attrs is not None else {}
    params = list(func.params)
    body = func.body
    rw = _Rewriter(bb, vnni, report)
    with bb.function(name, params, attrs=attrs or None, pure=True):
        for block in body.blocks:
            if isinstance(block, relax.DataflowBlock):
                with bb.dataflow():
                    outputs = []
                    for binding in block.bindings:
                        rw.visit(binding)
                        if not isinstance(binding.var, relax.DataflowVar):
                            outputs.append(binding.var)
                    for var in outputs:
                        value = rw.get_plain(var)
                        rw.plain[var] = bb.emit_output(value, name_hint=str(var.name))
            else:
                for binding in block.bindings:
                    rw._emit_plain(binding)
        result = rw._substitute(body.body)
        bb.emit_func_output(result)
    return bb.get()[name]


# ----------------------------------------------------------------------------------------------
# Pipeline
# ----------------------------------------------------------------------------------------------


def fuse_passes() -> tvm.transform.Pass:
    """Legalize to TIR and fuse (the CPU pipeline's legalize passes), with the scalar side
    computations (dynamic quantization's min / max / scale / zero point) grouped into one
    kernel each first (:mod:`.group_scalars`)."""
    return tvm.transform.Sequential([
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        tvm.transform.module_pass(lambda mod, _ctx: group_scalar_chains(mod), opt_level=0,
                                  name="GroupScalarChains"),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ])


def schedule_module(mod: tvm.IRModule, report: LoweringReport | None = None,
                    tiles: TileSource | None = None,
                    target: tvm.target.Target | None = None) -> tvm.IRModule:
    """Step 3: schedule every PrimFunc of ``mod`` (see :mod:`.schedule`)."""
    updates = {}
    for gvar, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and "tvm_qdq.scheduled" in func.attrs:
            continue
        macs, kernel = kernel_macs(func)
        new, kind = schedule_function(func, tiles, gvar.name_hint, target)
        if report is not None:
            report.schedules[gvar.name_hint] = kind
        updates[gvar] = new.with_attrs({"tvm_qdq.scheduled": kind, "tvm_qdq.macs": macs,
                                        "tvm_qdq.kernel": kernel})
    for gvar, func in updates.items():
        mod[gvar] = func
    return mod


def fuse_integer_kernels(mod: tvm.IRModule, target: tvm.target.Target,
                         report: LoweringReport | None = None) -> tvm.IRModule:
    """Steps 0-2: the fused module whose PrimFuncs :func:`schedule_module` schedules (the
    VNNI ones are the kernels the tuning database keys)."""
    report = report if report is not None else LoweringReport()
    with target:
        mod, report.float_roundings = exact_float_rounding(mod)
        mod = rewrite_kernels(mod, target, report)
        mod = use_fast_math(mod)  # vectorizable float32 erf / exp (see .fast_math)
        return fuse_passes()(mod)


def lower_integer_kernels(
    mod: tvm.IRModule,
    target: tvm.target.Target,
    *,
    tiles: TileSource | None = None,
    report: LoweringReport | None = None,
) -> tvm.IRModule:
    """Lower the integer module's conv2d/matmul to scheduled AVX-512 VNNI kernels.

    Call it just before ``tvm.compile(mod, target)``. The returned module holds only
    ``call_tir`` to scheduled PrimFuncs (conv/matmul with their fused requantize epilogues,
    depthwise conv, and every other op legalized, fused and vectorized). On a target without
    AVX-512 VNNI the conv/matmul stay TVM's own (legalized, fused, scheduled). Numerics are
    unchanged: every kernel is exact integer arithmetic; every other op is TVM's legalization.

    ``tiles`` gives each VNNI kernel its register tile (e.g. the tuning database's,
    :func:`.tuning_db.stored_tiles`); without it, or where it gives None, the heuristic
    picks. ``report`` collects the kernels emitted, the ops left to TVM and the schedule
    applied to each PrimFunc (also attached as the module attribute ``tvm_qdq.x86_lowering``).
    """
    if isinstance(target, dict | str):
        target = tvm.target.Target(target)
    report = report if report is not None else LoweringReport()
    mod = fuse_integer_kernels(mod, target, report)
    mod = schedule_module(mod, report, tiles, target)
    return mod.with_attr("tvm_qdq.x86_lowering", report.to_json())


__all__: Sequence[str] = [
    "LoweringReport",
    "fuse_integer_kernels",
    "fuse_passes",
    "lower_integer_kernels",
    "rewrite_kernels",
    "schedule_module",
]
