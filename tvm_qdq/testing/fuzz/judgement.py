"""Judging one op of a fuzz graph: tvm-qdq's output codes against ORT's, on the same inputs.

The comparison is one op, ``a`` (tvm-qdq) against ``e`` (ORT), both integer codes, with
``v = real / s + zp`` (clipped to the type's range) the exact value before rounding, computed
in float64 from the op's inputs (onnx's reference evaluator in float64).  Per element,
``d = |a - e|``; an element with ``d > 0`` is an *explained near-tie* when ``d ≤ 1`` and
``|a - v| ≤ |e - v| + 10⁻⁶`` (tvm-qdq at least as close to the exact value: ORT's float32
path rounded the wrong way near a half-way point).  An op's outcome:

* ``exact``: ``d = 0`` everywhere;
* ``tie``: every differing element explained and, for ops ORT computes exactly up to float32
  ties (every op but the float-summing DQ → Conv/MatMul/Gemm → Q; QLinearConv and
  QLinearMatMul included), the elements where tvm-qdq is *not strictly* closer to ``v``
  than ORT (``||a - v| - |e - v|| ≤ 10⁻⁶``: exact ties, decided by the rounding mode) take at
  most ``max(1, ⌊(1 - p)·n⌋)`` distinct values of ``v`` among the ``n`` elements,
  ``p = MIN_FRAC_EXACT = 99.9 %`` (the single-op oracle's exact share): a systematic 1-LSB
  error (half-up instead of half-to-even is as close to ``v`` as the right answer) must not
  pass.  Where tvm-qdq is strictly closer, ORT's float32 is off and no share applies: a
  16-bit requantize in float32 misses by up to ``|v|·2⁻²³`` codes;
* ``fail``: anything else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..oracle import MIN_FRAC_EXACT

#: Ops whose ORT QDQ path sums in float32 (many roundings): near-ties there are not rare.
FLOAT_SUM_OPS = frozenset({"Conv", "MatMul", "Gemm"})
#: Distance to the exact value (in codes) within which tvm-qdq counts as equally close.
CLOSENESS_SLACK = 1e-6
#: Distance (in codes) from a half-way point below which ``v`` counts as an exact tie.
EXACT_TIE = 1e-9


def computed_exactly(rec: dict | None) -> bool:
    """Whether ORT computes op ``rec`` exactly up to float32 near-ties (``None``: an input).

    True for everything but float-summing DQ → Conv/MatMul/Gemm → Q; the QOperator forms
    (QLinearConv, QLinearMatMul) sum in integers and count as exact.
    """
    return rec is None or rec.get("qop", False) or rec["op"] not in FLOAT_SUM_OPS


def allowed_inexact(n: int, min_frac_exact: float = MIN_FRAC_EXACT) -> int:
    """Non-exact elements an exactly-computed op of ``n`` elements may have: ``max(1, ⌊(1-p)·n⌋)``.

    One isolated near-tie is ORT's float32 rounding whatever the size; more than the share
    ``1 - p`` is systematic.
    """
    return max(1, int(np.floor((1.0 - min_frac_exact) * n + 1e-9)))


@dataclass(frozen=True)
class OpJudgement:
    """How one op output (a quantized tensor) compared, judged on its own inputs.

    ``route``: ``"direct"`` (the op read identical codes in both runs) or ``"rejudged"``
    (downstream of a divergence: re-run by tvm-qdq alone on ORT's input codes);
    ``outcome``: ``"exact"``, ``"tie"`` (every difference an explained near-tie) or ``"fail"``.
    """

    tensor: str
    op: str
    dtype: str
    route: str
    outcome: str
    n: int
    differing: int = 0
    max_diff: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != "fail"

    @property
    def category(self) -> str:
        """Counter key: ``exact``, ``tie``, ``fail`` (direct) or ``rejudged_pass``/``_fail``."""
        if self.route == "rejudged":
            return "rejudged_pass" if self.ok else "rejudged_fail"
        return self.outcome

    def describe(self) -> str:
        head = {"exact": "exact", "tie": "explained near-tie", "fail": "UNEXPLAINED"}[self.outcome]
        route = ", re-judged on ORT's inputs" if self.route == "rejudged" else ""
        text = f"{head} {self.tensor} ({self.op} → {self.dtype}{route})"
        if self.differing:
            text += f": {self.differing} of {self.n} element(s) differ, max {self.max_diff}"
        return text + (f"; {self.note}" if self.note else "")


@dataclass
class Verdict:
    """What :func:`triage` concluded: ``explained`` when no op failed; per-op judgements."""

    explained: bool
    reason: str
    judgements: list[OpJudgement] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        """Whether some quantized tensor differs from ORT's (after re-judging)."""
        return any(j.outcome != "exact" for j in self.judgements)

    def counts(self) -> Counter[str]:
        """Judgements per :attr:`OpJudgement.category`."""
        return Counter(j.category for j in self.judgements)


def judge_op(actual: np.ndarray, expected: np.ndarray, exact_codes: Callable[[], np.ndarray],
             exactly_computed: bool, min_frac_exact: float = MIN_FRAC_EXACT,
             zero_point: np.ndarray | float = 0.0) -> tuple[str, int, int, str]:
    """Outcome of one op: ``(outcome, differing, max_diff, note)`` (see the module docstring).

    ``actual``/``expected``: tvm-qdq's and ORT's codes; ``exact_codes()`` returns
    ``v = clip(real / s + zp)`` in float64 (called only when something differs);
    ``zero_point`` (broadcastable): half-to-even applies to ``real / s``, so a tie's parity
    is that of ``code − zp``.
    """
    d = np.abs(np.asarray(actual).astype(np.int64) - np.asarray(expected).astype(np.int64))
    bad = d > 0
    differing = int(bad.sum())
    if not differing:
        return "exact", 0, 0, ""
    v = np.broadcast_to(np.asarray(exact_codes(), np.float64), d.shape)
    dist_tvm = np.abs(np.asarray(actual).astype(np.float64) - v)
    dist_ort = np.abs(np.asarray(expected).astype(np.float64) - v)
    unexplained = bad & ((d > 1) | (dist_tvm > dist_ort + CLOSENESS_SLACK))
    first = tuple(int(i) for i in np.argwhere(unexplained if unexplained.any() else bad)[0])
    note = (f"at {first}: tvm-qdq {actual[first]}, ORT {expected[first]}, exact "
            f"{v[first]:.6f}")
    max_diff = int(d.max())
    if unexplained.any():
        return "fail", differing, max_diff, f"{int(unexplained.sum())} unexplained; {note}"
    # tvm-qdq strictly closer to v: ORT's float32 is off.  Equally close (an exact tie, up to
    # the slack): the rounding mode decides, and a wrong one must not pass systematically.
    level = bad & (dist_tvm > dist_ort - CLOSENESS_SLACK)
    events = int(np.unique(v[level]).size)  # equal values (e.g. clipped) are one event
    parity = (np.asarray(actual).astype(np.int64)
              - np.broadcast_to(np.asarray(zero_point), d.shape).astype(np.int64)) % 2
    odd = level & (np.abs(v - np.floor(v) - 0.5) <= EXACT_TIE) & (parity != 0)
    if odd.any():  # tvm-qdq's float64 multiplier can miss an exact tie (ARCHITECTURE.md)
        note += f"; tvm-qdq rounds {int(odd.sum())} exact tie(s) away from even"
    if exactly_computed and events > allowed_inexact(d.size, min_frac_exact):
        return "fail", differing, max_diff, (
            f"{events} distinct exact ties rounded otherwise than ORT (> {1 - min_frac_exact:.1%}"
            f" of {d.size}) for an op ORT computes exactly: systematic; {note}")
    return "tie", differing, max_diff, note
