"""ONNX ``STFT`` (opset 17) as framing + one constant-matrix ``R.matmul`` (exact DFT twiddles).

``STFT(signal, frame_step[, window][, frame_length])`` with ``signal`` ``[B, L]``,
``[B, L, 1]`` (real) or ``[B, L, 2]`` (complex), window length ``W`` (the window's length,
else ``frame_length``) gives ``[B, F, K, 2]`` with ``F = ⌊(L − W) / frame_step⌋ + 1`` frames
and ``K = ⌊W/2⌋ + 1`` bins when ``onesided`` (default), else ``K = W``:

    Y[b, f, k] = Σ_{n<W} e_{k,n} · (x[b, f·frame_step + n] · w[n])

with ``e_{k,n} = e^{−2πi·kn/W}``. ORT 1.32's CPU kernel multiplies each sample by the
window in float32 (as here), then transforms each frame: for ``W`` a power of two with a
radix-2 FFT (float32 twiddles; within float32 rounding of the float64 DFT: 5.4e-7 of the
largest bin at ``W = 256``), for other ``W`` with an algorithm whose error is well above
float32 rounding (a unit impulse comes out as bin 0 ``= 1.0000001 − 7.3e-7i``; on
Hann-windowed unit-variance noise 1.9e-6 of the largest bin at ``W = 25``, 2.5e-5 at
``W = 400``) — not a naive DFT with ``cos``/``sin`` of any
float32 or float64 angle (the impulse response rules those out), so not reproduced. Here
every twiddle is the float64 value of ``e^{−2πi·((k·n) mod W)/W}`` rounded to float32, and
the sum over ``n`` is a float32 matmul: within float32 rounding of the exact DFT
(≤ 6e-7 of the largest bin in ``tests/test_stft.py``, which measures both).

Relax: the frames are one ``R.take`` of constant indices ``f·frame_step + n`` along the
signal axis, the window a broadcast ``R.multiply``, the DFT one ``R.matmul`` by the
constant ``[W·C, K·2]`` matrix (``C`` = 1 real / 2 complex components, output interleaved
real, imaginary), reshaped to ``[B, F, K, 2]``. ``frame_step`` and ``frame_length`` must
be constants; the window may be a run-time input.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tvm import relax, tirx

from .context import ConvertContext, constant_value


def dft_angles(length: int, bins: int) -> np.ndarray:
    """``θ[n, k] = −2π·((k·n) mod length)/length`` (float64, ``[length, bins]``): the angle
    of the twiddle of sample ``n`` in bin ``k``, reduced exactly before rounding."""
    n = np.arange(length, dtype=np.int64)[:, None]
    k = np.arange(bins, dtype=np.int64)[None, :]
    return -2.0 * np.pi * ((n * k) % length) / length


def dft_matrix(length: int, bins: int, complex_input: bool) -> np.ndarray:
    """The constant ``[length·C, bins·2]`` float32 matrix of the DFT: row ``n·C + c`` (input
    component ``c``), column ``2k`` real and ``2k + 1`` imaginary part of bin ``k``.

    Real input: ``Re += cos θ·x``, ``Im += sin θ·x``. Complex input ``x = a + ib``:
    ``Re += cos θ·a − sin θ·b``, ``Im += sin θ·a + cos θ·b`` (``e^{iθ}·x``)."""
    theta = dft_angles(length, bins)
    cos = np.cos(theta).astype(np.float32)
    sin = np.sin(theta).astype(np.float32)
    comps = 2 if complex_input else 1
    mat = np.zeros((length, comps, bins, 2), np.float32)
    mat[:, 0, :, 0] = cos
    mat[:, 0, :, 1] = sin
    if complex_input:
        mat[:, 1, :, 0] = -sin
        mat[:, 1, :, 1] = cos
    return mat.reshape(length * comps, bins * 2)


def _scalar(ctx: ConvertContext, expr: relax.Expr | None, name: str) -> int | None:
    if expr is None:
        return None
    value = constant_value(expr)
    if value is None:
        raise ctx.fail(f"{name} must be a constant (run-time {name} is not supported)")
    if value.size != 1:
        raise ctx.fail(f"{name} must be a scalar, got shape {list(value.shape)}")
    return int(value.reshape(-1)[0])


def convert_stft(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """STFT(signal, frame_step[, window][, frame_length]) → ``[B, F, K, 2]`` (module
    docstring). float32 signals with a static shape."""
    signal = inputs[0]
    window = inputs[2] if len(inputs) > 2 else None
    shape_values = getattr(signal.ty.shape, "values", None)
    if shape_values is None or not all(isinstance(v, tirx.IntImm) for v in shape_values):
        raise ctx.fail("the signal needs a static shape")
    shape = [int(v) for v in shape_values]
    if str(signal.ty.dtype) != "float32":
        raise ctx.fail(f"signal type {signal.ty.dtype} is not supported (float32 only)")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 2)):
        raise ctx.fail(f"signal shape {shape} must be [batch, length] or [batch, length, 1|2]")
    step = _scalar(ctx, inputs[1], "frame_step")
    frame_length = _scalar(ctx, inputs[3] if len(inputs) > 3 else None, "frame_length")
    if window is not None:
        w_shape = [int(v) for v in window.ty.shape.values]
        if len(w_shape) != 1 or str(window.ty.dtype) != "float32":
            raise ctx.fail(f"window must be a float32 vector, got {w_shape} {window.ty.dtype}")
        if frame_length is not None and frame_length != w_shape[0]:
            raise ctx.fail(f"frame_length {frame_length} differs from the window's {w_shape[0]}")
        length = w_shape[0]
    elif frame_length is not None:
        length = frame_length
    else:
        raise ctx.fail("needs a window or a frame_length")
    batch, signal_length = shape[0], shape[1]
    comps = shape[2] if len(shape) == 3 else 1
    if step is None or step <= 0:
        raise ctx.fail(f"frame_step must be positive, got {step}")
    if not 0 < length < signal_length:
        raise ctx.fail(f"frame length {length} must be in (0, signal length {signal_length})")
    frames = (signal_length - length) // step + 1
    onesided = bool(attrs.get("onesided", 1))
    bins = length // 2 + 1 if onesided else length

    bb = ctx.bb
    x = signal if len(shape) == 3 else bb.emit(relax.op.reshape(signal, [batch, signal_length, 1]))
    index = (np.arange(frames, dtype=np.int64)[:, None] * step
             + np.arange(length, dtype=np.int64)[None, :])
    framed = bb.emit(relax.op.take(x, relax.const(index, "int64"), axis=1))  # [B, F, W, C]
    if window is not None:
        framed = bb.emit(relax.op.multiply(framed, bb.emit(relax.op.reshape(window, [length, 1]))))
    flat = bb.emit(relax.op.reshape(framed, [batch, frames, length * comps]))
    matrix = relax.const(dft_matrix(length, bins, comps == 2), "float32")
    spectrum = bb.emit(relax.op.matmul(flat, matrix))
    return relax.op.reshape(spectrum, [batch, frames, bins, 2])


# (domain, op_type) → converter(ctx, inputs, attrs); merged into the importer's table.
CONVERTERS: dict[tuple[str, str], Callable] = {
    ("", "STFT"): convert_stft,
}
