"""The contract between ``tvm_qdq.compile``/``load`` and a backend.

* :class:`TensorSpec` and :func:`model_specs`: a model's inputs and outputs (ONNX name,
  declared element type, container dtype, shape: a size or a symbolic dimension's name per
  axis, index range), and :func:`model_bounds` (the bounds of the symbolic dimensions, see
  :mod:`.dims`), read from the integer Relax module before a backend changes it.
* :class:`CompiledModel`: what every backend returns. It orders and checks feeds
  (:func:`order_feeds`, :func:`checked_element_type`, :func:`check_index_range`), names the
  inputs and outputs, and exports ``meta.json`` (``format``, ``target``, ``inputs``,
  ``outputs``, ``report``, ``bounds`` when a dimension is symbolic, plus the backend's own
  keys) next to the backend's files.
* :class:`Backend`: ``build(mod, target, options) → CompiledModel``, ``load(folder) →
  CompiledModel``, the export ``format`` it writes (``formats``: every one it reads) and the
  target families (and target kinds) it builds for. :mod:`.registry` holds the table
  ``compile`` and ``load`` use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import tvm
from tvm import relax

from relay_passes import PassReport

from ..dtypes import numpy_name
from ..errors import InputError
from ..index_bounds import index_input_ranges
from .dims import DimBounds, function_bounds, has_symbolic_dims

META_FILE = "meta.json"

Feeds = Mapping[str, np.ndarray] | Sequence[np.ndarray]


def module_attr(mod: tvm.IRModule, key: str, default=None):
    """The module attribute ``key`` as a str/int/float or a list of str; ``default`` if unset."""
    attrs = mod.attrs
    if attrs is None or key not in attrs:
        return default
    value = attrs[key]
    if isinstance(value, str | int | float):
        return value
    return [str(v) for v in value]


def pass_report(mod: tvm.IRModule) -> PassReport | None:
    """The integer pass's report attached to ``mod`` (``tvm_qdq.report``), None if absent."""
    text = module_attr(mod, "tvm_qdq.report")
    return PassReport.from_json(text) if text else None


@dataclass
class TensorSpec:
    """One model input or output: ONNX name, declared type, container dtype, shape (per
    axis its size, or the name of a symbolic dimension: ``[1, "sequence", 384]``; an output's
    axis may be an expression of names, ``"sequence * 2"``)."""

    name: str
    type: str
    dtype: str
    shape: list[int | str]
    #: [lowest, highest] valid value of an input used as gather indices (token ids), else None
    index_range: list[int] | None = None

    def to_dict(self) -> dict:
        out = {"name": self.name, "type": self.type, "dtype": self.dtype, "shape": self.shape}
        if self.index_range is not None:
            out["index_range"] = list(self.index_range)
        return out


def _dims(ty) -> list[int | str]:
    """Each dimension of a tensor type: its value when static, else its symbolic
    dimension's name (or the expression of names) as text."""
    return [int(d) if isinstance(d, tvm.tirx.IntImm) else str(d) for d in ty.shape.values]


def model_bounds(mod: tvm.IRModule) -> DimBounds:
    """The bounds of the symbolic dimensions of ``mod['main']`` (see :mod:`.dims`)."""
    return function_bounds(mod["main"])


