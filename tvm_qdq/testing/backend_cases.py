"""Access to the ONNX backend *node* test cases, generated at run time.

Since onnx 1.2x the node test cases are no longer shipped as ``.pb`` files inside the wheel.
Instead, every operator has a module ``onnx/backend/test/case/node/<op>.py`` holding a class
``<OpType>(Base)`` whose ``export*`` static methods build a node, compute inputs and reference
outputs with numpy and call :func:`onnx.backend.test.case.node.expect`.  ``expect`` wraps the
node into a one-node model (opset = the op's latest ``since_version`` unless the export pins
``opset_imports``) and appends a ``TestCase`` to the module-global list ``_NodeTestCases``; if the
op's schema has a function body it also appends ``<name>_expanded[_verN]`` cases whose graph is the
inlined function body.  The ``Base`` metaclass runs all ``export*`` methods at *class creation*,
i.e. on first import of the module, after ``np.random.seed(0)``.

``onnx.backend.test.case.node.collect_testcases(op_type)`` imports every node module (about 7 s)
and returns the global list; the ``op_type`` filter only works on the *first* call in a process,
because modules are imported once.  :func:`node_cases` therefore drives the exporters itself: it
imports the op's module with a filter that matches nothing, then re-runs the class's ``export*``
methods (re-seeding numpy before each one, as the metaclass does) with the op filter set and
fresh module-level lists, and restores the module globals afterwards.  The result is the same set
of cases ``collect_testcases`` yields, independent of what else the process imported before.

Narrow element types are returned with their ``ml_dtypes`` numpy dtypes (via
:func:`onnx.numpy_helper.to_array`): ``int4``, ``uint4``, ``int2``, ``uint2``,
``float4_e2m1fn``, ``float8_e4m3fn``, ``float8_e5m2`` (one element per array item, unpacked).
"""

from __future__ import annotations

import copy
import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["NodeCase", "node_cases", "with_opset", "QUANT_OP_TYPES"]

#: Operators with quantized semantics that have backend node cases in onnx 1.23.
QUANT_OP_TYPES: tuple[str, ...] = (
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeLinear",
)

_NODE_PKG = "onnx.backend.test.case.node"
# A value for ``_TargetOpType`` that matches no node, so import-time exports record nothing.
_MATCH_NOTHING = "\x00tvm_qdq-no-op\x00"


@dataclass
class NodeCase:
    """One ONNX backend node test case.

    ``inputs``/``outputs`` are in the order of ``model.graph.input``/``model.graph.output``
    (optional inputs the node omits are absent from both).  ``expanded`` is true for the
    ``*_expanded*`` variants whose graph is the op's function body instead of the op itself.
    ``rtol``/``atol`` are the tolerances the ONNX backend runner uses for float outputs.
    """

    name: str
    op_type: str
    model: onnx.ModelProto
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    expanded: bool = False
    rtol: float = 1e-3
    atol: float = 1e-7
    domain: str = ""

    @property
    def input_names(self) -> list[str]:
        return [vi.name for vi in self.model.graph.input]

    @property
    def output_names(self) -> list[str]:
        return [vi.name for vi in self.model.graph.output]

    @property
    def opset(self) -> int:
        """Version of the op's domain imported by the model."""
        for imp in self.model.opset_import:
            if (imp.domain or "") in ({"", "ai.onnx"} if self.domain == "" else {self.domain}):
                return int(imp.version)
        raise ValueError(f"{self.name}: no opset import for domain {self.domain!r}")

    def feeds(self) -> dict[str, np.ndarray]:
        """Inputs keyed by graph input name, ready for ``InferenceSession.run``."""
        return dict(zip(self.input_names, self.inputs, strict=True))

    def dtypes(self) -> tuple[list[str], list[str]]:
        """``(input dtype names, output dtype names)`` (numpy / ml_dtypes names)."""
        return [str(a.dtype) for a in self.inputs], [str(a.dtype) for a in self.outputs]

    def with_opset(self, version: int) -> NodeCase:
        """Copy of the case whose model imports the op's domain at ``version``.

        For runtimes that lag behind onnx: e.g. onnxruntime 1.32 has no CPU kernels for
        QuantizeLinear/DequantizeLinear-28, whose schema differs from version 25 only by the
        added float6 types, so the opset-28 cases can be checked at opset 25.
        """
        case = copy.deepcopy(self)
        case.model = with_opset(self.model, version, self.domain)
        return case


def with_opset(model: onnx.ModelProto, version: int, domain: str = "") -> onnx.ModelProto:
    """Copy of ``model`` importing ``domain`` at ``version`` (IR version adjusted to match).

    Useful to re-express a case generated at the newest opset (e.g. QuantizeLinear-28) at an
    older opset whose schema is identical for the types involved, for runtimes that lag behind.
    The caller is responsible for the semantic equivalence; the result is run through the checker.
    """
    out = copy.deepcopy(model)
    for imp in out.opset_import:
        if (imp.domain or "") in ({"", "ai.onnx"} if domain == "" else {domain}):
            imp.version = version
    if domain in ("", "ai.onnx"):
        out.ir_version = onnx.helper.find_min_ir_version_for(list(out.opset_import), True)
        # Narrow types need a recent IR regardless of the opset (int4: IR 10, int2/uint2: IR 12).
        out.ir_version = max(out.ir_version, _min_ir_for_types(out))
    onnx.checker.check_model(out)
    return out


