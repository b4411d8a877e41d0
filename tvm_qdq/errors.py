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


class DimensionBoundError(InputError):
    """An input's symbolic dimension is outside the range the model was compiled for."""

    def __init__(self, input_name: str, axis: int, dim: str, value: int, bound: int,
                 reason: str, advice: str):
        self.input_name = input_name
        self.axis = axis
        self.dim = dim
        self.value = value
        self.bound = bound
        super().__init__(f"input '{input_name}' axis {axis} ('{dim}') = {value} {reason} "
                         f"{bound}; {advice}")


class DimensionMismatchError(InputError):
    """One symbolic dimension has two different sizes in the inputs of one run."""

    def __init__(self, dim: str, first: tuple[str, int, int], second: tuple[str, int, int]):
        self.dim = dim
        self.first = first
        self.second = second
        (name_a, axis_a, size_a), (name_b, axis_b, size_b) = first, second
        super().__init__(
            f"dimension '{dim}' is {size_a} in input '{name_a}' (axis {axis_a}) but {size_b} "
            f"in input '{name_b}' (axis {axis_b}); every input that declares '{dim}' must "
            f"have the same size there in one run")


class StaticShapesRequiredError(TvmQdqError, ValueError):
    """A backend that plans memory statically was given a model with symbolic dimensions."""

    def __init__(self, backend: str, symbolic: dict[str, list[str]]):
        self.backend = backend
        self.symbolic = symbolic
        listed = "; ".join(f"input '{name}' has {dims}" for name, dims in symbolic.items())
        example = next(iter(symbolic))
        super().__init__(
            f"the {backend} backend plans memory statically and needs static shapes, but "
            f"{listed}; fix every symbolic dimension with shapes= (e.g. "
            f"compile(model, target=..., shapes={{'{example}': [...sizes...]}}))")
