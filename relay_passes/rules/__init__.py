"""One module per family of ops; importing this package registers every rule.

``lut_fold`` wraps the elementwise output rules of ``activation``, ``elementwise`` and
``lookup`` (it imports them first), so their results fold into lookup tables when they can.
"""

from . import (  # noqa: F401
    activation,
    conv,
    elementwise,
    lookup,
    lut_fold,
    matmul,
    movement,
    pool,
    qdq,
)
