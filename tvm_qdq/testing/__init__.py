"""Test helpers: small deterministic float ONNX models and their QDQ-quantized versions."""
