"""The Hexagon backend: one freestanding ELF per model (:mod:`.compiled`), run under qemu."""

from __future__ import annotations

from pathlib import Path

import tvm

from ...errors import StaticShapesRequiredError
from ..base import BuildOptions, model_specs, pass_report
from ..dims import symbolic_dims

#: The export format of :class:`.compiled.HexagonCompiled` (``meta.json``).
FORMAT = "tvm-qdq-hexagon/1"


class HexagonBackend:
    """Integer HVX kernels (``vrmpy``), fixed-point or float64 requantize."""

    name = "hexagon"
    format = FORMAT
    formats = (FORMAT,)
    families = ("hexagon",)
    kinds = None

    def build(self, mod: tvm.IRModule, target: tvm.target.Target, options: BuildOptions):
        from .compiled import compile_hexagon

        inputs, outputs = model_specs(mod)
        symbolic = symbolic_dims(inputs) or symbolic_dims(outputs)
        if symbolic:  # the ELF's buffers are planned for one size
            raise StaticShapesRequiredError("Hexagon", symbolic)
        return compile_hexagon(mod, target, inputs=inputs, outputs=outputs,
                               report=pass_report(mod), requantize=options.requantize or "fixed")

    def load(self, folder: Path):
        from .compiled import load_hexagon

        return load_hexagon(folder)


BACKEND = HexagonBackend()
