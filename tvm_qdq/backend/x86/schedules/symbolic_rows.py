"""Loops of symbolic extent split by a vector or tile factor: a main part and a tail.

``sch.split(loop, [None, f])`` of a loop whose extent ``E`` is a symbolic expression (a
sequence length, a batch) gives an outer loop of ``ceil(E / f)`` tiles and a predicate
``outer·f + inner < E`` on every block under it, unless ``f`` provably divides ``E``. A
predicate under a vectorized loop scalarizes it, and TVM's ``loop_partition`` refuses a
symbolic loop. :class:`SymbolicLoops` records such splits while a schedule is built and,
once the schedule is done, rewrites each recorded outer loop as

* a **main part** ``for outer in range(E // f)`` whose blocks have the split's predicate
  removed (for ``outer < E // f`` and ``0 ≤ inner < f``, ``outer·f + inner ≤ (E // f)·f − 1
  < E`` holds, so the predicate is true), keeping every loop kind: the vector loops are
  predicate-free;
* a **tail** ``if E mod f ≠ 0:`` the loop body once for ``outer = E // f``, its blocks
  named ``<name>_tail``: the vector loop over ``inner`` (where ``inner < r = E mod f``
  is the predicate) runs as ``r // 4`` vectors of 4 lanes and ``r mod 4`` scalar
  iterations, each within ``r``, so without the predicate; parallel loops are serial.

Both parts run the same block bodies on the same points in the same order per point, so the
result is that of the unsplit loop.

Whether a loop of symbolic size is worth running in parallel depends on the size of the call
(a thread-pool launch costs more than a small row block), so :meth:`SymbolicLoops.parallel`
makes the choice at run time, as the static schedules make it at compile time: the loop
becomes ``if size >= threshold: <parallel loop> else: <the same loop serial>``.

Static extents never reach this module's rewrites: the schedules use it only where an extent
is not an integer constant.
"""

from __future__ import annotations

import math

import tvm_ffi
from tvm import ir, s_tir, tirx
from tvm import sym as arith

#: Value assumed for a symbolic dimension when a schedule needs a size (parallel or not).
NOMINAL_DIM = 64


def is_symbolic(extent: tirx.PrimExpr | int) -> bool:
    """True for an extent that is not an integer constant."""
    return not isinstance(extent, int | tirx.IntImm)


def known_divisor(extent: tirx.PrimExpr) -> int:
    """The largest integer that divides ``extent`` for every value of its variables (the
    value itself when static): e.g. 384 for ``b·s·384``."""
    if isinstance(extent, tirx.IntImm):
        return int(extent)
    modular = arith.Analyzer().modular_set(extent)
    return int(modular.coeff) if int(modular.base) == 0 else 1


def divides(factor: int, extent: tirx.PrimExpr) -> bool:
    """``factor`` divides ``extent`` for every value of its variables."""
    divisor = known_divisor(extent)
    return divisor % factor == 0 if divisor else False


def substitute(node, values: dict) -> object:
    """``node`` (an expression or statement) with each variable in ``values`` (keyed by the
    variable) replaced by its value."""
    def replace(var):
        for key, value in values.items():
            if var.same_as(key):
                return value
        return var
    return tvm_ffi.structural_map(node, (tirx.Var, replace))


def _vars(node) -> list[tirx.Var]:
    found: list[tirx.Var] = []

    def add(var: tirx.Var) -> None:
        if not any(var.same_as(f) for f in found):
            found.append(var)

    tvm_ffi.structural_walk(node, (tirx.Var, add))
    return found


def nominal_size(extent: tirx.PrimExpr) -> int:
    """``extent`` with every symbolic variable set to :data:`NOMINAL_DIM` (for decisions
    that need a size, e.g. whether to parallelize)."""
    if isinstance(extent, tirx.IntImm):
        return int(extent)
    value = substitute(extent, {v: tirx.const(NOMINAL_DIM, str(v.ty)) for v in _vars(extent)})
    value = arith.Analyzer().simplify(value)
    return int(value) if isinstance(value, tirx.IntImm) else NOMINAL_DIM


