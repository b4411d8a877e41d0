"""dtype tables shared by the TorchScript importer and its converters."""

from __future__ import annotations

import torch

TORCH_TO_RELAX: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.int16: "int16",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.bool: "bool",
}
RELAX_TO_TORCH: dict[str, torch.dtype] = {v: k for k, v in TORCH_TO_RELAX.items()}

#: TorchScript ``ScalarType`` codes (``prim::dtype`` results, dtype constants).
SCALAR_TYPES: dict[int, torch.dtype] = {
    0: torch.uint8, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.int64,
    5: torch.float16, 6: torch.float32, 7: torch.float64, 11: torch.bool, 15: torch.bfloat16,
}
SCALAR_TYPE_CODES: dict[torch.dtype, int] = {v: k for k, v in SCALAR_TYPES.items()}
