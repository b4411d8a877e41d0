"""Symbolic dimensions of a ``torch.export`` program's Relax module: names and bounds.

A program exported with ``dynamic_shapes`` keeps its dynamic axes symbolic; TVM's translator
names their ``tirx.Var`` after PyTorch's symbols (``s17``) and records each symbol's range as
``main``'s ``tir_var_lower_bound`` / ``tir_var_upper_bound``. :func:`name_dims` renames them
to tvm-qdq's dimension names, ``dynamic[input][axis]`` where the caller named it and
``{input}_dim{axis}`` otherwise (one name per PyTorch symbol, so inputs that share a dynamic
size share the name), and re-keys the bounds: the upper bound is the program's maximum,
lowered by the caller's ``bounds``; the lower bound is at least 1.
:func:`export_dynamic` exports a module with the dynamic axes a ``dynamic=`` argument names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import tvm
from tvm import relax, tirx

from ...backend.dims import LOWER_ATTR, UPPER_ATTR
from .errors import TorchImportError

#: ``{input name: {axis: dimension name}}``
DynamicAxes = Mapping[str, Mapping[int, str]]


def _check_dynamic(dynamic: DynamicAxes, input_names: Sequence[str]) -> None:
    unknown = sorted(set(dynamic) - set(input_names))
    if unknown:
        raise TorchImportError(f"dynamic= names unknown input(s) {unknown}; the inputs are "
                               f"{list(input_names)}")
    for name, axes in dynamic.items():
        for dim in axes.values():
            if not (isinstance(dim, str) and dim.isidentifier()):
                raise TorchImportError(f"dynamic['{name}']: dimension name {dim!r} is not an "
                                       "identifier")


def _dim_names(func: relax.Function, input_names: Sequence[str],
               dynamic: DynamicAxes) -> dict[tirx.Var, str]:
    """Each symbolic input dimension's var → its tvm-qdq name: the one ``dynamic`` gives
    any axis of that var, else ``{input}_dim{axis}`` of its first axis."""
    explicit: dict[tirx.Var, tuple[str, str, int]] = {}
    default: dict[tirx.Var, str] = {}
    for name, param in zip(input_names, func.params, strict=True):
        wanted = {int(axis): dim for axis, dim in dynamic.get(name, {}).items()}
        for axis, dim in enumerate(param.ty.shape.values):
            if isinstance(dim, tirx.IntImm):
                if axis in wanted:
                    raise TorchImportError(
                        f"input '{name}' axis {axis} is static ({int(dim)}) in the program; "
                        f"export it with dynamic_shapes={{'{name}': {{{axis}: "
                        f"torch.export.Dim('{wanted[axis]}', max=...)}}}}")
                continue
            if not isinstance(dim, tirx.Var):
                continue  # an expression of other dims: renamed with them
            default.setdefault(dim, f"{name}_dim{axis}")
            new = wanted.get(axis)
            if new is None:
                continue
            old = explicit.setdefault(dim, (new, name, axis))
            if old[0] != new:
                raise TorchImportError(
                    f"input '{name}' axis {axis} has the same size as input '{old[1]}' axis "
                    f"{old[2]} in the program; dynamic= names them '{new}' and '{old[0]}'")
    names = {var: explicit[var][0] if var in explicit else dim for var, dim in default.items()}
    taken = sorted(names.values())
    repeated = {n for n in taken if taken.count(n) > 1}
    if repeated:
        raise TorchImportError(f"dynamic= gives the name(s) {sorted(repeated)} to dimensions "
                               "the program exported as different sizes")
    return names


def _bounds(func: relax.Function, names: dict[tirx.Var, str],
            bounds: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """The (lower, upper) bounds by new name: the program's, the caller's upper bounds where
    smaller (a larger one than the program's is refused: PyTorch checked the model up to
    its maximum only), lower bounds at least 1."""
    attrs = func.attrs or {}
    by_old = {str(var.name): new for var, new in names.items()}

    def read(key: str) -> dict[str, int]:
        found = attrs[key] if key in attrs else {}
        return {by_old[str(k)]: int(v) for k, v in found.items() if str(k) in by_old}

    lower = {name: max(1, read(LOWER_ATTR).get(name, 1)) for name in names.values()}
    upper = read(UPPER_ATTR)
    unknown = sorted(set(bounds) - set(names.values()))
    if unknown:
        raise TorchImportError(f"bounds= names unknown dimension(s) {unknown}; the symbolic "
                               f"dimensions are {sorted(names.values())}")
    for name, bound in bounds.items():
        if name in upper and bound > upper[name]:
            raise TorchImportError(
                f"bounds['{name}'] = {bound} is above the program's maximum {upper[name]}; "
                f"export it with torch.export.Dim('{name}', max={bound})")
        upper[name] = int(bound)
    return lower, upper


def name_dims(mod: tvm.IRModule, input_names: Sequence[str], dynamic: DynamicAxes | None,
              bounds: Mapping[str, int] | None) -> tvm.IRModule:
    """``mod`` with ``main``'s symbolic dims renamed and bounded (see the module text)."""
    dynamic = dynamic or {}
    _check_dynamic(dynamic, input_names)
    func = mod["main"]
    names = _dim_names(func, input_names, dynamic)
    if not names:
        if bounds:
            raise TorchImportError(f"bounds= {dict(bounds)} given, but every dimension of "
                                   "the program is static")
        return mod
    lower, upper = _bounds(func, names, bounds or {})
    func = func.bind_symbolic_vars({var: tirx.Var(new, "int64") for var, new in
                                    names.items()})
    func = func.with_attr(LOWER_ATTR, lower).with_attr(UPPER_ATTR, upper)
    if not upper:
        func = func.without_attr(UPPER_ATTR)
    functions = {gv: (func if gv.name_hint == "main" else f) for gv, f in mod.functions.items()}
    return tvm.IRModule(functions, attrs=mod.attrs)


def export_dynamic(model: torch.nn.Module, example_inputs: tuple, input_names: Sequence[str],
                   dynamic: DynamicAxes,
                   bounds: Mapping[str, int] | None) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` (in eval mode) with ``dynamic``'s axes dynamic:
    one ``torch.export.Dim`` per dimension name (shared by every axis of that name), its
    maximum from ``bounds``. ``input_names`` name ``forward``'s arguments in order."""
    _check_dynamic(dynamic, input_names)
    bounds = bounds or {}
    dims = {dim: torch.export.Dim(dim, max=bounds[dim]) if dim in bounds
            else torch.export.Dim(dim)
            for axes in dynamic.values() for dim in axes.values()}
    shapes = tuple({int(axis): dims[dim] for axis, dim in dynamic.get(name, {}).items()}
                   or None for name in input_names)
    try:
        return torch.export.export(model.eval(), tuple(example_inputs), dynamic_shapes=shapes)
    except Exception as err:  # PyTorch's reason (a specialized dim, a guard) is the message
        raise TorchImportError(f"torch.export with dynamic={dict(dynamic)} failed: "
                               f"{type(err).__name__}: {err}") from err
