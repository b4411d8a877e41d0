"""Vectorizable float32 ``erf`` and ``exp`` (the x86 and Hexagon builds share them).

TVM lowers ``tirx.erf`` to a call of libm's ``erff`` (the op is not ``TVectorizable``, so a
vectorized loop holding it is scalarized) and ``tirx.exp`` to LLVM's ``llvm.exp.v16f32``,
which the x86 backend expands into 16 calls of ``expf``: a GELU epilogue fused to a VNNI
matmul would cost far more than the matmul. Here both are
polynomials built from ``+ × floor min max select`` and integer bit operations only, so
the loop stays a vector loop (AVX-512: 16 lanes).

:func:`use_fast_math` rewrites the Relax module before legalization: every float32
``R.erf``, ``R.exp``, ``R.nn.gelu`` and ``R.nn.softmax`` becomes a ``call_tir`` of the TE
functions below (same PrimFunc names as TVM's own legalization, so fusion and schedules are
unchanged). Compile-time math (e.g. the QDQ models' GELU lookup tables, computed in numpy)
is untouched; only run-time float32 arithmetic changes.

**exp** (:func:`exp_expr`): ``x`` is clamped to ``[-104, 89]`` (``e^-104`` is below half
the smallest subnormal, ``e^89`` above ``FLT_MAX``: the clamp changes no result),
``n = floor(x·log2(e) + 1/2)``, ``r = (x − n·ln2_hi) − n·ln2_lo`` (``ln2_hi`` has 16
significant bits, so ``n·ln2_hi`` is exact), ``|r| ≲ ln2/2``, and
``e^x = p(r) · 2^⌊n/2⌋ · 2^(n−⌊n/2⌋)`` with ``p`` a degree-6 weighted-minimax polynomial of
``e^r`` (relative error 1.9e-9) and each power of two built from its exponent bits (two
factors keep both in the normal range for ``n ∈ [−150, 128]``, so subnormal results and
overflow to ``inf`` come out of the final multiplications). NaN propagates.

**erf** (:func:`erf_expr`), with ``a = |x|``:

* ``a ≤ 0.921875``: ``erf(x) = x + x·R(x²)`` (one FMA), ``R`` of degree 6 fitted to
  ``erf(x)/x − 1`` on ``[0, 0.921875²]`` (minimax error 4e-10). Adding ``x`` last keeps the
  rounding of ``R`` out of the leading term (``x·P(x²)`` with ``P = 1 + R`` was 2.8 ulp);
* ``a > 0.921875``: ``erf(x) = ±(1 − e^Q(u))``, ``u = min(a, 4) − 0.921875``, ``Q`` of
  degree 7 fitted to ``ln erfc`` on ``[0.921875, 4]`` with weight ``erfc`` (the error of
  ``erf``: 4e-11). ``erfc(4) = 1.5e-8`` is below half an ulp of 1, so ``erf(a ≥ 4)`` is
  ``±1`` exactly as in float32 (float32 ``erf`` rounds to 1 from ``a = 3.919206``).
  ``e^Q`` uses the reduction above with ``Q ∈ [−18, −1.6]`` (one power of two, no clamps).

Coefficients: iteratively reweighted least squares (Lawson's algorithm) on 6000 Chebyshev
nodes in float64, rounded to float32.

Measured with the built AVX-512 kernel against float64 ``math.erf`` / ``math.exp`` (scipy's,
for the exhaustive sweeps), in ulp of the float32 nearest the exact value:

* erf, **every** float32 with ``|x| ≤ 4.5`` (2.2e9 values; beyond, the result is ``±1``
  exactly): max error **1.08 ulp** (at ``x = 0.9236708``), max abs error 6.4e-8.
* exp, every float32 in ``[−104, 89]`` with a normal result: max error **1.06 ulp** (at
  ``x = 5.201181``); subnormal results within one subnormal step; ``±inf``, NaN exact.

:data:`ERF_MAX_ULP`, :data:`ERF_MAX_ABS` and :data:`EXP_MAX_ULP` are these bounds (rounded
up); ``tests/test_x86_fast_math.py`` checks them on a dense sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tvm
from tvm import relax, te, tirx

from .canonical_shapes import canonical_operand
from .kernel_tags import SOFTMAX_ROWS, tag

# ----------------------------------------------------------------------------------------------
# Coefficients (see the module docstring)
# ----------------------------------------------------------------------------------------------

#: erf(x) = x + x·R(x²) for |x| ≤ ERF_SPLIT; R's coefficients, constant term first.
ERF_SPLIT = 0.921875
ERF_SMALL = (0.12837916612625122, -0.37612634897232056, 0.11283701658248901,
             -0.026859702542424202, 0.005201716907322407, -0.0008149815257638693,
             8.397829515160993e-05)
#: erfc(a) = exp(Q(a − ERF_CENTER)) for ERF_SPLIT ≤ a ≤ ERF_ONE; Q's coefficients.
ERF_CENTER = ERF_SPLIT
ERF_ONE = 4.0
ERF_LARGE = (-1.6485618352890015, -2.508012533187866, -0.8329886198043823,
             -0.044826023280620575, 0.010854143649339676, -0.0021452377550303936,
             0.00029877296765334904, -2.118417432939168e-05)
#: e^r on |r| ≤ ln2/2, constant term first.
EXP_POLY = (1.0, 1.0, 0.49999991059303284, 0.16666419804096222, 0.04166822507977486,
            0.008374815806746483, 0.0013836845755577087)
LOG2E = 1.4426950216293335
LN2_HI = 0.693145751953125  # 0x3f317200: 16 significant bits
LN2_LO = 1.428606765330187e-06  # ln 2 − LN2_HI
EXP_LO, EXP_HI = -104.0, 89.0

#: Measured accuracy of the built kernels (exhaustive sweeps, see the module docstring).
ERF_MAX_ULP = 1.1
ERF_MAX_ABS = 6.5e-8
EXP_MAX_ULP = 1.1

_F32 = "float32"


# ----------------------------------------------------------------------------------------------
# Expressions
# ----------------------------------------------------------------------------------------------


def _c(value: float) -> tirx.PrimExpr:
    return tirx.const(value, _F32)


def _let(name: str, value: tirx.PrimExpr,
         body: Callable[[tirx.Var], tirx.PrimExpr]) -> tirx.PrimExpr:
    """``let v = value in body(v)`` (one evaluation of ``value``, however often it is used)."""
    var = tirx.Var(name, value.ty)
    return tirx.Let(var, value, body(var))


def _horner(u: tirx.PrimExpr, coeffs: Sequence[float]) -> tirx.PrimExpr:
    """``Σ coeffs[k]·u^k`` by Horner's rule (LLVM contracts each step to one FMA)."""
    acc = _c(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * u + _c(c)
    return acc


def _pow2(n: tirx.PrimExpr) -> tirx.PrimExpr:
    """``2^n`` for an int32 ``n ∈ [−126, 127]``: the float32 with biased exponent ``n+127``."""
    bits = tirx.shift_left(n + tirx.const(127, "int32"), tirx.const(23, "int32"))
    return tirx.reinterpret(_F32, bits)


def _exp_reduced(y: tirx.PrimExpr, body: Callable[[tirx.PrimExpr, tirx.PrimExpr],
                                                   tirx.PrimExpr]) -> tirx.PrimExpr:
    """``body(p(r), n)`` with ``e^y = p(r)·2^n`` (``n`` int32, ``|r| ≲ ln2/2``)."""
    def with_n(nf: tirx.Var) -> tirx.PrimExpr:
        r = (y - nf * _c(LN2_HI)) - nf * _c(LN2_LO)
        return _let("fm_r", r, lambda rv: body(_horner(rv, EXP_POLY),
                                               tirx.Cast("int32", nf)))

    return _let("fm_n", tirx.floor(y * _c(LOG2E) + _c(0.5)), with_n)


def _is_nan(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``x`` is a NaN: its bits without the sign exceed those of ``inf`` (integer operations:
    TVM's vectorizer scalarizes a loop holding ``isnan``)."""
    bits = tirx.reinterpret("int32", x) & tirx.const(0x7FFFFFFF, "int32")
    return bits > tirx.const(0x7F800000, "int32")


def exp_expr(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """float32 ``e^x`` (see the module docstring; max error 1.06 ulp)."""
    def body(xv: tirx.Var) -> tirx.PrimExpr:
        y = tirx.Min(tirx.Max(xv, _c(EXP_LO)), _c(EXP_HI))

        def scale(p: tirx.PrimExpr, n: tirx.PrimExpr) -> tirx.PrimExpr:
            def halves(nv: tirx.Var) -> tirx.PrimExpr:
                n1 = tirx.shift_right(nv, tirx.const(1, "int32"))  # ⌊n/2⌋
                return _let("fm_n1", n1, lambda h: p * _pow2(h) * _pow2(nv - h))
            return _let("fm_ni", n, halves)

        value = _let("fm_y", y, lambda yv: _exp_reduced(yv, scale))
        return tirx.Select(_is_nan(xv), xv, value)  # NaN in, NaN out

    return _let("fm_x", x, body)


def erf_expr(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """float32 ``erf(x)`` (see the module docstring; max error 1.08 ulp)."""
    def body(xv: tirx.Var) -> tirx.PrimExpr:
        def by_size(a: tirx.Var) -> tirx.PrimExpr:
            small = _let("fm_t", xv * xv, lambda t: xv * _horner(t, ERF_SMALL) + xv)
            u = tirx.Min(tirx.Max(a, _c(ERF_SPLIT)), _c(ERF_ONE)) - _c(ERF_CENTER)
            q = _let("fm_u", u, lambda uv: _horner(uv, ERF_LARGE))
            one_minus = _let("fm_q", q, lambda qv: _exp_reduced(
                qv, lambda p, n: _c(1.0) - p * _pow2(n)))
            large = _let("fm_big", one_minus,
                         lambda b: tirx.Select(xv < _c(0.0), _c(0.0) - b, b))
            # NaN: a > split is false, and x + x·R(x²) is NaN.
            return tirx.Select(a > _c(ERF_SPLIT), large, small)

        return _let("fm_a", tirx.abs(xv), by_size)

    return _let("fm_x", x, body)


# ----------------------------------------------------------------------------------------------
# TE functions (what the Relax ops legalize to here)
# ----------------------------------------------------------------------------------------------


def te_erf(x: te.Tensor) -> te.Tensor:
    """Elementwise :func:`erf_expr`."""
    return te.compute(x.shape, lambda *i: erf_expr(x(*i)), name="T_erf", tag="elemwise")


def te_exp(x: te.Tensor) -> te.Tensor:
    """Elementwise :func:`exp_expr`."""
    return te.compute(x.shape, lambda *i: exp_expr(x(*i)), name="T_exp", tag="elemwise")


def te_gelu(x: te.Tensor) -> te.Tensor:
    """``gelu(x) = x · (½ + erf(x·√½) · ½)`` (the order of TVM's own legalization of
    ``R.nn.gelu``) with :func:`erf_expr` for the error function."""
    half = tirx.const(0.5, x.dtype)
    root_half = tirx.const(0.5**0.5, x.dtype)
    return te.compute(x.shape, lambda *i: x(*i) * (half + erf_expr(x(*i) * root_half) * half),
                      name="T_gelu", tag="elemwise")


#: Exponent below which a softmax term is 0: ``e^-87 ≈ 1.6e-38`` is still a normal float32.
SOFTMAX_EXP_FLOOR = -87.0
#: The smallest normal float32, 2^-126.
FLT32_MIN = 2.0 ** -126


def softmax_exp(d: tirx.PrimExpr) -> tirx.PrimExpr:
    """A softmax term ``e^d`` (``d = x − max ≤ 0``): :func:`exp_expr`, but 0 for
    ``d < -87``, computed without ever forming a subnormal number (an Intel CPU takes a
    microcode assist for each subnormal result). The row sum is unchanged: it holds the term
    ``e^0 = 1``, and the dropped terms add less than ``n·1.6e-38``, far below half an ulp of
    1 for any row length; each dropped term's output is 0 instead of a value below
    ``1.6e-38``. NaN stays NaN.

    On ``y = max(d, -87) ∈ [-87, 0]`` the clamp of :func:`exp_expr` changes nothing, and
    ``n = ⌊y·log2(e) + ½⌋ ∈ [-125, 0]``: ``p(r)·2^n`` (``p(r) ∈ [0.7, 1.42]``) is normal, so
    one power of two gives the bits of the two half powers of :func:`exp_expr`."""
    floor = _c(SOFTMAX_EXP_FLOOR)

    def term(dv: tirx.Var) -> tirx.PrimExpr:
        # e^max(d, floor) is bound before the selection, so that it is computed on the
        # clamped value in every vector lane (inside the selection the clamp would be
        # simplified away)
        y = tirx.Max(dv, floor)
        e = _let("fm_y", y, lambda yv: _exp_reduced(yv, lambda p, n: p * _pow2(n)))
        return _let("fm_e", e, lambda ev: tirx.Select(
            dv < floor, _c(0.0), tirx.Select(_is_nan(dv), dv, ev)))

    return _let("fm_d", d, term)


#: Lanes of the last-axis softmax's partial reductions (one AVX-512 vector of float32).
SOFTMAX_LANES = 16


def _tree(terms: list, combine: Callable) -> tirx.PrimExpr:
    """``terms`` combined pairwise: ``t_i ⊕ t_{i+h}`` for ``h`` = half the (rounded up)
    count, repeated down to one term."""
    while len(terms) > 1:
        half = (len(terms) + 1) // 2
        terms = [combine(terms[i], terms[i + half]) if i + half < len(terms) else terms[i]
                 for i in range(half)]
    return terms[0]


def te_softmax_rows(x: te.Tensor) -> te.Tensor:
    """:func:`te_softmax` along the last axis (length ``n``) with a fixed order of the sum
    that vectorizes along the row. With ``L`` lanes (16; ``n`` when static and smaller),
    ``c = ⌊n / L⌋`` whole chunks and ``r = n mod L``:

    * ``M_l = max_{t<c} x_{tL+l}``, ``S_l = Σ_{t<c} e_{tL+l}`` in ascending ``t`` (lane ``l``
      holds the elements ``j ≡ l (mod L)`` of the whole chunks; a symbolic ``n < L``: one
      chunk of identities, ``min float32`` and ``0``);
    * the tail: lane ``l`` holds ``x_{n−L+l}`` for ``l ≥ L − r`` (the last ``r`` elements,
      read as the row's last whole vector) and the identity (``min float32``, ``0``)
      otherwise; for a symbolic ``n < L`` lane ``l < n`` holds ``x_l``;
    * ``m = max_l max(M_l, T_l)``, ``s = Σ_l (S_l + U_l)`` (``T``, ``U`` the tails of ``x``,
      ``e``) as pairwise trees over the lanes (:func:`_tree`);
    * ``e_j = softmax_exp(x_j − m)``, ``y_j = 0`` when ``e_j < s·2^-126``, else
      ``e_j · (1/s)``.

    Every stage is tagged :data:`~tvm_qdq.backend.kernel_tags.SOFTMAX_ROWS`."""
    *rows, n = x.shape
    attrs = tag(SOFTMAX_ROWS)
    static = isinstance(n, int | tirx.IntImm)
    lanes = min(SOFTMAX_LANES, int(n)) if static else SOFTMAX_LANES
    low = tirx.min_value("float32")
    zero = _c(0.0)
    dtype = str(n.ty) if not static else "int64"
    n = tirx.const(int(n), dtype) if static else n
    chunks = n // lanes if not static else tirx.const(int(n) // lanes, dtype)
    has_tail = not static or int(n) % lanes != 0

    def tail(src: te.Tensor, identity: tirx.PrimExpr, r: tuple, lane) -> tirx.PrimExpr:
        """Lane ``lane`` of the tail of row ``r`` of ``src`` (see above)."""
        rem = n % lanes
        big = src(*r, n - lanes + lane)
        valid = lane >= lanes - rem
        if static:
            return tirx.Select(valid, big, identity)
        small = src(*r, tirx.min(lane, n - 1))
        value = tirx.if_then_else(n >= lanes, big, small)
        return tirx.Select(tirx.Select(n >= lanes, valid, lane < n), value, identity)

    lane_shape = [*rows, lanes]
    # a reduction over no element leaves its output unwritten (its init sits in the loop):
    # a symbolic n < L gets one chunk whose lanes hold the identity
    steps = chunks if static else tirx.max(chunks, tirx.const(1, dtype))

    def chunk(src: te.Tensor, identity: tirx.PrimExpr, r: tuple, t, lane) -> tirx.PrimExpr:
        value = src(*r, t * lanes + lane)
        return value if static else tirx.if_then_else(n >= lanes, value, identity)

    def row_reduction(src: te.Tensor, identity: tirx.PrimExpr, reducer: Callable,
                      combine: Callable, label: str, name: str) -> te.Tensor:
        """Per row: ``reducer`` over the whole chunks lane by lane, each lane ``combine``d
        with its tail lane, then the lanes' pairwise tree (see above)."""
        t = te.reduce_axis((0, steps), name="t")
        part = te.compute(lane_shape, lambda *i: reducer(chunk(src, identity, i[:-1], t, i[-1]),
                                                         axis=t),
                          name=f"T_softmax_part{label}", attrs=attrs)
        tail_part = te.compute(lane_shape, lambda *i: tail(src, identity, i[:-1], i[-1]),
                               name=f"T_softmax_tail{label}", attrs=attrs) if has_tail else None

        def row(*r):
            terms = [part(*r, k) for k in range(lanes)]
            if tail_part is not None:
                terms = [combine(a, tail_part(*r, k)) for k, a in enumerate(terms)]
            return _tree(terms, combine)

        return te.compute(rows, row, name=name, attrs=attrs)

    maxelem = row_reduction(x, low, te.max, tirx.Max, "max", "T_softmax_maxelem")
    exp = te.compute(x.shape, lambda *i: softmax_exp(x(*i) - maxelem(*i[:-1])),
                     name="T_softmax_exp", attrs=attrs)
    expsum = row_reduction(exp, zero, te.sum, lambda a, b: a + b, "sum", "T_softmax_expsum")

    def norm(*i):
        e, total = exp(*i), expsum(*i[:-1])
        return tirx.Select(e < total * _c(FLT32_MIN), zero, e * (_c(1.0) / total))

    return te.compute(x.shape, norm, name="T_softmax_norm", attrs=attrs)


def te_softmax(x: te.Tensor, axis: int) -> te.Tensor:
    """``softmax(x)_i = e^(x_i − m) / Σ_j e^(x_j − m)``, ``m = max_j x_j`` along ``axis``:
    along the last axis :func:`te_softmax_rows`; along another axis the four stages of TVM's
    legalization (max, exp, sum in index order, divide) with :func:`softmax_exp` for the
    exponential."""
    ndim = len(x.shape)
    axis = axis % ndim
    if axis == ndim - 1:
        return te_softmax_rows(x)
    rows = [d for k, d in enumerate(x.shape) if k != axis]

    def full(row: Sequence, k) -> list:
        return [*row[:axis], k, *row[axis:]]

    def row_of(index: Sequence) -> list:
        return [v for k, v in enumerate(index) if k != axis]

    k1 = te.reduce_axis((0, x.shape[axis]), name="k")
    maxelem = te.compute(rows, lambda *r: te.max(x(*full(r, k1)), axis=k1),
                         name="T_softmax_maxelem")
    exp = te.compute(x.shape, lambda *i: softmax_exp(x(*i) - maxelem(*row_of(i))),
                     name="T_softmax_exp")
    k2 = te.reduce_axis((0, x.shape[axis]), name="k")
    expsum = te.compute(rows, lambda *r: te.sum(exp(*full(r, k2)), axis=k2),
                        name="T_softmax_expsum")
    def norm(*i):
        e, total = exp(*i), expsum(*row_of(i))
        # a quotient below the smallest normal float32 is 0 (``total ≥ 1``: the bound is
        # itself normal, and no subnormal is formed)
        return tirx.Select(e < total * _c(FLT32_MIN), _c(0.0), e / total)

    return te.compute(x.shape, norm, name="T_softmax_norm")


# ----------------------------------------------------------------------------------------------
# Relax rewrite
# ----------------------------------------------------------------------------------------------

_ERF = tvm.ir.Op.get("relax.erf")
_EXP = tvm.ir.Op.get("relax.exp")
_SOFTMAX = tvm.ir.Op.get("relax.nn.softmax")
_GELU = tvm.ir.Op.get("relax.nn.gelu")  # PyTorch's GELU arrives as this op


def _is_f32(expr: relax.Expr) -> bool:
    ty = expr.ty
    return isinstance(ty, relax.TensorType) and str(ty.dtype) == _F32 and ty.shape is not None


@relax.expr_functor.mutator
class _FastMath(relax.PyExprMutator):
    """``R.erf`` / ``R.exp`` / ``R.nn.gelu`` / ``R.nn.softmax`` on float32 → ``call_tir`` of
    the TE above."""

    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.count = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = self.visit_expr_post_order(call)
        if not isinstance(call.op, tvm.ir.Op) or not call.args or not _is_f32(call.args[0]):
            return call
        if not any(call.op.same_as(op) for op in (_ERF, _EXP, _GELU, _SOFTMAX)):
            return call
        self.count += 1
        arg = canonical_operand(self.builder_, call.args[0])
        if call.op.same_as(_ERF):
            return self.builder_.call_te(te_erf, arg, primfunc_name_hint="erf")
        if call.op.same_as(_EXP):
            return self.builder_.call_te(te_exp, arg, primfunc_name_hint="exp")
        if call.op.same_as(_GELU):
            return self.builder_.call_te(te_gelu, arg, primfunc_name_hint="gelu")
        return self.builder_.call_te(te_softmax, arg, int(call.attrs.axis),
                                     primfunc_name_hint="softmax")

    def run(self) -> tvm.IRModule:
        for gvar, func in self.mod_.functions.items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gvar, self.visit_expr(func))
        return self.builder_.get()


def use_fast_math(mod: tvm.IRModule) -> tvm.IRModule:
    """Replace float32 ``R.erf``, ``R.exp``, ``R.nn.gelu`` and ``R.nn.softmax`` of ``mod`` by
    vectorizable TE implementations (``call_tir``; see the module docstring). Other dtypes
    are kept."""
    out = _FastMath(mod).run()
    if mod.attrs is not None:
        out = out.with_attrs(dict(mod.attrs))
    return out


__all__: Sequence[str] = ["erf_expr", "exp_expr", "te_erf", "te_exp", "te_gelu",
                          "te_softmax", "te_softmax_rows", "use_fast_math"]
