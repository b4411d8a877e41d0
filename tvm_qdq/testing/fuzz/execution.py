"""Running a fuzz model: ONNX Runtime as the reference (every node as written) and tvm-qdq."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from ..oracle import run_ort

#: ORT's reference: every node as written (optimized sessions rewrite 16-bit QDQ lossy).
ORT_REFERENCE_LEVEL = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def run_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of ``model`` in ONNX Runtime with graph optimizations off."""
    return run_ort(model, feeds, optimization_level=ORT_REFERENCE_LEVEL)


def compile_and_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    """``(compiled, outputs)`` of ``model`` compiled by tvm-qdq for x86 and run on ``feeds``."""
    import tvm_qdq  # local import: building specs needs no TVM

    compiled = tvm_qdq.compile(model, target="x86")
    return compiled, compiled.run(feeds)
