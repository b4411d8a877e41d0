"""The pass's view of a tensor that has an integer form: value + quantization parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tvm import relax

from tvm_qdq.qnn import QParams
from tvm_qdq.qnn.dims import DimBounds, NeedsStaticDim, static_dims
from tvm_qdq.qnn.ops import requantize, shape_of
from tvm_qdq.relax_utils import Dim, constant_value


@dataclass
class QTensor:
    """``real = (value - zp) · scale``: an integer Relax value with its parameters.

    ``const`` holds the integer values when they are known at compile time (weights, biases),
    so rules can fold zero points and sums into constants.
    """

    value: relax.Expr
    params: QParams
    const: np.ndarray | None = None

    @property
    def shape(self) -> tuple[Dim, ...]:
        """Partial shape: an int per static dimension, the symbolic PrimExpr otherwise
        (:class:`~tvm_qdq.qnn.dims.NeedsStaticDim` when not even that is known)."""
        shape = shape_of(self.value)
        if shape is None:
            raise NeedsStaticDim(f"the integer form of '{getattr(self.value, 'name', '')}'")
        return shape

    def static_dims(self, axes, what: str) -> list[int]:
        """The dims ``axes`` as ints (:class:`~tvm_qdq.qnn.dims.NeedsStaticDim` if one is
        symbolic; ``what`` names the op that needs them)."""
        return static_dims(self.shape, axes, what)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_accumulator(self) -> bool:
        return self.params.qtype.name in ("int32", "int64") and not self.params.has_zero_point


@dataclass
class OpRecord:
    """One line of the pass report: what happened to one op."""

    op: str
    var: str
    outcome: str  # "integer" | "requantize" | "dequantize" | "float"
    detail: str = ""


@dataclass
class RewriteContext:
    """State shared by the rules while one function is rewritten."""

    bb: relax.BlockBuilder
    qtensors: dict = field(default_factory=dict)  # new Var → QTensor | list[QTensor]
    producers: dict = field(default_factory=dict)  # new Var → the Call/Tuple bound to it
    records: list[OpRecord] = field(default_factory=list)
    originals: set = field(default_factory=set)  # vars that re-emit an imported binding
    requantized: dict = field(default_factory=dict)  # (value, src, dst) → requantized value
    dims: DimBounds = field(default_factory=DimBounds)  # bounds of the symbolic dims

    def emit(self, expr: relax.Expr, name: str = "") -> relax.Var:
        return self.bb.emit(expr, name_hint=name)

    def qtensor(self, expr: relax.Expr) -> QTensor | None:
        found = self.qtensors.get(expr) if isinstance(expr, relax.Var) else None
        return found if isinstance(found, QTensor) else None

    def qtuple(self, expr: relax.Expr) -> list[QTensor] | None:
        """QTensors of a tuple: a Tuple of QTensor vars or a var bound to a QTensor list."""
        if isinstance(expr, relax.Tuple):
            items = [self.qtensor(f) for f in expr.fields]
            return items if all(i is not None for i in items) else None
        found = self.qtensors.get(expr) if isinstance(expr, relax.Var) else None
        return found if isinstance(found, list) else None

    def producer(self, expr: relax.Expr) -> relax.Expr | None:
        return self.producers.get(expr) if isinstance(expr, relax.Var) else None

    def requantize(self, value: relax.Expr, src: QParams, dst: QParams) -> relax.Expr:
        """:func:`tvm_qdq.qnn.ops.requantize`, memoized: a tensor converted to the same
        parameters by several consumers is converted once."""
        key = (value, src.key(), dst.key())
        if key not in self.requantized:
            self.requantized[key] = requantize(self.bb, value, src, dst)
        return self.requantized[key]

    def dequantize(self, q: QTensor, dtype: str) -> relax.Var:
        """The real value of an accumulator for float consumers, rounded once:
        ``dtype(float64(acc) · s_acc)`` (``s_acc = s_x · s_w`` per channel, exact in float64).

        ORT's float Conv/MatMul on the dequantized operands sums float32 products in float32;
        with power-of-two scales and ``|acc| < 2^24`` every product and partial sum is exact,
        so both give the same float32. Otherwise they differ by the float32 rounding of ORT's
        sum (a few ulp of the result), this being the correctly rounded one."""
        key = (q.value, q.params.key(), dtype)
        if key not in self.requantized:
            p = q.params
            scale = p.broadcast(p.scale.astype(np.float64), q.ndim)
            f = self.emit(relax.op.astype(q.value, "float64"))
            f = self.emit(relax.op.multiply(f, relax.const(scale, "float64")))
            self.requantized[key] = self.emit(relax.op.astype(f, dtype), "qnn_dequantize_acc")
        return self.requantized[key]

    def record(self, op: str, var: str, outcome: str, detail: str = "") -> None:
        self.records.append(OpRecord(op, var, outcome, detail))


def scalar_constant(expr: relax.Expr) -> float | None:
    value = constant_value(expr)
    if value is not None and value.size == 1 and np.issubdtype(value.dtype, np.floating):
        return float(value.reshape(()))
    return None
