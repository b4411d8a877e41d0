"""Quantized ``com.microsoft`` transformer ops (ORT's transformer optimizer + quantizer).

* **QAttention** — ORT's CPU kernel (``attention_quant.cc``): the QKV projection is an
  integer GEMM ``acc = Σ_k (x - zp_x)(w - zp_w[n])`` (uint8 input, int8/uint8 weight, per
  tensor or per column), then ``qkv = float32(acc) · float32(s_x · s_w[n]) + bias`` (a rounded
  product, then the bias: MLAS's scale-bias output processor); the attention is float
  (``AttentionCPUBase``): ``softmax(α · Q·Kᵀ + mask) · V`` per head, ``α = 1/√head_size``
  (or ``scale``), masked keys get ``mask_filter_value`` (−10000).
* **QEmbedLayerNormalization** — ORT's kernel dequantizes everything (no integer compute):
  ``e = DQ(word[ids]) + DQ(pos[s]) (+ DQ(seg[seg_ids]))``, layer norm over the hidden axis
  ``(e - mean) / sqrt(var + ε) · DQ(γ) + DQ(β)``; ``mask_index[b] = #{s : mask[b, s] == 1}``.

The integer GEMM uses :func:`tvm_qdq.qnn.ops.matmul_integer_const` (the builder the matmul
rules use), so it stays an integer matmul through the integer pass and the x86 kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax

from ...dtypes import QTYPES
from ...qnn.ops import matmul_integer_const
from ...relax_utils import Dim
from .context import ConvertContext, constant_value
from .ort_math import rounded
from .shapes import static_dims, static_shape


def _arg(inputs: list, i: int) -> relax.Expr | None:
    return inputs[i] if i < len(inputs) else None


def _const(ctx: ConvertContext, expr: relax.Expr | None, what: str) -> np.ndarray | None:
    if expr is None:
        return None
    value = constant_value(expr)
    if value is None:
        raise ctx.fail(f"{what} must be a constant")
    return value


def _scalar(bb: relax.BlockBuilder, expr: relax.Expr | None) -> int | float | relax.Expr:
    """A scalar parameter: its Python value when constant (0 when absent), else the runtime
    value reshaped to a 0-d tensor."""
    if expr is None:
        return 0
    value = constant_value(expr)
    if value is not None:
        item = value.reshape(-1)[0]
        return float(item) if np.issubdtype(value.dtype, np.floating) else int(item)
    return bb.emit(relax.op.reshape(expr, []))


def _positions(n: Dim) -> relax.Expr:
    """``[0, 1, …, n-1]`` (int32): a constant for a static ``n``, ``R.arange`` otherwise."""
    if isinstance(n, int):
        return relax.const(np.arange(n, dtype=np.int32))
    return relax.op.arange(0, n, 1, "int32")


def _same(a: Dim, b: Dim) -> bool:
    """Whether two dimensions (ints or symbolic expressions) are provably equal."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return tvm.sym.Analyzer().can_prove_equal(a, b)


def _same_dims(dims: tuple, want: tuple) -> bool:
    return len(dims) == len(want) and all(_same(a, b) for a, b in zip(dims, want, strict=True))


def _attention_bias(ctx: ConvertContext, mask: relax.Expr | None, unidirectional: bool,
                    batch: Dim, seq: Dim, filter_value: float) -> relax.Expr | None:
    """``where(key allowed, 0, mask_filter_value)`` shaped ``[B or 1, 1, S, S]``.

    ``mask_index``: ``[B]`` end positions (keys ``j ≥ end[b]`` masked), ``[2B]`` end then start
    positions (also ``j < start[b]``), ``[B, S]`` or ``[B, S, S]`` 0/1 (``> 0`` allowed).
    ``unidirectional`` also masks ``j > i``. ``B`` and ``S`` may be symbolic: the key
    positions are then ``R.arange(S)`` instead of a constant.
    """
    bb = ctx.bb
    keep = None
    if mask is not None:
        dims = static_dims(mask, ctx.label, 5, axes=())
        keys = relax.op.reshape(_positions(seq), [1, seq]) if not isinstance(seq, int) else \
            relax.const(np.arange(seq, dtype=np.int32).reshape(1, seq))
        m = bb.normalize(relax.op.astype(mask, "int32"))
        if len(dims) == 1 and (_same(dims[0], batch) or _same(dims[0], 2 * batch)):
            ends = relax.op.reshape(relax.op.strided_slice(m, [0], [0], [batch]), [batch, 1])
            keep = relax.op.less(keys, ends)
            if not _same(dims[0], batch):
                starts = relax.op.reshape(relax.op.strided_slice(m, [0], [batch], [2 * batch]),
                                          [batch, 1])
                keep = relax.op.logical_and(keep, relax.op.greater_equal(keys, starts))
            keep = relax.op.reshape(keep, [batch, 1, 1, seq])
        elif _same_dims(dims, (batch, seq)):
            keep = relax.op.reshape(relax.op.greater(m, relax.const(0, "int32")),
                                    [batch, 1, 1, seq])
        elif _same_dims(dims, (batch, seq, seq)):
            keep = relax.op.reshape(relax.op.greater(m, relax.const(0, "int32")),
                                    [batch, 1, seq, seq])
        else:
            raise ctx.fail(f"mask_index of shape {list(map(str, dims))} is not supported "
                           f"([B], [2B], [B, S] or [B, S, S] are)")
    if unidirectional and isinstance(seq, int):
        causal = relax.const(np.tril(np.ones((seq, seq), bool)).reshape(1, 1, seq, seq))
        keep = causal if keep is None else relax.op.logical_and(keep, causal)
    elif unidirectional:  # key j allowed for query i when j <= i
        rows = relax.op.reshape(_positions(seq), [seq, 1])
        causal = relax.op.reshape(relax.op.greater_equal(rows, relax.op.reshape(
            _positions(seq), [1, seq])), [1, 1, seq, seq])
        keep = causal if keep is None else relax.op.logical_and(keep, causal)
    if keep is None:
        return None
    return bb.emit(relax.op.where(keep, relax.const(np.float32(0.0)),
                                  relax.const(np.float32(filter_value))))


