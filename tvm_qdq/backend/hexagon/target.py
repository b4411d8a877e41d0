"""Hexagon target dicts: TVM's LLVM backend with the Hexagon triple and HVX 128-byte vectors.

``{"kind": "hexagon"}`` in TVM 0.27 silently emits host code without the Hexagon SDK, so the
presets are ``kind: llvm`` with ``mtriple: hexagon-unknown-linux-musl``.
"""

from __future__ import annotations

import tvm

#: Hexagon versions the presets know (v68 is the default: integer HVX runs under qemu).
ARCHES = ("v68", "v69", "v73")
TRIPLE = "hexagon-unknown-linux-musl"
#: HVX float (qfloat / IEEE) off: qemu-hexagon does not implement it; the float parts of a
#: quantized model (the input quantize, float islands, and the requantize with
#: ``requantize="float"``) stay scalar IEEE code, like x86's results. The default fixed-point
#: requantize is int32 HVX code (:mod:`.requant`).
NO_HVX_FLOAT = ("-hvx-qfloat", "-hvx-ieee-fp")
#: qemu-hexagon's newest CPU model; it executes v68+ integer and HVX code.
QEMU_CPU = "v67"


def hexagon_target(arch: str = "v68") -> dict:
    """The TVM target dict for Hexagon ``arch`` (``"v68"``, ``"v69"``, ``"v73"``)."""
    arch = arch.lower().removeprefix("hexagon")
    if arch not in ARCHES:
        raise ValueError(f"unknown Hexagon version {arch!r}; known: {', '.join(ARCHES)}")
    return {"kind": "llvm", "mtriple": TRIPLE, "mcpu": f"hexagon{arch}",
            "mattr": [f"+hvx{arch}", "+hvx-length128b", *NO_HVX_FLOAT]}


#: Preset names for :data:`tvm_qdq.targets.PRESETS`.
PRESETS = {
    "hexagon": lambda: hexagon_target("v68"),
    "hexagon-v68": lambda: hexagon_target("v68"),
    "hexagon-v69": lambda: hexagon_target("v69"),
    "hexagon-v73": lambda: hexagon_target("v73"),
}


def is_hexagon(target: tvm.target.Target) -> bool:
    """True for an LLVM target with a Hexagon triple (or ``kind: hexagon``)."""
    triple = str(target.attrs.get("mtriple", "")) if hasattr(target, "attrs") else ""
    return target.kind.name == "hexagon" or "hexagon" in triple


def target_cpu(target: tvm.target.Target) -> tuple[str, list[str]]:
    """``(mcpu, mattr)`` of a Hexagon target (``hexagonv68`` and HVX features by default)."""
    mcpu = str(target.attrs.get("mcpu", "hexagonv68"))
    mattr = [str(a) for a in target.attrs.get("mattr", [])]
    return mcpu, mattr


def has_hvx128(target: tvm.target.Target) -> bool:
    """True when the target enables 128-byte HVX vectors."""
    _, mattr = target_cpu(target)
    return "+hvx-length128b" in mattr and any(a.startswith("+hvxv") for a in mattr)
