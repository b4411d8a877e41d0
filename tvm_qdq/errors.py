"""Errors raised by tvm-qdq. Every error names the node and op it is about."""

from __future__ import annotations


class TvmQdqError(Exception):
    """Base class of every error tvm-qdq raises on purpose."""


def node_label(node_name: str, op_type: str, domain: str = "") -> str:
    """Human label of an ONNX node: ``'conv1' (Conv)`` or ``'q' (com.microsoft.QuantizeLinear)``."""
    op = f"{domain}.{op_type}" if domain not in ("", "ai.onnx") else op_type
    return f"node '{node_name or '<unnamed>'}' ({op})"


class UnsupportedOpsError(TvmQdqError, NotImplementedError):
    """The model uses ops the importer does not know; ``ops`` lists all of them at once."""

    def __init__(self, ops: list[tuple[str, str, str]]):
        self.ops = ops
        lines = [f"  - {node_label(name, op, dom)}" for name, op, dom in ops]
        kinds = sorted({f"{d}.{o}" if d not in ("", "ai.onnx") else o for _, o, d in ops})
        super().__init__(
            f"{len(ops)} node(s) use op(s) tvm-qdq cannot import ({', '.join(kinds)}):\n"
            + "\n".join(lines)
            + "\nRemove or replace these ops (e.g. with onnxruntime's optimizer), or file an issue."
        )


class InvalidQuantizationError(TvmQdqError, ValueError):
    """A Q/DQ node (or quantized op) has parameters that make no valid quantization."""

    def __init__(self, node_name: str, op_type: str, reason: str, domain: str = ""):
        self.node_name = node_name
        self.op_type = op_type
        super().__init__(f"{node_label(node_name, op_type, domain)}: {reason}")


class UnsupportedTypeError(TvmQdqError, TypeError):
    """A tensor type tvm-qdq does not compile (float8, float4, int2, ...)."""

    def __init__(self, where: str, dtype: str, reason: str = ""):
        self.where = where
        self.dtype = dtype
        super().__init__(
            f"{where}: element type {dtype} is not supported by tvm-qdq"
            + (f" ({reason})" if reason else "")
            + "; supported quantized types are uint8, int8, uint16, int16, uint4, int4, int32."
        )


class ConversionError(TvmQdqError, RuntimeError):
    """Converting one node failed inside the importer; the cause is chained."""

    def __init__(self, node_name: str, op_type: str, reason: str, domain: str = ""):
        self.node_name = node_name
        self.op_type = op_type
        super().__init__(f"{node_label(node_name, op_type, domain)}: could not convert: {reason}")


class ModelLoadError(TvmQdqError, ValueError):
    """The file or object given is not a readable ONNX model."""


class InputError(TvmQdqError, ValueError):
    """Inputs fed at run time do not match the compiled model's inputs."""
