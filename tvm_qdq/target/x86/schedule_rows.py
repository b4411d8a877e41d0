"""Schedules for row-wise functions (softmax, layer norm, reductions, gathers).

:func:`row_attempts` returns the (kind, schedule) pairs that apply to a function.
"""

from __future__ import annotations

from collections.abc import Callable

from tvm import tirx


def row_attempts(func: tirx.PrimFunc, names: list[str]
                 ) -> list[tuple[str, Callable[[], tirx.PrimFunc]]]:
    """Specialized schedules for ``func`` (none yet: the generic schedule applies)."""
    return []
