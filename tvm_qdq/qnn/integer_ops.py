"""The named ops of the integer IR: ``tvm_qdq.requantize`` and ``tvm_qdq.requantize_sum``.

The integer pass emits every requantize and every integer Add/Sub as one call of these Relax
ops, with its operands and parameters explicit, so each backend legalizes the op itself
instead of recognizing an op chain:

``tvm_qdq.requantize(x, zp_in, m, zp_out[, c])``, attributes ``qmin``, ``qmax``,
``out_dtype``, ``rounding``::

    y = out_dtype(clip(rhe(float64(x - zp_in) · m [+ c]) + zp_out, qmin, qmax))

with ``x - zp_in`` formed in int32 (int64 for int64 / uint32 ``x``), ``m`` (float64, > 0),
``c`` (float64, optional: a bias off the accumulator grid), ``zp_in`` / ``zp_out`` (int64)
constants broadcasting against ``x`` and ``rhe`` rounding half to even
(``rounding = "half_to_even"``). Every product and sum is one float64 operation: the result is
the exactly rounded real value except at ties closer than ~1e-12.

``tvm_qdq.requantize_sum(x_0, zp_0, K_0, x_1, zp_1, K_1, ..., zp_out)``, attributes
``shift`` (``S``), ``qmin``, ``qmax``, ``out_dtype``, ``rounding``::

    y = out_dtype(clip(rhe(Σ_i (x_i - zp_i) · K_i / 2^S) + zp_out, qmin, qmax))

with integer ``K_i`` (int64 constants) chosen so that the int64 sum cannot overflow: exact
integer arithmetic. A constant ``x_i`` is already zero-point free (its ``zp_i`` is 0).

Default legalization (:mod:`.legalize`): the float64 / int64 forms the formulas spell out;
the x86 and Hexagon backends legalize the ops themselves first
(``tvm_qdq.backend.x86.rounding``, ``tvm_qdq.backend.hexagon.requant`` / ``requant_add``);
:mod:`.reference` evaluates them in numpy.

Registration: the ops' TVM attributes (``FInferType``, ``FPurity``, ``FLegalize``) are set by
:func:`register`, which runs on first use (building a call, or a backend legalizing a
module), never at import time, and does nothing the second time. Call it before
deserializing a saved integer module in a fresh process.

The frontend → integer pass contract of ONNX QLinearAdd / QLinearMul is a call attribute of
the float op as well (:data:`EXACT_ROUNDING`), not a variable name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from ..relax_utils import constant, constant_value, partial_shape, static_shape
from .dims import broadcast_shapes

REQUANTIZE = "tvm_qdq.requantize"
REQUANTIZE_SUM = "tvm_qdq.requantize_sum"
#: The only rounding the ops have: ties to the even integer.
HALF_TO_EVEN = "half_to_even"

_REGISTERED: list[bool] = []


def register() -> None:
    """Register both ops' TVM attributes (once per process; see the module docstring)."""
    if _REGISTERED:
        return
    from .legalize import legalize_call

    for name in (REQUANTIZE, REQUANTIZE_SUM):
        for key, value in (("FInferType", _infer_type), ("FPurity", True),
                           ("FLegalize", legalize_call)):
            try:
                tvm.ir.register_op_attr(name, key, value)
            except tvm.error.InternalError as err:  # set before by another copy of this module
                if "already registered" not in str(err):
                    raise
    _REGISTERED.append(True)


def _infer_type(call: relax.Call, _ctx) -> relax.TensorType:
    """Output type: the tensor operands broadcast together, of type ``out_dtype``."""
    dtype = str(call.attrs["out_dtype"])
    first = call.args[0].ty
    shapes = [static_shape(a) for a in call.args]
    if any(s is None for s in shapes):
        partial = [partial_shape(a) for a in call.args]
        if any(s is None for s in partial):
            return relax.TensorType(first.shape, dtype)
        try:
            return relax.TensorType(list(broadcast_shapes(*partial)), dtype)
        except ValueError:  # symbolic dims not provably equal: only the rank is known
            return relax.TensorType(ndim=max(len(s) for s in partial), dtype=dtype)
    return relax.TensorType(list(np.broadcast_shapes(*shapes)), dtype)


def _attrs(**values) -> tvm.ir.DictAttrs:
    return tvm.ir.make_node("ir.DictAttrs", rounding=HALF_TO_EVEN, **values)


