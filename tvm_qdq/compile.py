"""Compile a quantized model to a runnable module: ``compile``, ``Compiled``, ``load``.

``compile(model)`` = ``from_onnx`` → ``to_integer`` → the backend of the target
(:mod:`tvm_qdq.backend.registry`), and returns a :class:`Compiled` model that runs with numpy
feeds and exports to a directory; ``load`` reads an export back with the backend that wrote
it.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import tvm

from relay_passes import fake_quantization_to_integer

from .backend.base import (
    BuildOptions,
    CompiledModel,
    TensorSpec,
    check_index_range,
    checked_element_type,
    module_attr,
    order_feeds,
    pass_report,
    read_meta,
)
from .backend.legalize_signedness import legalize_signedness
from .backend.registry import backend_for_format, backend_for_target
from .backend.vm import build_vm
from .frontend.onnx import from_onnx
from .targets import resolve_target
from .tvm_logs import routed_tvm_logs

#: Every compiled model, whichever backend built it.
Compiled = CompiledModel
_attr = module_attr  # the name the tuning command imports


def to_integer(mod: tvm.IRModule) -> tvm.IRModule:
    """Rewrite a faithful module into integer compute (see ``relay_passes``).

    The pass report is attached as the module attribute ``tvm_qdq.report`` (JSON).
    """
    new_mod, report = fake_quantization_to_integer(mod)
    return new_mod.with_attrs({"tvm_qdq.report": report.to_json(), "tvm_qdq.stage": "integer"})


@routed_tvm_logs()
def compile(  # noqa: A001 - the public name the design asks for
    model: str | os.PathLike | bytes | onnx.ModelProto | tvm.IRModule,
    target: str | dict | tvm.target.Target = "x86",
    *,
    integer: bool = True,
    tuning_db: str | os.PathLike | bool | None = None,
    shapes: dict[str, list[int | str | None]] | None = None,
    bounds: dict[str, int] | None = None,
    requantize: str | None = None,
) -> Compiled:
    """Import (if needed), rewrite to integer (unless ``integer=False``) and build.

    ``requantize`` (Hexagon only): ``"fixed"`` (the default there: int32 multiplier + shift,
    within 1 LSB of the float formula) or ``"float"`` (float64 formula, bit-exact with x86).
    x86 always uses the exact float64 formula.

    ``shapes`` fixes (or names) graph input dimensions, ``bounds`` gives upper bounds of
    symbolic ones by name (see ``from_onnx``); both apply when ``model`` is not yet imported.

    x86: VNNI register tiles come from the tuning database (``tvm-qdq tune``): ``tuning_db``
    None → ``$TVM_QDQ_TUNING_DB`` or the one committed in ``tvm_qdq/backend/x86``, a path →
    that file, False → none (heuristic tiles). Nothing is measured at compile time.
    """
    mod = model if isinstance(model, tvm.IRModule) else from_onnx(model, shapes=shapes,
                                                                       bounds=bounds)
    if integer and module_attr(mod, "tvm_qdq.stage") != "integer":
        mod = to_integer(mod)
    tgt = resolve_target(target)
    options = BuildOptions(integer=integer, requantize=requantize, tuning_db=tuning_db)
    return backend_for_target(tgt).build(mod, tgt, options)


def load(path: str | os.PathLike) -> Compiled:
    """Load what :meth:`Compiled.export` wrote."""
    folder = Path(path)
    return backend_for_format(read_meta(folder).get("format")).load(folder)


__all__ = [
    "Compiled", "TensorSpec", "build_vm", "check_index_range", "checked_element_type",
    "compile", "legalize_signedness", "load", "order_feeds", "pass_report", "to_integer",
]
