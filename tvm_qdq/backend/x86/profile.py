"""Per-kernel timing of a lowered module (each PrimFunc built and timed on its own).

``kernel_times(lower_integer_kernels(mod, target), target)`` → one :class:`KernelTime` per
PrimFunc, with the multiply-accumulates of its VNNI / depthwise block (as executed,
i.e. including the zero padding of ``C`` to a multiple of 4 and ``O`` to 16) so that
``gmacs`` can be compared with the VNNI peak (:func:`vnni_peak_gmacs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import s_tir, sym, tirx

from ..kernel_tags import AMX, DEPTHWISE, FLOAT_DENSE, VNNI, block_kind
from ..tir_blocks import blocks_of_kind
from ..vm import thread_pool_defaults
from .backend import build_options


@dataclass(frozen=True)
class KernelTime:
    """Best-of-repeats time of one PrimFunc and its (executed) MACs."""

    name: str
    seconds: float
    macs: int
    kind: str

    @property
    def gmacs(self) -> float:
        return self.macs / self.seconds / 1e9 if self.macs else 0.0


def kernel_macs(func: tirx.PrimFunc) -> tuple[int, str]:
    """(MACs of the VNNI / AMX / depthwise / float dense block, kind) or (0, "other"); an AMX
    block (a matmul, or a pointwise conv as one) counts as a matmul. Read from the
    ``tvm_qdq.macs`` attribute once :func:`.lower.schedule_module` has scheduled ``func``.
    A symbolic extent counts as :data:`NOMINAL_EXTENT`."""
    attrs = func.attrs
    if attrs is not None and "tvm_qdq.macs" in attrs:
        return int(attrs["tvm_qdq.macs"]), str(attrs["tvm_qdq.kernel"])
    try:
        sch = s_tir.Schedule(func)
        blocks = blocks_of_kind(sch, VNNI, AMX, DEPTHWISE, FLOAT_DENSE)
    except (RuntimeError, ValueError):
        return 0, "other"
    for block in blocks:
        node = sch.get(block)
        macs = math.prod(_nominal_extent(iv.dom.extent) for iv in node.iter_vars)
        if block_kind(sch, block) == DEPTHWISE:
            return macs, "depthwise"
        if block_kind(sch, block) == AMX:
            return macs, "matmul"
        if block_kind(sch, block) == FLOAT_DENSE:  # float conv: (c, kh, kw); matmul: k
            return macs, "float_conv2d" if _reduction_axes(node) == 3 else "float_matmul"
        return macs, ("conv2d" if _reduction_axes(node) == VNNI_CONV_REDUCTIONS else "matmul")
    return 0, "other"


#: The value a symbolic extent (e.g. a padded row count) counts as in :func:`kernel_macs`.
NOMINAL_EXTENT = 128


def _nominal_extent(extent) -> int:
    return int(extent) if isinstance(extent, tirx.IntImm) else NOMINAL_EXTENT


#: Reduction axes of the VNNI conv block (term, kh, kw, c / 4, 4); the matmul has three
#: (term, k / 4, 4) (:mod:`.kernels`).
VNNI_CONV_REDUCTIONS = 5


def _reduction_axes(node) -> int:
    return sum(1 for iv in node.iter_vars if int(iv.iter_type) != 0)


def _concrete(dim, sizes: dict[str, int]) -> int:
    """A buffer dimension as an int: symbolic variables take their value from ``sizes``
    (by name; a named error when one is missing)."""
    if isinstance(dim, tirx.IntImm):
        return int(dim)
    analyzer = sym.Analyzer()
    for var in tirx.analysis.undefined_vars(dim):
        if var.name not in sizes:
            raise ValueError(f"symbolic dimension {dim}: give a value for '{var.name}' in sizes")
        analyzer.bind(var, tirx.const(sizes[var.name], str(var.ty.dtype)))
    return int(analyzer.simplify(dim))


def _random_args(func: tirx.PrimFunc, rng: np.random.Generator,
                 sizes: dict[str, int] | None = None) -> list:
    args = []
    for param in func.params:
        ty = param.ty
        if not hasattr(ty, "shape"):
            raise TypeError(f"non-buffer parameter {param}")
        shape = [_concrete(s, sizes or {}) for s in ty.shape]
        dtype = str(ty.dtype)
        if "float" in dtype:
            value = rng.random(shape).astype(dtype)
        elif dtype == "bool":
            value = rng.integers(0, 2, shape).astype(bool)
        elif np.dtype(dtype).itemsize >= 4:  # maybe gather indices: keep them in any table
            value = rng.integers(0, 2, shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            value = rng.integers(max(info.min, -100), min(info.max, 100) + 1, shape).astype(dtype)
        args.append(tvm.runtime.tensor(value))
    return args


def time_primfunc(func: tirx.PrimFunc, target: tvm.target.Target, number: int = 50,
                  repeat: int = 15, seed: int = 0, sizes: dict[str, int] | None = None
                  ) -> float:
    """Best of ``repeat`` averages of ``number`` runs of ``func`` on random inputs (seconds);
    ``sizes`` gives the symbolic dimensions of its buffers their values (by name)."""
    func = func.with_attr("global_symbol", "main")
    with build_options():
        lib = tvm.compile(tvm.IRModule({"main": func}), target)
    args = _random_args(func, np.random.default_rng(seed), sizes)
    timer = lib.mod.time_evaluator("main", tvm.cpu(), number=number, repeat=repeat)
    with thread_pool_defaults():
        return float(min(timer(*args).results))


def kernel_times(mod: tvm.IRModule, target: tvm.target.Target, number: int = 50,
                 repeat: int = 15) -> list[KernelTime]:
    """Time every PrimFunc of ``mod`` (largest first)."""
    out = []
    for gvar, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        macs, kind = kernel_macs(func)
        seconds = time_primfunc(func, target, number, repeat)
        out.append(KernelTime(gvar.name_hint, seconds, macs, kind))
    return sorted(out, key=lambda k: -k.seconds)


def bare_kernel_seconds(kind: str, spec: dict, target: tvm.target.Target,
                        terms: int = 1) -> tuple[float, int]:
    """(seconds, executed MACs) of a VNNI conv/matmul alone — int32 accumulators written out,
    no epilogue — for a kernel of :attr:`.lower.LoweringReport.kernels` (``kind``, ``spec``)."""
    from tvm import te

    from . import kernels as K
    from .schedules.vnni import schedule_vnni

    if kind == "vnni_conv2d":
        cs = K.Conv2dSpec(**{**spec, "strides": tuple(spec["strides"]),
                             "padding": tuple(spec["padding"]),
                             "dilation": tuple(spec["dilation"]), "out_dtype": "int32",
                             "in_dtype": "uint8"})
        x = te.placeholder((cs.n, cs.h, cs.w, cs.c), "uint8", name="x")
        wp = te.placeholder((cs.o16 // 16, terms, cs.kh, cs.kw, cs.c4 // 4, 16, 4), "int8",
                            name="wp")
        out = K.conv2d_nhwc_vnni(x, wp, cs)
        macs = cs.n * cs.oh * cs.ow * cs.o16 * cs.c4 * cs.kh * cs.kw * terms
        args = [x, wp, out]
    elif kind == "vnni_matmul":
        ms = K.MatmulSpec(**{**spec, "batch": tuple(spec["batch"]), "out_dtype": "int32",
                             "in_dtype": "uint8"})
        a = te.placeholder((*ms.batch, ms.m, ms.k), "uint8", name="a")
        bp = te.placeholder((ms.n16 // 16, terms, ms.k4 // 4, 16, 4), "int8", name="bp")
        out = K.matmul_vnni(a, bp, ms)
        macs = math.prod(ms.batch) * ms.m * ms.n16 * ms.k4 * terms
        args = [a, bp, out]
    else:
        raise ValueError(f"no bare VNNI kernel for {kind}")
    func = schedule_vnni(te.create_prim_func(args), parallel=False)
    return time_primfunc(func, target), macs


# ----------------------------------------------------------------------------------------------
# Peak
# ----------------------------------------------------------------------------------------------

#: Register tiles (rows × 16-lane column blocks) tried for the peak: each accumulator is an
#: independent vpdpbusd chain.
PEAK_TILES = ((4, 3), (6, 2), (12, 1), (3, 4), (8, 2))
PEAK_STEPS = 2048
_PEAK_K = 64  # the reduction wraps over a 64-byte row: operands stay in L1


def _peak_func(mr: int, nr: int, steps: int) -> tirx.PrimFunc:
    """``C[m, n] = Σ_{q < steps, r < 4} A[m, 4 (q mod 16) + r] · B[n / 16, q mod 16, n mod 16, r]``
    scheduled as a single ``mr × nr`` VNNI register tile (``mr · nr`` independent chains)."""
    from tvm import te

    from ..kernel_tags import tag
    from .schedules.vnni import Tile, schedule_vnni

    a = te.placeholder((mr, _PEAK_K), "uint8", name="a")
    b = te.placeholder((nr, _PEAK_K // 4, 16, 4), "int8", name="b")
    rq = te.reduce_axis((0, steps), name="rq")
    rk = te.reduce_axis((0, 4), name="rk")
    wrap = _PEAK_K // 4
    c = te.compute(
        (mr, nr * 16),
        lambda m, n: te.sum(
            a[m, (rq % wrap) * 4 + rk].astype("int32")
            * b[n // 16, rq % wrap, n % 16, rk].astype("int32"), axis=[rq, rk]),
        name="tq_vnni_peak", attrs=tag(VNNI),
    )
    func = te.create_prim_func([a, b, c])
    return schedule_vnni(func, Tile(mr, 1) if mr > 1 else Tile(1, 1), parallel=False) \
        if nr == 1 else schedule_vnni(func, Tile(mr, nr), parallel=False)


#: The matmul timed by :func:`amx_gmacs`: ``[M, K] @ [K, N]`` (operands in L2).
AMX_PEAK_SHAPE = (256, 1024, 256)


def amx_gmacs(target: tvm.target.Target, shape: tuple[int, int, int] = AMX_PEAK_SHAPE,
              repeat: int = 20) -> float:
    """Single-core GMAC/s of the AMX matmul kernel (:func:`.amx_matmul.matmul_amx`, its
    schedule, int32 output) on ``shape`` = ``(M, K, N)``, uint8 × int8."""
    from tvm import te

    from .amx_matmul import amx_column_width, matmul_amx
    from .kernels import MatmulSpec
    from .schedules.amx import schedule_amx

    m, k, n = shape
    width = amx_column_width(n)
    a = te.placeholder((m, k), "uint8", name="a")
    bp = te.placeholder((n // width, k // 4, width, 4), "int8", name="bp")
    out = matmul_amx(a, bp, MatmulSpec(batch=(), m=m, k=k, n=n, in_dtype="uint8",
                                       out_dtype="int32"))
    func = schedule_amx(te.create_prim_func([a, bp, out]), parallel=False)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    args = [tvm.runtime.tensor(np.ones((m, k), np.uint8)),
            tvm.runtime.tensor(np.ones((n // width, k // 4, width, 4), np.int8)),
            tvm.runtime.tensor(np.zeros((m, n), np.int32))]
    timer = lib.mod.time_evaluator("main", tvm.cpu(), number=20, repeat=repeat)
    return m * k * n / float(min(timer(*args).results)) / 1e9


def vnni_peak_gmacs(target: tvm.target.Target, tiles=PEAK_TILES, steps: int = PEAK_STEPS,
                    repeat: int = 20) -> float:
    """Single-core int8 VNNI peak (GMAC/s): the best register tile of independent ``vpdpbusd``
    accumulator chains over operands in L1 (one vpdpbusd = 16 lanes × 4 u8·s8 = 64 MACs)."""
    best = 0.0
    for mr, nr in tiles:
        func = _peak_func(mr, nr, steps).with_attr("global_symbol", "main")
        lib = tvm.compile(tvm.IRModule({"main": func}), target)
        a = tvm.runtime.tensor(np.ones((mr, _PEAK_K), np.uint8))
        b = tvm.runtime.tensor(np.ones((nr, _PEAK_K // 4, 16, 4), np.int8))
        c = tvm.runtime.tensor(np.zeros((mr, nr * 16), np.int32))
        timer = lib.mod.time_evaluator("main", tvm.cpu(), number=20, repeat=repeat)
        seconds = float(min(timer(a, b, c).results))
        best = max(best, mr * nr * 16 * steps * 4 / seconds / 1e9)
    return best
