"""The generators' source of random choices, and the choices shared by every op family."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .builder import BuiltTensor, GraphBuilder
from .onnx_types import WIDE_TYPES
from .spec import FuzzConfig

try:  # hypothesis is a test dependency only
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    st = None  # type: ignore[assignment]


def divisors(n: int) -> list[int]:
    """The positive divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


class Draw:
    """The generators' source of choices: hypothesis draws (shrinkable) or a numpy RNG.

    Hypothesis reuses simple values heavily (most drawn graphs repeat), so CI and campaigns
    draw from ``rng`` (every seed a different graph); the hypothesis mode is there for
    shrinking a failure to a minimal graph.
    """

    def __init__(self, draw: Callable | None, config: FuzzConfig, b: GraphBuilder,
                 rng: np.random.Generator | None = None) -> None:
        self.draw = draw
        self.rng = rng
        self.config = config
        self.b = b

    def int(self, lo: int, hi: int) -> int:
        if self.rng is not None:
            return int(self.rng.integers(lo, hi + 1))
        return self.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[Any]) -> Any:
        options = list(options)
        if self.rng is not None:
            return options[int(self.rng.integers(len(options)))]
        return self.draw(st.sampled_from(options))

    def bool(self, p: float = 0.5) -> bool:
        # integers shrink to 0 → False: shrinking turns optional features off
        return self.int(0, 99) >= 100 - int(p * 100)

    def perm(self, n: int) -> list[int]:
        if self.rng is not None:
            return [int(i) for i in self.rng.permutation(n)]
        return list(self.draw(st.permutations(list(range(n)))))

    def subset(self, options: Sequence[int], lo: int, hi: int | None = None) -> list[int]:
        """A sorted subset of ``options`` with ``lo`` to ``hi`` distinct elements."""
        options = list(options)
        hi = len(options) if hi is None else min(hi, len(options))
        if self.rng is not None:
            size = int(self.rng.integers(lo, hi + 1))
            return sorted(int(v) for v in self.rng.choice(options, size, replace=False))
        return sorted(self.draw(st.lists(st.sampled_from(options), min_size=lo, max_size=hi,
                                         unique=True)))

    def ints(self, lo: int, hi: int, min_size: int, max_size: int) -> list[int]:
        if self.rng is not None:
            size = int(self.rng.integers(min_size, max_size + 1))
            return [int(v) for v in self.rng.integers(lo, hi + 1, size)]
        return list(self.draw(st.lists(st.integers(lo, hi), min_size=min_size,
                                       max_size=max_size)))

    def act_dtype(self) -> str:
        types = list(self.config.act_types)
        if self.b.opset < 21:
            types = [t for t in types if t not in WIDE_TYPES] or ["uint8"]
        if self.config.act4 and self.b.opset >= 21:
            types += ["uint4", "int4"]
        return self.pick(types)

    def qspec(self, shape: Sequence[int] | None = None, allow_axis: bool = True,
              same_as: str | None = None) -> dict:
        """Output parameters: type, zero-point mode, scale factor, maybe per axis."""
        if same_as is not None and self.bool(0.5):
            return {"dtype": self.b.tensors[same_as].qp.dtype, "same_as": same_as}
        q: dict[str, Any] = {"dtype": self.act_dtype()}
        q["zp"] = self.pick(["calib", "calib", "calib", "sym", "qmin", "qmin+1", "qmax",
                             "qmax-1", "mid"])
        q["factor"] = self.pick([1.0, 1.0, 1.0, 1.0, 0.5, 0.9, 1.5, 3.0, 0.1])
        if (allow_axis and shape and len(shape) >= 2 and self.config.per_axis_activations
                and self.bool(0.1)):
            q["axis"] = self.int(0, len(shape) - 1)
        return q

    def feed(self) -> dict:
        kind = self.pick(["normal", "normal", "normal", "uniform", "grid", "ties", "limits"])
        std = float(10.0 ** self.int(-3, 3)) * self.pick([1.0, 0.37, 2.9])
        return {"kind": kind, "std": std, "seed": self.int(0, 2**16),
                "sat": self.pick([1.0, 1.0, 1.0, 2.5])}

    def new_input(self, shape: Sequence[int]) -> BuiltTensor:
        name = f"x{len(self.b.inputs)}"
        rec = {"kind": "input", "name": name, "shape": [int(d) for d in shape],
               "feed": self.feed(), "q": self.qspec(shape)}
        return self.b.add_input(rec)

    def tensor(self, pred: Callable[[BuiltTensor], bool] = lambda t: True) -> BuiltTensor | None:
        """An existing tensor satisfying ``pred`` (bias towards the newest)."""
        cands = [self.b.tensors[n] for n in self.b.order
                 if min(self.b.tensors[n].shape, default=1) > 0 and pred(self.b.tensors[n])]
        if not cands:
            return None
        i = self.int(0, len(cands) - 1)
        return cands[len(cands) - 1 - i]

    def weight(self, shape: list[int], axis: int | None, block_axis: int | None = None) -> dict:
        types = list(self.config.weight_types)
        if self.b.opset < 21:
            types = [t for t in types if t not in WIDE_TYPES] or ["int8"]
        w: dict[str, Any] = {"kind": "weight", "shape": shape, "dtype": self.pick(types),
                             "seed": self.int(0, 2**16), "exp": float(self.int(-4, 0)),
                             "values": self.pick(["uniform", "uniform", "symmetric", "extreme",
                                                  "sparse"]),
                             "zp": self.pick(["zero", "zero", "random", "qmin", "qmax", "mid"])}
        w["axis"] = axis if axis is not None and self.bool(0.6) else None
        if (block_axis is not None and self.config.blocked_weights and self.b.opset >= 21
                and self.bool(0.1)):
            sizes = [d for d in divisors(shape[block_axis]) if d < shape[block_axis]]
            if sizes:
                w["axis"] = block_axis
                w["block"] = self.pick(sizes)
        return w
