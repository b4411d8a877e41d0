"""ONNX front door: ``from_onnx(model) -> IRModule`` (faithful, float semantics of ORT)."""

from .importer import from_onnx, load_model
from .shapes import InputShapeError

__all__ = ["InputShapeError", "from_onnx", "load_model"]
