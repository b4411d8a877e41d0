"""``com.microsoft.DynamicQuantizeLSTM`` → integer Relax, ORT's CPU kernel step by step.

ORT's quantizer (``quantize_dynamic``) writes this op for every LSTM: the weights ``W``
``[dirs, I, 4H]`` and ``R`` ``[dirs, H, 4H]`` are int8/uint8 with a scale per direction (or
per gate column ``[dirs, 4H]``) and one zero point per direction; gate columns are in ONNX's
``i, o, f, c`` order. What ORT 1.32's CPU kernel computes (``LSTMBase::ComputeImpl`` →
``UniDirectionalLstm`` per direction, ``rnn_helpers.cc: ComputeGemm`` for ``uint8``
weights), and what the converter emits, time steps unrolled (``T`` is static):

1. **Input projection, one GEMM over the whole sequence.** ``X`` ``[T·B, I]`` is quantized
   at run time to uint8 (:func:`~.qoperator.dynamic_quantize`: ``lo = min(min x, 0)``,
   ``hi = max(max x, 0)``, ``s = (hi - lo) / 255`` or ``1`` when ``hi == lo``,
   ``zp = round_half_even(clamp(-lo / s, 0, 255))``, ``q = saturate(round(x / s) + zp)``);
   the integer GEMM ``acc = Σ_k (q - zp)(w - zp_w)`` (int32) is scaled once:
   ``xw = float32(acc) · float32(s · s_w)``. A reverse direction reads the same rows
   backwards (quantizing is element-wise, so reversing first changes nothing).
2. **Each step** quantizes ``h_{t-1}`` ``[B, H]`` the same way (own scale; the all-zero
   initial state gives ``s = 1, zp = 0``) and adds its GEMM to the projection:
   ``pre = float32(acc_h) · float32(s_h · s_r) + xw_t`` — a rounded product, then a rounded
   sum (MLAS's accumulate-mode output processor; no FMA).
3. **Gates** (``deep_cpu_lstm``'s ``GateComputations``): peephole terms ``+= c·p`` (rounded
   product, then sum), ``x = clamp(x + (Wb + Rb), -clip, clip)`` (``clip`` defaults to
   FLT_MAX), ``i = f(x_i)``, ``f = 1 - i`` with ``input_forget`` else ``f(x_f)``,
   ``g = g(x_c)``, ``c_t = c_{t-1}·f + i·g`` (two rounded products, one sum), ``o = f(x_o)``
   (peephole on ``c_t``), ``h_t = h(c_t) · o``.
4. ``sigmoid`` and ``tanh`` are MLAS's FMA3 kernels (:func:`.ort_math.mlas_logistic`,
   :func:`.ort_math.mlas_tanh`): rational polynomials whose Horner steps are FMAs.

Only the products that ORT rounds on their own go through ``max(p, -FLT_MAX)`` (equal to
``p`` for every finite value): LLVM contracts ``a·b + c`` into an FMA in TVM's x86 build, and
the ``max`` keeps such a product rounded, while the polynomial steps are contracted as in
MLAS. With ``batch ≥ 2`` ORT quantizes ``h`` per thread's slice of the batch when it runs
more than one intra-op thread, so ORT's own result depends on its thread count (measured:
batch 4, hidden 16: 320 of 384 ``Y`` elements move, by up to 1.9e-3, from 1 to 2 threads);
this converter follows the one-thread schedule (whole batch), the oracle's.
``sequence_lens`` must be absent or equal to ``T`` for every batch row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tvm import relax

from ...dtypes import QTYPES
from ...qnn.ops import matmul_integer_const, smallest_int_type
from ...relax_utils import partial_shape
from .context import ConvertContext, constant_value
from .lstm_loop import LOOP_ACTIVATIONS, recurrence_kernel
from .ort_math import FLT_MAX, mlas_logistic, mlas_tanh, rounded
from .ort_math import f32 as _f32
from .qoperator import dynamic_quantize


def _relu(x: relax.Expr) -> relax.Expr:
    return relax.op.maximum(x, _f32(0.0))


ACTIVATIONS: dict[str, Callable[[relax.Expr], relax.Expr]] = {
    "sigmoid": mlas_logistic, "tanh": mlas_tanh, "relu": _relu,
}


def _weights(ctx: ConvertContext, w: relax.Expr | None, scale: relax.Expr | None,
             zp: relax.Expr | None, name: str, dirs: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per direction: ``(w - zp_w)`` as int64 ``[K, 4H]`` and the float32 scale (1 or 4H)."""
    values = [constant_value(e) for e in (w, scale, zp)]
    if any(v is None for v in values):
        raise ctx.fail(f"{name}, its scale and zero point must be constants")
    w_value, s_value, z_value = values
    s_value = s_value.astype(np.float32).reshape(dirs, -1)
    # ORT reads one zero point per direction (the first of a per-column vector).
    z_value = z_value.astype(np.int64).reshape(dirs, -1)[:, 0]
    return [(w_value[d].astype(np.int64) - z_value[d], s_value[d]) for d in range(dirs)]