_TYPE_MIN_IR: dict[int, int] = {
    onnx.TensorProto.FLOAT8E4M3FN: 9,
    onnx.TensorProto.FLOAT8E4M3FNUZ: 9,
    onnx.TensorProto.FLOAT8E5M2: 9,
    onnx.TensorProto.FLOAT8E5M2FNUZ: 9,
    onnx.TensorProto.INT4: 10,
    onnx.TensorProto.UINT4: 10,
    onnx.TensorProto.FLOAT4E2M1: 11,
    onnx.TensorProto.INT2: 12,
    onnx.TensorProto.UINT2: 12,
}


def _min_ir_for_types(model: onnx.ModelProto) -> int:
    g = model.graph
    elem_types = [vi.type.tensor_type.elem_type for vi in (*g.input, *g.output, *g.value_info)]
    elem_types += [t.data_type for t in g.initializer]
    return max([_TYPE_MIN_IR.get(t, 3) for t in elem_types], default=3)


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    raise TypeError(f"unsupported test-case value of type {type(value).__name__}")


def _iter_modules(pkg: ModuleType) -> Iterator[str]:
    for info in pkgutil.iter_modules(pkg.__path__):
        name = f"{pkg.__name__}.{info.name}"
        if info.ispkg:
            if not onnx.ONNX_ML and name.startswith(f"{_NODE_PKG}.ai_onnx_ml"):
                continue
            yield from _iter_modules(importlib.import_module(name))
        else:
            yield name


def _norm(name: str) -> str:
    return name.rsplit(".", 1)[-1].replace("_", "").lower()


def _exporters_for(op_type: str) -> list[Callable[[], None]]:
    """``export*`` static methods of the ``Base`` subclass named ``op_type``.

    Looks first in the module whose name matches the op (``quantizelinear.py``, ``and_.py``,
    ``batch_normalization.py`` ...), then in every node module.  Falls back to every exporter of
    every class (the ``expect`` filter then keeps only ``op_type`` nodes) if no class is named
    after the op.
    """
    from onnx.backend.test.case.base import Base

    pkg = importlib.import_module(_NODE_PKG)
    names = list(_iter_modules(pkg))
    preferred = [n for n in names if _norm(n) == _norm(op_type)]
    classes: list[type] = []
    for group in (preferred, names):
        for mod_name in group:
            mod = importlib.import_module(mod_name)
            cls = getattr(mod, op_type, None)
            if isinstance(cls, type) and issubclass(cls, Base) and cls not in classes:
                classes.append(cls)
        if classes:
            break
    if not classes:  # op exercised only from other classes' exporters
        classes = _all_subclasses(Base)
    exporters: list[Callable[[], None]] = []
    for cls in classes:
        for key, value in vars(cls).items():
            if key.startswith("export") and isinstance(value, staticmethod):
                exporters.append(getattr(cls, key))
    return exporters


def _all_subclasses(cls: type) -> list[type]:
    out: list[type] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def _generate(op_type: str) -> list[Any]:
    """Raw ``TestCase`` objects for ``op_type`` (module globals are restored afterwards)."""
    node_mod = importlib.import_module(_NODE_PKG)
    saved = (node_mod._TargetOpType, node_mod._NodeTestCases, node_mod._existing_names)
    rng_state = np.random.get_state()
    try:
        # Importing modules for the first time runs their exporters: make that a no-op.
        node_mod._TargetOpType = _MATCH_NOTHING
        exporters = _exporters_for(op_type)
        collected: list[Any] = []
        node_mod._TargetOpType = op_type
        node_mod._NodeTestCases = collected
        node_mod._existing_names = {}
        for export in exporters:
            np.random.seed(seed=0)
            export()
        return collected
    finally:
        node_mod._TargetOpType, node_mod._NodeTestCases, node_mod._existing_names = saved
        np.random.set_state(rng_state)


@functools.cache
def _cases_for(op_type: str) -> tuple[NodeCase, ...]:
    cases: list[NodeCase] = []
    for tc in _generate(op_type):
        assert tc.model is not None and tc.data_sets, tc.name
        (inputs, outputs), *_ = tc.data_sets
        expanded = "_expanded" in tc.name
        domain = ""
        if not expanded and len(tc.model.graph.node) == 1:
            domain = tc.model.graph.node[0].domain
        cases.append(
            NodeCase(
                name=tc.name,
                op_type=op_type,
                model=tc.model,
                inputs=[_to_numpy(x) for x in inputs],
                outputs=[_to_numpy(y) for y in outputs],
                expanded=expanded,
                rtol=tc.rtol,
                atol=tc.atol,
                domain=domain,
            )
        )
    return tuple(cases)


def node_cases(op_types: Sequence[str], *, include_expanded: bool = True) -> list[NodeCase]:
    """Backend node test cases of the given ONNX op types (default domain), in export order.

    The models, inputs and outputs are fresh copies on every call, so callers may mutate them.
    ``include_expanded=False`` drops the function-body (``*_expanded*``) variants; they exist only
    for ops whose schema defines a function (e.g. ``DynamicQuantizeLinear``).
    """
    out: list[NodeCase] = []
    for op_type in op_types:
        for case in _cases_for(op_type):
            if case.expanded and not include_expanded:
                continue
            out.append(copy.deepcopy(case))
    return out