def _scalar_if_zero(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` as ``dtype``, a 0-d zero when every element is zero."""
    values = np.asarray(values).astype(dtype)
    return np.zeros((), dtype) if not np.any(values != 0) else values


def op_name(expr: relax.Expr) -> str | None:
    """The name of the integer-IR op ``expr`` calls, else None."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and \
            expr.op.name in (REQUANTIZE, REQUANTIZE_SUM):
        return str(expr.op.name)
    return None


@dataclass(frozen=True)
class Requantize:
    """The operands of one ``tvm_qdq.requantize`` (formula in the module docstring).

    Zero points are int64 and multiplier / offset float64 arrays shaped to broadcast against
    ``value``; an all-zero zero point is stored as a 0-d zero."""

    value: relax.Expr
    zero_point_in: np.ndarray
    multiplier: np.ndarray
    zero_point_out: np.ndarray
    qmin: int
    qmax: int
    out_dtype: str
    offset: np.ndarray | None = None

    @property
    def work_dtype(self) -> str:
        """The integer type ``x - zp_in`` is formed in."""
        return "int64" if str(self.value.ty.dtype) in ("int64", "uint32") else "int32"

    def call(self) -> relax.Call:
        register()
        args = [self.value, constant(_scalar_if_zero(self.zero_point_in, "int64"), "int64"),
                constant(self.multiplier, "float64"),
                constant(_scalar_if_zero(self.zero_point_out, "int64"), "int64")]
        if self.offset is not None:
            args.append(constant(self.offset, "float64"))
        return relax.Call(tvm.ir.Op.get(REQUANTIZE), args,
                          _attrs(qmin=int(self.qmin), qmax=int(self.qmax),
                                 out_dtype=str(self.out_dtype)))

    @staticmethod
    def of(call: relax.Expr) -> Requantize | None:
        """The operands of ``call`` when it is a ``tvm_qdq.requantize``, else None."""
        if op_name(call) != REQUANTIZE:
            return None
        args = call.args
        attrs = call.attrs
        offset = constant_value(args[4]) if len(args) > 4 else None
        return Requantize(args[0], constant_value(args[1]), constant_value(args[2]),
                          constant_value(args[3]), int(attrs["qmin"]), int(attrs["qmax"]),
                          str(attrs["out_dtype"]), offset)


@dataclass(frozen=True)
class RequantizeSum:
    """The operands of one ``tvm_qdq.requantize_sum`` (formula in the module docstring):
    ``terms`` are ``(x_i, zp_i)``, ``multipliers`` the int64 ``K_i``."""

    terms: tuple[tuple[relax.Expr, np.ndarray], ...]
    multipliers: tuple[np.ndarray, ...]
    shift: int
    zero_point_out: np.ndarray
    qmin: int
    qmax: int
    out_dtype: str

    def call(self) -> relax.Call:
        register()
        args: list[relax.Expr] = []
        for (x, zp), k in zip(self.terms, self.multipliers, strict=True):
            args += [x, constant(_scalar_if_zero(zp, "int64"), "int64"), constant(k, "int64")]
        args.append(constant(_scalar_if_zero(self.zero_point_out, "int64"), "int64"))
        return relax.Call(tvm.ir.Op.get(REQUANTIZE_SUM), args,
                          _attrs(shift=int(self.shift), qmin=int(self.qmin),
                                 qmax=int(self.qmax), out_dtype=str(self.out_dtype)))

    @staticmethod
    def of(call: relax.Expr) -> RequantizeSum | None:
        """The operands of ``call`` when it is a ``tvm_qdq.requantize_sum``, else None."""
        if op_name(call) != REQUANTIZE_SUM:
            return None
        args, attrs = list(call.args), call.attrs
        triples = [args[i:i + 3] for i in range(0, len(args) - 1, 3)]
        return RequantizeSum(
            tuple((x, constant_value(zp)) for x, zp, _ in triples),
            tuple(constant_value(k) for _, _, k in triples), int(attrs["shift"]),
            constant_value(args[-1]), int(attrs["qmin"]), int(attrs["qmax"]),
            str(attrs["out_dtype"]))


def interval(call: relax.Expr) -> tuple[int, int] | None:
    """``[qmin, qmax]``, the values a call of either op can produce, else None."""
    if op_name(call) is None:
        return None
    return int(call.attrs["qmin"]), int(call.attrs["qmax"])


#: Call attribute of a float ``R.add`` / ``R.multiply`` imported from ONNX QLinearAdd /
#: QLinearMul (the float graph is ``Q(op(DQ(a), DQ(b)))`` either way). ORT's QLinearAdd /
#: QLinearMul kernels round the real result computed from the codes and the scale ratios (an
#: exact tie: half to even of the exact value), while a QDQ graph's reference is the float32
#: ``DQ → op → Q`` pipeline; the integer pass keeps the exact form for calls carrying it.
EXACT_ROUNDING = "tvm_qdq.exact_rounding"


def with_exact_rounding(call: relax.Call) -> relax.Call:
    """``call`` (a float binary op) marked with :data:`EXACT_ROUNDING`."""
    return relax.Call(call.op, call.args, tvm.ir.make_node("ir.DictAttrs",
                                                           **{EXACT_ROUNDING: True}))


def rounds_exactly(call: relax.Expr) -> bool:
    """Whether ``call`` carries :data:`EXACT_ROUNDING`."""
    attrs = getattr(call, "attrs", None)
    return isinstance(attrs, tvm.ir.DictAttrs) and bool(attrs.get(EXACT_ROUNDING, False))
