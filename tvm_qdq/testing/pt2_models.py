"""PyTorch 2 quantization flows for the tests and benchmarks: PT2E static and torchao dynamic.

* :func:`pt2e_static` — ``torch.export`` → ``prepare_pt2e`` with ``X86InductorQuantizer``
  (u8 activations, s8 per-channel weights) or ``XNNPACKQuantizer`` (s8 activations, s8
  per-channel symmetric weights), each with its default config → calibration →
  ``convert_pt2e`` → ``torch.export`` again: the program the user deploys.
* :func:`torchao_dynamic` — ``quantize_(model, Int8DynamicActivationInt8WeightConfig())``
  then ``torch.export``: per-row int8 activations chosen at run time, ``aten._int_mm``.
* :class:`SmallCNN` — conv/BN/ReLU blocks with a residual add, pooling and a classifier.

Needs ``torchao`` (the ``test`` extra). Its CUDA extensions fail to load on CPU machines and
say so on import; that is harmless here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn


class SmallCNN(nn.Module):
    """3×32×32 image → 10 logits: conv-BN-ReLU stem, a residual block, a strided conv,
    global average pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16),
                                   nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                                   nn.BatchNorm2d(16))
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = torch.relu(y + self.block(y))
        y = self.down(y)
        return self.head(y.mean((2, 3)))


def _quantizer(kind: str):
    if kind == "x86":
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        quantizer = X86InductorQuantizer()
        quantizer.set_global(get_default_x86_inductor_quantization_config())
        return quantizer
    if kind == "xnnpack":
        from torchao.testing.pt2e._xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        quantizer = XNNPACKQuantizer()
        quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
        return quantizer
    raise ValueError(f"quantizer {kind!r}: use 'x86' or 'xnnpack'")


def pt2e_static(model: nn.Module, example_inputs: tuple, calibration: Sequence[tuple],
                quantizer: str = "x86", dynamic_shapes=None,
                ) -> tuple[torch.export.ExportedProgram, nn.Module]:
    """PT2E static quantization of ``model``; returns (exported program, converted module).
    ``dynamic_shapes`` (``torch.export``'s) keeps those axes dynamic in both exports."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captured = torch.export.export(model, example_inputs,
                                       dynamic_shapes=dynamic_shapes).module()
        prepared = prepare_pt2e(captured, _quantizer(quantizer))
        with torch.no_grad():
            for inputs in calibration:
                prepared(*inputs)
        converted = convert_pt2e(prepared)
        return torch.export.export(converted, example_inputs,
                                   dynamic_shapes=dynamic_shapes), converted


def torchao_dynamic(model: nn.Module, example_inputs: tuple) -> torch.export.ExportedProgram:
    """torchao dynamic int8 (activations per row at run time, weights per channel)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        return torch.export.export(model, example_inputs)
