"""The x86 backend: the integer module's kernels lowered by :mod:`.lower` (VNNI conv/matmul,
fused requantize epilogues, vectorized elementwise code), built into a Relax VM.

Every LLVM CPU target that no backend before it in the table serves builds here; on a CPU
without AVX-512 VNNI the conv/matmul stay TVM's own. When the lowering or the build raises,
the model is built with TVM's default schedules (:mod:`..generic`) and a warning says why.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import tvm

from ..base import BuildOptions, model_bounds, model_specs, pass_report
from ..generic import build_default
from ..tir_ops import scoped_op_attr
from ..vm import FORMAT, FORMATS, VMCompiledModel, build_vm, load_vm, prepare


@contextlib.contextmanager
def build_options() -> Iterator[None]:
    """TVM settings of an x86 build, in force inside the block only.

    ``tirx.nearbyint`` (round half to even: what ``R.round`` and the requantize epilogues
    lower to) is ``TVectorizable``: TVM ships it without that attribute, so its vectorizer
    would split every vectorized requantize loop into scalar calls; LLVM lowers the vector
    form to ``vrndscaleps $12``: element by element the same results.
    """
    with scoped_op_attr("tirx.nearbyint", "TVectorizable", True):
        yield


def lower_kernels(mod: tvm.IRModule, target: tvm.target.Target,
                  tuning_db: str | os.PathLike | bool | None) -> tvm.IRModule:
    """:func:`.lower.lower_integer_kernels` with the register tiles of ``tuning_db``."""
    from .lower import lower_integer_kernels
    from .tuning_db import stored_tiles

    return lower_integer_kernels(mod, target, tiles=stored_tiles(tuning_db, target))


class X86Backend:
    """Integer kernels for x86 (AVX-512 VNNI) through the Relax VM."""

    name = "x86"
    format = FORMAT
    formats = FORMATS
    families = ("x86", "arm", "other")
    kinds = ("llvm",)

    def build(self, mod: tvm.IRModule, target: tvm.target.Target,
              options: BuildOptions) -> VMCompiledModel:
        inputs, outputs = model_specs(mod)
        bounds = model_bounds(mod)
        mod = prepare(mod, target, options)
        try:
            with build_options():
                executable = build_vm(lower_kernels(mod, target, options.tuning_db), target)
        except Exception as err:  # a kernel the x86 lowering cannot build: TVM's default path
            warnings.warn(f"tvm-qdq: x86 kernel lowering failed ({type(err).__name__}: "
                          f"{str(err)[:200]}); building with TVM's default schedules",
                          stacklevel=2)
            executable = build_default(mod, target)
        return VMCompiledModel(executable, inputs, outputs, str(target), pass_report(mod),
                               bounds)

    def load(self, folder: Path) -> VMCompiledModel:
        return load_vm(folder)


BACKEND = X86Backend()
