"""The table of backends ``tvm_qdq.compile`` and ``tvm_qdq.load`` use.

A target is built by the first backend whose ``families`` hold its family
(:func:`tvm_qdq.targets.target_family`) and whose ``kinds`` (if any) hold its kind; an export
is loaded by the first backend that writes its ``format``. A new target is a folder under
``tvm_qdq/backend/`` with a backend object and one entry here, before the backends it
takes targets from.
"""

from __future__ import annotations

import tvm

from ..targets import target_family
from .base import Backend
from .generic import BACKEND as GENERIC
from .hexagon.backend import BACKEND as HEXAGON
from .x86.backend import BACKEND as X86

BACKENDS: tuple[Backend, ...] = (HEXAGON, X86, GENERIC)


def backend_for_target(target: tvm.target.Target) -> Backend:
    """The backend that builds for ``target``."""
    family = target_family(target)
    for backend in BACKENDS:
        if family in backend.families and (backend.kinds is None
                                           or target.kind.name in backend.kinds):
            return backend
    raise ValueError(f"no tvm-qdq backend builds for the target {target} (family {family})")


def backend_for_format(fmt: str | None) -> Backend:
    """The backend that loads an export of format ``fmt`` (``meta.json``'s ``format``)."""
    for backend in BACKENDS:
        if fmt in backend.formats:
            return backend
    known = ", ".join(sorted({f for b in BACKENDS for f in b.formats}))
    raise ValueError(f"unknown tvm-qdq export format {fmt!r}; known: {known}")
