"""The recurrence of ``DynamicQuantizeLSTM`` for a symbolic sequence length: one PrimFunc.

:func:`~.lstm.convert_dynamic_quantize_lstm` unrolls the time steps when ``T`` is static. With
a symbolic ``T`` (a CRNN whose sequence comes from an image width) the steps cannot be
unrolled; :func:`recurrence_kernel` is one TIR function with a serial step loop that carries
``h`` and ``c`` in its outputs ``h_T`` / ``c_T`` and, per step ``t`` (``T-1-s`` for a reverse
direction), computes exactly what one unrolled step computes (:mod:`.lstm`, ORT's CPU kernel):

1. ``h`` ``[B, H]`` is quantized to uint8 like ORT's DynamicQuantizeLinear:
   ``hi = max(max h, 0)``, ``lo = min(min h, 0)``, ``s = (hi - lo) / 255`` (``1`` when
   ``hi == lo``), ``zp = round_half_even(clamp(0 - lo / s, 0, 255))``,
   ``q = clamp(round_half_even(h / s) + zp, 0, 255)``;
2. ``acc = Σ_k (q - zp)·R'[k, :]`` in int32 (``R' = R - zp_R``, a constant);
3. ``pre = max(float32(acc)·float32(s·s_R), -FLT_MAX) + xw_t`` (a rounded product, a sum;
   ``xw_t`` is row ``t`` of the input projection, computed for all steps before the loop);
4. the gates of :func:`.lstm._gates` without peepholes: ``x_k = clamp(pre_k (+ b_k), ±clip)``,
   ``i = σ(x_i)``, ``f = σ(x_f)`` (``1 - i`` with ``input_forget``), ``g = tanh(x_c)``,
   ``c = max(c·f, -FLT_MAX) + max(i·g, -FLT_MAX)``, ``o = σ(x_o)``, ``h = tanh(c)·o``, with
   MLAS's logistic and tanh (:mod:`.ort_math`: Horner steps ``a·b + c`` contracted to FMAs,
   as in the fused Relax form).

So for every ``T`` the result equals the unrolled form's bit for bit.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from .ort_math import FLT_MAX, LOGISTIC_P, LOGISTIC_Q, LOGISTIC_RANGE, TANH_P, TANH_Q, TANH_RANGE

#: ``op_pattern`` kOpaque: fusion leaves the loop kernel alone.
OPAQUE = 8

#: Gate activations the loop kernel implements (the ONNX default triple).
LOOP_ACTIVATIONS = ("sigmoid", "tanh", "tanh")


def _f32(value: float) -> tirx.FloatImm:
    return tirx.FloatImm("float32", float(value))


def _horner(x2, coeffs: tuple[float, ...]):
    acc = x2 * _f32(coeffs[0]) + _f32(coeffs[1])
    for c in coeffs[2:]:
        acc = acc * x2 + _f32(c)
    return acc


def logistic(x):
    """MLAS's logistic on a TIR expression (:func:`.ort_math.mlas_logistic`)."""
    v = tirx.min(tirx.max(x, _f32(-LOGISTIC_RANGE)), _f32(LOGISTIC_RANGE))
    v2 = v * v
    y = (_horner(v2, LOGISTIC_P) * v) / _horner(v2, LOGISTIC_Q) + _f32(0.5)
    return tirx.max(y, _f32(0.0))


def tanh(x):
    """MLAS's tanh on a TIR expression (:func:`.ort_math.mlas_tanh`)."""
    v = tirx.min(tirx.max(x, _f32(-TANH_RANGE)), _f32(TANH_RANGE))
    v2 = v * v
    return (v * _horner(v2, TANH_P)) / _horner(v2, TANH_Q)


def _rounded(product):
    return tirx.max(product, _f32(-FLT_MAX))


