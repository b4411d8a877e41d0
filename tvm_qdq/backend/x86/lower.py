"""``lower_integer_kernels``: integer Relax module → scheduled x86 kernels (before tvm.compile).

The steps, in the order :func:`lower_integer_kernels` calls them:

1. :func:`.rounding.exact_float_rounding`: the integer IR's ``tvm_qdq.requantize`` /
   ``tvm_qdq.requantize_sum`` ops become their x86 forms (saturate on the accumulator, then
   the float64 multiply-round; sums in exact float64 where their bound is proved, else the
   default int64 form);
2. :func:`rewrite_kernels`: conv / matmul become ``call_tir`` to the VNNI and depthwise kernels
   of :mod:`.kernels` (the choice: :mod:`.kernel_selection`), NHWC propagated through the ops
   that follow the layout (:mod:`.layout`);
3. :func:`tvm_qdq.backend.fast_math.use_fast_math`: vectorizable float32 ``erf`` / ``exp``;
4. :func:`fuse_passes`: TVM's legalization and fusion (:mod:`tvm_qdq.backend.fusion`), with the
   scalar side computations grouped first (:mod:`.group_scalars`); the kernels are
   output-elementwise-fusable, so each requantize epilogue (and residual add) fuses into its
   conv / matmul;
5. :func:`schedule_module`: every PrimFunc gets the first schedule rule that applies
   (:mod:`.schedules`); a VNNI kernel's register tile comes from the ``tiles`` source passed
   in (the tuning database's, :func:`.tuning_db.stored_tiles`) or the heuristic.

The result only holds ``call_tir`` to scheduled PrimFuncs; ``tvm.compile(mod, target)`` with
the default pipeline finishes it (its ``LegalizeOps`` has nothing left to do).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import tvm
from tvm import tirx

from ..fast_math import use_fast_math
from ..fusion import legalize_and_fuse
from .amx import has_amx, request_permission
from .group_scalars import group_scalar_chains
from .intrin import has_vnni
from .kernel_selection import KernelRewriter
from .layout import rewrite_module
from .profile import kernel_macs
from .rounding import exact_float_rounding
from .schedules import schedule_function
from .tuning_db import TileSource


@dataclass
class LoweringReport:
    """What :func:`lower_integer_kernels` did: kernels emitted and schedules applied."""

    kernels: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    schedules: dict[str, str] = field(default_factory=dict)
    #: int64 rounding shifts rewritten to their exact float64 form (:mod:`.rounding`).
    float_roundings: int = 0  # requantize_sum ops given the exact float64 form

    def to_json(self) -> str:
        return json.dumps({"kernels": self.kernels, "skipped": self.skipped,
                           "schedules": self.schedules,
                           "float_roundings": self.float_roundings})


def rewrite_kernels(mod: tvm.IRModule, target: tvm.target.Target,
                    report: LoweringReport | None = None) -> tvm.IRModule:
    """Step 2: conv / matmul → x86 kernels (``call_tir``), NHWC propagated."""
    report = report if report is not None else LoweringReport()
    vnni = has_vnni(target)
    amx = vnni and has_amx(target) and request_permission()
    return rewrite_module(mod, lambda bb: KernelRewriter(bb, vnni, report, amx=amx))


def fuse_passes() -> tvm.transform.Pass:
    """Step 4: legalize to TIR and fuse, with the scalar side computations (dynamic
    quantization's min / max / scale / zero point) grouped into one kernel each first."""
    return legalize_and_fuse(tvm.transform.module_pass(
        lambda mod, _ctx: group_scalar_chains(mod), opt_level=0, name="GroupScalarChains"))


def schedule_module(mod: tvm.IRModule, report: LoweringReport | None = None,
                    tiles: TileSource | None = None,
                    target: tvm.target.Target | None = None) -> tvm.IRModule:
    """Step 5: schedule every PrimFunc of ``mod`` not scheduled yet (:mod:`.schedules`)."""
    updates = {}
    for gvar, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and "tvm_qdq.scheduled" in func.attrs:
            continue
        macs, kernel = kernel_macs(func)
        new, kind = schedule_function(func, tiles, gvar.name_hint, target)
        if report is not None:
            report.schedules[gvar.name_hint] = kind
        updates[gvar] = new.with_attrs({"tvm_qdq.scheduled": kind, "tvm_qdq.macs": macs,
                                        "tvm_qdq.kernel": kernel})
    for gvar, func in updates.items():
        mod[gvar] = func
    return mod


def fuse_integer_kernels(mod: tvm.IRModule, target: tvm.target.Target,
                         report: LoweringReport | None = None) -> tvm.IRModule:
    """Steps 1-4: the fused module whose PrimFuncs :func:`schedule_module` schedules (the
    VNNI ones are the kernels the tuning database keys)."""
    report = report if report is not None else LoweringReport()
    with target:
        mod, report.float_roundings = exact_float_rounding(mod)
        mod = rewrite_kernels(mod, target, report)
        mod = use_fast_math(mod)  # vectorizable float32 erf / exp (see ..fast_math)
        return fuse_passes()(mod)


def lower_integer_kernels(
    mod: tvm.IRModule,
    target: tvm.target.Target,
    *,
    tiles: TileSource | None = None,
    report: LoweringReport | None = None,
) -> tvm.IRModule:
    """Lower the integer module's conv2d/matmul to scheduled AVX-512 VNNI kernels.

    Call it just before ``tvm.compile(mod, target)``. The returned module holds only
    ``call_tir`` to scheduled PrimFuncs (conv/matmul with their fused requantize epilogues,
    depthwise conv, and every other op legalized, fused and vectorized). On a target without
    AVX-512 VNNI the conv/matmul stay TVM's own (legalized, fused, scheduled). Numerics are
    unchanged: every kernel is exact integer arithmetic; every other op is TVM's legalization.

    ``tiles`` gives each VNNI kernel its register tile (e.g. the tuning database's,
    :func:`.tuning_db.stored_tiles`); without it, or where it gives None, the heuristic
    picks. ``report`` collects the kernels emitted, the ops left to TVM and the schedule
    applied to each PrimFunc (also attached as the module attribute ``tvm_qdq.x86_lowering``).
    """
    if isinstance(target, dict | str):
        target = tvm.target.Target(target)
    report = report if report is not None else LoweringReport()
    mod = fuse_integer_kernels(mod, target, report)
    mod = schedule_module(mod, report, tiles, target)
    return mod.with_attr("tvm_qdq.x86_lowering", report.to_json())


__all__: Sequence[str] = [
    "LoweringReport",
    "fuse_integer_kernels",
    "fuse_passes",
    "lower_integer_kernels",
    "rewrite_kernels",
    "schedule_module",
]
