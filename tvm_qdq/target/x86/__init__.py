"""x86 (AVX-512 VNNI) kernels and schedules for integer models.

``lower_integer_kernels(mod, target)`` takes the integer Relax module of
``tvm_qdq.to_integer`` and returns it with conv2d / matmul lowered to hand-scheduled VNNI
kernels (weights pre-packed, requantize epilogues fused) and every other op legalized, fused
and vectorized; ``tvm.compile(mod, target)`` builds the result.
"""

from .intrin import VNNI_INTRIN, asm_of, has_vnni
from .lower import LoweringReport, lower_integer_kernels, rewrite_kernels, schedule_module
from .schedule import Tile

__all__ = [
    "VNNI_INTRIN",
    "LoweringReport",
    "Tile",
    "asm_of",
    "has_vnni",
    "lower_integer_kernels",
    "rewrite_kernels",
    "schedule_module",
]
