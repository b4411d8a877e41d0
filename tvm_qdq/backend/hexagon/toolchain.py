"""The Debian tools the Hexagon target needs, found on ``PATH``.

``clang-16`` (compiles the generated driver and the freestanding runtime for
``hexagon-unknown-linux-musl``), ``ld.lld-16`` (links one static ELF), ``llvm-objdump-16``
(instruction mix) and ``qemu-hexagon`` (runs the ELF). They come from the Debian packages
:data:`DEBIAN_PACKAGES`; a host C compiler (``cc``) builds the qemu instruction-count plugin.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

#: Debian packages that provide the tools (``apt-get install -y ...``).
DEBIAN_PACKAGES = ("qemu-user", "clang-16", "lld-16")

_CANDIDATES = {
    "clang": ("clang-16", "clang"),
    "lld": ("ld.lld-16", "ld.lld"),
    "objdump": ("llvm-objdump-16", "llvm-objdump"),
    "nm": ("llvm-nm-16", "llvm-nm"),
    "qemu": ("qemu-hexagon",),
    "host_cc": ("cc", "gcc", "clang-16", "clang"),
}
_PACKAGE_OF = {"clang": "clang-16", "lld": "lld-16", "objdump": "llvm-16 (with clang-16)",
               "nm": "llvm-16 (with clang-16)", "qemu": "qemu-user", "host_cc": "gcc"}


class ToolchainError(RuntimeError):
    """A tool the Hexagon target needs is not installed."""


@dataclass(frozen=True)
class Toolchain:
    """Absolute paths of the tools (``host_cc`` is only needed for instruction counting)."""

    clang: str
    lld: str
    objdump: str
    nm: str
    qemu: str
    host_cc: str | None


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_tools(need_qemu: bool = True) -> list[str]:
    """Names of the missing tools with the Debian package that provides each ([] if none)."""
    missing = []
    for key, names in _CANDIDATES.items():
        if key == "host_cc" or (key == "qemu" and not need_qemu):
            continue
        if _which(names) is None:
            missing.append(f"{names[0]} (Debian package {_PACKAGE_OF[key]})")
    return missing


def find_toolchain(need_qemu: bool = True) -> Toolchain:
    """The tools, or :class:`ToolchainError` naming what to install."""
    missing = missing_tools(need_qemu)
    if missing:
        raise ToolchainError(
            "the Hexagon target needs " + ", ".join(missing)
            + f"; install with: apt-get install -y {' '.join(DEBIAN_PACKAGES)}"
        )
    paths = {key: _which(names) for key, names in _CANDIDATES.items()}
    return Toolchain(**paths)  # type: ignore[arg-type]
