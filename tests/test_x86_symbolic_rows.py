"""x86 row and spatial schedules of PrimFuncs with symbolic extents
(:mod:`tvm_qdq.backend.x86.schedules.symbolic_rows`).

The PrimFuncs come from TVM's legalization (and fusion) of small Relax functions whose
tensors have a symbolic batch ``b`` and sequence length ``s``: softmax over ``[b, 12, s, s]``
(the reduced axis symbolic too), layer norm over ``[b, s, 384]``, the whole-tensor min/max of
dynamic quantization and a requantize row. Each is scheduled by the x86 rules, built once, and
run at every ``b`` in (1, 4) and ``s`` in (1, 8, 77, 256): the outputs must be bit-identical
to the unscheduled function's (TVM's default build), and the main part must be vector code.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import relax, s_tir, te, tirx
from tvm.sym import Analyzer

from tvm_qdq.backend.x86.kernels import Conv2dSpec, depthwise_conv2d_nhwc
from tvm_qdq.backend.x86.lower import fuse_passes
from tvm_qdq.backend.x86.schedules import RULES, Kernel, lowers, schedule_function
from tvm_qdq.backend.x86.schedules.lut_gather import has_vbmi
from tvm_qdq.backend.x86.schedules.symbolic_rows import (
    SymbolicLoops,
    divides,
    known_divisor,
    nominal_size,
)
from tvm_qdq.targets import resolve_target

TARGET = resolve_target("x86")
BATCHES = (1, 4)
SEQS = (1, 8, 77, 256)
HIDDEN = 384
HEADS = 12

B = tirx.Var("b", "int64")
S = tirx.Var("s", "int64")


def _softmax(x: relax.Expr) -> relax.Expr:
    return relax.op.nn.softmax(x, -1)


def _layer_norm(x: relax.Expr) -> relax.Expr:
    gamma = relax.const(np.linspace(0.5, 1.5, HIDDEN, dtype="float32"))
    beta = relax.const(np.linspace(-0.2, 0.2, HIDDEN, dtype="float32"))
    return relax.op.nn.layer_norm(x, gamma, beta, [-1])


def _dynamic_range(x: relax.Expr) -> relax.Expr:
    """DynamicQuantizeLinear's range: ``max(x) − min(x)`` of the whole tensor, with 0 in it."""
    zero = relax.const(0.0, "float32")
    return relax.op.subtract(relax.op.maximum(relax.op.max(x), zero),
                             relax.op.minimum(relax.op.min(x), zero))


def _requantize(x: relax.Expr) -> relax.Expr:
    """int32 accumulators to uint8: ``clip(round(x · 0.0123) + 128, 0, 255)``."""
    scaled = relax.op.round(relax.op.multiply(relax.op.astype(x, "float32"),
                                              relax.const(0.0123, "float32")))
    shifted = relax.op.add(scaled, relax.const(128.0, "float32"))
    return relax.op.astype(relax.op.clip(shifted, 0, 255), "uint8")


def _byte_lookup(x: relax.Expr) -> relax.Expr:
    """A 256-entry uint8 table indexed by the uint8 codes (the integer pass's folded LUT)."""
    table = np.random.default_rng(0).integers(0, 256, 256).astype("uint8")
    return relax.op.take(relax.const(table, "uint8"), x, axis=0, mode="clip")


def _head_split(x: relax.Expr) -> relax.Expr:
    """``[b, s, 12, 32] → [b, 12, s, 32]`` (static last axis)."""
    return relax.op.permute_dims(x, [0, 2, 1, 3])


def _key_transpose(x: relax.Expr) -> relax.Expr:
    """``[b, 12, s, 32] → [b, 12, 32, s]`` (symbolic last axis: main part + tail)."""
    return relax.op.permute_dims(x, [0, 1, 3, 2])


def _argmax(x: relax.Expr) -> relax.Expr:
    """A row reduction with two combined values (bound with ``let`` in TIR)."""
    return relax.op.argmax(x, axis=-1)


