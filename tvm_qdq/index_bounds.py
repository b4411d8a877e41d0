"""Valid value ranges of graph inputs used as gather indices (token ids, positions).

A model input that reaches ``R.take(table, indices, axis)`` (ONNX ``Gather`` with run-time
indices, PyTorch ``aten::embedding``) through shape-only ops must hold values in
``[-n, n)`` (ONNX, whose converter maps ``i < 0`` to ``i + n`` with a ``where``) or ``[0, n)``
(no such mapping), ``n = table.shape[axis]``. The compiled gather does not check its indices
(an id past the table reads outside it), so :class:`tvm_qdq.compile.Compiled` checks these
inputs before running, as ONNX Runtime and PyTorch do.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax

from .relax_utils import static_shape

#: Ops through which an input's values reach the indices unchanged (up to layout and type).
_VALUE_PRESERVING = {
    "relax.reshape", "relax.astype", "relax.expand_dims", "relax.squeeze", "relax.flatten",
    "relax.permute_dims", "relax.broadcast_to",
}


def index_input_ranges(mod: tvm.IRModule) -> dict[str, tuple[int, int]]:
    """{parameter name of ``main``: (lowest, highest) valid value} for every parameter used as
    the indices of a ``take``; the tightest range when it indexes several tables."""
    main = mod["main"]
    # var -> (parameter name, negative indices wrapped by a where(i < 0, i + n, i))
    source: dict = {p: (str(p.name), False) for p in main.params}
    ranges: dict[str, tuple[int, int]] = {}
    blocks = main.body.blocks if isinstance(main.body, relax.SeqExpr) else []
    for block in blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Var) and value in source:
                source[binding.var] = source[value]
                continue
            if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
                continue
            name = value.op.name
            args = list(value.args)
            if name in _VALUE_PRESERVING and args and args[0] in source:
                source[binding.var] = source[args[0]]
            elif name == "relax.add" and args[0] in source and args[1] not in source:
                source[binding.var] = (source[args[0]][0], "shifted")
            elif name == "relax.where" and len(args) == 3 and args[2] in source \
                    and args[1] in source and source[args[1]][1] == "shifted":
                source[binding.var] = (source[args[2]][0], True)
            elif name == "relax.take" and args[1] in source and source[args[1]][1] != "shifted":
                shape = static_shape(args[0])
                if shape is None:
                    continue
                axis = value.attrs.axis
                n = math.prod(shape) if axis is None else shape[int(axis) % len(shape)]
                param, wrapped = source[args[1]]
                low, high = (-n if wrapped else 0), n - 1
                old = ranges.get(param)
                ranges[param] = (low, high) if old is None else (max(old[0], low),
                                                                  min(old[1], high))
    return ranges
