"""The integer (QNN) vocabulary the passes produce: parameters, Relax builders, numpy refs.

* :mod:`.params` — :class:`QParams` (scale, zero point, axis, type) of a quantized tensor;
* :mod:`.integer_ops` — the named ops of the integer IR (``tvm_qdq.requantize``,
  ``tvm_qdq.requantize_sum``): operands, attributes, lazy registration;
* :mod:`.legalize` — their default forms (plain Relax float64 / int64 arithmetic), which
  backends without a form of their own use;
* :mod:`.ops` — builders that emit each QNN op (the requantizes as the named ops, the rest as
  plain Relax integer arithmetic);
* :mod:`.fixed_point` — the multiplier + shift forms of the Hexagon backend;
* :mod:`.reference` — numpy implementations of the same math (tests, lookup-table folding).
"""

from .params import QParams

__all__ = ["QParams"]
