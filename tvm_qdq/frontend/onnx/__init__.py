"""ONNX front door: ``from_onnx(model) -> IRModule`` (faithful, float semantics of ORT)."""

from .importer import from_onnx, load_model

__all__ = ["from_onnx", "load_model"]
