"""Models built into a TVM Relax VM executable (the x86 and the generic TVM backend).

:class:`VMCompiledModel` runs the executable on the CPU and exports it as ``module.so`` +
``meta.json`` (format ``tvm-qdq/1``; ``tvm-qdq/2`` when a dimension is symbolic: the shapes
hold dimension names and ``bounds`` their bounds); :func:`build_vm` builds the VM,
:func:`prepare` is what both VM backends do to an integer module before building it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from ..dtypes import from_container, to_container
from ..errors import InputError
from ..targets import target_family
from ..tvm_logs import routed_tvm_logs
from .base import (
    BuildOptions,
    CompiledModel,
    Feeds,
    TensorSpec,
    check_index_range,
    checked_element_type,
    export_bounds,
    read_export,
)
from .dims import DimBounds, bind_dims, has_symbolic_dims
from .legalize_signedness import legalize_signedness

FORMAT = "tvm-qdq/1"
#: The export format of a model with symbolic dimensions (``meta.json`` has ``bounds``).
SYMBOLIC_FORMAT = "tvm-qdq/2"
#: Every format :func:`load_vm` reads.
FORMATS = (FORMAT, SYMBOLIC_FORMAT)
#: Input shape combinations of a model with symbolic dimensions whose checked input buffers
#: a :class:`VMCompiledModel` keeps (the least recently added one is dropped first).
SHAPE_SLOTS = 8
MODULE_FILE = "module.so"

#: TVM's thread pool workers spin this many iterations waiting for the next parallel region
#: before they sleep (TVM's default, 300000, is milliseconds). A short spin covers the gap
#: between the kernels of one inference and sleeps between inferences; long spinning takes
#: the cores the working threads need on a loaded machine. An explicit setting wins.
SPIN_COUNT_ENV = "TVM_THREAD_POOL_SPIN_COUNT"
SPIN_COUNT = "10000"
#: TVM pins each pool worker to one core by default while the calling thread (which runs
#: the first share of every parallel region) is free to move: when the OS puts the caller on
#: a worker's core, that worker waits for a scheduler tick (4 ms) in every parallel region.
#: tvm-qdq starts the pool unpinned, as ONNX Runtime and PyTorch do; an explicit setting wins.
BIND_THREADS_ENV = "TVM_BIND_THREADS"
BIND_THREADS = "0"
#: The thread pool settings tvm-qdq gives TVM when they are not set.
POOL_DEFAULTS = {SPIN_COUNT_ENV: SPIN_COUNT, BIND_THREADS_ENV: BIND_THREADS}


def thread_pool_spin_count() -> str:
    """The spin count the thread pool starts with when a VM model first runs."""
    return os.environ.get(SPIN_COUNT_ENV, SPIN_COUNT)


@contextlib.contextmanager
def thread_pool_defaults() -> Iterator[None]:
    """Each of :data:`POOL_DEFAULTS` (spin count, no pinning) set in ``os.environ`` unless
    already set, for the block; restored afterwards. TVM reads them once, when it starts its
    thread pool (a model's first parallel region), so a model's first run is made inside
    this block."""
    added = [k for k in POOL_DEFAULTS if k not in os.environ]
    for key in added:
        os.environ[key] = POOL_DEFAULTS[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def check_requantize(options: BuildOptions, target: tvm.target.Target) -> None:
    """Refuse a requantize form other than the exact float64 one (a Hexagon option)."""
    if options.requantize not in (None, "float"):
        raise ValueError(f"requantize={options.requantize!r} is a Hexagon option; the "
                         f"{target.kind.name} build uses the exact float64 requantize "
                         "(pass requantize=None)")


def prepare(mod: tvm.IRModule, target: tvm.target.Target,
            options: BuildOptions) -> tvm.IRModule:
    """Check the options and legalize the integer module's signedness for ``target``."""
    check_requantize(options, target)
    return legalize_signedness(mod, target_family(target)) if options.integer else mod


def build_vm(mod: tvm.IRModule, target: tvm.target.Target):
    """``relax.build`` with the VM's Relax functions compiled to native code
    (``exec_mode="compiled"``): each kernel call is a direct call instead of an interpreted
    bytecode instruction. Falls back to the bytecode interpreter when the compiled mode
    cannot build the module."""
    try:
        return relax.build(mod, target=target, exec_mode="compiled")
    except Exception as err:  # noqa: BLE001 - any failure of the compiled mode: bytecode
        warnings.warn(f"tvm-qdq: compiled VM mode failed ({type(err).__name__}: "
                      f"{str(err)[:200]}); using the bytecode VM", stacklevel=2)
        return relax.build(mod, target=target)


class VMCompiledModel(CompiledModel):
    """A model built into a Relax VM executable, run on the CPU."""

    format = FORMAT
    symbolic_format = SYMBOLIC_FORMAT

    def __init__(self, module, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 target: str, report=None, bounds: DimBounds | None = None):
        super().__init__(inputs, outputs, target, report, bounds)
        self._module = module
        self._vm = relax.VirtualMachine(module, tvm.cpu())
        self._main = self._first_main  # the first call starts TVM's thread pool
        self._buffers: list | None = None  # one preallocated TVM tensor per input
        self._views: list | None = None  # numpy views of self._buffers
        # Fast path of run(): per input the exact numpy (dtype, shape) it takes unchecked.
        self._static = not has_symbolic_dims(inputs)
        # Symbolic dimensions: per checked input shape combination, the input buffers.
        self._slots: dict[tuple, tuple[list, list]] = {}
        self._dtypes = [np.dtype(s.dtype) if s.dtype == s.type else None for s in inputs]
        self._fast = [(np.dtype(s.dtype), tuple(s.shape))
                      if s.dtype == s.type and self._static else None for s in inputs]
        self._names = [s.name for s in inputs]
        self._plain_outputs = all(s.type not in ("int4", "uint4") for s in outputs)
        self._index_inputs = [i for i, s in enumerate(inputs) if s.index_range is not None]

    def _first_main(self, *args):
        main = self._vm["main"]
        with thread_pool_defaults():
            result = main(*args)
        self._main = main
        return result

    def _check(self, spec: TensorSpec, value) -> np.ndarray:
        array = checked_element_type(spec, value)
        shape = list(array.shape)
        if len(shape) != len(spec.shape) or any(
            isinstance(want, int) and want != got
            for want, got in zip(spec.shape, shape, strict=False)
        ):
            raise InputError(
                f"input '{spec.name}': expected shape {spec.shape}, got {shape}"
                + ("" if self._static else " (a name marks a symbolic dimension)")
            )
        return np.array(to_container(array), order="C", copy=None)

    def _fits(self, spec: TensorSpec, value) -> bool:
        """Fast path: a numpy array of exactly the compiled dtype and static shape."""
        return (isinstance(value, np.ndarray) and str(value.dtype) == spec.dtype == spec.type
                and self._static and list(value.shape) == spec.shape)

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        """Run once. ``feeds``: a dict by input name or a list in input order.

        Static inputs are copied into preallocated TVM tensors (checked only when their
        dtype or shape is not the compiled one). A model with symbolic dimensions checks
        every input and binds each dimension's size (:func:`.dims.bind_dims`: the same size
        for one name, within its bounds) before it runs. Outputs are returned as numpy
        arrays that share nothing with other calls (views of the tensors this call
        allocated).
        """
        values = None
        if isinstance(feeds, dict) and len(feeds) == len(self._names):
            try:
                values = [feeds[n] for n in self._names]
            except KeyError:
                values = None
        if values is None:
            values = self._ordered(feeds)
        if not self._static:
            return self._outputs(self._main(*self._symbolic_args(values)))
        if self._buffers is None:
            self._buffers = [tvm.runtime.empty(s.shape, s.dtype) for s in self.inputs]
            self._views = [np.from_dlpack(b) for b in self._buffers]
        for i, (spec, value) in enumerate(zip(self.inputs, values, strict=True)):
            fast = self._fast[i]
            if fast is not None and type(value) is np.ndarray and value.dtype == fast[0] \
                    and value.shape == fast[1]:
                array = value
            else:
                array = value if self._fits(spec, value) else self._check(spec, value)
            self._views[i][...] = array
        for i in self._index_inputs:
            check_index_range(self.inputs[i], self._views[i])
        return self._outputs(self._main(*self._buffers))

    def _symbolic_args(self, values: list) -> list:
        """The TVM tensors of one run of a model with symbolic dimensions.

        The first run with a combination of input shapes checks the inputs and binds the
        dimensions (:func:`.dims.bind_dims`); its buffers are kept for that combination, so
        a later run with the same shapes and compiled dtypes only copies the inputs in.
        """
        key = tuple(v.shape if type(v) is np.ndarray and v.dtype == dtype else None
                    for v, dtype in zip(values, self._dtypes, strict=True))
        slot = self._slots.get(key)
        if slot is None:
            values = [self._check(spec, value) for spec, value in zip(self.inputs, values,
                                                                      strict=True)]
            shapes = tuple(v.shape for v in values)
            slot = self._slots.get(shapes)
            if slot is None:
                bind_dims(self.inputs, shapes, self.bounds)
                slot = self._new_slot(shapes)
        buffers, views = slot
        for view, value in zip(views, values, strict=True):
            view[...] = value
        for i in self._index_inputs:
            check_index_range(self.inputs[i], views[i])
        return buffers

    def _new_slot(self, shapes: tuple) -> tuple[list, list]:
        """Input buffers (TVM tensors and their numpy views) for one shape combination."""
        if len(self._slots) >= SHAPE_SLOTS:
            del self._slots[next(iter(self._slots))]
        buffers = [tvm.runtime.empty(shape, s.dtype) for shape, s in zip(shapes, self.inputs,
                                                                          strict=True)]
        slot = (buffers, [np.from_dlpack(b) for b in buffers])
        self._slots[shapes] = slot
        return slot

    def _outputs(self, result) -> list[np.ndarray]:
        """The VM's result as numpy arrays in the output order."""
        flat = list(result) if not hasattr(result, "numpy") else [result]
        if self._plain_outputs:
            # The VM allocates the returned tensors on every call (never reused while
            # referenced), so a numpy view of each is the caller's own array: no copy.
            return [np.from_dlpack(r) for r in flat]
        return [from_container(np.from_dlpack(r).copy(), s.type)
                for r, s in zip(flat, self.outputs, strict=True)]

    @routed_tvm_logs()
    def _write_files(self, out: Path) -> None:
        self._module.export_library(str(out / MODULE_FILE))


@routed_tvm_logs()
def load_vm(folder: Path) -> VMCompiledModel:
    """Load what :meth:`VMCompiledModel.export` wrote."""
    meta, inputs, outputs, report = read_export(folder, FORMATS)
    module = tvm.runtime.load_module(str(folder / MODULE_FILE))
    return VMCompiledModel(module, inputs, outputs, meta["target"], report,
                           export_bounds(meta))
