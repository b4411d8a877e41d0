"""x86 (AVX-512 VNNI) kernels and schedules for integer models.

``lower_integer_kernels(mod, target)`` takes the integer Relax module of
``tvm_qdq.to_integer`` and returns it with conv2d / matmul lowered to hand-scheduled VNNI
kernels (weights pre-packed, requantize epilogues fused) and every other op legalized, fused
and vectorized; ``tvm.compile(mod, target)`` inside ``with build_options():`` builds the
result (:mod:`.backend` is the backend ``tvm_qdq.compile`` uses).

The names below are imported on first use, so importing the package (the backend table
does) loads no kernel code.
"""

from importlib import import_module

_EXPORTS = {
    "VNNI_INTRIN": ".intrin",
    "asm_of": ".intrin",
    "has_vnni": ".intrin",
    "LoweringReport": ".lower",
    "lower_integer_kernels": ".lower",
    "rewrite_kernels": ".lower",
    "schedule_module": ".lower",
    "Tile": ".schedules",
    "build_options": ".backend",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
