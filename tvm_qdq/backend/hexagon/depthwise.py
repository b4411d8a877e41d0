"""Depthwise conv2d on HVX: channels on the vector lanes.

A depthwise conv (``groups = C = O``, weights ``w[C, 1, KH, KW]``) reduces over the taps only,
per channel::

    acc[n, c, oh, ow] = Σ_{kh, kw} x[n, c, oh·sh + kh·dh - pt, ow·sw + kw·dw - pl] · w[c, 0, kh, kw]

(``x`` is 0 outside the image: the padding of ``relax.nn.conv2d``). The kernel computes it with
the channels innermost, so every tap is one contiguous vector multiply-accumulate for any
stride and any row width:

* pack: the transpose ``xt[n, h, w, c] = x[n, c, h, w]`` (``[N, H, W, Cv]``; ``Cv``: ``C``
  rounded up to the vector lanes, zero past ``C``) in the product type's operand type, then
  the zero-padded copy ``xp`` (``[N, Hp, Wp, Cv]``, whole channel vectors);
* the weights are packed at compile time to ``wp[kh, kw, c]`` (``[KH, KW, Cv]``, zero past
  ``C``);
* ``acc[n, oh, ow, c] += int32(xp[..] · wp[kh, kw, c])``: the product is formed in int16 when
  it is exact there (``max|x| · max|w| ≤ 32767``: uint8 / int8 activations with int8
  weights), else in int32 (uint16 activations) — the same integers either way;
* unpack: ``out[n, c, oh, ow] = acc[n, oh, ow, c]`` (the Relax signature of ``conv2d``).

The accumulator block carries the :data:`~tvm_qdq.backend.kernel_tags.DEPTHWISE` role
(:mod:`.schedule` vectorizes it over the channels and runs the fused requantize epilogue on
whole channel vectors before the transpose to NCHW).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax, te, tirx

from ...relax_utils import constant_value, static_shape, tensor_dtype
from ..kernel_geometry import ConvGeometry
from ..kernel_tags import DEPTHWISE, HVX_PACK, HVX_UNPACK, SCRATCH, tag
from .kernels import _ceil, _i64, _range

#: int16 lanes of a 128-byte HVX vector (the channel block of the packed layouts).
CHANNEL_LANES = 64
#: Activation types the kernel takes, with their largest magnitude.
ACT_MAGNITUDE = {"uint8": 255, "int8": 128, "uint16": 65535, "int16": 32768}
INT16_MAX = 32767


@dataclass(frozen=True)
class DepthwiseSpec(ConvGeometry):
    """NCHW ``x[N, C, H, W]`` ⊛ ``w[C, 1, KH, KW]`` (``groups = C = O``) → int32
    ``[N, C, OH, OW]``; ``product``: the type the tap products are formed in."""

    act: str
    product: str

    @property
    def cv(self) -> int:
        """Channels padded to whole vectors (``C`` ≤ 32: one half vector)."""
        lanes = CHANNEL_LANES if self.c > CHANNEL_LANES // 2 else CHANNEL_LANES // 2
        return _ceil(self.c, lanes) * lanes

    @property
    def macs(self) -> int:
        """Multiply-accumulates: ``N · OH · OW · C · KH · KW``."""
        return self.n * self.oh * self.ow * self.c * self.kh * self.kw


def product_dtype(act: str, w: np.ndarray) -> str:
    """``"int16"`` when every product ``x · w`` fits int16 (and ``w`` does), else
    ``"int32"``."""
    biggest = int(np.abs(w.astype(np.int64)).max(initial=0))
    return "int16" if ACT_MAGNITUDE[act] * biggest <= INT16_MAX else "int32"


def depthwise_spec(call: relax.Call) -> tuple[DepthwiseSpec | None, str]:
    """The spec of a depthwise ``relax.nn.conv2d`` the HVX kernel takes, or
    ``(None, reason)``."""
    attrs = call.attrs
    x, w = call.args[0], constant_value(call.args[1])
    shape = static_shape(x)
    act = tensor_dtype(x)
    if w is None or shape is None:
        return None, "weight not constant or dynamic shape"
    if act not in ACT_MAGNITUDE or str(attrs.out_dtype) != "int32":
        return None, f"{act} → {attrs.out_dtype} not an integer depthwise form"
    if str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != "OIHW" or \
            str(attrs.out_layout) not in ("NCHW", ""):
        return None, "layout not NCHW/OIHW"
    groups = int(attrs.groups)
    if not np.issubdtype(w.dtype, np.integer) or w.ndim != 4 or w.shape[1] != 1 or \
            groups != shape[1] or w.shape[0] != groups:
        return None, f"groups={groups}: not a depthwise conv with channel multiplier 1"
    if int(np.abs(w.astype(np.int64)).max(initial=0)) > INT16_MAX:
        return None, "weights do not fit int16"
    if ACT_MAGNITUDE[act] * int(np.abs(w.astype(np.int64)).sum(axis=(1, 2, 3)).max()) >= 2**31:
        return None, "sums could overflow int32"
    pad = [int(p) for p in attrs.padding]
    if len(pad) == 2:
        pad = pad * 2
    spec = DepthwiseSpec(n=shape[0], c=shape[1], h=shape[2], w=shape[3], o=shape[1],
                         kh=w.shape[2], kw=w.shape[3],
                         strides=tuple(int(s) for s in attrs.strides), padding=tuple(pad),
                         dilation=tuple(int(d) for d in attrs.dilation), act=act,
                         product=product_dtype(act, w))
    if rows_fill_vectors(spec):
        return None, "int32 products, stride-1 rows of whole vectors: vectorized along the row"
    return spec, ""


def rows_fill_vectors(spec: DepthwiseSpec) -> bool:
    """True when TVM's NCHW conv vectorized along the output row (:mod:`.schedule`'s
    reduction schedule) does better: int32 products (uint16 activations: the channel form's
    int16 products on 64 lanes do not apply), unit stride along the row, rows of a multiple
    of 32 int32 lanes and few channels (no transposes needed; the channel form pays for
    int16 products, small rows, strided rows and many channels)."""
    return (spec.product == "int32" and spec.strides[1] == 1 and spec.ow % 32 == 0
            and spec.c < CHANNEL_LANES)


def pack_depthwise_weight(w: np.ndarray, spec: DepthwiseSpec) -> np.ndarray:
    """``w[C, 1, KH, KW]`` → ``wp[KH, KW, Cv]`` in the product type (zero past ``C``)."""
    packed = np.zeros((spec.kh, spec.kw, spec.cv), spec.product)
    packed[:, :, :spec.c] = w[:, 0].transpose(1, 2, 0)
    return packed


def depthwise_te(spec: DepthwiseSpec) -> tuple[te.Tensor, te.Tensor, te.Tensor]:
    """TE tensors ``(x, wp, out)`` of the depthwise kernel (see the module docstring)."""
    pt, pl, pb, pr = spec.padding
    operand = spec.product
    x = te.placeholder(_i64((spec.n, spec.c, spec.h, spec.w)), spec.act, name="x")
    wp = te.placeholder(_i64((spec.kh, spec.kw, spec.cv)), operand, name="wp")

    def transpose(n, h, w, c):
        value = x[n, tirx.min(c, spec.c - 1), h, w].astype(operand)
        return tirx.if_then_else(c < spec.c, value, tirx.const(0, operand))

    xt = te.compute(_i64((spec.n, spec.h, spec.w, spec.cv)), transpose, name="tq_hx_dw_pack",
                    attrs=tag(HVX_PACK))

    def pad(n, h, w, c):
        inside = tirx.all(h >= pt, h < pt + spec.h, w >= pl, w < pl + spec.w)
        hi = tirx.max(tirx.min(h - pt, spec.h - 1), 0)
        wi = tirx.max(tirx.min(w - pl, spec.w - 1), 0)
        return tirx.if_then_else(inside, xt[n, hi, wi, c], tirx.const(0, operand))

    xp = te.compute(_i64((spec.n, spec.h + pt + pb, spec.w + pl + pr, spec.cv)), pad,
                    name="tq_hx_dw_pad", attrs=tag(SCRATCH))
    (sh, sw), (dh, dw) = spec.strides, spec.dilation
    rh = te.reduce_axis(_range(spec.kh), name="rh")
    rw = te.reduce_axis(_range(spec.kw), name="rw")

    def body(n, h, w, c):
        a = xp[n, h * sh + rh * dh, w * sw + rw * dw, c]
        return te.sum((a * wp[rh, rw, c]).astype("int32"), axis=[rh, rw])

    acc = te.compute(_i64((spec.n, spec.oh, spec.ow, spec.cv)), body, name="tq_hx_dw",
                     attrs=tag(DEPTHWISE))
    out = te.compute(_i64((spec.n, spec.c, spec.oh, spec.ow)),
                     lambda n, c, h, w: acc[n, h, w, c], name="tq_hx_dw_unpack",
                     attrs=tag(HVX_UNPACK))
    return x, wp, out
