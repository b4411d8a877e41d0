"""Process-wide TIR op attributes that differ between targets."""

from __future__ import annotations

import contextlib

import tvm


@contextlib.contextmanager
def scalar_nearbyint():
    """Build with ``tirx.nearbyint`` not vectorizable, as TVM ships it.

    The x86 kernels (``tvm_qdq.backend.x86``) mark it vectorizable process-wide; other targets
    (Hexagon: qemu mis-executes the packets that vector form produces) build without it.
    """
    op = tvm.ir.Op.get("tirx.nearbyint")
    saved = op.get_attr("TVectorizable")
    if saved is not None:
        op.reset_attr("TVectorizable")
    try:
        yield
    finally:
        if saved is not None:
            tvm.ir.register_op_attr("tirx.nearbyint", "TVectorizable", saved)
