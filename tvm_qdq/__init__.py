"""tvm-qdq: compile quantized ONNX models into integer TVM code.

Public API::

    mod = tvm_qdq.from_onnx(model)          # faithful Relax (ORT's float semantics)
    mod = tvm_qdq.from_torch(scripted, example_inputs)   # PyTorch dynamic int8 (integer)
    imod = tvm_qdq.to_integer(mod)          # integer compute, report in mod attrs
    c = tvm_qdq.compile(model, target="x86")
    outputs = c.run({"input": x})
    c.export("out_dir"); c2 = tvm_qdq.load("out_dir")
    info = tvm_qdq.inspect(model)
"""

from .compile import Compiled, compile, load, pass_report, to_integer  # noqa: A004
from .errors import (
    ConversionError,
    InputError,
    InvalidQuantizationError,
    ModelLoadError,
    TvmQdqError,
    UnsupportedOpsError,
    UnsupportedTypeError,
)
from .frontend.onnx import from_onnx
from .inspect import inspect  # noqa: A004


def from_torch(*args, **kwargs):
    """PyTorch dynamic-quantized models (TorchScript) → integer Relax; needs ``torch``.

    See :func:`tvm_qdq.frontend.torch.from_torch`.
    """
    from .frontend.torch import from_torch as _from_torch

    return _from_torch(*args, **kwargs)


__all__ = [
    "Compiled",
    "ConversionError",
    "InputError",
    "InvalidQuantizationError",
    "ModelLoadError",
    "TvmQdqError",
    "UnsupportedOpsError",
    "UnsupportedTypeError",
    "compile",
    "from_onnx",
    "from_torch",
    "inspect",
    "load",
    "pass_report",
    "to_integer",
]