#: name: (graph, input shape, input dtype, the rule expected).
CASES = {
    "softmax": (_softmax, (B, HEADS, S, S), "float32", "row_reduce"),
    "layer_norm": (_layer_norm, (B, S, HIDDEN), "float32", "row_reduce"),
    "argmax": (_argmax, (B, S, HIDDEN), "float32", "row_reduce"),
    "dynamic_range": (_dynamic_range, (B, S, HIDDEN), "float32", "row_allreduce"),
    "requantize": (_requantize, (B, S, HIDDEN), "int32", "generic"),
    "head_split": (_head_split, (B, S, HEADS, 32), "uint8", "row_copy"),
    "key_transpose": (_key_transpose, (B, HEADS, S, 32), "uint8", "row_copy"),
    "byte_lookup": (_byte_lookup, (B, S, HIDDEN), "uint8",
                    "lut_vbmi" if has_vbmi(TARGET) else "generic"),
}


def _primfunc(case: str, shape: tuple | None = None) -> tirx.PrimFunc:
    """The one fused PrimFunc of the case's Relax function (legalized, scalar chains
    grouped and fused as the x86 lowering does), for the symbolic shape or a static
    ``shape``."""
    graph, sym_shape, dtype, _ = CASES[case]
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape or sym_shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(graph(x))
        bb.emit_func_output(out)
    mod = fuse_passes()(bb.get())
    funcs = [f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc)]
    assert len(funcs) == 1, [g.name_hint for g in mod.functions]
    return funcs[0].with_attr("global_symbol", "main")


def _static_shape(case: str, batch: int, seq: int) -> tuple[int, ...]:
    values = {"b": batch, "s": seq}
    return tuple(values[d.name] if isinstance(d, tirx.Var) else d for d in CASES[case][1])


def _build(func: tirx.PrimFunc) -> tvm.runtime.Module:
    return tvm.compile(tvm.IRModule({"main": func}), TARGET)


def _asm(lib) -> str:
    def source(mod) -> str:
        try:
            text = mod.inspect_source("asm")
        except Exception:  # noqa: BLE001 - a module without assembly
            text = ""
        return text + "".join(source(m) for m in mod.imports)
    return source(lib.mod)


def _sizes(shape, batch: int, seq: int) -> list[int]:
    """A buffer shape at ``b = batch``, ``s = seq`` (the variables by name: each PrimFunc
    has its own)."""
    values = {"b": batch, "s": seq}

    def value(var: tirx.Var):
        return tirx.const(values[var.name], str(var.ty)) if var.name in values else var

    return [int(Analyzer().simplify(tvm_ffi.structural_map(d, (tirx.Var, value))))
            for d in shape]


def _inputs(func: tirx.PrimFunc, batch: int, seq: int, rng: np.random.Generator) -> list:
    """Input and output tensors of ``func`` at ``b = batch``, ``s = seq``."""
    tensors = []
    for i, param in enumerate(func.params):
        ty = param.ty
        shape = _sizes(ty.shape, batch, seq)
        dtype = str(ty.dtype)
        if i == 0 and "float" in dtype:
            value = rng.normal(0.0, 3.0, shape).astype(dtype)
        elif i == 0 and dtype == "uint8":
            value = rng.integers(0, 256, shape).astype(dtype)
        elif i == 0:
            value = rng.integers(-40000, 40000, shape).astype(dtype)
        else:
            value = np.zeros(shape, dtype)
        tensors.append(tvm.runtime.tensor(value))
    return tensors


def _run(lib, func: tirx.PrimFunc, batch: int, seq: int) -> list[np.ndarray]:
    tensors = _inputs(func, batch, seq, np.random.default_rng(batch * 1000 + seq))
    lib["main"](*tensors)
    return [t.numpy() for t in tensors[1:]]


def _scheduled(func: tirx.PrimFunc) -> tuple[tirx.PrimFunc, str]:
    with TARGET:
        return schedule_function(func, target=TARGET)


@pytest.mark.parametrize("case", list(CASES))
def test_symbolic_schedule_bit_identical_to_default_build(case: str) -> None:
    """One build of the scheduled symbolic function: every (b, s) bit-identical to the
    unscheduled function, the expected rule applied, vector code in the main part."""
    func = _primfunc(case)
    scheduled, kind = _scheduled(func)
    assert kind == CASES[case][3], kind
    lib, plain = _build(scheduled), _build(func)
    for batch in BATCHES:
        for seq in SEQS:
            for got, want in zip(_run(lib, scheduled, batch, seq), _run(plain, func, batch, seq),
                                 strict=True):
                np.testing.assert_array_equal(got, want, err_msg=f"{case} b={batch} s={seq}")
    assert re.search(r"\bv\w+\s+[^\n]*%[yz]mm", _asm(lib)), "no 256/512-bit vector instruction"


