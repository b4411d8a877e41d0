"""Relax passes of tvm-qdq (the package keeps the design card's name; they run on Relax).

``fake_quantization_to_integer`` turns ``dequantize → op → quantize`` into integer compute
by a registry of one rule per op (``relay_passes/rules/``).
"""

from .fake_quantization_to_integer import PassReport, fake_quantization_to_integer

__all__ = ["PassReport", "fake_quantization_to_integer"]
