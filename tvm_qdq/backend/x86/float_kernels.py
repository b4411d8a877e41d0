"""Float32 matmul with a constant weight (dense) as a TE computation, and its weight packing.

A matmul that stays float (a float model, a float island, a weight-only quantized model whose
weights were folded to float constants) ``c[*batch, m, n] = Σ_k a[*batch, m, k] · b[k, n]``
with a constant ``b`` becomes one block annotated
:data:`~tvm_qdq.backend.kernel_tags.FLOAT_DENSE` that reads the weight packed at compile
time as ``wp[n // 16, k, n % 16]`` (:func:`pack_dense_weight`): the 16 columns one zmm
register holds are contiguous for every ``k``, so a register tile's weight vectors are
unit-stride streams (:mod:`.schedules.float_dense`).

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
multiply-add.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from tvm import relax, te

from ..kernel_geometry import MatmulGeometry
from ..kernel_tags import FLOAT_DENSE, FLOAT_WEIGHT, tag

#: float32 lanes of a zmm register = weight columns per packed block.
LANES = 16


@dataclass(frozen=True)
class DenseSpec(MatmulGeometry):
    """``a[*batch, m, k] @ b[k, n]`` in float32 with ``n`` a multiple of :data:`LANES`."""

    @property
    def blocks(self) -> int:
        return self.n // LANES


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
    ``float32(q) · s == b`` exactly (float32 product, every element), or None.

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
        ok &= np.all(ratio.astype(np.float32) * cand[cols] == b[:, cols], axis=0)
        done = cols[ok]
        q[:, done] = ratio[:, ok]
        scales[done] = cand[done]
        pending[done] = False
    return None if pending.any() else (q, scales)


def dense_float(a: te.Tensor, wp: te.Tensor, spec: DenseSpec, *,
                scales: te.Tensor | None = None) -> te.Tensor:
    """``c[*batch, m, n] = Σ_k a[*batch, m, k] · w[k, n]`` in float32 (order: module
    docstring), ``w`` read from the packed ``wp[n // 16, k, n % 16]``: float32, or int8 with
    ``scales[n]`` (expanded by a :data:`FLOAT_WEIGHT` block, see the module docstring)."""
    if scales is not None:
        q = wp
        wp = te.compute(
            tuple(q.shape),
            lambda blk, k, lane: q[blk, k, lane].astype("float32") * scales[blk * LANES + lane],
            name="tq_float_weight", attrs=tag(FLOAT_WEIGHT))
    rk = te.reduce_axis((0, spec.k), name="rk")

    def body(*idx):
        row, col = idx[:-1], idx[-1]
        return te.sum(a[(*row, rk)] * wp[col // LANES, rk, col % LANES], axis=[rk])

    return te.compute((*spec.batch, spec.m, spec.n), body, name="tq_float_dense",
                      attrs=tag(FLOAT_DENSE))


#: ``op_pattern`` of the kernel: an output-elementwise-fusable reduction (FuseOps kinds).
OUT_EWISE_FUSABLE = 4


def dense_call(bb: relax.BlockBuilder, a: relax.Expr, a_shape: list[int],
               b: np.ndarray) -> tuple[relax.Expr | None, dict]:
    """``R.matmul(a, b)`` (``a`` float32 of static ``a_shape``, ``b`` a constant) as a call of
    :func:`dense_float` with ``b`` packed (int8-compressed when exact): ``(call, record)``,
    or ``(None, {"reason": …})`` when the kernel does not apply (:func:`dense_issue`)."""
    issue = dense_issue(b, "float32")
    if issue is not None:
        return None, {"reason": issue}
    spec = DenseSpec(batch=tuple(a_shape[:-2]), m=a_shape[-2], k=a_shape[-1], n=int(b.shape[1]))
    compressed = compress_dense_weight(b)
    kwargs = {}
    if compressed is None:
        weight = relax.const(pack_dense_weight(b), "float32")
    else:
        weight = relax.const(pack_dense_weight(compressed[0]), "int8")
        kwargs["scales"] = relax.const(compressed[1], "float32")

    def te_func(*tensors, **kw):
        return dense_float(*tensors, spec, **kw)

    call = bb.call_te(te_func, a, weight, primfunc_name_hint="tq_float_dense",
                      primfunc_attrs={"op_pattern": OUT_EWISE_FUSABLE}, **kwargs)
    return call, {"kind": "float_dense", "macs": spec.macs,
                  "int8_weight": compressed is not None, "spec": asdict(spec)}