def convert_qattention(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """QAttention → ``output [B, S, H]`` (and ``present [2, B, N, S, H/N]`` when asked).

    ``qkv = float32(Σ_k (x - zp_x)(w - zp_w)) · (s_x·s_w) + bias`` (integer GEMM), then per
    head ``softmax(α·Q·Kᵀ + mask)·V`` in float (module docstring).
    """
    bb = ctx.bb
    x, w, bias, x_s, w_s, mask, x_z, w_z, past = (_arg(inputs, i) for i in range(9))
    if past is not None:
        raise ctx.fail("past (incremental decoding) is not supported")
    unsupported = [a for a in ("do_rotary", "past_present_share_buffer", "qkv_hidden_sizes")
                   if attrs.get(a)]
    if unsupported:
        raise ctx.fail(f"attributes {unsupported} are not supported")
    heads = int(attrs["num_heads"])
    unidirectional = bool(int(attrs.get("unidirectional", 0)))
    filter_value = float(attrs.get("mask_filter_value", -10000.0))
    w_value = _const(ctx, w, "weight")
    w_scale = _const(ctx, w_s, "weight_scale").astype(np.float32).reshape(-1)
    bias_value = _const(ctx, bias, "bias").astype(np.float32)
    zw = _const(ctx, w_z, "weight_zero_point")
    batch, seq, _ = static_dims(x, ctx.label, 0, axes=[2], why="the input hidden size")
    hidden = w_value.shape[1] // 3
    head = hidden // heads
    alpha = float(attrs.get("scale", 0.0)) or 1.0 / math.sqrt(head)

    zw_row = np.zeros((), np.int64) if zw is None else zw.astype(np.int64).reshape(-1)
    w_shift = w_value.astype(np.int64) - zw_row
    acc, _, _ = matmul_integer_const(bb, x, QTYPES[str(x.ty.dtype)], _scalar(bb, x_z), w_shift)
    # ORT: weight_scale[n] *= input_scale (float32); the input's parameters may be computed
    # at run time (quantize_dynamic feeds QAttention from a DynamicQuantizeLinear).
    x_scale = _scalar(bb, x_s)
    if isinstance(x_scale, float):
        multiplier = relax.const((w_scale * np.float32(x_scale)).astype(np.float32))
    else:
        multiplier = bb.emit(relax.op.multiply(relax.const(w_scale), x_scale))
    qkv = relax.op.multiply(relax.op.astype(acc, "float32"), multiplier)
    qkv = bb.emit(relax.op.add(rounded(qkv), relax.const(bias_value)))

    def heads_first(k: int) -> relax.Expr:
        part = relax.op.strided_slice(qkv, [2], [k * hidden], [(k + 1) * hidden])
        part = relax.op.reshape(part, [batch, seq, heads, head])
        return bb.emit(relax.op.permute_dims(part, [0, 2, 1, 3]))

    q, k, v = (heads_first(i) for i in range(3))
    scores = relax.op.matmul(q, relax.op.permute_dims(k, [0, 1, 3, 2]))
    scores = relax.op.multiply(scores, relax.const(np.float32(alpha)))
    mask_bias = _attention_bias(ctx, mask, unidirectional, batch, seq, filter_value)
    if mask_bias is not None:
        scores = relax.op.add(scores, mask_bias)
    probs = bb.emit(relax.op.nn.softmax(bb.normalize(scores), axis=-1))
    out = relax.op.permute_dims(relax.op.matmul(probs, v), [0, 2, 1, 3])
    out = bb.emit(relax.op.reshape(out, [batch, seq, hidden]))
    if len(ctx.onnx_node.output) > 1 and ctx.onnx_node.output[1]:
        return relax.Tuple([out, bb.emit(relax.op.stack([k, v], axis=0))])
    return out


def _dq_table(table: np.ndarray, scale: np.ndarray, zp: np.ndarray | None) -> np.ndarray:
    """``float32(q - zp) · scale`` of a constant tensor (ORT's ``quantization::Dequantize``)."""
    z = np.int64(0) if zp is None else zp.astype(np.int64).reshape(-1)[0]
    return ((table.astype(np.int64) - z).astype(np.float32)
            * np.float32(scale.reshape(-1)[0])).astype(np.float32)


def _lookup(ctx: ConvertContext, table: relax.Expr, scale: relax.Expr, zp: relax.Expr | None,
            ids: relax.Expr, what: str) -> relax.Expr:
    """``DQ(table[ids])``: the integer rows are gathered, then dequantized."""
    rows = relax.op.take(table, relax.op.astype(ids, "int32"), axis=0)
    s = _const(ctx, scale, f"{what} scale").astype(np.float32).reshape(())
    z = np.zeros((), str(table.ty.dtype)) if zp is None else \
        _const(ctx, zp, f"{what} zero point").reshape(())
    return relax.op.dequantize(ctx.bb.normalize(rows), relax.const(s), relax.const(z),
                               axis=0, out_dtype="float32")


def convert_qembed_layer_norm(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """QEmbedLayerNormalization → ``(output [B, S, H] float32, mask_index [B] int32)``.

    ``e = DQ(word[ids]) + DQ(pos[s]) (+ DQ(seg[seg_ids]))``,
    ``y = (e - mean) / sqrt(mean((e - mean)²) + ε) · DQ(γ) + DQ(β)`` (float, as ORT's kernel);
    ``mask_index[b] = Σ_s [mask[b, s] == 1]`` (zeros without a mask).
    """
    bb = ctx.bb
    ids, seg_ids, word, pos, seg, gamma, beta, mask = (_arg(inputs, i) for i in range(8))
    word_s, pos_s, seg_s, gamma_s, beta_s = (_arg(inputs, i) for i in range(8, 13))
    word_z, pos_z, seg_z, gamma_z, beta_z = (_arg(inputs, i) for i in range(13, 18))
    epsilon = float(attrs.get("epsilon", 1e-12))
    batch, seq = static_dims(ids, ctx.label, 0, axes=())
    hidden = static_shape(word, ctx.label, 2)[1]
    positions = _positions(seq)
    emb = relax.op.add(_lookup(ctx, word, word_s, word_z, ids, "word embedding"),
                       relax.op.expand_dims(
                           _lookup(ctx, pos, pos_s, pos_z, positions, "position embedding"), 0))
    if seg_ids is not None and seg is not None:
        emb = relax.op.add(emb, _lookup(ctx, seg, seg_s, seg_z, seg_ids, "segment embedding"))
    emb = bb.emit(emb)
    n = relax.const(np.float32(hidden))
    mean = relax.op.divide(relax.op.sum(emb, axis=[-1], keepdims=True), n)
    centred = bb.emit(relax.op.subtract(emb, mean))
    square = relax.op.maximum(relax.op.multiply(centred, centred), relax.const(np.float32(0)))
    var = relax.op.divide(relax.op.sum(square, axis=[-1], keepdims=True), n)
    denom = relax.op.sqrt(relax.op.add(var, relax.const(np.float32(epsilon))))
    g = _dq_table(_const(ctx, gamma, "gamma"), _const(ctx, gamma_s, "gamma scale"),
                  _const(ctx, gamma_z, "gamma zero point"))
    b = _dq_table(_const(ctx, beta, "beta"), _const(ctx, beta_s, "beta scale"),
                  _const(ctx, beta_z, "beta zero point"))
    scaled = rounded(relax.op.multiply(relax.op.divide(centred, denom), relax.const(g)))
    out = bb.emit(relax.op.add(scaled, relax.const(b)))
    if mask is not None:
        ones = relax.op.equal(relax.op.astype(mask, "int32"), relax.const(1, "int32"))
        mask_index = relax.op.sum(relax.op.astype(ones, "int32"), axis=[1])
    else:
        mask_index = relax.const(np.zeros(batch, np.int32)) if isinstance(batch, int) else \
            relax.op.zeros(relax.ShapeExpr([batch]), "int32")
    return relax.Tuple([out, bb.emit(mask_index)])


# (domain, op_type) → converter(ctx, inputs, attrs); merged into the importer's table.
CONVERTERS: dict[tuple[str, str], Callable] = {
    ("com.microsoft", "QAttention"): convert_qattention,
    ("com.microsoft", "QEmbedLayerNormalization"): convert_qembed_layer_norm,
}
