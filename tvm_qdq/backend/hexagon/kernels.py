"""Integer conv2d / matmul kernels for HVX ``vrmpy`` and the Relax rewrite that uses them.

``vrmpy`` (128-byte HVX) multiplies 4 consecutive bytes of each of 32 int32 lanes and adds
the 4 products to the lane's accumulator. The kernels use the vector × vector form with the
**output channels on the lanes**::

    acc[.., o] += Σ_{k<4} x[.., 4q + k] · w[o, 4q + k]      o = 32 lanes of a block

``x``'s 4 bytes are one int32 broadcast to all lanes; ``w`` is packed at compile time so one
aligned 128-byte load gives lane ``o``'s 4 weights (``wp[o // 32, .., q, o % 32, k]``). The
instruction depends on the operand types (all products exact, int32 lane sums):

* ``uint8 × int8``: ``vrmpy(Vu.ub, Vv.b)`` (``V6.vrmpybusv``);
* ``int8 × int8``: ``vrmpy(Vu.b, Vv.b)`` (``V6.vrmpybv``);
* ``uint8 × uint8``: ``vrmpy(Vu.ub, Vv.ub)`` (``V6.vrmpyubv``);
* ``uint16 × int8``: two uint8 planes ``x = 256 · hi + lo``, two ``vrmpybusv`` sums combined
  as ``lo + 256 · hi`` in the output type (each partial sum fits int32 when
  ``255 · max_o Σ|w[o]| < 2^31``, checked).
* **offset uint8 weights** (uint8 weights with a zero point: ``w' = w - zw`` spans
  ``[-255, 255]``, not 8 bits) for uint8 / uint16 activations: per output channel
  ``b[o] = min_k w'[o, k]`` makes ``w'' = w' - b[o]`` uint8 (when the channel's range is at
  most 255), and one extra lane (output channel ``O``) of all-ones weights accumulates
  ``Σ_k x_k``; then ``Σ x·w' = acc[o] + b[o] · acc[O]`` (``vrmpyubv``, one extra lane, where
  splitting ``w'`` into int8 terms would double or triple the vrmpy count). The matmul does
  the same per column ``n`` with an all-ones column ``N``.

Layouts: the conv kernel takes NCHW and returns NCHW (the Relax signature of ``conv2d``); it
packs the activation into a zero-padded ``[P, Hp, Wp, C4]`` scratch (``P`` planes, ``C``
padded to a multiple of 4), accumulates ``[P, OH, OW, O32]`` and writes NCHW. The matmul
kernel takes ``a[*batch, M, K]`` (row-major, K contiguous) and a constant ``b[K, N]``.

The kernels are TE computations whose blocks are annotated with their role
(:mod:`tvm_qdq.backend.kernel_tags`: pack, vrmpy, unpack); the vrmpy reduction is tensorized by
:mod:`.schedule` with the intrinsics registered in :mod:`.intrin`; the PrimFuncs are marked
output-elementwise-fusable, so ``FuseOps`` fuses the requantize epilogue into them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, te, tirx

from ...relax_utils import constant_value, static_shape, tensor_dtype
from ..kernel_geometry import ConvGeometry, MatmulGeometry
from ..kernel_tags import HVX_PACK, HVX_UNPACK, HVX_VRMPY, tag

LANES = 32  # int32 lanes of a 128-byte HVX vector
KGROUP = 4  # bytes per lane that one vrmpy reduces
#: ``op_pattern`` kOutEWiseFusable: FuseOps fuses elementwise consumers into the kernel.
OUT_EWISE_FUSABLE = 4
ACT_DTYPES = ("uint8", "int8", "uint16")


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def weight_kind(w: np.ndarray, act: str) -> str | None:
    """``"int8"`` / ``"uint8"`` (the packed weight type) when vrmpy takes ``w`` with an
    ``act`` activation, else None."""
    if w.size == 0 or not np.issubdtype(w.dtype, np.integer):
        return None
    lo, hi = int(w.min()), int(w.max())
    if lo >= -128 and hi <= 127:
        return "int8"
    if act == "uint8" and lo >= 0 and hi <= 255:
        return "uint8"
    return None


def weight_offsets(w: np.ndarray, out_axis: int, act: str) -> np.ndarray | None:
    """Per-output-channel ``b[o] = min w'[o]`` when ``w' - b`` fits uint8 for every channel
    and the activation is unsigned (the offset form, see the module docstring), else None."""
    if act not in ("uint8", "uint16") or w.size == 0 or not np.issubdtype(w.dtype, np.integer):
        return None
    per_out = np.moveaxis(w.astype(np.int64), out_axis, 0).reshape(w.shape[out_axis], -1)
    lo, hi = per_out.min(axis=1), per_out.max(axis=1)
    return lo if np.all(hi - lo <= 255) else None


def offset_fits_int32(w: np.ndarray, offsets: np.ndarray, out_axis: int, act: str) -> bool:
    """True when the offset form's partial sums (per uint8 plane) and the combined
    ``acc[o] + b[o]·acc[O]`` stay below 2^31 for every input."""
    per_out = np.moveaxis(w.astype(np.int64), out_axis, 0).reshape(w.shape[out_axis], -1)
    shifted = (per_out - offsets[:, None]).sum(axis=1)
    k = per_out.shape[1]
    largest = 65535 if act == "uint16" else 255
    planes_fit = 255 * max(int(shifted.max(initial=0)), k) < 2**31
    combined = largest * (int(shifted.max(initial=0)) + int(np.abs(offsets).max(initial=0)) * k)
    return planes_fit and combined < 2**31


def planes(act: str) -> int:
    """uint8 planes of an activation type (2 for uint16)."""
    return 2 if act == "uint16" else 1


def plane_dtype(act: str) -> str:
    return "int8" if act == "int8" else "uint8"


def partial_sums_fit(w: np.ndarray, out_axis: int, act: str) -> bool:
    """True when every int32 partial sum is exact: ``max|x| · max_o Σ|w[o]| < 2^31``."""
    per_out = np.abs(np.moveaxis(w.astype(np.int64), out_axis, 0)).reshape(
        w.shape[out_axis], -1).sum(axis=1)
    biggest = 128 if act == "int8" else 255
    return biggest * int(per_out.max(initial=0)) < 2**31


def _i64(shape) -> list:
    """Shape dims as int64 immediates (what Relax's legalized PrimFuncs use: FuseTIR
    requires the buffers it joins to agree)."""
    return [tirx.IntImm("int64", int(d)) for d in shape]


def _range(extent: int) -> tvm.ir.Range:
    return tvm.ir.Range(tirx.IntImm("int64", 0), tirx.IntImm("int64", extent))


def _plane(value: tirx.PrimExpr, act: str, plane: int) -> tirx.PrimExpr:
    if act == "uint16":
        if plane == 0:
            return (value & tirx.const(255, "uint16")).astype("uint8")
        return (value >> tirx.const(8, "uint16")).astype("uint8")
    return value


def _combine(acc: te.Tensor, idx: tuple, n_planes: int, out_dtype: str) -> tirx.PrimExpr:
    """``acc[p=0] + 256 · acc[p=1]`` in ``out_dtype`` (``idx`` with a ``:`` for the plane)."""
    lo = acc[idx[0]].astype(out_dtype)
    if n_planes == 1:
        return lo
    return lo + acc[idx[1]].astype(out_dtype) * tirx.const(256, out_dtype)


# ----------------------------------------------------------------------------------------------
# Conv2d
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv2dSpec(ConvGeometry):
    """NCHW ``x[N, C, H, W]`` ⊛ OIHW ``w[O, C, KH, KW]`` → ``[N, O, OH, OW]`` (groups = 1;
    the shape fields: :class:`~tvm_qdq.backend.kernel_geometry.ConvGeometry`)."""

    act: str
    weight: str
    out_dtype: str
    offset: bool = False  # offset uint8 weights: lane O accumulates Σx

    @property
    def cq(self) -> int:
        return _ceil(self.c, KGROUP)

    @property
    def ob(self) -> int:
        return _ceil(self.o + self.offset, LANES)


def pack_conv_weight(w: np.ndarray, kind: str, offsets: np.ndarray | None = None) -> np.ndarray:
    """OIHW ``w`` → ``[O32/32, KH, KW, C4/4, 32, 4]`` (``kind``: int8 or uint8); with
    ``offsets``, ``w - b[o]`` and an all-ones output channel ``O`` (the offset form)."""
    o, c, kh, kw = w.shape
    ob, cq = _ceil(o + (offsets is not None), LANES), _ceil(c, KGROUP)
    full = np.zeros((ob * LANES, cq * KGROUP, kh, kw), kind)
    if offsets is not None:
        w = w.astype(np.int64) - offsets.reshape(o, 1, 1, 1)
        full[o, :c] = 1
    full[:o, :c] = w.astype(kind)
    packed = full.reshape(ob, LANES, cq, KGROUP, kh, kw).transpose(0, 4, 5, 2, 1, 3)
    return np.ascontiguousarray(packed)


def conv2d_te(spec: Conv2dSpec) -> tuple[te.Tensor, te.Tensor, te.Tensor]:
    """TE tensors ``(x, wp, out)`` of the vrmpy convolution (see the module docstring)."""
    pt, pl, pb, pr = spec.padding
    hp, wp_ = spec.h + pt + pb, spec.w + pl + pr
    n_planes, pdt = planes(spec.act), plane_dtype(spec.act)
    x = te.placeholder(_i64((spec.n, spec.c, spec.h, spec.w)), spec.act, name="x")
    wp = te.placeholder(_i64((spec.ob, spec.kh, spec.kw, spec.cq, LANES, KGROUP)), spec.weight,
                        name="wp")
    zero = tirx.const(0, pdt)

    def pack(n, p, h, w, c):
        inside = tirx.all(h >= pt, h < pt + spec.h, w >= pl, w < pl + spec.w, c < spec.c)
        hi = tirx.max(tirx.min(h - pt, spec.h - 1), 0)
        wi = tirx.max(tirx.min(w - pl, spec.w - 1), 0)
        ci = tirx.min(c, spec.c - 1)
        value = x[n, ci, hi, wi]
        if n_planes == 2:
            value = tirx.Select(p == 0, _plane(value, spec.act, 0), _plane(value, spec.act, 1))
        return tirx.if_then_else(inside, value.astype(pdt), zero)

    xq = te.compute(_i64((spec.n, n_planes, hp, wp_, spec.cq * KGROUP)), pack, name="tq_hx_pack",
                    attrs=tag(HVX_PACK))
    sh, sw = spec.strides
    dh, dw = spec.dilation
    rh = te.reduce_axis(_range(spec.kh), name="rh")
    rw = te.reduce_axis(_range(spec.kw), name="rw")
    rq = te.reduce_axis(_range(spec.cq), name="rq")
    rk = te.reduce_axis(_range(KGROUP), name="rk")

    def body(n, p, h, w, o):
        a = xq[n, p, h * sh + rh * dh, w * sw + rw * dw, rq * KGROUP + rk]
        b = wp[o // LANES, rh, rw, rq, o % LANES, rk]
        return te.sum(a.astype("int32") * b.astype("int32"), axis=[rh, rw, rq, rk])

    acc = te.compute(_i64((spec.n, n_planes, spec.oh, spec.ow, spec.ob * LANES)), body,
                     name="tq_hx_vrmpy", attrs=tag(HVX_VRMPY))

    def unpack(n, o, h, w):
        return _combine(acc, ((n, 0, h, w, o), (n, 1, h, w, o)), n_planes, spec.out_dtype)

    if not spec.offset:
        out = te.compute(_i64((spec.n, spec.o, spec.oh, spec.ow)), unpack, name="tq_hx_unpack",
                         attrs=tag(HVX_UNPACK))
        return x, wp, out
    offsets = te.placeholder(_i64((spec.o,)), "int32", name="b")

    def unpack_offset(n, o, h, w):
        ones = tirx.IntImm("int64", spec.o)
        total = _combine(acc, ((n, 0, h, w, ones), (n, 1, h, w, ones)), n_planes, spec.out_dtype)
        return unpack(n, o, h, w) + offsets[o].astype(spec.out_dtype) * total

    out = te.compute(_i64((spec.n, spec.o, spec.oh, spec.ow)), unpack_offset,
                     name="tq_hx_unpack", attrs=tag(HVX_UNPACK))
    return x, wp, offsets, out


# ----------------------------------------------------------------------------------------------
# Matmul
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatmulSpec(MatmulGeometry):
    """``a[*batch, M, K] @ b[K, N]`` (constant ``b``) → ``[*batch, M, N]``."""

    act: str
    weight: str
    out_dtype: str
    offset: bool = False  # offset uint8 weights: column N accumulates Σa

    @property
    def kq(self) -> int:
        return _ceil(self.k, KGROUP)

    @property
    def nb(self) -> int:
        return _ceil(self.n + self.offset, LANES)


def pack_matmul_weight(b: np.ndarray, kind: str, offsets: np.ndarray | None = None
                       ) -> np.ndarray:
    """``b[K, N]`` → ``[N32/32, K4/4, 32, 4]`` (``kind``: int8 or uint8); with ``offsets``,
    ``b - off[n]`` and an all-ones column ``N`` (the offset form)."""
    k, n = b.shape
    kq, nb = _ceil(k, KGROUP), _ceil(n + (offsets is not None), LANES)
    full = np.zeros((kq * KGROUP, nb * LANES), kind)
    if offsets is not None:
        b = b.astype(np.int64) - offsets.reshape(1, n)
        full[:k, n] = 1
    full[:k, :n] = b.astype(kind)
    return np.ascontiguousarray(full.reshape(kq, KGROUP, nb, LANES).transpose(2, 0, 3, 1))


def matmul_te(spec: MatmulSpec) -> tuple[te.Tensor, te.Tensor, te.Tensor]:
    """TE tensors ``(a, bp, out)`` of the vrmpy matmul."""
    n_planes, pdt = planes(spec.act), plane_dtype(spec.act)
    a = te.placeholder(_i64((*spec.batch, spec.m, spec.k)), spec.act, name="a")
    bp = te.placeholder(_i64((spec.nb, spec.kq, LANES, KGROUP)), spec.weight, name="bp")
    zero = tirx.const(0, pdt)
    nbatch = len(spec.batch)

    def pack(*idx):
        row, p, k = idx[:nbatch + 1], idx[nbatch + 1], idx[nbatch + 2]
        value = a[(*row, tirx.min(k, spec.k - 1))]
        if n_planes == 2:
            value = tirx.Select(p == 0, _plane(value, spec.act, 0), _plane(value, spec.act, 1))
        return tirx.if_then_else(k < spec.k, value.astype(pdt), zero)

    aq = te.compute(_i64((*spec.batch, spec.m, n_planes, spec.kq * KGROUP)), pack,
                    name="tq_hx_pack", attrs=tag(HVX_PACK))
    rq = te.reduce_axis(_range(spec.kq), name="rq")
    rk = te.reduce_axis(_range(KGROUP), name="rk")

    def body(*idx):
        row, p, col = idx[:nbatch + 1], idx[nbatch + 1], idx[nbatch + 2]
        av = aq[(*row, p, rq * KGROUP + rk)]
        bv = bp[col // LANES, rq, col % LANES, rk]
        return te.sum(av.astype("int32") * bv.astype("int32"), axis=[rq, rk])

    acc = te.compute(_i64((*spec.batch, spec.m, n_planes, spec.nb * LANES)), body,
                     name="tq_hx_vrmpy", attrs=tag(HVX_VRMPY))

    def unpack(*idx):
        row, col = idx[:-1], idx[-1]
        return _combine(acc, ((*row, 0, col), (*row, 1, col)), n_planes, spec.out_dtype)

    if not spec.offset:
        out = te.compute(_i64((*spec.batch, spec.m, spec.n)), unpack, name="tq_hx_unpack",
                         attrs=tag(HVX_UNPACK))
        return a, bp, out
    offsets = te.placeholder(_i64((spec.n,)), "int32", name="off")

    def unpack_offset(*idx):
        row, col = idx[:-1], idx[-1]
        ones = tirx.IntImm("int64", spec.n)
        total = _combine(acc, ((*row, 0, ones), (*row, 1, ones)), n_planes, spec.out_dtype)
        return unpack(*idx) + offsets[col].astype(spec.out_dtype) * total

    out = te.compute(_i64((*spec.batch, spec.m, spec.n)), unpack_offset, name="tq_hx_unpack",
                     attrs=tag(HVX_UNPACK))
    return a, bp, offsets, out


def _prim_func(tensors, name: str) -> tirx.PrimFunc:
    func = te.create_prim_func(list(tensors))
    return func.with_attrs({"op_pattern": OUT_EWISE_FUSABLE, "global_symbol": name,
                            "tirx.noalias": True})


# ----------------------------------------------------------------------------------------------
# The Relax rewrite
# ----------------------------------------------------------------------------------------------


def conv2d_spec(call: relax.Call) -> tuple[Conv2dSpec | None, str]:
    """The spec of a ``relax.nn.conv2d`` call vrmpy can take, or ``(None, reason)``."""
    attrs = call.attrs
    x, w = call.args[0], constant_value(call.args[1])
    shape = static_shape(x)
    act = tensor_dtype(x)
    out_dtype = str(attrs.out_dtype)
    if w is None or shape is None:
        return None, "weight not constant or dynamic shape"
    if act not in ACT_DTYPES or out_dtype not in ("int32", "int64"):
        return None, f"{act} → {out_dtype} not an integer vrmpy form"
    if str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != "OIHW" or \
            str(attrs.out_layout) not in ("NCHW", ""):
        return None, "layout not NCHW/OIHW"
    if int(attrs.groups) != 1:
        return None, f"groups={int(attrs.groups)}"
    kind, offset = weight_kind(w, act), False
    if kind is None:
        offsets = weight_offsets(w, 0, act)
        if offsets is None:
            return None, "weights do not fit 8 bits (nor uint8 with a per-channel offset)"
        if not offset_fits_int32(w, offsets, 0, act):
            return None, "offset-form sums could overflow int32"
        kind, offset = "uint8", True
    elif act == "uint16" and not partial_sums_fit(w, 0, act):
        return None, "uint16 partial sums could overflow int32"
    pad = [int(p) for p in attrs.padding]
    if len(pad) == 2:
        pad = pad * 2
    spec = Conv2dSpec(n=shape[0], c=shape[1], h=shape[2], w=shape[3], o=w.shape[0],
                      kh=w.shape[2], kw=w.shape[3], strides=tuple(int(s) for s in attrs.strides),
                      padding=tuple(pad), dilation=tuple(int(d) for d in attrs.dilation),
                      act=act, weight=kind, out_dtype=out_dtype, offset=offset)
    if spec.c != w.shape[1]:
        return None, "channel mismatch"
    return spec, ""


def matmul_spec(call: relax.Call) -> tuple[MatmulSpec | None, str]:
    """The spec of a ``relax.matmul(a, constant b[K, N])`` vrmpy can take."""
    a, b = call.args[0], constant_value(call.args[1])
    shape = static_shape(a)
    act = tensor_dtype(a)
    out_dtype = str(call.attrs.out_dtype) if call.attrs is not None else ""
    if b is None or shape is None or b.ndim != 2 or len(shape) < 2:
        return None, "right operand not a constant matrix"
    if act not in ACT_DTYPES or out_dtype not in ("int32", "int64"):
        return None, f"{act} → {out_dtype} not an integer vrmpy form"
    kind, offset = weight_kind(b, act), False
    if kind is None:
        offsets = weight_offsets(b, 1, act)
        if offsets is None:
            return None, "weights do not fit 8 bits (nor uint8 with a per-column offset)"
        if not offset_fits_int32(b, offsets, 1, act):
            return None, "offset-form sums could overflow int32"
        kind, offset = "uint8", True
    elif act == "uint16" and not partial_sums_fit(b, 1, act):
        return None, "uint16 partial sums could overflow int32"
    if shape[-1] != b.shape[0]:
        return None, "inner dimension mismatch"
    return MatmulSpec(batch=tuple(shape[:-2]), m=shape[-2], k=shape[-1], n=b.shape[1], act=act,
                      weight=kind, out_dtype=out_dtype, offset=offset), ""


INTRINSIC_OF = {("uint8", "int8"): "vrmpybusv", ("int8", "int8"): "vrmpybv",
                ("uint8", "uint8"): "vrmpyubv", ("uint16", "int8"): "vrmpybusv",
                ("uint16", "uint8"): "vrmpyubv"}


@relax.expr_functor.mutator
class _DotRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.report: list[dict] = []
        self.cache: dict = {}

    def _kernel(self, key, build):
        if key not in self.cache:
            tensors, name = build()
            self.cache[key] = self.builder_.add_func(_prim_func(tensors, name), name)
        return self.cache[key]

    def _depthwise(self, call: relax.Call) -> relax.Expr:
        """A depthwise conv2d → the HVX channel-vector kernel of :mod:`.depthwise`."""
        from .depthwise import depthwise_spec, depthwise_te, pack_depthwise_weight

        spec, why = depthwise_spec(call)
        if spec is None:
            self.report.append({"op": "conv2d", "vrmpy": False, "depthwise": True, "hvx": False,
                                "why": why})
            return call
        gvar = self._kernel(("depthwise", spec), lambda: (depthwise_te(spec), "tq_hx_dwconv2d"))
        weight = pack_depthwise_weight(constant_value(call.args[1]), spec)
        self.report.append({"op": "conv2d", "vrmpy": False, "depthwise": True, "hvx": True,
                            "act": spec.act, "product": spec.product, "macs": spec.macs})
        return relax.call_tir(gvar, [call.args[0], relax.const(weight)],
                              relax.TensorType([spec.n, spec.c, spec.oh, spec.ow], "int32"))

    def visit_call_(self, call: relax.Call):  # noqa: D102 - visitor hook
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op):
            return call
        name = call.op.name
        if name == "relax.nn.conv2d" and int(call.attrs.groups) != 1:
            return self._depthwise(call)
        if name == "relax.nn.conv2d":
            spec, why = conv2d_spec(call)
            if spec is None:
                self.report.append({"op": "conv2d", "vrmpy": False, "why": why})
                return call
            w = constant_value(call.args[1])
            gvar = self._kernel(("conv", spec), lambda: (conv2d_te(spec), "tq_hx_conv2d"))
            offsets = weight_offsets(w, 0, spec.act) if spec.offset else None
            args = [call.args[0], relax.const(pack_conv_weight(w, spec.weight, offsets))]
            if offsets is not None:
                args.append(relax.const(offsets.astype(np.int32)))
            out_ty = relax.TensorType([spec.n, spec.o, spec.oh, spec.ow], spec.out_dtype)
            self.report.append({"op": "conv2d", "vrmpy": True,
                                "instruction": INTRINSIC_OF[(spec.act, spec.weight)],
                                "act": spec.act, "weight": spec.weight, "out": spec.out_dtype,
                                "offset": spec.offset, "macs": spec.macs})
            return relax.call_tir(gvar, args, out_ty)
        if name == "relax.matmul":
            spec, why = matmul_spec(call)
            if spec is None:
                self.report.append({"op": "matmul", "vrmpy": False, "why": why})
                return call
            b = constant_value(call.args[1])
            gvar = self._kernel(("matmul", spec), lambda: (matmul_te(spec), "tq_hx_matmul"))
            offsets = weight_offsets(b, 1, spec.act) if spec.offset else None
            args = [call.args[0], relax.const(pack_matmul_weight(b, spec.weight, offsets))]
            if offsets is not None:
                args.append(relax.const(offsets.astype(np.int32)))
            out_ty = relax.TensorType([*spec.batch, spec.m, spec.n], spec.out_dtype)
            self.report.append({"op": "matmul", "vrmpy": True,
                                "instruction": INTRINSIC_OF[(spec.act, spec.weight)],
                                "act": spec.act, "weight": spec.weight, "out": spec.out_dtype,
                                "offset": spec.offset, "macs": spec.macs})
            return relax.call_tir(gvar, args, out_ty)
        return call


def rewrite_dot_products(mod: tvm.IRModule) -> tuple[tvm.IRModule, list[dict]]:
    """Replace the vrmpy-able integer conv2d / matmul calls of ``main`` by kernel calls."""
    rewriter = _DotRewriter(mod)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    new = rewriter.builder_.get()
    return relax.transform.DeadCodeElimination()(new), rewriter.report
