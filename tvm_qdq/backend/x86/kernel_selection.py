"""Which integer conv / matmul becomes which x86 kernel (step 2 of :mod:`.lower`, with
:mod:`.layout`).

* ``R.nn.conv2d`` / ``R.nn.conv1d`` (a 1-D map ``[N, C, W]`` is the 2-D map ``[N, C, 1, W]``)
  with a uint8 / int8 / uint16 activation, a constant weight whose values split into at most
  :data:`.kernels.MAX_TERMS` int8 terms, ``groups == 1`` (or a few groups, as one
  block-diagonal weight) and an int32 / int64 result → the VNNI conv kernel in NHWC, the
  weight packed in numpy; a weight that is not int8 but int8 plus a per-channel offset
  (uint8 weights with a zero point) takes the offset form of :mod:`.kernels` where it is
  cheaper than int8 terms (:func:`offset_form`);
* a depthwise conv (``groups == C == O``) → the channel-vectorized NHWC kernel;
* ``R.matmul(a, constant b)`` with the same dtypes → the VNNI matmul kernel;
* the row count of a VNNI kernel (a matmul's ``m``, a conv's ``OW``): symbolic → the
  padded-rows form; static → the padded-rows form only when its best tile, discounted by
  the wasted rows, beats every tile dividing it (:mod:`.padded_tiles`), else as before;
* ``R.matmul(a, b)`` of two integer or float32 activations with a symbolic dimension, or
  with static shapes and a padded tile that beats every dividing one
  (:func:`.padded_tiles.activation_padded_tile`, e.g. ``77 × 77``) → the padded activation
  matmul kernel; else TVM's matmul (scheduled by :mod:`.schedules.matmul`);
* ``R.matmul(a, constant b)`` and conv2d / conv1d (``groups == 1``) in float32 → the packed
  FMA kernels of :mod:`.float_kernels` (a conv in NHWC);
* everything else stays TVM's op (recorded in the report's ``skipped`` with the reason).

The kernels are ``call_tir`` to TE functions of :mod:`.kernels` marked output-elementwise
fusable, so ``FuseOps`` fuses each requantize epilogue into its kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import tvm
from tvm import relax, sym, tirx

from ...relax_utils import constant_value, partial_shape, tensor_dtype
from ..canonical_shapes import canonical_operand
from . import kernels as K
from .amx_matmul import (
    amx_column_width,
    amx_row_fraction,
    amx_row_tile,
    matmul_amx,
    pack_amx_weight,
)
from .float_kernels import conv_call, dense_call
from .layout import LayoutRewriter, as_2d, ints
from .padded_tiles import activation_padded_tile, vnni_padded_row_tile
from .schedules.matmul import default_matmul_tile
from .schedules.vnni import symbolic_row_tile

if TYPE_CHECKING:
    from .lower import LoweringReport

#: ``op_pattern`` of the kernels: an output-elementwise-fusable reduction (FuseOps kinds).
OUT_EWISE_FUSABLE = 4

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
        per_out = np.abs(K.weight_rows(w, rows_axis)).sum(axis=1)
        if 255 * int(per_out.max()) >= 2**31:
            return "int32 partial sums could overflow"
    return None


def offset_form(w: np.ndarray, out_axis: int, in_dtype: str) -> np.ndarray | None:
    """The per-output-channel offsets ``b`` of the offset form (:mod:`.kernels`:
    ``Σ u·w' = Σ u·(w' - b) + b·Σu``) when ``w' - b`` is int8, the sums stay exact in int32,
    and the window-sum kernel (one more 16-channel block) costs less than the int8 terms
    (``blocks + 1 < terms · blocks``, ``blocks = ⌈O/16⌉``); else None (int8 terms). uint8 /
    int8 activations only (one uint8 plane)."""
    terms = K.weight_terms(w)
    if in_dtype not in ("uint8", "int8") or terms == 1:
        return None
    blocks = -(-int(w.shape[out_axis]) // K.LANES)
    if blocks + 1 >= terms * blocks:
        return None
    rows = K.weight_rows(w, out_axis)
    offsets = K.channel_offsets(rows)
    if offsets is None or not K.offset_fits_int32(rows, offsets):
        return None
    return offsets


class KernelRewriter(LayoutRewriter):
    """:class:`.layout.LayoutRewriter` that also lowers conv / matmul to the x86 kernels
    (``vnni``: whether the target has AVX-512 VNNI; ``amx``: whether matmuls may take AMX
    tiles, :func:`_amx_fits`), recording each choice in ``report``."""

    def __init__(self, bb: relax.BlockBuilder, vnni: bool, report: LoweringReport,
                 amx: bool = False):
        super().__init__(bb)
        self.vnni = vnni
        self.amx = amx
        self.report = report

    def kernel_handler(self, op: str) -> Callable | None:
        if op in ("relax.nn.conv1d", "relax.nn.conv2d"):
            return self._conv_call
        if op == "relax.matmul":
            return self._matmul
        return None

    def _conv_call(self, var, call):
        """``R.nn.conv2d`` (NCHW/OIHW) or ``R.nn.conv1d`` (NCW/OIW) → :meth:`_conv`. A conv1d
        ``[N, C, W] * [O, C/g, KW]`` is the conv2d of ``[N, C, 1, W]`` with ``[O, C/g, 1, KW]``
        (stride and dilation 1, no padding along the unit height): the same sums, so the same
        kernels."""
        attrs = call.attrs
        x, w = call.args
        wv, xs = constant_value(w), partial_shape(x)
        rank = 3 if call.op.name == "relax.nn.conv1d" else 4
        layouts = ("NCW", "OIW") if rank == 3 else ("NCHW", "OIHW")
        op = call.op.name.rsplit(".", 1)[-1]
        reason = None
        if (str(attrs.data_layout), str(attrs.kernel_layout)) != layouts or (
                attrs.out_layout is not None and str(attrs.out_layout) != layouts[0]):
            reason = "layout"
        elif wv is not None and xs is None and symbolic_dims(x):
            reason = f"symbolic input shape {symbolic_dims(x)}"
        elif wv is None or xs is None or len(xs) != rank or wv.ndim != rank:
            reason = "weight not constant / dynamic shape"
        elif not isinstance(xs[1], int):
            reason = f"symbolic channels {xs[1]}"
        if reason is not None:
            self.report.skipped.append({"op": op, "var": str(var.name), "reason": reason})
            return None
        strides, pad, dilation = (ints(a) for a in (attrs.strides, attrs.padding,
                                                      attrs.dilation))
        if rank == 3:
            xs, wv = as_2d(xs), wv[:, :, None, :]
            strides, pad, dilation = [1, *strides], [0, pad[0], 0, pad[1]], [1, *dilation]
        return self._conv(var, op, x, xs, wv, tuple(strides), tuple(pad), tuple(dilation),
                          int(attrs.groups), str(attrs.out_dtype))

    def _conv(self, var, op: str, x, xs: list, wv: np.ndarray, strides: tuple,
              padding: tuple, dilation: tuple, groups: int, out_dtype: str):
        """An NCHW/OIHW integer conv (``xs``: the 4-D input shape, ``wv``: the 4-D weight) as
        a kernel producing NHWC: VNNI for ``groups == 1``; grouped convs with few groups as
        one VNNI conv with the block-diagonal weight ``W[o, c] = w[o, c - g·C/G]`` for ``c``
        in group ``g = o // (O/G)``, else 0 (exact: the added terms are 0); depthwise as the
        channel-vectorized kernel. ``N``, ``H``, ``W`` may be symbolic (VNNI only; a symbolic
        output width takes the padded-rows form)."""
        in_dtype, name = tensor_dtype(x), str(var.name)
        static = all(isinstance(d, int) for d in xs)
        if in_dtype == "float32" and self.vnni and static:  # float conv: the packed FMA kernel
            call, record = conv_call(self.bb, lambda: self.get_nhwc(x), xs, wv, strides,
                                     padding, dilation, groups)
            (self.report.kernels if call is not None else self.report.skipped).append(
                {"op": op, "var": name, **record})
            return None if call is None else (call, "nhwc")
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
            pointwise = self._amx_pointwise(spec, wv)
            if pointwise is not None:
                mspec, bv, weight = pointwise
                x_nhwc = canonical_operand(self.bb, self.get_nhwc(x))
                return self._emit_matmul(name, x_nhwc, bv, mspec, weight, amx=True), "nhwc"
            return self._emit_vnni_conv(name, x, wv, spec), "nhwc"
        if symbolic_dims(x):
            self.report.skipped.append({"op": op, "var": name, "reason":
                                        f"symbolic input shape {symbolic_dims(x)}: groups="
                                        f"{groups}, {weight_issue or 'no VNNI'}"})
            return None
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
                _with_spec(K.depthwise_conv2d_nhwc, spec),
                canonical_operand(self.bb, self.get_nhwc(x)),
                relax.const(wd, w_dtype),
                primfunc_name_hint="tq_depthwise_conv2d",
                primfunc_attrs={"op_pattern": OUT_EWISE_FUSABLE}), "nhwc"
        self.report.skipped.append({"op": op, "var": name,
                                    "reason": f"groups={groups}, {weight_issue or 'no VNNI'}"})
        return None

    def _window_sums(self, kernel: Callable, act, ones_packed: np.ndarray, spec,
                     offsets: np.ndarray, out_dtype: str, name: str, hint: str,
                     **kernel_kwargs) -> dict:
        """The offset form's extra inputs of the main kernel: ``sums`` (``kernel`` with the
        all-ones weight ``ones_packed`` and the one-channel ``spec``: ``Σ_k u_k`` per output
        row, int32) and the ``offsets`` constant in ``out_dtype``."""
        sums = self.bb.emit(self.bb.call_te(
            _with_spec(kernel, spec), act, relax.const(ones_packed, "int8"),
            primfunc_name_hint=hint, primfunc_attrs={"op_pattern": OUT_EWISE_FUSABLE},
            **kernel_kwargs), name_hint=name + "_sums")
        return {"sums": sums, "offsets": relax.const(offsets.astype(out_dtype), out_dtype)}

    def _amx_pointwise(self, spec: K.Conv2dSpec, wv: np.ndarray
                       ) -> tuple[K.MatmulSpec, np.ndarray, SplitWeight] | None:
        """(matmul spec, ``[C, O]`` weight, its split) when a conv takes the AMX matmul, else
        None: a 1×1 conv with stride 1 and no padding is the
        matmul ``x[n, h, w, :] @ w[:, :, 0, 0]ᵀ`` of each row of pixels (batch ``(n, h)``,
        ``w`` rows), exact like the conv; on static shapes whose rows fill at least
        :data:`AMX_MIN_ROW_FRACTION` of their tiles, with a reduction of at least
        :data:`AMX_MIN_REDUCTION` (its 64-element steps mostly real) and one int8 term
        (:func:`_amx_fits`)."""
        if not self.amx or (spec.kh, spec.kw) != (1, 1) or spec.strides != (1, 1) or \
                any(spec.padding) or not all(isinstance(d, int) for d in (spec.n, spec.h,
                                                                           spec.w)):
            return None
        if spec.c < AMX_MIN_REDUCTION:
            return None
        bv = wv[:, :, 0, 0].T
        mspec = K.MatmulSpec(batch=(spec.n, spec.h), m=spec.w, k=spec.c, n=spec.o,
                             in_dtype=spec.in_dtype, out_dtype=spec.out_dtype)
        weight = split_weight(bv, spec.in_dtype)
        return (mspec, bv, weight) if _amx_fits(mspec, weight.terms) else None

    def _emit_vnni_conv(self, name: str, x, wv: np.ndarray, spec: K.Conv2dSpec):
        x_nhwc = canonical_operand(self.bb, self.get_nhwc(x))
        corr = K.conv_correction(wv, spec.in_dtype)
        kwargs, kernel_kwargs = {}, {}
        row_tile = _vnni_row_tile([spec.n, spec.oh, spec.ow], spec.o16 // K.LANES,
                                  spec.kh * spec.kw * spec.c4)
        if row_tile:  # padded output columns (K.conv2d_nhwc_vnni)
            kernel_kwargs["row_tile"] = row_tile
        if corr is not None:
            kwargs["corr"] = relax.const(corr.astype(spec.out_dtype), spec.out_dtype)
        offsets = offset_form(wv, 0, spec.in_dtype)
        if offsets is not None:
            kwargs.update(self._window_sums(
                K.conv2d_nhwc_vnni, x_nhwc, K.pack_conv_weight(K.ones_weight(wv.shape, 0)),
                replace(spec, o=1, out_dtype="int32"), offsets, spec.out_dtype, name,
                "tq_vnni_conv2d", **kernel_kwargs))
            wv = wv - offsets.reshape(-1, 1, 1, 1)
        terms = K.weight_terms(wv)
        wp = relax.const(K.pack_conv_weight(wv, terms), "int8")
        attrs = {"op_pattern": OUT_EWISE_FUSABLE}
        if spec.in_dtype == "uint16":
            kwargs["high"] = self.bb.emit(self.bb.call_te(
                _with_spec(K.conv2d_nhwc_vnni, spec), x_nhwc, wp, part="hi",
                primfunc_name_hint="tq_vnni_conv2d", primfunc_attrs=attrs, **kernel_kwargs),
                name_hint=name + "_hi")
            kwargs["part"] = "lo"
        self.report.kernels.append(_json_record({
            "kind": "vnni_conv2d", "var": name, "macs": spec.macs, "weight_terms": terms,
            "offset_form": offsets is not None, "spec": asdict(spec), **kernel_kwargs}))
        return self.bb.call_te(_with_spec(K.conv2d_nhwc_vnni, spec), x_nhwc, wp,
                               primfunc_name_hint="tq_vnni_conv2d", primfunc_attrs=attrs,
                               **kwargs, **kernel_kwargs)

    def _activation_matmul(self, var, a, b, out_dtype: str):
        """``R.matmul(a, b)`` of two activations with a symbolic dimension (``P·V``; ``Q·Kᵀ``,
        symbolic columns), or static ones whose padded tile beats every dividing one
        (:func:`.padded_tiles.activation_padded_tile`, e.g. ``77 × 77``) →
        :func:`.kernels.activation_matmul` (padded rows and columns); None (TVM's matmul;
        recorded in ``skipped`` when symbolic) when the operands do not fit it or a static
        shape keeps the dividing form."""
        a_shape, b_shape = partial_shape(a), partial_shape(b)
        dtypes = (tensor_dtype(a), tensor_dtype(b))
        symbolic = bool(symbolic_dims(a) or symbolic_dims(b))
        reason = None
        if a_shape is None or b_shape is None or len(a_shape) < 2 or \
                not _same_dims(a_shape[:-2], b_shape[:-2]) or \
                not _same_dims(a_shape[-1:], b_shape[-2:-1]):
            reason = "operand shapes (batch dims must be equal)"
        elif not _activation_operands_ok(dtypes, out_dtype):
            reason = f"dtypes {dtypes} → {out_dtype}"
        if reason is not None:
            if symbolic:
                self.report.skipped.append({"op": "matmul", "var": str(var.name),
                                            "reason": f"symbolic activation matmul: {reason}"})
            return None
        m, n = a_shape[-2], b_shape[-1]
        if symbolic:
            # Symbolic columns (``Q·Kᵀ``): one 16-lane vector per tile, the last partial tile
            # being the schedule's column tail.
            tile = default_matmul_tile(m if isinstance(m, int) else 128,
                                       _nominal_columns(n) if isinstance(n, int) else 16)
        else:
            tile = activation_padded_tile(m, n, a_shape[-1],
                                          self.vnni and dtypes == ("int16", "int16"))
            if tile is None:  # the dividing form (TVM's matmul, ActivationMatmulRule)
                return None
        row_tile, col_tile = tile.mr, tile.nr * tile.lanes
        self.report.kernels.append(_json_record({
            "kind": "activation_matmul", "var": str(var.name), "a": a_shape, "b": b_shape,
            "tile": [row_tile, col_tile]}))
        return self.bb.call_te(K.activation_matmul, canonical_operand(self.bb, self.get_plain(a)),
                               canonical_operand(self.bb, self.get_plain(b)),
                               row_tile=row_tile, col_tile=col_tile,
                               even_k=self.vnni and dtypes == ("int16", "int16"),
                               primfunc_name_hint="tq_act_matmul",
                               primfunc_attrs={"op_pattern": OUT_EWISE_FUSABLE}), "plain"

    def _matmul(self, var, call):
        a, b = call.args
        bv = constant_value(b)
        a_shape = partial_shape(a)
        out_dtype = str(call.attrs.out_dtype)
        if bv is None:
            return self._activation_matmul(var, a, b, out_dtype)
        if not self.vnni or bv is None or bv.ndim != 2:
            return None
        name = str(var.name)
        symbolic = symbolic_dims(a)
        if a_shape is None or len(a_shape) < 2 or not isinstance(a_shape[-1], int):
            if symbolic:
                self.report.skipped.append({"op": "matmul", "var": name, "reason":
                                            f"symbolic reduction / unknown shape {symbolic}"})
            return None
        in_dtype = tensor_dtype(a)
        if in_dtype == "float32" and not symbolic:  # a float matmul: the packed FMA kernel
            call, record = dense_call(self.bb, lambda: self.get_plain(a), a_shape, bv)
            (self.report.kernels if call is not None else self.report.skipped).append(
                {"op": "matmul", "var": name, **record})
            return None if call is None else (call, "plain")
        weight_issue = _vnni_weight_ok(bv, out_dtype, 1)
        if in_dtype not in K.VNNI_ACT_DTYPES or out_dtype not in ("int32", "int64") or \
                weight_issue is not None:
            self.report.skipped.append({"op": "matmul", "var": name, "reason": weight_issue or
                                        f"{in_dtype}×{bv.dtype} → {out_dtype}"})
            return None
        spec = K.MatmulSpec(batch=tuple(a_shape[:-2]), m=a_shape[-2], k=a_shape[-1],
                            n=int(bv.shape[1]), in_dtype=in_dtype, out_dtype=out_dtype)
        weight = split_weight(bv, in_dtype)
        amx = self.amx and _amx_fits(spec, weight.terms)
        return self._emit_matmul(name, canonical_operand(self.bb, self.get_plain(a)), bv, spec,
                                 weight, amx=amx), "plain"

    def _emit_matmul(self, name: str, a_plain, bv: np.ndarray, spec: K.MatmulSpec,
                     weight: SplitWeight, *, amx: bool):
        """The exact integer ``a @ bv`` (``bv`` constant, split as ``weight``) as the AMX or
        VNNI kernel, with the int8 correction, the offset form's window sums and the uint16
        byte planes."""
        in_dtype, out_dtype = spec.in_dtype, spec.out_dtype
        offsets, terms = weight.offsets, weight.terms
        kernel = K.matmul_vnni if not amx else matmul_amx
        hint = "tq_amx_matmul" if amx else "tq_vnni_matmul"
        kwargs, kernel_kwargs = {}, {}
        row_tile = amx_row_tile(spec.m) if amx else \
            _vnni_row_tile([*spec.batch, spec.m], spec.n16 // K.LANES, spec.k4)
        if row_tile:  # padded rows (K.matmul_vnni, matmul_amx)
            kernel_kwargs["row_tile"] = row_tile
        corr = K.matmul_correction(bv, in_dtype)
        if corr is not None:
            kwargs["corr"] = relax.const(corr.astype(out_dtype), out_dtype)
        if offsets is not None:
            kwargs.update(self._window_sums(
                kernel, a_plain, _pack(K.ones_weight(bv.shape, 1), 1, amx),
                replace(spec, n=1, out_dtype="int32"), offsets, out_dtype, name,
                hint, **kernel_kwargs))
        bp = relax.const(_pack(weight.shifted, terms, amx), "int8")
        attrs = {"op_pattern": OUT_EWISE_FUSABLE}
        if in_dtype == "uint16":
            kwargs["high"] = self.bb.emit(self.bb.call_te(
                _with_spec(kernel, spec), a_plain, bp, part="hi",
                primfunc_name_hint=hint,
                primfunc_attrs=attrs, **kernel_kwargs), name_hint=name + "_hi")
            kwargs["part"] = "lo"
        self.report.kernels.append(_json_record({
            "kind": "amx_matmul" if amx else "vnni_matmul", "var": name, "macs": spec.macs,
            "weight_terms": terms, "offset_form": offsets is not None, "spec": asdict(spec),
            **kernel_kwargs}))
        return self.bb.call_te(_with_spec(kernel, spec), a_plain, bp,
                               primfunc_name_hint=hint, primfunc_attrs=attrs,
                               **kwargs, **kernel_kwargs)


#: AMX: the least share of real rows in the padded tiles of a static row count (a pixel row
#: of a pointwise conv), and the least reduction of a pointwise conv (input channels: one
#: whole 64-element ``tdpbusd`` step; below it the padding and the per-tile overheads cost
#: more than VNNI).
AMX_MIN_ROW_FRACTION = 0.75
AMX_MIN_REDUCTION = 64


@dataclass(frozen=True)
class SplitWeight:
    """A constant matmul weight ``b[K, N]`` as the kernels take it: the offset form's
    per-column offsets (None when it takes no offset form), ``shifted = b − offsets`` and
    the number of int8 terms ``shifted`` needs."""

    offsets: np.ndarray | None
    shifted: np.ndarray
    terms: int


def split_weight(bv: np.ndarray, in_dtype: str) -> SplitWeight:
    """:class:`SplitWeight` of ``bv`` for activations of ``in_dtype``."""
    offsets = offset_form(bv, 1, in_dtype)
    shifted = bv if offsets is None else bv - offsets.reshape(1, -1)
    return SplitWeight(offsets, shifted, K.weight_terms(shifted))


def _pack(w: np.ndarray, terms: int, amx: bool) -> np.ndarray:
    """A constant matmul weight packed for the AMX kernel or the VNNI one."""
    if amx:
        return pack_amx_weight(w, amx_column_width(int(w.shape[1])))
    return K.pack_matmul_weight(w, terms)


def _amx_fits(spec: K.MatmulSpec, terms: int) -> bool:
    """Whether a matmul takes the AMX kernel (:mod:`.amx_matmul`): a weight of one int8 term,
    and rows that fill their tiles (a symbolic row count, or a static one whose padded tiles
    are at least :data:`AMX_MIN_ROW_FRACTION` real rows)."""
    return terms == 1 and (not isinstance(spec.m, int) or
                           amx_row_fraction(spec.m) >= AMX_MIN_ROW_FRACTION)


def _vnni_row_tile(dims: list, n_blocks: int, reduction: int) -> int:
    """The ``row_tile`` of a VNNI kernel with row extents ``dims`` (the last one padded),
    ``n_blocks`` column blocks and ``reduction`` elements per output:
    :func:`.schedules.vnni.symbolic_row_tile`'s for a symbolic last extent,
    :func:`.padded_tiles.vnni_padded_row_tile`'s when all are static (0: the dividing
    form), 0 for a static last extent under a symbolic one."""
    if not isinstance(dims[-1], int):
        return symbolic_row_tile(n_blocks).mr
    if all(isinstance(d, int) for d in dims):
        return vnni_padded_row_tile(dims, n_blocks, reduction)
    return 0


#: Operand dtypes of the padded activation matmul (:func:`.kernels.activation_matmul`).
_ACT_OPERANDS = ("int8", "uint8", "int16", "uint16")
#: ``R.matmul``'s ``out_dtype`` spellings of "the operands' type" (a float32 matmul).
_SAME_AS_OPERANDS = ("", "None", "float32", "void")


def _activation_operands_ok(dtypes: tuple, out_dtype: str) -> bool:
    """Whether :func:`.kernels.activation_matmul` takes operands ``dtypes`` → ``out_dtype``:
    integers of at most 16 bits summed in int32, or float32 summed in float32."""
    if all(d in _ACT_OPERANDS for d in dtypes):
        return out_dtype == "int32"
    return dtypes == ("float32", "float32") and out_dtype in _SAME_AS_OPERANDS


def _same_dims(x: tuple, y: tuple) -> bool:
    """Whether two partial shapes are provably equal, dimension by dimension."""
    analyzer = sym.Analyzer()
    return len(x) == len(y) and all(
        p == q if isinstance(p, int) or isinstance(q, int) else analyzer.can_prove_equal(p, q)
        for p, q in zip(x, y, strict=True))


def symbolic_dims(expr: relax.Expr) -> list[str]:
    """The symbolic dimensions of a tensor-typed ``expr`` as text (``[]`` when all are
    known integers; ``["?"]`` when not even the dimensions are known)."""
    shape = partial_shape(expr)
    if shape is None:
        return ["?"]
    return [str(d) for d in shape if not isinstance(d, int)]


def _json_record(value):
    """``value`` with every symbolic expression (a TIR expression) as its text, so that a
    report record of a symbolic kernel serializes to JSON (ints and strings unchanged)."""
    if isinstance(value, dict):
        return {k: _json_record(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_json_record(v) for v in value)
    if isinstance(value, tvm.ir.Expr):
        return int(value) if isinstance(value, tirx.IntImm) else str(value)
    return value


def _nominal_columns(n) -> int:
    """Columns of a tile decision: ``n`` rounded up to 16 lanes, 128 when symbolic."""
    return -(-n // 16) * 16 if isinstance(n, int) else 128


def _with_spec(fn: Callable, spec) -> Callable:
    """``fn(*tensors, spec, **kw)`` as a TE function of tensors only (for ``call_te``)."""

    def te_func(*tensors, **kwargs):
        return fn(*tensors, spec, **kwargs)

    return te_func
