"""Named targets. TVM 0.27 targets are dicts; ``mcpu: native`` is not honoured by its LLVM,
so ``"x86"`` asks LLVM for the host CPU's real name (``znver4`` or ``rocketlake`` on the dev
machines)."""

from __future__ import annotations

from collections.abc import Callable

import tvm


def _host_x86() -> dict:
    """The host CPU as LLVM names it. On CPUs whose LLVM model prefers 256-bit vectors
    although they have AVX-512 (Intel's, e.g. ``rocketlake``/``icelake-server``), that
    preference is turned off: TVM emits 16-lane float32 / int32 vectors, which LLVM would
    otherwise split into two ``ymm`` halves. A CPU with AMX int8 that LLVM's model of it
    lacks (a virtual CPU named after an older model) gets ``+amx-tile,+amx-int8`` when the OS
    grants the tile state (:func:`.backend.x86.amx.host_has_amx`)."""
    from .backend.x86.amx import REQUIRED_FEATURES, host_has_amx

    cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    target = {"kind": "llvm", "mcpu": cpu}
    features = tvm.target.codegen.llvm_get_cpu_features(tvm.target.Target(target))
    mattr = []
    if "avx512f" in features and "prefer-256-bit" in features:
        mattr.append("-prefer-256-bit")
    if host_has_amx():
        mattr += [f"+{f}" for f in REQUIRED_FEATURES if f not in features]
    if mattr:
        target["mattr"] = mattr
    return target


PRESETS: dict[str, Callable[[], dict]] = {
    "x86": _host_x86,
    "host": _host_x86,
    "llvm": lambda: {"kind": "llvm"},
}


def _hexagon_presets() -> dict[str, Callable[[], dict]]:
    from .backend.hexagon.target import PRESETS as HEXAGON

    return HEXAGON


PRESETS.update(_hexagon_presets())


def resolve_target(target: str | dict | tvm.target.Target) -> tvm.target.Target:
    """A preset name, a TVM target dict or a Target → a Target (clear error otherwise)."""
    if isinstance(target, tvm.target.Target):
        return target
    if isinstance(target, str):
        if target not in PRESETS:
            raise ValueError(
                f"unknown target preset {target!r}; presets: {', '.join(sorted(PRESETS))}, "
                "or pass a TVM target dict such as {'kind': 'llvm', 'mcpu': 'znver4'}"
            )
        return tvm.target.Target(PRESETS[target]())
    if isinstance(target, dict):
        return tvm.target.Target(target)
    raise TypeError(f"target must be a preset name, a dict or a tvm Target, got {type(target)}")


def target_family(target: tvm.target.Target) -> str:
    """'x86', 'arm', 'hexagon' or 'other': which dot-product conventions apply."""
    triple = str(target.attrs.get("mtriple", "")) if hasattr(target, "attrs") else ""
    if target.kind.name == "hexagon" or "hexagon" in triple:
        return "hexagon"
    if any(arch in triple for arch in ("aarch64", "arm")):
        return "arm"
    if target.kind.name == "llvm" and (not triple or "x86" in triple):
        return "x86"
    return "other"
