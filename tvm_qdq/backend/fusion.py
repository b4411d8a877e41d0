"""The legalize-and-fuse step both backends run between their Relax rewrites and their
schedules: TVM's CPU legalization and fusion passes (the ones ``tvm.compile`` uses for llvm),
so every op a backend does not lower itself gets TVM's own integer and float math."""

from __future__ import annotations

import tvm
from tvm import relax


def legalize_and_fuse(*before_fuse: tvm.transform.Pass) -> tvm.transform.Pass:
    """``LegalizeOps``, ``AnnotateTIROpPattern``, ``FoldConstant``, then ``before_fuse``,
    then ``FuseOps``, ``FuseTIR`` and ``DeadCodeElimination``: the kernels a backend marked
    output-elementwise-fusable get their elementwise epilogues fused in."""
    return tvm.transform.Sequential([
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        *before_fuse,
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ])
