"""The integer (QNN) vocabulary the passes produce: parameters, Relax builders, numpy refs.

* :mod:`.params` — :class:`QParams` (scale, zero point, axis, type) of a quantized tensor;
* :mod:`.ops` — builders that emit each QNN op as plain Relax integer arithmetic;
* :mod:`.reference` — numpy implementations of the same math, used by the tests.
"""

from .params import QParams

__all__ = ["QParams"]
