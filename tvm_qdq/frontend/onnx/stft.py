"""(filled in by its converter work) ONNX → faithful Relax converters; see ``CONVERTERS``."""

from __future__ import annotations

from collections.abc import Callable

# (domain, op_type) → converter(ctx, inputs, attrs); merged into the importer's table.
CONVERTERS: dict[tuple[str, str], Callable] = {}
