"""Group the scalar side computations of a model into one kernel each.

Dynamic quantization (ONNX ``DynamicQuantizeLinear``, PyTorch ``quantize_dynamic``) computes
its scale and zero point at run time: ``min(x)``, ``max(x)``, then a chain of 0-d operations
(``minimum(·, 0)``, ``(hi - lo) / 255``, ``round(-lo / s)``, ...). TVM's FuseOps leaves each
reduction and most scalar steps in a kernel of its own (a reduction whose result has several
consumers is not fused), so one DynamicQuantizeLinear costs five kernel calls of a few
nanoseconds of work each before the quantize itself.

:func:`group_scalar_chains` runs between ``LegalizeOps`` and ``FuseOps``: every connected set
of ``call_tir`` bindings of ``main`` whose results are 0-d tensors (a reduction of a whole
tensor, or arithmetic on 0-d tensors) becomes one Relax function marked ``Primitive``, which
``FuseTIR`` turns into one PrimFunc (outputs: the 0-d values used outside the set). Every
value is computed by the same TIR as before, in the same order: results are unchanged.
"""

from __future__ import annotations

import tvm
from tvm import relax

from ...relax_utils import is_prim_value, static_shape

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def _is_scalar_call(binding: relax.Binding) -> bool:
    value = binding.value
    if not isinstance(binding, relax.VarBinding) or not isinstance(value, relax.Call):
        return False
    if not value.op.same_as(_CALL_TIR):
        return False
    return static_shape(binding.var) == ()  # a 0-d tensor


def _call_args(call: relax.Call) -> list[relax.Expr]:
    args = call.args[1]
    return list(args.fields) if isinstance(args, relax.Tuple) else [args]


def _uses(expr: relax.Expr) -> list[relax.Var]:
    found: list[relax.Var] = []
    relax.analysis.post_order_visit(
        expr, lambda e: found.append(e) if isinstance(e, relax.Var) else None)
    return found


class _Group:
    """One connected set of scalar bindings (in program order)."""

    def __init__(self) -> None:
        self.bindings: list[relax.VarBinding] = []

    @property
    def vars(self) -> set:
        return {b.var for b in self.bindings}


def _groups(main: relax.Function) -> list[_Group]:
    """Connected sets of scalar call_tir bindings within each dataflow block, each cut before
    the first other binding that reads one of its values (the set is emitted as one call at
    its last member's place); sets of fewer than 2 bindings are left alone."""
    out: list[_Group] = []
    for block in main.body.blocks:
        bindings = list(block.bindings)
        owner: dict = {}  # var -> group
        for binding in bindings:
            if not _is_scalar_call(binding):
                continue
            linked = {owner[v] for v in _uses(binding.value) if v in owner}
            group = _Group()
            for other in linked:
                group.bindings.extend(other.bindings)
            group.bindings.append(binding)
            for b in group.bindings:
                owner[b.var] = group
        order = {b.var: i for i, b in enumerate(bindings)}
        seen: set[int] = set()
        for group in owner.values():
            if id(group) in seen:
                continue
            seen.add(id(group))
            group.bindings.sort(key=lambda b: order[b.var])
            members = group.vars
            cut = next((i for i, b in enumerate(bindings) if b.var not in members
                        and any(v in members for v in _uses(b.value))), len(bindings))
            group.bindings = [b for b in group.bindings if order[b.var] < cut]
            if len(group.bindings) >= 2:
                out.append(group)
    return out


def _symbolic_sizes(group: _Group, params: list[relax.Var]) -> list:
    """The symbolic sizes the group uses (in its parameters' shapes, its results, its calls'
    ``tir_vars`` or size arguments) that its parameters' shapes do not define (e.g. ``w`` of a
    tensor ``[1, (w - 1) // 2 + 3]``), in first-use order."""
    definable = {v for p in params for v in relax.analysis.definable_tir_vars_in_type(p.ty)}
    found: list = []
    types = [p.ty for p in params]
    for b in group.bindings:
        types += [b.var.ty, *(relax.ShapeType(a.values) for a in b.value.args[2:]
                              if isinstance(a, relax.ShapeExpr)),
                  *(relax.ShapeType([a]) for a in _call_args(b.value) if is_prim_value(a))]
    for t in types:
        for v in relax.analysis.tir_vars_in_type(t):
            if v not in definable and not any(v.same_as(f) for f in found):
                found.append(v)
    return found


