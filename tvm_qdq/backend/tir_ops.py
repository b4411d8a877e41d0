"""TIR op attributes set for the duration of one build, never process-wide."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tvm


@contextlib.contextmanager
def scoped_op_attr(op_name: str, key: str, value) -> Iterator[None]:
    """The attribute ``key`` of the op ``op_name`` set to ``value`` inside the block; its
    previous value (or its absence) is restored on exit, also when the block raises."""
    op = tvm.ir.Op.get(op_name)
    saved = op.get_attr(key)
    if saved is not None:
        op.reset_attr(key)
    tvm.ir.register_op_attr(op_name, key, value)
    try:
        yield
    finally:
        op.reset_attr(key)
        if saved is not None:
            tvm.ir.register_op_attr(op_name, key, saved)