class SymbolicLoops:
    """The splits of a schedule under construction whose factor may not divide their
    symbolic extent, and its parallel loops of symbolic size; :meth:`apply` rewrites the
    finished function into main parts + tails and per-call parallel choices (module
    docstring)."""

    def __init__(self) -> None:
        self._splits: list[tuple[tirx.Var, tirx.PrimExpr, int]] = []
        self._parallel: list[tuple[tirx.Var, tirx.PrimExpr]] = []
        self._exact = False

    def __bool__(self) -> bool:
        return bool(self._splits) or bool(self._parallel) or self._exact

    def parallel(self, sch: s_tir.Schedule, loop, size: tirx.PrimExpr,
                 threshold: int) -> None:
        """``sch.parallel(loop)``, taken only by calls where ``size >= threshold`` and the
        loop has more than one iteration (the others run it serially), when ``size`` is
        symbolic; a plain parallel loop otherwise."""
        sch.parallel(loop)
        if is_symbolic(size):
            node = sch.get(loop)
            self._parallel.append((node.loop_var, tirx.And(
                size >= threshold, node.extent > 1)))

    def split(self, sch: s_tir.Schedule, loop, factors: list) -> list:
        """``sch.split(loop, factors)`` (one entry None: ``[None, f]`` or ``[c, None, f]``).
        A split ``[None, f]`` of a symbolic extent that ``f`` may not divide is recorded for
        the main part + tail rewrite; any other split of a symbolic extent must divide it
        (ValueError otherwise), and its predicate, true everywhere, is dropped by
        :meth:`apply`."""
        extent = sch.get(loop).extent
        if not is_symbolic(extent):
            return list(sch.split(loop, factors))
        product = math.prod(f for f in factors if f is not None)
        if divides(product, extent):
            self._exact = True
            return list(sch.split(loop, factors))
        if len(factors) != 2 or factors[0] is not None:
            raise ValueError(f"{factors} need not divide the extent {extent}")
        outer, inner = sch.split(loop, factors)
        self._splits.append((sch.get(outer).loop_var, extent, product))
        return [outer, inner]

    def padded(self, sch: s_tir.Schedule, outer, extent: tirx.PrimExpr, factor: int) -> None:
        """Record ``outer``, the outer loop of a split by ``factor`` of a loop already padded
        to ``⌈extent / factor⌉`` whole tiles (its blocks that must stay within ``extent`` are
        predicated ``outer·factor + rest < extent``), for the main part + tail rewrite."""
        if is_symbolic(extent) and not divides(factor, extent):
            self._splits.append((sch.get(outer).loop_var, extent, factor))

    def apply(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """``func`` (the scheduled function) with every recorded outer loop rewritten as its
        main part and tail."""
        if not self:
            return func

        def rewrite(loop: tirx.For):
            stmt = loop
            for var, extent, factor in self._splits:
                if loop.loop_var.same_as(var):
                    stmt = _main_and_tail(loop, extent, factor)
            for var, condition in self._parallel:
                if loop.loop_var.same_as(var):
                    stmt = parallel_if(condition, stmt)
            return stmt

        body = tvm_ffi.structural_map(func.body, (tirx.For, rewrite))
        return func.with_body(_drop_true_predicates(body))


def _main_and_tail(loop: tirx.For, extent: tirx.PrimExpr, factor: int) -> tirx.Stmt:
    var = loop.loop_var
    tiles = extent // factor
    main_body = _drop_split_predicates(loop.body, var, extent, factor)
    main = tirx.For(var, loop.min, tiles, loop.kind, main_body, loop.thread_binding,
                    loop.annotations)
    tail_body = _serial_tail(_fresh_definitions(substitute(loop.body, {var: tiles})),
                             extent, factor)
    tail = tirx.IfThenElse(tirx.NE(tirx.floormod(extent, factor), tirx.const(0, str(var.ty))),
                           tail_body, None)
    return tirx.SeqStmt([main, tail])


def _loop_ranges(stmt: tirx.Stmt) -> arith.Analyzer:
    ana = arith.Analyzer()

    def bind(loop: tirx.For) -> None:
        ana.bind(loop.loop_var, ir.Range.from_min_extent(loop.min, loop.extent))

    tvm_ffi.structural_walk(stmt, (tirx.For, bind))
    return ana


def _conjuncts(expr: tirx.PrimExpr) -> list[tirx.PrimExpr]:
    if isinstance(expr, tirx.And):
        return _conjuncts(expr.a) + _conjuncts(expr.b)
    return [expr]


def _is_split_predicate(cond: tirx.PrimExpr, var: tirx.Var, extent: tirx.PrimExpr,
                        factor: int, ana: arith.Analyzer) -> bool:
    """``cond`` is ``var·factor + rest < extent`` with ``rest < factor`` for every point of
    the loops under the split (so it holds for ``var < extent // factor``)."""
    if not isinstance(cond, tirx.LT) or not ana.can_prove_equal(cond.b, extent):
        return False
    rest = ana.simplify(cond.a - var * factor)
    if any(v.same_as(var) for v in _vars(rest)):
        return False
    return ana.can_prove(rest < factor)


def _drop_split_predicates(body: tirx.Stmt, var: tirx.Var, extent: tirx.PrimExpr,
                           factor: int) -> tirx.Stmt:
    ana = _loop_ranges(body)

    def strip(realize: s_tir.SBlockRealize):
        kept = [c for c in _conjuncts(realize.predicate)
                if not _is_split_predicate(c, var, extent, factor, ana)]
        return s_tir.SBlockRealize(realize.iter_values, _conjunction(kept), realize.block)

    return tvm_ffi.structural_map(body, (s_tir.SBlockRealize, strip))


def _fresh_definitions(body: tirx.Stmt) -> tirx.Stmt:
    """``body`` with a new variable for every loop, block iterator and bound value it
    defines (the tail is a copy of the main part's body, and a TIR variable has one
    definition)."""
    defined: list[tirx.Var] = []

    def loop_var(loop: tirx.For) -> None:
        defined.append(loop.loop_var)

    def block_vars(block: s_tir.SBlock) -> None:
        defined.extend(iv.var for iv in block.iter_vars)

    def bound_var(bind: tirx.Bind) -> None:
        defined.append(bind.var)

    tvm_ffi.structural_walk(body, [(tirx.For, loop_var), (s_tir.SBlock, block_vars),
                                   (tirx.Bind, bound_var)])
    return substitute(body, {v: tirx.Var(f"{v.name}_t", str(v.ty)) for v in defined})


def _drop_true_predicates(body: tirx.Stmt) -> tirx.Stmt:
    """``body`` without the block predicate conjuncts ``lhs < rhs`` that hold at every point
    of the loops: ``lhs`` linear in the loop variables with non-negative coefficients, so its
    largest value is at the last iteration of each loop, and that value is below ``rhs``
    (symbolic dimensions are at least 1)."""
    ana = _loop_ranges(body)
    extents: dict = {}

    def last(loop: tirx.For) -> None:
        extents[loop.loop_var] = loop.min + loop.extent - 1

    tvm_ffi.structural_walk(body, (tirx.For, last))
    loop_vars = list(extents)
    symbolic = [v for v in _vars(body) if not any(v.same_as(lv) for lv in loop_vars)]
    for var in symbolic:
        if str(var.ty).startswith("int"):
            ana.bind(var, ir.Range.from_min_extent(1, 1 << 31))

    def holds(cond: tirx.PrimExpr) -> bool:
        if isinstance(cond, tirx.Or):
            return holds(cond.a) or holds(cond.b)
        if not isinstance(cond, tirx.LT):
            return False
        used = [v for v in loop_vars if any(v.same_as(u) for u in _vars(cond.a))]
        coef = arith.detect_linear_equation(cond.a, used)
        if len(coef) != len(used) + 1 or not all(ana.can_prove(c >= 0) for c in coef[:-1]):
            return False
        largest = coef[-1]
        for c, var in zip(coef[:-1], used, strict=True):
            largest = largest + c * extents[var]
        return ana.can_prove(cond.b - largest > 0)

    def strip(realize: s_tir.SBlockRealize):
        kept = [c for c in _conjuncts(realize.predicate) if not holds(c)]
        return s_tir.SBlockRealize(realize.iter_values, _conjunction(kept), realize.block)

    return tvm_ffi.structural_map(body, (s_tir.SBlockRealize, strip))


def _conjunction(conds: list[tirx.PrimExpr]) -> tirx.PrimExpr:
    predicate = conds[0] if conds else tirx.const(True, "bool")
    for cond in conds[1:]:
        predicate = tirx.And(predicate, cond)
    return predicate


def parallel_if(condition: tirx.PrimExpr, stmt: tirx.Stmt) -> tirx.Stmt:
    """``if condition: stmt else: stmt`` with its parallel loops serial."""
    return tirx.IfThenElse(condition, stmt, _serial_copy(stmt))


def parallel_per_call(func: tirx.PrimFunc, size: tirx.PrimExpr,
                      threshold: int) -> tirx.PrimFunc:
    """``func`` with each outermost parallel loop taken only by calls where ``size >=
    threshold`` (:meth:`SymbolicLoops.parallel`, for a function written directly in TIR)."""
    def choose(loop: tirx.For):
        if loop.kind != tirx.ForKind.PARALLEL:
            return loop
        return parallel_if(tirx.And(size >= threshold, loop.extent > 1), loop)

    def outermost(loop: tirx.For, mutator):
        if loop.kind == tirx.ForKind.PARALLEL:
            return choose(loop)
        return mutator.default_mutate(loop)

    return func.with_body(tvm_ffi.structural_mutate(func.body, (tirx.For, outermost)))


def _serial_copy(stmt: tirx.Stmt) -> tirx.Stmt:
    """``stmt`` with its parallel loops serial, fresh definitions, blocks renamed
    ``<name>_serial``."""
    def serial(loop: tirx.For):
        if loop.kind == tirx.ForKind.PARALLEL:
            return tirx.For(loop.loop_var, loop.min, loop.extent, tirx.ForKind.SERIAL,
                            loop.body, loop.thread_binding, loop.annotations)
        return loop

    return tvm_ffi.structural_map(_fresh_definitions(stmt),
                                  [(tirx.For, serial), (s_tir.SBlock, _renamed("serial"))])


def _renamed(suffix: str):
    def rename(block: s_tir.SBlock) -> s_tir.SBlock:
        return s_tir.SBlock(block.iter_vars, block.reads, block.writes,
                            f"{block.name_hint}_{suffix}", block.body, block.init,
                            block.alloc_buffers, block.match_buffers, block.annotations)
    return rename


def _serial_tail(body: tirx.Stmt, extent: tirx.PrimExpr, factor: int) -> tirx.Stmt:
    """The tail's loops: parallel ones serial; a vectorized loop the split's predicate
    ``(E // f)·f + lane < E`` depends on becomes :func:`_narrow_vectors` (other vector loops,
    e.g. over channels inside a predicated pixel loop, stay as they are); blocks renamed
    ``<name>_tail``."""
    def predicated_on(loop: tirx.For) -> bool:
        found = []

        def visit(realize: s_tir.SBlockRealize) -> None:
            if any(v.same_as(loop.loop_var) for v in _vars(realize.predicate)):
                found.append(realize)

        tvm_ffi.structural_walk(loop.body, (s_tir.SBlockRealize, visit))
        return bool(found)

    def serial(loop: tirx.For):
        if loop.kind == tirx.ForKind.VECTORIZED and predicated_on(loop):
            narrowed = _narrow_vectors(loop, extent, factor)
            if narrowed is not None:
                return narrowed
        if loop.kind == tirx.ForKind.PARALLEL or (
                loop.kind == tirx.ForKind.VECTORIZED and predicated_on(loop)):
            return tirx.For(loop.loop_var, loop.min, loop.extent, tirx.ForKind.SERIAL,
                            loop.body, loop.thread_binding, loop.annotations)
        return loop

    return tvm_ffi.structural_map(body, [(tirx.For, serial), (s_tir.SBlock, _renamed("tail"))])


#: Vector width of the tail's remainder (the rows of a tail are fewer than the factor).
TAIL_LANES = 4


def _narrow_vectors(loop: tirx.For, extent: tirx.PrimExpr, factor: int) -> tirx.Stmt | None:
    """The tail's vector loop over ``lane`` (extent ``factor``) under the predicate
    ``(E // f)·f + lane < E``, i.e. ``lane < r`` with ``r = E − (E // f)·f``, as
    ``r // 4`` vectors of :data:`TAIL_LANES` lanes and ``r mod 4`` scalar iterations: each
    runs ``lane < r`` only, so the predicate is dropped. None when the loop is not of that
    form or ``factor`` is not above the narrow width."""
    lane = loop.loop_var
    if factor <= TAIL_LANES or not isinstance(loop.extent, tirx.IntImm) or \
            int(loop.extent) != factor or not _is_zero(loop.min):
        return None
    ana = arith.Analyzer()
    start = extent // factor * factor

    def is_lane_bound(cond: tirx.PrimExpr) -> bool:
        if not isinstance(cond, tirx.LT) or not ana.can_prove_equal(cond.b, extent):
            return False
        offset = ana.simplify(cond.a - start)
        return isinstance(offset, tirx.Var) and offset.same_as(lane)

    dropped = []

    def strip(realize: s_tir.SBlockRealize):
        conds = _conjuncts(realize.predicate)
        kept = [c for c in conds if not is_lane_bound(c)]
        dropped.append(len(kept) != len(conds))
        return s_tir.SBlockRealize(realize.iter_values, _conjunction(kept), realize.block)

    body = tvm_ffi.structural_map(loop.body, (s_tir.SBlockRealize, strip))
    if not dropped or not all(dropped):
        return None
    dtype = str(lane.ty)
    rest = extent - start
    vec_outer, vec_lane = tirx.Var(f"{lane.name}_o", dtype), tirx.Var(f"{lane.name}_v", dtype)
    vectors = tirx.For(vec_outer, tirx.const(0, dtype), rest // TAIL_LANES,
                       tirx.ForKind.SERIAL, tirx.For(
                           vec_lane, tirx.const(0, dtype), tirx.const(TAIL_LANES, dtype),
                           tirx.ForKind.VECTORIZED, _fresh_definitions(substitute(
                               body, {lane: vec_outer * TAIL_LANES + vec_lane}))))
    scalar = tirx.Var(f"{lane.name}_s", dtype)
    scalars = tirx.For(scalar, tirx.const(0, dtype), rest % TAIL_LANES, tirx.ForKind.SERIAL,
                       tvm_ffi.structural_map(_fresh_definitions(substitute(
                           body, {lane: rest // TAIL_LANES * TAIL_LANES + scalar})),
                           (s_tir.SBlock, _renamed("rest"))))
    return tirx.SeqStmt([vectors, scalars])


def _is_zero(expr: tirx.PrimExpr) -> bool:
    return isinstance(expr, tirx.IntImm) and int(expr) == 0