def _scaled_gemm(bb: relax.BlockBuilder, q: relax.Expr, scale: relax.Expr, zp: relax.Expr,
                 w_shift: np.ndarray, w_scale: np.ndarray) -> relax.Expr:
    """``float32(Σ_k (q - zp)·w') · float32(s · s_w)``: integer GEMM, one rounded product."""
    acc, _, _ = matmul_integer_const(bb, q, QTYPES["uint8"], zp, w_shift)
    mult = bb.emit(relax.op.multiply(scale, relax.const(w_scale.reshape(-1))))
    return relax.op.multiply(relax.op.astype(acc, "float32"), mult)


def _direction_state(bb: relax.BlockBuilder, state: relax.Expr | None, d: int,
                     shape: list[int]) -> relax.Expr:
    if state is None:
        return relax.const(np.zeros(shape, np.float32))
    return bb.emit(relax.op.squeeze(relax.op.strided_slice(state, [0], [d], [d + 1]), [0]))


def _attr_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def convert_dynamic_quantize_lstm(ctx: ConvertContext, inputs: list, attrs: dict) -> relax.Expr:
    """DynamicQuantizeLSTM → ``(Y [T, dirs, B, H], Y_h [dirs, B, H], Y_c [dirs, B, H])``.

    The arithmetic is ORT's, step by step (module docstring); gate GEMMs are integer matmuls
    of uint8 activations with the constant ``w - zp_w`` (int32 accumulators).
    """
    bb = ctx.bb
    x, w, r, bias, seq_lens, h0, c0, peep = (inputs[i] if i < len(inputs) else None
                                              for i in range(8))
    w_s, w_z, r_s, r_z = (inputs[i] if i < len(inputs) else None for i in range(8, 12))
    direction = _attr_str(attrs.get("direction", "forward")).lower()
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ctx.fail(f"direction={direction!r} is not an LSTM direction")
    dirs = 2 if direction == "bidirectional" else 1
    hidden = int(attrs["hidden_size"])
    clip = float(attrs.get("clip", FLT_MAX))
    input_forget = bool(int(attrs.get("input_forget", 0)))
    if int(attrs.get("layout", 0)) != 0:
        raise ctx.fail("layout=1 is not supported (ORT refuses it too)")
    names = [_attr_str(a).lower() for a in attrs.get("activations", [])] or \
        ["sigmoid", "tanh", "tanh"] * dirs
    unknown = sorted(set(names) - set(ACTIVATIONS))
    if unknown:
        raise ctx.fail(f"activations {unknown} are not supported (sigmoid, tanh, relu are)")
    steps, batch, _ = partial_shape(x)
    if not isinstance(batch, int):
        raise ctx.fail("the batch dimension must be static (fix it with shapes={...})")
    symbolic = not isinstance(steps, int)
    if symbolic:
        _check_loop_form(ctx, seq_lens, peep, names, dirs)
    elif seq_lens is not None:
        lens = constant_value(seq_lens)
        if lens is None or np.any(lens.reshape(-1) != steps):
            raise ctx.fail("sequence_lens must be absent or a constant equal to the sequence "
                           "length for every batch row")

    w_parts = _weights(ctx, w, w_s, w_z, "W", dirs)
    r_parts = _weights(ctx, r, r_s, r_z, "R", dirs)
    bias_value = constant_value(bias) if bias is not None else None
    peep_value = constant_value(peep) if peep is not None else None
    if (bias is not None and bias_value is None) or (peep is not None and peep_value is None):
        raise ctx.fail("B and P must be constants")

    # With a symbolic T and B > 1, X stays [T, B, I] (no kernel can bind T from rows T·B).
    x_rows = x if symbolic and batch > 1 else bb.emit(relax.op.reshape(x, [steps * batch, -1]))
    xq, xs, xz = dynamic_quantize(ctx, x_rows)
    ys, hs, cs = [], [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        xw = rounded(_scaled_gemm(bb, xq, xs, xz, *w_parts[d]))
        xw = bb.emit(relax.op.reshape(xw, [steps, batch, 4 * hidden]))
        xw_steps = bb.emit(relax.op.split(xw, steps, axis=0)) \
            if not symbolic and steps > 1 else None
        gate_bias = None
        if bias_value is not None:
            b = bias_value[d].astype(np.float32)
            gate_bias = (b[:4 * hidden] + b[4 * hidden:]).reshape(4, hidden)
        p_gates = peep_value[d].astype(np.float32).reshape(3, hidden) if peep is not None \
            else None
        f_act, g_act, h_act = (ACTIVATIONS[n] for n in names[3 * d:3 * d + 3])
        h = _direction_state(bb, h0, d, [batch, hidden])
        c = _direction_state(bb, c0, d, [batch, hidden])
        if symbolic:
            y_d, h, c = _recurrence_loop(bb, xw, r_parts[d], gate_bias, h, c, reverse, clip,
                                         input_forget)
            ys.append(y_d)
            hs.append(h)
            cs.append(c)
            continue
        outs: list[relax.Expr] = [None] * steps
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            x_t = xw if xw_steps is None else relax.TupleGetItem(xw_steps, t)
            x_t = bb.emit(relax.op.reshape(x_t, [batch, 4 * hidden]))
            hq, h_scale, h_zp = dynamic_quantize(ctx, h)
            rec = rounded(_scaled_gemm(bb, hq, h_scale, h_zp, *r_parts[d]))
            pre = bb.emit(relax.op.add(rec, x_t))
            h, c = _gates(bb, pre, c, hidden, gate_bias, p_gates, clip, input_forget,
                          f_act, g_act, h_act)
            outs[t] = h
        ys.append(bb.emit(relax.op.stack(outs, axis=0)))
        hs.append(h)
        cs.append(c)
    y = bb.emit(relax.op.stack(ys, axis=1))
    return relax.Tuple([y, bb.emit(relax.op.stack(hs, axis=0)),
                        bb.emit(relax.op.stack(cs, axis=0))])


def _check_loop_form(ctx: ConvertContext, seq_lens: relax.Expr | None, peep: relax.Expr | None,
                     names: list[str], dirs: int) -> None:
    """A symbolic ``T`` runs the step loop of :mod:`.lstm_loop`, which covers the default
    activations without peepholes or ``sequence_lens``."""
    if seq_lens is not None:
        raise ctx.fail("sequence_lens with a symbolic sequence length is not supported; fix "
                       "the length with shapes={...}")
    if peep is not None or names != list(LOOP_ACTIVATIONS) * dirs:
        raise ctx.fail("with a symbolic sequence length only the default activations "
                       "(sigmoid, tanh, tanh) without peepholes are supported; fix the length "
                       "with shapes={...}")


def _recurrence_loop(bb: relax.BlockBuilder, xw: relax.Expr,
                     r_part: tuple[np.ndarray, np.ndarray], gate_bias: np.ndarray | None,
                     h: relax.Expr, c: relax.Expr, reverse: bool, clip: float,
                     input_forget: bool) -> tuple[relax.Expr, relax.Expr, relax.Expr]:
    """All steps of one direction as one ``call_tir`` of :func:`.lstm_loop.recurrence_kernel`:
    ``(Y [T, B, H], h_T, c_T)`` from the projection ``xw`` ``[T, B, 4H]``."""
    steps, batch, four_h = partial_shape(xw)
    hidden = four_h // 4
    r_shift, r_scale = r_part
    w_dtype = smallest_int_type(int(r_shift.min()), int(r_shift.max()))  # read once a step
    kernel = recurrence_kernel(batch, hidden, reverse, float(np.float32(clip)),
                               gate_bias is not None, input_forget, w_dtype)
    gvar = bb.add_func(kernel, "lstm_recurrence")
    bias = gate_bias if gate_bias is not None else np.zeros((4, hidden), np.float32)
    args = [xw, relax.const(r_shift.astype(w_dtype)),
            relax.const(np.broadcast_to(r_scale.reshape(-1), (four_h,)).astype(np.float32)),
            relax.const(bias.astype(np.float32)), h, c]
    state = relax.TensorType([batch, hidden], "float32")
    out = bb.emit(relax.call_tir(gvar, args, [relax.TensorType([steps, batch, hidden], "float32"),
                                              state, state]))
    return tuple(bb.emit(relax.TupleGetItem(out, k)) for k in range(3))


def _gates(bb: relax.BlockBuilder, pre: relax.Expr, c_prev: relax.Expr, hidden: int,
           bias: np.ndarray | None, peep: np.ndarray | None, clip: float, input_forget: bool,
           f_act, g_act, h_act) -> tuple[relax.Expr, relax.Expr]:
    """One step's gates from ``pre = x·W + h·R`` ``[B, 4H]`` (``i, o, f, c``): ``(h_t, c_t)``."""
    parts = bb.emit(relax.op.split(pre, 4, axis=1))
    gi, go, gf, gc = (relax.TupleGetItem(parts, k) for k in range(4))

    def activate(x: relax.Expr, k: int, act) -> relax.Expr:
        if bias is not None:
            x = relax.op.add(x, relax.const(bias[k]))
        x = relax.op.maximum(relax.op.minimum(x, _f32(clip)), _f32(-clip))
        return bb.emit(act(x))

    def peephole(x: relax.Expr, c: relax.Expr, k: int) -> relax.Expr:
        if peep is None:
            return x
        return relax.op.add(x, rounded(relax.op.multiply(c, relax.const(peep[k]))))

    i = activate(peephole(gi, c_prev, 0), 0, f_act)
    if input_forget:
        f = bb.emit(relax.op.subtract(_f32(1.0), i))
    else:
        f = activate(peephole(gf, c_prev, 2), 2, f_act)
    g = activate(gc, 3, g_act)
    c = bb.emit(relax.op.add(rounded(relax.op.multiply(c_prev, f)),
                             rounded(relax.op.multiply(i, g))))
    o = activate(peephole(go, c, 1), 1, f_act)
    h = bb.emit(relax.op.multiply(h_act(c), o))
    return h, c


# (domain, op_type) → converter(ctx, inputs, attrs); merged into the importer's table.
CONVERTERS: dict[tuple[str, str], Callable] = {
    ("com.microsoft", "DynamicQuantizeLSTM"): convert_dynamic_quantize_lstm,
}
