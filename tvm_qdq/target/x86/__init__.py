"""x86 (AVX-512 VNNI) kernels and schedules for integer models.

``lower_integer_kernels(mod, target)`` takes the integer Relax module of
``tvm_qdq.to_integer`` and returns it with conv2d / matmul lowered to hand-scheduled VNNI
kernels (weights pre-packed, requantize epilogues fused) and every other op legalized, fused
and vectorized; ``tvm.compile(mod, target)`` builds the result.
"""

import os

# TVM's worker threads spin-wait (by default ~300k iterations) for the next parallel region;
# on a loaded machine the spinning workers take the cores the other workers need and every
# fork/join of a model waits for a descheduled thread (measured: EfficientNet-Lite0 at 2
# threads 2x slower). Idle workers sleep instead, like ONNX Runtime with
# ``session.intra_op.allow_spinning = 0``. Read when TVM's thread pool starts (first parallel
# kernel run); an explicit setting wins.
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")

from .intrin import VNNI_INTRIN, asm_of, has_vnni  # noqa: E402
from .lower import (  # noqa: E402
    LoweringReport,
    lower_integer_kernels,
    rewrite_kernels,
    schedule_module,
)
from .schedule import Tile  # noqa: E402

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
