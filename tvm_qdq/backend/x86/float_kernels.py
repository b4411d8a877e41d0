"""Float32 matmul and conv2d with a constant weight as TE computations, and their weight
packing.

A matmul that stays float (a float model, a float island, a weight-only quantized model whose
weights were folded to float constants) ``c[*batch, m, n] = Σ_k a[*batch, m, k] · b[k, n]``
with a constant ``b`` becomes one block annotated
:data:`~tvm_qdq.backend.kernel_tags.FLOAT_DENSE` that reads the weight packed at compile
time as ``wp[n // 16, k, n % 16]`` (:func:`pack_dense_weight`): the 16 columns one zmm
register holds are contiguous for every ``k``, so a register tile's weight vectors are
unit-stride streams (:mod:`.schedules.float_dense`).

A float conv2d (``groups == 1``) is the same block over NHWC: output pixels are the rows,
output channels the columns, and the reduction ``(c, kh, kw)`` reads the weight as the
matrix ``b[(c·KH + kh)·KW + kw, o] = w[o, c, kh, kw]`` packed the same way; a padded input is
a :data:`~tvm_qdq.backend.kernel_tags.SCRATCH` copy (zeros outside the image).

**Compressed weights.** When every column of ``b`` is exactly ``float32(q[k, n]) · s[n]``
(one float32 product, rounded) for int8 ``q`` and one float32 ``s[n]`` per column — the
form a weight-only int8 model's ``Cast(int8) · scale`` folds to — the weight is stored as the
int8 ``q`` (same packing) and the scales (:func:`compress_dense_weight`), a quarter of the
bytes, and a :data:`~tvm_qdq.backend.kernel_tags.FLOAT_WEIGHT` block expands it back:
``wf[b, k, l] = float32(q[b, k, l]) · s[16·b + l]``, the same rounded product, so bit for bit
the constant it replaces (checked element by element before choosing the form).

**Summation order.** Each output element is ``acc = 0; acc = fma(a[…, m, k], b[k, n], acc)``
for ``k = 0, 1, …, K-1``: the products summed in increasing ``k``, one rounding per step
(fused multiply-add), the order of TVM's own matmul loop once LLVM contracts its
multiply-add. For a conv, ``c`` outermost, then ``kh``, then ``kw`` (TVM's conv2d order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from tvm import relax, te, tirx

from ..kernel_geometry import ConvGeometry, MatmulGeometry
from ..kernel_tags import FLOAT_DENSE, FLOAT_WEIGHT, SCRATCH, tag

#: float32 lanes of a zmm register = weight columns per packed block.
LANES = 16


@dataclass(frozen=True)
class DenseSpec(MatmulGeometry):
    """``a[*batch, m, k] @ b[k, n]`` in float32 with ``n`` a multiple of :data:`LANES`."""


@dataclass(frozen=True)
class ConvSpec(ConvGeometry):
    """A float32 conv2d: input NHWC ``[N, H, W, C]``, weight OIHW ``[O, C, KH, KW]`` with ``O``
    a multiple of :data:`LANES`, output NHWC ``[N, OH, OW, O]``."""


def dense_issue(b: np.ndarray, a_dtype: str) -> str | None:
    """None when ``b`` (the constant right operand of a matmul whose left operand has
    ``a_dtype``) can take the packed float kernel, else the reason."""
    if a_dtype != "float32" or b.dtype != np.float32:
        return f"float kernel needs float32 operands ({a_dtype}×{b.dtype})"
    if b.ndim != 2:
        return f"float kernel needs a 2-D weight ({b.ndim}-D)"
    if b.shape[1] % LANES or b.shape[0] == 0:
        return f"float kernel needs a multiple of {LANES} columns ({b.shape[1]})"
    return None


def pack_dense_weight(b: np.ndarray) -> np.ndarray:
    """``b[k, n]`` → ``wp[n // 16, k, n % 16]`` (``n`` a multiple of 16)."""
    k, n = b.shape
    return np.ascontiguousarray(b.reshape(k, n // LANES, LANES).transpose(1, 0, 2))


def compress_dense_weight(b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(q, s)`` with int8 ``q[k, n]`` and float32 ``s[n]`` such that
    ``float32(q) · s`` is ``b`` bit for bit (float32 product, every element), or None.

    The scales tried for a column are its largest magnitude over 127 and over 128 (the int8
    grid's step when that magnitude is ``127·s`` or ``128·s``) and their float32
    neighbours; a column of zeros has scale 1.
    """
    if b.dtype != np.float32 or not np.all(np.isfinite(b)):
        return None
    peak = np.abs(b).max(axis=0)
    q = np.zeros(b.shape, np.int8)
    scales = np.zeros(b.shape[1], np.float32)
    pending = np.ones(b.shape[1], bool)
    for grid, step in ((g, s) for g in (127, 128) for s in (0, 1, -1, 2, -2)):
        if not pending.any():
            break
        cand = np.where(peak > 0, peak / np.float32(grid), np.float32(1)).astype(np.float32)
        for _ in range(abs(step)):
            cand = np.nextafter(cand, np.float32(np.inf if step > 0 else 0), dtype=np.float32)
        cols = np.flatnonzero(pending)
        ratio = np.rint(b[:, cols] / cand[cols])
        ok = np.all((ratio >= -128) & (ratio <= 127), axis=0)
        ratio = np.clip(ratio, -128, 127).astype(np.int8)
        back = ratio.astype(np.float32) * cand[cols]
        ok &= np.all((back == b[:, cols]) & (np.signbit(back) == np.signbit(b[:, cols])), axis=0)
        done = cols[ok]
        q[:, done] = ratio[:, ok]
        scales[done] = cand[done]
        pending[done] = False
    return None if pending.any() else (q, scales)


def _expanded(wp: te.Tensor, scales: te.Tensor | None) -> te.Tensor:
    """The float32 packed weight: ``wp`` itself, or ``float32(wp) · scales[column]`` (a
    :data:`FLOAT_WEIGHT` block) for an int8-compressed one."""
    if scales is None:
        return wp
    return te.compute(
        tuple(wp.shape),
        lambda blk, k, lane: wp[blk, k, lane].astype("float32") * scales[blk * LANES + lane],
        name="tq_float_weight", attrs=tag(FLOAT_WEIGHT))


def dense_float(a: te.Tensor, wp: te.Tensor, spec: DenseSpec, *,
                scales: te.Tensor | None = None) -> te.Tensor:
    """``c[*batch, m, n] = Σ_k a[*batch, m, k] · w[k, n]`` in float32 (order: module
    docstring), ``w`` read from the packed ``wp[n // 16, k, n % 16]``: float32, or int8 with
    ``scales[n]`` (expanded by a :data:`FLOAT_WEIGHT` block, see the module docstring)."""
    wp = _expanded(wp, scales)
    rk = te.reduce_axis((0, spec.k), name="rk")

    def body(*idx):
        row, col = idx[:-1], idx[-1]
        return te.sum(a[(*row, rk)] * wp[col // LANES, rk, col % LANES], axis=[rk])

    return te.compute((*spec.batch, spec.m, spec.n), body, name="tq_float_dense",
                      attrs=tag(FLOAT_DENSE))


def conv_float(x: te.Tensor, wp: te.Tensor, spec: ConvSpec, *,
               scales: te.Tensor | None = None) -> te.Tensor:
    """``y[n, oh, ow, o] = Σ_{c, kh, kw} xp[n, oh·sh + kh·dh, ow·sw + kw·dw, c] · w[o, c, kh, kw]``
    in float32 (``xp``: ``x`` zero-padded; order: module docstring), ``w`` read from the
    packed matrix ``wp[o // 16, (c·KH + kh)·KW + kw, o % 16]`` (float32, or int8 with
    ``scales[o]``)."""
    wp = _expanded(wp, scales)
    pt, pl, pb, pr = spec.padding
    xp = x
    if any(spec.padding):
        def pad_body(n, h, w, c):
            inside = tirx.all(h >= pt, h < pt + spec.h, w >= pl, w < pl + spec.w)
            hi = tirx.max(tirx.min(h - pt, spec.h - 1), 0)
            wi = tirx.max(tirx.min(w - pl, spec.w - 1), 0)
            return tirx.if_then_else(inside, x[n, hi, wi, c], tirx.const(0.0, "float32"))

        xp = te.compute((spec.n, spec.h + pt + pb, spec.w + pl + pr, spec.c), pad_body,
                        name="tq_scratch", attrs=tag(SCRATCH))
    (sh, sw), (dh, dw) = spec.strides, spec.dilation
    rc = te.reduce_axis((0, spec.c), name="rc")
    rh = te.reduce_axis((0, spec.kh), name="rh")
    rw = te.reduce_axis((0, spec.kw), name="rw")

    def body(n, h, w, o):
        row = (rc * spec.kh + rh) * spec.kw + rw
        return te.sum(xp[n, h * sh + rh * dh, w * sw + rw * dw, rc]
                      * wp[o // LANES, row, o % LANES], axis=[rc, rh, rw])

    return te.compute((spec.n, spec.oh, spec.ow, spec.o), body, name="tq_float_conv",
                      attrs=tag(FLOAT_DENSE))


#: ``op_pattern`` of the kernel: an output-elementwise-fusable reduction (FuseOps kinds).
OUT_EWISE_FUSABLE = 4


def _packed_call(bb: relax.BlockBuilder, kernel: Callable, operand: relax.Expr,
                 matrix: np.ndarray, spec, hint: str) -> tuple[relax.Expr, dict]:
    """``kernel(operand, packed matrix, spec)`` emitted as a ``call_te`` (the weight
    int8-compressed when exact) and the report record."""
    compressed = compress_dense_weight(matrix)
    kwargs = {}
    if compressed is None:
        weight = relax.const(pack_dense_weight(matrix), "float32")
    else:
        weight = relax.const(pack_dense_weight(compressed[0]), "int8")
        kwargs["scales"] = relax.const(compressed[1], "float32")

    def te_func(*tensors, **kw):
        return kernel(*tensors, spec, **kw)

    call = bb.call_te(te_func, operand, weight, primfunc_name_hint=hint,
                      primfunc_attrs={"op_pattern": OUT_EWISE_FUSABLE}, **kwargs)
    return call, {"kind": hint.removeprefix("tq_"), "macs": spec.macs,
                  "int8_weight": compressed is not None, "spec": asdict(spec)}


def dense_call(bb: relax.BlockBuilder, a: Callable[[], relax.Expr], a_shape: list[int],
               b: np.ndarray) -> tuple[relax.Expr | None, dict]:
    """``R.matmul(a, b)`` (``a()`` the float32 operand of static ``a_shape``, emitted only
    when the kernel applies; ``b`` a constant) as a call of :func:`dense_float` with ``b``
    packed: ``(call, record)``, or ``(None, {"reason": …})`` (:func:`dense_issue`)."""
    issue = dense_issue(b, "float32")
    if issue is not None:
        return None, {"reason": issue}
    spec = DenseSpec(batch=tuple(a_shape[:-2]), m=a_shape[-2], k=a_shape[-1], n=int(b.shape[1]))
    return _packed_call(bb, dense_float, a(), b, spec, "tq_float_dense")


def conv_call(bb: relax.BlockBuilder, x: Callable[[], relax.Expr], xs: list[int],
              w: np.ndarray, strides: tuple, padding: tuple, dilation: tuple, groups: int
              ) -> tuple[relax.Expr | None, dict]:
    """An NCHW conv2d of the float32 input of shape ``xs`` (``x()``: its NHWC form, emitted
    only when the kernel applies) with the constant OIHW ``w`` as a call of
    :func:`conv_float` producing NHWC, or ``(None, {"reason": …})``."""
    if groups != 1 or w.ndim != 4 or w.shape[1] != xs[1]:
        return None, {"reason": f"float kernel needs groups=1 (groups={groups})"}
    o, c, kh, kw = (int(d) for d in w.shape)
    issue = dense_issue(w.reshape(o, -1).T, "float32")
    if issue is not None:
        return None, {"reason": issue}
    spec = ConvSpec(n=xs[0], c=c, h=xs[2], w=xs[3], o=o, kh=kh, kw=kw, strides=strides,
                    padding=padding, dilation=dilation)
    matrix = np.ascontiguousarray(w.reshape(o, c * kh * kw).T)
    return _packed_call(bb, conv_float, x(), matrix, spec, "tq_float_conv")
