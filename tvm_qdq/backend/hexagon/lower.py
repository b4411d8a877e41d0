"""Integer Relax module → Hexagon kernels and a static plan.

1. :func:`~.kernels.rewrite_dot_products` replaces every integer conv2d / matmul with a
   constant weight whose operands suit ``vrmpy`` by a ``call_tir`` to a kernel of
   :mod:`.kernels` (marked output-elementwise-fusable);
2. with ``requantize="fixed"`` (the default) :func:`~.requant.fixed_point_requantize` turns
   the requantize ops (``round(float64(acc) · m)``) into multiplier + shift
   integer kernels that fuse into the conv / matmul epilogues, and
   :func:`~.requant_add.fixed_point_add` turns the Add's sums into int32 lanes (with
   ``"float"`` both get their default forms, :mod:`tvm_qdq.qnn.legalize`);
3. :func:`tvm_qdq.backend.fast_math.use_fast_math`: float32 ``R.exp``, ``R.erf``,
   ``R.sigmoid``, ``R.nn.gelu`` and ``R.nn.softmax`` (the float islands) become the same
   target-independent TIR polynomials as in the x86 build (no libm call: the image has no
   libm; what other float ops still call is :mod:`.libm`, compiled into the image);
4. :func:`tvm_qdq.backend.fusion.legalize_and_fuse`: TVM's CPU legalization and fusion (the
   same passes as the x86 build, so the integer and float math is the same);
5. :func:`~.plan.make_plan` reads the ``call_tir`` sequence of ``main``
   (:func:`kernel_module`: the PrimFuncs it calls, named by their plan symbols);
6. :func:`~.schedule.schedule_kernels` vectorizes every PrimFunc on HVX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tvm

from ..fusion import legalize_and_fuse
from .plan import Plan, make_plan


@dataclass
class Lowered:
    """The lowered Relax module, its PrimFuncs renamed to C symbols, and the plan."""

    relax_mod: tvm.IRModule
    kernels: tvm.IRModule
    plan: Plan
    notes: dict = field(default_factory=dict)


def kernel_module(mod: tvm.IRModule, plan: Plan) -> tvm.IRModule:
    """The PrimFuncs ``main`` calls, each with its plan symbol as ``global_symbol``."""
    funcs = {}
    for gvar, func in mod.functions.items():
        name = str(gvar.name_hint)
        if isinstance(func, tvm.tirx.PrimFunc) and name in plan.symbols:
            funcs[gvar] = func.with_attr("global_symbol", plan.symbols[name])
    return tvm.IRModule(funcs)


def lower(mod: tvm.IRModule, target: tvm.target.Target, *, vrmpy: bool = True,
          requantize: str = "fixed", schedule: bool = True) -> Lowered:
    """Lower an integer Relax module for ``target`` (see the module docstring)."""
    from ...qnn.legalize import expand_integer_ops
    from ..fast_math import use_fast_math
    from .kernels import rewrite_dot_products
    from .requant import fixed_point_requantize
    from .requant_add import fixed_point_add
    from .schedule import schedule_kernels

    notes: dict = {}
    if vrmpy:
        mod, notes["kernels"] = rewrite_dot_products(mod)
    if requantize == "fixed":
        mod, notes["requantize"] = fixed_point_requantize(mod)
        mod, notes["add"] = fixed_point_add(mod)
    elif requantize == "float":
        mod = expand_integer_ops(mod)
    else:
        raise ValueError(f"requantize must be 'float' or 'fixed', got {requantize!r}")
    mod = use_fast_math(mod)
    with target:
        lowered = legalize_and_fuse()(mod)
    plan = make_plan(lowered)
    kernels = kernel_module(lowered, plan)
    if schedule:
        kernels, notes["schedules"] = schedule_kernels(kernels, target)
    return Lowered(lowered, kernels, plan, notes)


def build_kernels(kernels: tvm.IRModule, target: tvm.target.Target, path: Path) -> Path:
    """Build every kernel for ``target`` into one Hexagon ELF object at ``path``."""
    lib = tvm.tirx.build(kernels, target=target)
    lib.write_to_file(str(path))
    return path


def _kernel_symbol(function: str, symbols: set[str]) -> str | None:
    for sym in symbols:
        if function in (sym, f"{sym}_compute_", f"__tvm_ffi_{sym}"):
            return sym
    return None


def build_for_qemu(kernels: tvm.IRModule, target: tvm.target.Target, path: Path,
                   objdump: str) -> tuple[list[Path], list[str]]:
    """:func:`build_kernels`, then the kernels whose code holds a packet that stores to and
    loads from one address (LLVM packs a spill and its reload so under register pressure,
    e.g. scalar int64 arithmetic; qemu-hexagon 7.2 runs such a pair in the wrong order,
    :func:`.isa.same_address_store_load`) are rebuilt into a second object at LLVM ``-O0``
    (its packetizer bundles only what must be bundled; LLVM 22's ``-disable-packetizer``
    crashes TVM's option parser). Slower code for those kernels only; the device runs the
    packed code correctly. Returns the objects and the symbols rebuilt so."""
    from . import isa
    from .target import target_cpu

    build_kernels(kernels, target, path)
    mcpu, mattr = target_cpu(target)
    dis = isa.disassemble(objdump, path, mcpu, tuple(mattr))
    symbols = {str(f.attrs["global_symbol"]) for f in kernels.functions.values()}
    bad = set()
    for addr in isa.same_address_store_load(dis):
        for name, (lo, hi) in dis.functions.items():
            sym = _kernel_symbol(name, symbols) if lo <= addr < hi else None
            if sym:
                bad.add(sym)
    if not bad:
        return [path], []
    keep = {g: f for g, f in kernels.functions.items()
            if str(f.attrs["global_symbol"]) not in bad}
    solo = {g: f for g, f in kernels.functions.items() if str(f.attrs["global_symbol"]) in bad}
    solo_path = path.with_name(path.stem + "_solo.o")
    config = dict(target.export())
    config["opt-level"] = 0  # LLVM -O0: the packetizer bundles only what must be bundled
    build_kernels(tvm.IRModule(solo), tvm.target.Target(config), solo_path)
    objects = [solo_path]
    if keep:
        build_kernels(tvm.IRModule(keep), target, path)
        objects.insert(0, path)
    return objects, sorted(bad)
