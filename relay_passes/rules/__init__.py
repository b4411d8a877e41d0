"""One module per family of ops; importing this package registers every rule."""

from . import activation, conv, elementwise, lookup, matmul, movement, pool, qdq  # noqa: F401