def model_specs(mod: tvm.IRModule) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs of ``mod['main']`` with the names and declared types the
    importer recorded (``tvm_qdq.input_names``/``input_types``/``output_names``/
    ``output_types``), the parameter names and container dtypes otherwise."""
    func = mod["main"]
    num_input = int(func.attrs["num_input"]) if func.attrs and "num_input" in func.attrs else None
    params = list(func.params)[:num_input]
    names = module_attr(mod, "tvm_qdq.input_names") or [str(p.name) for p in params]
    types = module_attr(mod, "tvm_qdq.input_types") or [str(p.ty.dtype) for p in params]
    ranges = index_input_ranges(mod)
    inputs = []
    for name, typ, param in zip(names, types, params, strict=True):
        bounds = ranges.get(str(param.name))
        inputs.append(TensorSpec(name, typ, str(param.ty.dtype), _dims(param.ty),
                                 list(bounds) if bounds is not None else None))
    ret = func.ret_ty if hasattr(func, "ret_ty") else func.body.ty
    fields = list(ret.fields) if isinstance(ret, relax.TupleType) else [ret]
    out_names = module_attr(mod, "tvm_qdq.output_names") \
        or [f"output_{i}" for i in range(len(fields))]
    out_types = module_attr(mod, "tvm_qdq.output_types") or [str(f.dtype) for f in fields]
    outputs = [TensorSpec(name, typ, str(ty.dtype), _dims(ty))
               for name, typ, ty in zip(out_names, out_types, fields, strict=True)]
    return inputs, outputs


def describe_signature(inputs: list[TensorSpec], outputs: list[TensorSpec],
                       bounds: DimBounds) -> dict:
    """Inputs and outputs as dicts (:meth:`TensorSpec.to_dict`), ``bounds`` (the user's upper
    bounds by dimension name) and ``implicit_bounds`` (the integer pass's)."""
    return {"inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in outputs],
            "bounds": dict(bounds.upper), "implicit_bounds": dict(bounds.implicit)}


def order_feeds(feeds: Feeds, input_names: list[str]) -> list:
    """Feeds as a list in the model's input order (a mapping by name, or a sequence)."""
    if isinstance(feeds, Mapping):
        unknown = sorted(set(feeds) - set(input_names))
        missing = [n for n in input_names if n not in feeds]
        if unknown or missing:
            raise InputError(
                f"feeds do not match the model inputs {input_names}: "
                + (f"missing {missing} " if missing else "")
                + (f"unknown {unknown}" if unknown else "")
            )
        return [feeds[n] for n in input_names]
    feeds = list(feeds)
    if len(feeds) != len(input_names):
        raise InputError(
            f"the model takes {len(input_names)} input(s) {input_names}, got {len(feeds)}"
        )
    return feeds


def check_index_range(spec: TensorSpec, array: np.ndarray) -> None:
    """Raise :class:`InputError` when an index input (``spec.index_range`` set) holds a value
    outside its table: the compiled gather would read outside it."""
    if spec.index_range is None or array.size == 0:
        return
    low, high = spec.index_range
    lo, hi = array.min(), array.max()
    if lo < low or hi > high:
        bad = lo if lo < low else hi
        where = tuple(int(i) for i in np.argwhere(array == bad)[0])
        raise InputError(
            f"input '{spec.name}': value {int(bad)} at index {where} is outside [{low}, {high}], "
            f"the rows of the table it gathers from (Gather/embedding indices)")


def checked_element_type(spec: TensorSpec, value) -> np.ndarray:
    """``value`` as an array, refused unless its element type is the input's."""
    array = np.asarray(value)
    if numpy_name(array.dtype) != spec.type and str(array.dtype) != spec.type:
        raise InputError(
            f"input '{spec.name}': expected element type {spec.type}, got {array.dtype}; "
            f"convert it with .astype('{spec.type}')"
        )
    return array


def read_meta(folder: Path, fmt: str | Sequence[str] | None = None) -> dict:
    """``folder/meta.json``; with ``fmt`` (one format or several), refused unless the
    export has that format."""
    meta = json.loads((folder / META_FILE).read_text())
    formats = (fmt,) if isinstance(fmt, str) else fmt
    if formats is not None and meta.get("format") not in formats:
        raise ValueError(f"{folder} is not a {' or '.join(formats)} export "
                         f"(format {meta.get('format')!r})")
    return meta


def _read_spec(data: dict) -> TensorSpec:
    """A :class:`TensorSpec` from ``meta.json``; a dynamic axis that an older export wrote
    as null gets the name of an unnamed dimension (``{input}_dim{axis}``)."""
    shape = [f"{data['name']}_dim{i}" if d is None else d for i, d in enumerate(data["shape"])]
    return TensorSpec(**{**data, "shape": shape})


def read_export(folder: Path, fmt: str | Sequence[str] | None) -> tuple[
        dict, list[TensorSpec], list[TensorSpec], PassReport | None]:
    """``meta.json`` of an export of format ``fmt`` (one of several; None: any) and the (inputs,
    outputs, report) that :meth:`CompiledModel.export` wrote in it; ``export_bounds(meta)``
    gives the bounds."""
    meta = read_meta(folder, fmt)
    report = meta.get("report")
    return (meta, [_read_spec(s) for s in meta["inputs"]],
            [_read_spec(s) for s in meta["outputs"]],
            PassReport.from_json(json.dumps(report)) if report else None)


def export_bounds(meta: dict) -> DimBounds:
    """The bounds :meth:`CompiledModel.export` wrote to ``meta.json`` (none in a static
    model's export)."""
    return DimBounds.from_dict(meta.get("bounds"))


class CompiledModel:
    """A compiled model: ``run(feeds)`` → outputs in the model's output order.

    ``inputs``/``outputs`` are :class:`TensorSpec` lists, ``target`` the target string,
    ``report`` the integer pass's report, ``bounds`` the bounds of the symbolic dimensions.
    A backend subclass implements :meth:`run`, :meth:`_write_files` (its artifacts) and
    :meth:`_export_meta` (its ``meta.json`` keys).
    """

    #: The ``format`` written to ``meta.json``; :func:`tvm_qdq.load` picks the backend by it.
    format: ClassVar[str] = ""
    #: The ``format`` written for a model with symbolic dimensions (empty: same as static).
    symbolic_format: ClassVar[str] = ""

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec], target: str,
                 report: PassReport | None = None, bounds: DimBounds | None = None):
        self.inputs = inputs
        self.outputs = outputs
        self.target = target
        self.report = report
        self.bounds = bounds if bounds is not None else DimBounds()

    def signature(self) -> dict:
        """Inputs, outputs and the bounds of the symbolic dimensions
        (:func:`describe_signature`; ``tvm_qdq.inspect.format_signature`` prints it)."""
        return describe_signature(self.inputs, self.outputs, self.bounds)

    @property
    def symbolic(self) -> bool:
        """Whether an input or output has a symbolic dimension."""
        return has_symbolic_dims(self.inputs) or has_symbolic_dims(self.outputs)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def _ordered(self, feeds: Feeds) -> list:
        return order_feeds(feeds, self.input_names)

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        """Run once. ``feeds``: a dict by input name or a list in input order."""
        raise NotImplementedError

    def _write_files(self, out: Path) -> None:
        """Write the backend's artifacts into the folder ``out``."""
        raise NotImplementedError

    def _export_meta(self) -> dict:
        """The backend's own ``meta.json`` keys."""
        return {}

    def export(self, path: str | os.PathLike) -> Path:
        """Write the backend's files and ``meta.json`` to ``path``; ``tvm_qdq.load(path)``
        reads them back."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self._write_files(out)
        symbolic = self.symbolic
        meta = {"format": self.symbolic_format or self.format if symbolic else self.format,
                "target": self.target, **self._export_meta(),
                "inputs": [s.to_dict() for s in self.inputs],
                "outputs": [s.to_dict() for s in self.outputs],
                "report": json.loads(self.report.to_json()) if self.report else None}
        if symbolic:
            meta["bounds"] = self.bounds.to_dict()
        (out / META_FILE).write_text(json.dumps(meta, indent=1))
        return out


@dataclass(frozen=True)
class BuildOptions:
    """What ``tvm_qdq.compile`` passes to every backend (each reads the options it has).

    ``integer``: ``mod`` went through the integer pass; ``requantize``: the Hexagon
    requantize form (``"fixed"``/``"float"``, None = the backend's default); ``tuning_db``:
    the x86 tile database (None = default, a path, False = none).
    """

    integer: bool = True
    requantize: str | None = None
    tuning_db: str | os.PathLike | bool | None = None


class Backend(Protocol):
    """One target family's build and load (a folder under ``tvm_qdq/backend/``)."""

    #: Short name (``"x86"``, ``"hexagon"``).
    name: str
    #: The export format its :class:`CompiledModel` writes and :meth:`load` reads.
    format: str
    #: Every export format :meth:`load` reads (``format`` and older or symbolic ones).
    formats: tuple[str, ...]
    #: Target families (:func:`tvm_qdq.targets.target_family`) it builds for.
    families: tuple[str, ...]
    #: Target kinds it builds for (None: any kind).
    kinds: tuple[str, ...] | None

    def build(self, mod: tvm.IRModule, target: tvm.target.Target,
              options: BuildOptions) -> CompiledModel:
        """Build the (integer) Relax module ``mod`` for ``target``."""
        ...

    def load(self, folder: Path) -> CompiledModel:
        """Read back what the :class:`CompiledModel` it builds exported to ``folder``."""
        ...


__all__ = [
    "META_FILE", "Backend", "BuildOptions", "CompiledModel", "DimBounds", "TensorSpec",
    "check_index_range", "checked_element_type", "describe_signature", "export_bounds",
    "model_bounds", "model_specs", "module_attr", "order_feeds", "pass_report", "read_export",
    "read_meta",
]