def _group_function(group: _Group, mod_builder: relax.BlockBuilder, used_outside: set
                    ) -> tuple[relax.GlobalVar, list[relax.Expr], list[relax.Var]]:
    """(GlobalVar of the Primitive function, its arguments, the group vars it returns)."""
    members = group.vars
    inputs: list[relax.Expr] = []  # variables and constants (FuseTIR takes no constants)
    for b in group.bindings:
        for arg in _call_args(b.value):
            if is_prim_value(arg):  # a size: stays inline (see _symbolic_sizes)
                continue
            if arg not in members and not any(arg.same_as(i) for i in inputs):
                inputs.append(arg)
    outputs = [b.var for b in group.bindings if b.var in used_outside]
    params = [relax.Var(f"p{i}", v.ty) for i, v in enumerate(inputs)]
    remap = dict(zip(inputs, params, strict=True))
    sizes = _symbolic_sizes(group, params)
    if sizes:  # passed as a shape, as FuseOps passes a fused function's ``tir_vars``
        params.append(relax.Var("tir_vars", relax.ShapeType(sizes)))
        inputs.append(relax.ShapeExpr(sizes))
    bb = relax.BlockBuilder()
    with bb.function("scalars", params, attrs={"Primitive": True}, private=True):
        with bb.dataflow():
            for b in group.bindings:
                args = [remap.get(a, a) for a in _call_args(b.value)]
                call = relax.Call(b.value.op, [b.value.args[0], relax.Tuple(args),
                                               *b.value.args[2:]],  # the call's tir_vars
                                  b.value.attrs, b.value.ty_args)
                remap[b.var] = bb.emit(call)
            result = [remap[v] for v in outputs]
            ret = bb.emit_output(result[0] if len(result) == 1 else relax.Tuple(result))
        bb.emit_func_output(ret)
    func = bb.get()["scalars"]
    gvar = mod_builder.add_func(func, "fused_scalars")
    return gvar, inputs, outputs


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, groups: list[_Group], used_outside: set):
        super().__init__(mod)
        self.last = {g.bindings[-1].var: g for g in groups}
        self.skip = {v for g in groups for v in g.vars}
        self.used_outside = used_outside

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        group = self.last.get(binding.var)
        if group is not None:
            gvar, inputs, outputs = _group_function(group, self.builder_, self.used_outside)
            call = relax.Call(gvar, [self.visit_expr(v) for v in inputs])  # vars or consts
            result = self.builder_.emit(call, "scalars")
            for i, var in enumerate(outputs):
                value = result if len(outputs) == 1 else \
                    self.builder_.emit(relax.TupleGetItem(result, i))
                self.set_var_remap(var, value)
            return
        if binding.var in self.skip:
            return
        super().visit_var_binding_(binding)


def group_scalar_chains(mod: tvm.IRModule) -> tvm.IRModule:
    """See the module docstring. Only ``main`` is rewritten."""
    main = mod["main"]
    if not isinstance(main, relax.Function) or not isinstance(main.body, relax.SeqExpr):
        return mod
    groups = _groups(main)
    if not groups:
        return mod
    members = {v for g in groups for v in g.vars}
    used_outside: set = set()
    for block in main.body.blocks:
        for b in block.bindings:
            if b.var not in members:
                used_outside.update(v for v in _uses(b.value) if v in members)
    used_outside.update(v for v in _uses(main.body.body) if v in members)
    rewriter = _Rewriter(mod, groups, used_outside)
    new_main = rewriter.visit_expr(main)
    out = rewriter.builder_.get()
    out[out.get_global_var("main")] = new_main
    return out