@pytest.mark.parametrize("case", ["softmax", "layer_norm"])
def test_row_reduce_main_part_has_no_predicate(case: str) -> None:
    """The row tile loop is split into a main part whose blocks are predicate-free (the
    vectorized lanes) and a ``_tail`` copy (narrower vectors and scalars, each within the
    rows left)."""
    scheduled, _ = _scheduled(_primfunc(case))
    predicated: dict[str, bool] = {}

    def visit(realize) -> None:
        predicated[str(realize.block.name_hint)] = not (
            isinstance(realize.predicate, tirx.IntImm) and int(realize.predicate) == 1)

    tvm_ffi.structural_walk(scheduled.body, (s_tir.SBlockRealize, visit))
    tails = {name for name in predicated if "_tail" in name}
    assert tails, predicated
    assert not any(p for name, p in predicated.items() if name not in tails), predicated
    assert "T.vectorized" in scheduled.script()


@pytest.mark.parametrize("case", list(CASES))
def test_static_shapes_schedule_unchanged(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A static shape goes through the static schedule: no split is ever recorded for a
    main part + tail, no ``_tail`` block, and the result is the same as with the rewrite
    disabled."""
    func = _primfunc(case, _static_shape(case, 2, 8))
    recorded: list[bool] = []
    original = SymbolicLoops.apply

    def apply(self: SymbolicLoops, f: tirx.PrimFunc) -> tirx.PrimFunc:
        recorded.append(bool(self))
        return original(self, f)

    monkeypatch.setattr(SymbolicLoops, "apply", apply)
    scheduled, kind = _scheduled(func)
    assert kind == CASES[case][3], kind
    assert not any(recorded), recorded
    assert "_tail" not in scheduled.script()
    monkeypatch.setattr(SymbolicLoops, "apply", lambda self, f: f)
    tvm.ir.assert_structural_equal(scheduled, _scheduled(func)[0])


def test_known_divisor_and_nominal_size() -> None:
    assert known_divisor(B * S * HIDDEN) == HIDDEN
    assert known_divisor(B * HEADS * S) == HEADS
    assert known_divisor(tirx.IntImm("int64", 48)) == 48
    assert divides(64, B * S * HIDDEN) and not divides(16, B * HEADS * S)
    assert nominal_size(B * S) == 64 * 64


def test_every_rule_declines_or_schedules_symbolic() -> None:
    """No rule raises on a symbolic function outside ``apply`` (dispatch never crashes)."""
    for case in CASES:
        kernel = Kernel(_primfunc(case), case, TARGET)
        with TARGET:
            for rule in RULES:
                if rule.applies(kernel):
                    try:
                        scheduled = rule.apply(kernel)
                    except Exception:  # noqa: BLE001, S112 - declining by raising is allowed
                        continue
                    assert lowers(scheduled, TARGET), (case, rule.kind)


@pytest.mark.parametrize("case", ["softmax", "layer_norm", "dynamic_range", "key_transpose"])
def test_print_times_symbolic_vs_static(case: str) -> None:
    """Not asserted: the time of the symbolic build against a static build at s = 128/256."""
    func = _primfunc(case)
    lib = _build(_scheduled(func)[0])
    for seq in (128, 256):
        static = _primfunc(case, _static_shape(case, 1, seq))
        static_lib = _build(_scheduled(static)[0])
        times = []
        for built, f in ((lib, func), (static_lib, static)):
            tensors = _inputs(f, 1, seq, np.random.default_rng(0))
            evaluator = built.mod.time_evaluator("main", tvm.cpu(), number=20, repeat=3)
            times.append(min(evaluator(*tensors).results) * 1e6)
        print(f"{case} s={seq}: symbolic {times[0]:.1f} us, static {times[1]:.1f} us")


def _depthwise_func(width: tirx.PrimExpr | int) -> tirx.PrimFunc:
    """A 3×3 depthwise conv (padding 1) over ``[1, 8, width, 32]`` uint8 with its epilogue
    ``acc >> 2`` as int16: the x86 kernel and what the lowering fuses into it."""
    spec = Conv2dSpec(n=1, c=32, h=8, w=width, o=32, kh=3, kw=3, strides=(1, 1),
                      padding=(1, 1, 1, 1), dilation=(1, 1), in_dtype="uint8",
                      out_dtype="int32")
    x = te.placeholder((1, 8, width, 32), "uint8", name="x")
    wd = te.placeholder((3, 3, 32), "int8", name="wd")
    acc = depthwise_conv2d_nhwc(x, wd, spec)
    out = te.compute((1, 8, width, 32), lambda n, h, w, c: (acc[n, h, w, c] >> 2).astype("int16"),
                     name="rq")
    return te.create_prim_func([x, wd, out]).with_attr("global_symbol", "main")


def test_depthwise_symbolic_width() -> None:
    """A symbolic image width: the depthwise schedule (pixel tiles + tail) from one build,
    exact against numpy at widths 1, 5, 16, 77; the static schedule has no tail."""
    scheduled, kind = _scheduled(_depthwise_func(tirx.Var("w", "int64")))
    assert kind == "depthwise", kind
    assert "_tail" in scheduled.script()
    lib = _build(scheduled)
    rng = np.random.default_rng(0)
    wd = rng.integers(-128, 128, (3, 3, 32)).astype("int8")
    for width in (1, 5, 16, 77):
        x = rng.integers(0, 256, (1, 8, width, 32)).astype("uint8")
        padded = np.pad(x.astype(np.int64), ((0, 0), (1, 1), (1, 1), (0, 0)))
        ref = sum(padded[:, kh:kh + 8, kw:kw + width, :] * wd[kh, kw]
                  for kh in range(3) for kw in range(3))
        out = tvm.runtime.empty((1, 8, width, 32), "int16")
        lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(wd), out)
        np.testing.assert_array_equal(out.numpy(), (ref >> 2).astype("int16"), f"w={width}")
    assert "_tail" not in _scheduled(_depthwise_func(77))[0].script()


#: Other symbolic functions the schedule dispatch sees: (graph, input types).
OTHERS = {
    "int16_matmul": (lambda a, c: relax.op.matmul(a, c, out_dtype="int32"),
                     [((B, HEADS, S, 32), "int16"), ((B, HEADS, 32, S), "int16")]),
    "conv2d": (lambda a, w: relax.op.nn.conv2d(a, w, padding=1, out_dtype="int32"),
               [((1, 8, 16, S), "int32"), ((16, 8, 3, 3), "int32")]),
    "max_pool": (lambda a: relax.op.nn.max_pool2d(a, (2, 2), (2, 2)),
                 [((1, 8, 16, S), "float32")]),
    "sum": (lambda a: relax.op.sum(a), [((B, S, HIDDEN), "float32")]),
    "gelu": (lambda a: relax.op.nn.gelu(a), [((B, S, HIDDEN), "float32")]),
    "concat": (lambda a, c: relax.op.concat([a, c], axis=1),
               [((B, S, HIDDEN), "float32"), ((B, S, HIDDEN), "float32")]),
}


@pytest.mark.parametrize("case", list(OTHERS))
def test_dispatch_on_other_symbolic_functions(case: str) -> None:
    """Each fused PrimFunc of other ops with symbolic extents: some rule schedules it (or
    none, leaving it as it is), and its outputs are bit-identical to the default build."""
    graph, types = OTHERS[case]
    params = [relax.Var(f"x{i}", relax.TensorType(shape, dtype))
              for i, (shape, dtype) in enumerate(types)]
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(graph(*params))
        bb.emit_func_output(out)
    mod = fuse_passes()(bb.get())
    for gvar, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        func = func.with_attr("global_symbol", "main")
        scheduled, _ = _scheduled(func)
        lib, plain = _build(scheduled), _build(func)
        for batch, seq in ((1, 8), (2, 77)):
            got = _run_all(lib, scheduled, batch, seq, len(types))
            want = _run_all(plain, func, batch, seq, len(types))
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w, err_msg=f"{gvar.name_hint} s={seq}")


def _run_all(lib, func: tirx.PrimFunc, batch: int, seq: int, n_inputs: int) -> list:
    """Outputs of ``func`` with every one of its ``n_inputs`` inputs random."""
    rng = np.random.default_rng(seq)
    tensors = []
    for i, param in enumerate(func.params):
        shape = _sizes(param.ty.shape, batch, seq)
        dtype = str(param.ty.dtype)
        if i < n_inputs:
            value = (rng.normal(0, 3, shape) if "float" in dtype
                     else rng.integers(-300, 300, shape)).astype(dtype)
        else:
            value = np.zeros(shape, dtype)
        tensors.append(tvm.runtime.tensor(value))
    lib["main"](*tensors)
    return [t.numpy() for t in tensors[n_inputs:]]
