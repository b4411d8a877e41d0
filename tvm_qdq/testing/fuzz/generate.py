"""Drawing graph specs op by op, building while drawing, so each op fits the real shapes.

The choices come from a numpy RNG (:func:`random_specs`: every seed a different batch; what
CI and campaigns use) or from hypothesis (:func:`graph_specs`, :func:`batch_specs`:
shrinkable, but hypothesis repeats simple values so much that most drawn graphs are
duplicates).  A *batch* packs several independent graphs (one opset, distinct name prefixes)
into one model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .builder import GraphBuilder
from .draw import Draw, st
from .ops import GENERATORS, OPS
from .spec import FuzzConfig, GraphSpec


def _first_shape(d: Draw) -> list[int]:
    """Shape of a graph's first input: mostly moderate sizes, sometimes 1 or odd."""
    m = d.config.max_dim

    def dim(limit: int) -> int:
        options = [v for v in (5, 4, 7, 3, 8, 6, 1, 2, 9, 11, 13, 16) if v <= limit]
        return d.pick(options)

    rank = d.pick([4, 4, 4, 3, 2])
    batch = d.pick([1, 1, 1, 2])
    if rank == 4:
        return [batch, dim(m), dim(m), dim(m)]
    if rank == 3:
        return [batch, dim(m), dim(2 * m)]
    return [dim(m), dim(2 * m)]


def _draw_graph(draw: Callable | None, config: FuzzConfig, opset: int, prefix: str,
                ops: Sequence[str] | None = None,
                rng: np.random.Generator | None = None) -> GraphSpec:
    seed = int(rng.integers(2**31)) if rng is not None else draw(st.integers(0, 2**31 - 1))
    b = GraphBuilder(opset, seed, prefix)
    d = Draw(draw, config, b, rng)
    d.new_input(_first_shape(d))
    n_ops = d.pick([min(3, config.max_ops), *range(1, config.max_ops + 1)])
    names = list(ops or OPS)
    for i in range(n_ops):
        rec = None
        for _attempt in range(4):
            op = d.pick(names)
            rec = GENERATORS[op](d, f"t{i + 1}")
            if rec is not None:
                break
        if rec is None:
            continue
        b.add_op(rec)
    outputs = [n for n in b.order if n not in b.consumed]
    extra = [n for n in b.order if n in b.consumed and d.bool(0.15)]
    for name in outputs + extra:
        b.add_output({"kind": "output", "tensor": name,
                      "form": "q" if d.bool(0.25) else "dq"})
    return GraphSpec(opset, seed, b.records, prefix)


def random_specs(seed: int, config: FuzzConfig | None = None,
                 ops: Sequence[str] | None = None) -> list[GraphSpec]:
    """A batch of independent specs (one opset) from a numpy RNG seeded with ``seed``.

    Deterministic, and every seed gives different graphs (unlike hypothesis draws): what CI
    and campaigns use.
    """
    config = config or FuzzConfig()
    rng = np.random.default_rng([seed, 0x5EED])
    opset = int(rng.choice([21, 21, 17, 13]))
    sizes = [n for n in (5, 6, 4, 7, 8, 3, 2, 1) if n <= config.max_graphs]
    count = int(rng.choice(sizes))
    return [_draw_graph(None, config, opset, f"g{i}_", ops, rng) for i in range(count)]


def graph_specs(config: FuzzConfig | None = None, opset: int | None = None,
                ops: Sequence[str] | None = None):
    """Hypothesis strategy: one random :class:`GraphSpec` (1 to ``max_ops`` ops)."""
    config = config or FuzzConfig()

    @st.composite
    def strategy(draw: Callable) -> GraphSpec:
        chosen = opset if opset is not None else draw(st.sampled_from([21, 21, 17, 13]))
        return _draw_graph(draw, config, chosen, "", ops)

    return strategy()


def batch_specs(config: FuzzConfig | None = None, ops: Sequence[str] | None = None):
    """Hypothesis strategy: 1 to ``max_graphs`` independent specs sharing one opset."""
    config = config or FuzzConfig()

    @st.composite
    def strategy(draw: Callable) -> list[GraphSpec]:
        opset = draw(st.sampled_from([21, 21, 17, 13]))
        # Mostly several graphs per model: compiling has a fixed cost per model.
        sizes = [n for n in (5, 6, 4, 7, 8, 3, 2, 1) if n <= config.max_graphs]
        count = draw(st.sampled_from(sizes))
        return [_draw_graph(draw, config, opset, f"g{i}_", ops) for i in range(count)]

    return strategy()
