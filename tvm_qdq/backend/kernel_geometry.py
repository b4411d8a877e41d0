"""Shapes of the dot-product kernels every backend builds: a 2-D convolution and a matmul with
a constant right operand (the backends' kernel specs add their dtypes and packing)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, pad_before: int,
                     pad_after: int) -> int:
    """``⌊(size + pads - dilation · (kernel - 1) - 1) / stride⌋ + 1`` output positions."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class ConvGeometry:
    """``x[N, C, H, W] ⊛ w[O, C, KH, KW]`` with ``strides``, ``padding`` (top, left, bottom,
    right) and ``dilation``."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]

    @property
    def oh(self) -> int:
        pt, _, pb, _ = self.padding
        return conv_output_size(self.h, self.kh, self.strides[0], self.dilation[0], pt, pb)

    @property
    def ow(self) -> int:
        _, pl, _, pr = self.padding
        return conv_output_size(self.w, self.kw, self.strides[1], self.dilation[1], pl, pr)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the exact conv: ``N · OH · OW · O · C · KH · KW``."""
        return self.n * self.oh * self.ow * self.o * self.c * self.kh * self.kw


@dataclass(frozen=True)
class MatmulGeometry:
    """``a[*batch, m, k] @ b[k, n]``."""

    batch: tuple[int, ...]
    m: int
    k: int
    n: int

    @property
    def macs(self) -> int:
        """Multiply-accumulates: ``Π batch · m · k · n``."""
        return math.prod(self.batch) * self.m * self.k * self.n
