"""tvm-qdq: compile quantized ONNX models into integer TVM code.

Public API::

    mod = tvm_qdq.from_onnx(model)          # faithful Relax (ORT's float semantics)
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
    "inspect",
    "load",
    "pass_report",
    "to_integer",
]
