"""Fixed-point requantize (multiplier + shift) for Hexagon: not implemented yet.

The Hexagon build keeps the integer pass's float32 requantize (``round(float(acc) · s)``),
which is what makes it bit-exact with the x86 build; it runs as scalar IEEE float code.
"""

from __future__ import annotations

import tvm


def fixed_point_requantize(mod: tvm.IRModule) -> tuple[tvm.IRModule, list[dict]]:
    """Rewrite float requantize chains to multiplier + shift integer code (not yet)."""
    raise NotImplementedError("requantize='fixed' is not implemented yet for Hexagon; "
                              "use requantize='float' (bit-exact with x86)")
