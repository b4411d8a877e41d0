"""Hexagon (HVX) target: integer kernels with ``vrmpy``, one freestanding ELF per model, run
and profiled under ``qemu-hexagon``.

Entry points:

* :data:`PRESETS` / :func:`hexagon_target`: target dicts (``"hexagon"`` = v68, 128-byte HVX);
* :func:`compile_hexagon` (integer Relax module → :class:`HexagonCompiled`) and
  :func:`compile_model` (ONNX → :class:`HexagonCompiled`);
* :class:`HexagonCompiled`: ``run(feeds)`` like ``Compiled.run``, ``profile``,
  ``instruction_mix``, ``export``; :func:`load_hexagon` reads an export back;
* :func:`missing_tools` / :data:`DEBIAN_PACKAGES`: what the toolchain needs.
"""

from .target import ARCHES, PRESETS, hexagon_target, is_hexagon
from .toolchain import DEBIAN_PACKAGES, ToolchainError, find_toolchain, missing_tools


def __getattr__(name: str):
    # compiled.py imports tvm_qdq.dtypes/errors; keep the package import light for presets.py
    if name in ("HexagonCompiled", "compile_hexagon", "compile_model", "load_hexagon",
                "Profile", "KernelProfile"):
        from . import compiled

        return getattr(compiled, name)
    raise AttributeError(name)


__all__ = [
    "ARCHES", "DEBIAN_PACKAGES", "PRESETS", "HexagonCompiled", "KernelProfile", "Profile",
    "ToolchainError", "compile_hexagon", "compile_model", "find_toolchain", "hexagon_target",
    "is_hexagon", "load_hexagon", "missing_tools",
]
