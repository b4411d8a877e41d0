"""The generic backend: TVM's default pipeline (legalize, fuse, default schedules) for every
target no other backend serves (non-LLVM target kinds), and the x86 backend's fallback."""

from __future__ import annotations

from pathlib import Path

import tvm

from .base import BuildOptions, model_bounds, model_specs, pass_report
from .vm import FORMAT, FORMATS, VMCompiledModel, load_vm, prepare


def build_default(mod: tvm.IRModule, target: tvm.target.Target):
    """``tvm.compile`` with TVM's default pipeline and schedules."""
    return tvm.compile(mod, target=target)


class GenericBackend:
    """``tvm.compile`` of the integer module as it is."""

    name = "tvm"
    format = FORMAT
    formats = FORMATS
    families = ("x86", "arm", "other")
    kinds = None

    def build(self, mod: tvm.IRModule, target: tvm.target.Target,
              options: BuildOptions) -> VMCompiledModel:
        inputs, outputs = model_specs(mod)
        bounds = model_bounds(mod)
        executable = build_default(prepare(mod, target, options), target)
        return VMCompiledModel(executable, inputs, outputs, str(target), pass_report(mod),
                               bounds)

    def load(self, folder: Path) -> VMCompiledModel:
        return load_vm(folder)


BACKEND = GenericBackend()
