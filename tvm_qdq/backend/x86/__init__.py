"""x86 (AVX-512 VNNI) kernels and schedules for integer models.

``lower_integer_kernels(mod, target)`` takes the integer Relax module of
``tvm_qdq.to_integer`` and returns it with conv2d / matmul lowered to hand-scheduled VNNI
kernels (weights pre-packed, requantize epilogues fused) and every other op legalized, fused
and vectorized; ``tvm.compile(mod, target)`` builds the result.
"""

import os

# TVM's worker threads spin-wait for the next parallel region (by default 300k iterations,
# milliseconds) before sleeping. On a loaded machine the spinning workers take the cores the
# working ones need and a fork/join waits for a descheduled thread; never spinning costs a
# futex wake-up per parallel region instead. A short spin covers the gap between the kernels
# of one inference and sleeps between inferences. Measured on EfficientNet-Lite0 at 2 threads
# against ORT (no spinning) on the shared 2-core machine, median ORT/tvm-qdq ratio: 0.74-0.83
# with 0, 0.92 with the default, 1.01-1.10 with 3000-30000. Read when TVM's thread pool starts
# (first parallel kernel run); an explicit setting wins.
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "10000")

from .intrin import VNNI_INTRIN, asm_of, has_vnni  # noqa: E402
from .lower import (  # noqa: E402
    LoweringReport,
    lower_integer_kernels,
    rewrite_kernels,
    schedule_module,
)
from .schedules import Tile  # noqa: E402

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
