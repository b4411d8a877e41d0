"""One generator per op family: ``GENERATORS[op](d, name)`` draws a record of op ``op``.

Each returns the op's spec record, or None when no existing tensor fits the op.
"""

from __future__ import annotations

from collections.abc import Callable

from ..draw import Draw
from .elementwise import gen_binary, gen_clip, gen_relu, gen_requant
from .linear import gen_conv, gen_gemm, gen_matmul
from .movement import (
    gen_concat,
    gen_flatten,
    gen_gather,
    gen_pad,
    gen_reshape,
    gen_resize,
    gen_slice,
    gen_split,
    gen_squeeze,
    gen_transpose,
    gen_unsqueeze,
)
from .pooling import gen_gap, gen_pool

#: op name → generator, in the order the strategies pick from.
GENERATORS: dict[str, Callable[[Draw, str], dict | None]] = {
    "Conv": gen_conv,
    "MatMul": gen_matmul,
    "Gemm": gen_gemm,
    "Add": lambda d, n: gen_binary(d, n, "Add"),
    "Mul": lambda d, n: gen_binary(d, n, "Mul"),
    "Concat": gen_concat,
    "MaxPool": lambda d, n: gen_pool(d, n, "MaxPool"),
    "AveragePool": lambda d, n: gen_pool(d, n, "AveragePool"),
    "GlobalAveragePool": gen_gap,
    "Relu": gen_relu,
    "Clip": gen_clip,
    "Reshape": gen_reshape,
    "Transpose": gen_transpose,
    "Flatten": gen_flatten,
    "Squeeze": gen_squeeze,
    "Unsqueeze": gen_unsqueeze,
    "Slice": gen_slice,
    "Gather": gen_gather,
    "Split": gen_split,
    "Pad": gen_pad,
    "Resize": gen_resize,
    "Requant": gen_requant,
}
OPS = tuple(GENERATORS)
