"""Hexagon (HVX) target: integer kernels with ``vrmpy``, one freestanding ELF per model, run
and profiled under ``qemu-hexagon``.

Entry points:

* :data:`PRESETS` / :func:`hexagon_target`: target dicts (``"hexagon"`` = v68, 128-byte HVX);
* ``tvm_qdq.compile(model, "hexagon")`` builds through :mod:`.backend`, which calls
  :func:`compile_hexagon` (integer Relax module → :class:`HexagonCompiled`);
* :class:`HexagonCompiled`: ``run(feeds)`` like every compiled model, ``profile``,
  ``instruction_mix``, ``export``; :func:`load_hexagon` reads an export back;
* :func:`missing_tools` / :data:`DEBIAN_PACKAGES`: what the toolchain needs.
"""

from .target import ARCHES, PRESETS, hexagon_target, is_hexagon
from .toolchain import DEBIAN_PACKAGES, ToolchainError, find_toolchain, missing_tools


def __getattr__(name: str):
    # compiled.py imports the kernel lowering; keep the package import light for the presets
    if name in ("HexagonCompiled", "compile_hexagon", "load_hexagon", "Profile",
                "KernelProfile"):
        from . import compiled

        return getattr(compiled, name)
    raise AttributeError(name)


__all__ = [
    "ARCHES", "DEBIAN_PACKAGES", "PRESETS", "HexagonCompiled", "KernelProfile", "Profile",
    "ToolchainError", "compile_hexagon", "find_toolchain", "hexagon_target", "is_hexagon",
    "load_hexagon", "missing_tools",
]
