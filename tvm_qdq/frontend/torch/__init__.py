"""PyTorch front door: ``from_torch(model_or_scripted, example_inputs) -> IRModule``.

Imports TorchScript (traced or scripted) modules of dynamic-quantized models
(``torch.ao.quantization.quantize_dynamic``) directly into integer Relax; see
:mod:`.importer` (graph walk), :mod:`.dynamic` (``quantized::linear_dynamic`` numerics) and
:mod:`.aten` (float ops). Needs ``torch`` (the ``tvm-qdq[torch]`` extra).
"""

from .errors import TorchImportError, UnsupportedTorchOpsError
from .importer import from_torch

__all__ = ["TorchImportError", "UnsupportedTorchOpsError", "from_torch"]
