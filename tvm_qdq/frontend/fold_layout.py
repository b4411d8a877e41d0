"""Fold data-movement ops on constants: ``R.permute_dims(c, axes)`` and ``R.reshape(c, shape)``
of a constant ``c`` become the constant ``c.transpose(axes)`` / ``c.reshape(shape)``.

The values are moved, not computed, so the result is exact for every dtype. Converters that
emit a linear layer as ``matmul(x, permute_dims(W))`` (TVM's ``torch.export`` importer) then
hand the backends a constant weight, which their constant-weight kernels need.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from ..relax_utils import constant_value

_PERMUTE = tvm.ir.Op.get("relax.permute_dims")
_RESHAPE = tvm.ir.Op.get("relax.reshape")


def _folded(call: relax.Call) -> relax.Constant | None:
    """The constant ``call`` evaluates to, or None when it is no move of a constant."""
    if not isinstance(call, relax.Call) or not call.args:
        return None
    value = constant_value(call.args[0])
    if value is None:
        return None
    if call.op.same_as(_PERMUTE):
        axes = None if call.attrs.axes is None else [int(a) for a in call.attrs.axes]
        return relax.const(np.ascontiguousarray(np.transpose(value, axes)), str(value.dtype))
    if call.op.same_as(_RESHAPE):
        shape = call.ty.shape if isinstance(call.ty, relax.TensorType) else None
        if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
            return None
        return relax.const(value.reshape([int(d) for d in shape]), str(value.dtype))
    return None


@relax.expr_functor.mutator
class _FoldLayout(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.values: dict = {}

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = self.visit_expr(binding.value)
        folded = _folded(value)
        if folded is not None:
            self.values[binding.var] = folded
        self.builder_.emit_normalized(relax.VarBinding(binding.var, folded or value))

    def visit_var_(self, var: relax.Var) -> relax.Expr:
        return self.values.get(var, var)

    def visit_dataflow_var_(self, var: relax.DataflowVar) -> relax.Expr:
        return self.values.get(var, var)

    def run(self) -> tvm.IRModule:
        for gvar, func in self.mod_.functions.items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gvar, self.visit_expr(func))
        return self.builder_.get()


def fold_constant_layout(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every permute / reshape of a constant replaced by the moved constant
    (the bindings left unused are removed)."""
    out = relax.transform.DeadCodeElimination()(_FoldLayout(mod).run())
    return out.with_attrs(dict(mod.attrs)) if mod.attrs is not None else out
