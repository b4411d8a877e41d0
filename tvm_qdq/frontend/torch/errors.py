"""Errors of the TorchScript importer (subclasses of tvm-qdq's errors)."""

from __future__ import annotations

from ...errors import TvmQdqError, UnsupportedOpsError


class UnsupportedTorchOpsError(UnsupportedOpsError):
    """The TorchScript graph (or ``torch.export`` program) uses ops the importer cannot
    convert.

    ``ops`` lists every one at once as ``(value name, op kind, source location)``.
    """

    def __init__(self, ops: list[tuple[str, str, str]], source: str = "TorchScript"):
        self.ops = ops
        kinds = sorted({kind for _, kind, _ in ops})
        lines = [f"  - {kind} at {where or '<unknown location>'} (produces %{name})"
                 for name, kind, where in ops]
        TvmQdqError.__init__(
            self,
            f"{len(ops)} {source} node(s) use op(s) tvm-qdq cannot import "
            f"({', '.join(kinds)}):\n" + "\n".join(lines)
            + "\nRewrite these parts of the model with supported ops, or file an issue.",
        )


class TorchImportError(TvmQdqError, ValueError):
    """The model or its example inputs cannot be imported (bad input, training mode, ...)."""


class UnsupportedForm(Exception):  # noqa: N818 - internal signal, not an error users see
    """Raised by a converter for a form of its op it does not handle; the importer reports
    the node in :class:`UnsupportedTorchOpsError` (with this message as the reason)."""