def recurrence_kernel(batch: int, hidden: int, reverse: bool, clip: float, has_bias: bool,
                      input_forget: bool, w_dtype: str = "int32") -> tirx.PrimFunc:
    """The step loop of one direction: ``(xw [T, B, 4H], R' [H, 4H] w_dtype, s_R [4H],
    bias [4, H], h0 [B, H], c0 [B, H]) → (Y [T, B, H], h_T [B, H], c_T [B, H])``; ``R'`` is
    widened to int32 in the product, ``q - zp`` is held in int16 (it lies in [-255, 255])."""
    four_h = 4 * hidden
    lim = _f32(clip)

    def gate(pre_buf, b, k: int, j, bias_buf):
        x = pre_buf[b, k * hidden + j]
        if has_bias:
            x = x + bias_buf[k, j]
        return tirx.max(tirx.min(x, lim), -lim)

    def forget(i_gate, pre_buf, b, j, bias_buf):
        return _f32(1.0) - i_gate if input_forget else logistic(gate(pre_buf, b, 2, j, bias_buf))

    @T.prim_func(private=True)
    def lstm_recurrence(p_xw: T.handle, w_r: T.Buffer((hidden, four_h), w_dtype),
                        r_scale: T.Buffer((four_h,), "float32"),
                        bias: T.Buffer((4, hidden), "float32"),
                        h0: T.Buffer((batch, hidden), "float32"),
                        c0: T.Buffer((batch, hidden), "float32"), p_y: T.handle,
                        h_out: T.Buffer((batch, hidden), "float32"),
                        c_out: T.Buffer((batch, hidden), "float32")):
        T.func_attr({"tir.noalias": True, "op_pattern": OPAQUE})
        steps = T.int64()
        xw = T.match_buffer(p_xw, (steps, batch, four_h), "float32")
        y = T.match_buffer(p_y, (steps, batch, hidden), "float32")
        stat = T.alloc_buffer((4,), "float32")
        hq = T.alloc_buffer((batch, hidden), "int16")
        acc = T.alloc_buffer((batch, four_h), "int32")
        pre = T.alloc_buffer((batch, four_h), "float32")
        for b, j in T.grid(batch, hidden):
            h_out[b, j] = h0[b, j]
            c_out[b, j] = c0[b, j]
        for s in T.serial(steps):
            # stat: hi, lo, scale, zero point (as float32)
            stat[0] = T.float32(0.0)
            stat[1] = T.float32(0.0)
            for b, j in T.grid(batch, hidden):
                stat[0] = T.max(stat[0], h_out[b, j])
                stat[1] = T.min(stat[1], h_out[b, j])
            stat[2] = T.Select(stat[0] == stat[1], T.float32(1.0),
                               (stat[0] - stat[1]) / T.float32(255.0))
            stat[3] = T.round(T.max(T.min(T.float32(0.0) - stat[1] / stat[2],
                                          T.float32(255.0)), T.float32(0.0)))
            for b, j in T.grid(batch, hidden):
                hq[b, j] = T.Cast("int16", T.max(T.min(T.round(h_out[b, j] / stat[2])
                                                       + stat[3], T.float32(255.0)),
                                                 T.float32(0.0)) - stat[3])
            for b, j in T.grid(batch, four_h):
                acc[b, j] = 0
            for b, k, j in T.grid(batch, hidden, four_h):
                acc[b, j] = acc[b, j] + T.Cast("int32", hq[b, k]) * T.Cast("int32", w_r[k, j])
            for b, j in T.grid(batch, four_h):
                pre[b, j] = _rounded(T.Cast("float32", acc[b, j]) * (stat[2] * r_scale[j])) \
                    + xw[steps - 1 - s if reverse else s, b, j]
            for b, j in T.grid(batch, hidden):
                c_out[b, j] = _rounded(c_out[b, j] * forget(logistic(gate(pre, b, 0, j, bias)),
                                                           pre, b, j, bias)) \
                    + _rounded(logistic(gate(pre, b, 0, j, bias)) * tanh(gate(pre, b, 3, j, bias)))
                h_out[b, j] = tanh(c_out[b, j]) * logistic(gate(pre, b, 1, j, bias))
                y[steps - 1 - s if reverse else s, b, j] = h_out[b, j]

    return lstm_recurrence

