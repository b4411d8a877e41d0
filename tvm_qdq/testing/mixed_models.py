"""Mixed uint8/uint16 models made by ORT's QNN mixed-precision flow.

``get_qnn_qdq_config(model, reader, init_overrides={tensor: [{"quant_type": QUInt16}]})``
promotes a region of a uint8 model to uint16; its override "fixer" adds ``convert`` entries,
and ``quantize`` then writes ``Q(u8) → DQ → Q(u16) → DQ`` conversion chains at the region's
boundaries (``com.microsoft`` Q/DQ below opset 21). Results are cached like
:mod:`tvm_qdq.testing.models`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .models import (
    IR_VERSION,
    OPSET,
    calibration_feeds,
    default_cache_dir,
    float_model,
    write_atomic,
)


def seeds_graph(seed: int = 0, channels: int = 8, size: int = 12) -> onnx.ModelProto:
    """The seeds' example graph, every ``OpN`` a 3×3 convolution except ``Op5`` (an Add).

    ``input_0 → Op1 → Op3 → Op5 → Op6 → output_0`` and
    ``input_1 → Op2 → {Op4 → Op5, Op7 → output_1, Op8 → output_2}``.
    """
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def conv(name: str, src: str, out: str, c_in: int) -> None:
        w = (rng.standard_normal((channels, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in)))
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"{name}_w"))
        inits.append(numpy_helper.from_array((rng.standard_normal(channels) * 0.05)
                                             .astype(np.float32), f"{name}_b"))
        nodes.append(helper.make_node("Conv", [src, f"{name}_w", f"{name}_b"], [out], name=name,
                                      pads=[1, 1, 1, 1]))

    conv("Op1", "input_0", "Op1_out", 3)
    conv("Op2", "input_1", "Op2_out", 3)
    conv("Op3", "Op1_out", "Op3_out", channels)
    conv("Op4", "Op2_out", "Op4_out", channels)
    nodes.append(helper.make_node("Add", ["Op3_out", "Op4_out"], ["Op5_out"], name="Op5"))
    conv("Op6", "Op5_out", "output_0", channels)
    conv("Op7", "Op2_out", "output_1", channels)
    conv("Op8", "Op2_out", "output_2", channels)
    shape = [1, 3, size, size]
    out_shape = [1, channels, size, size]
    graph = helper.make_graph(
        nodes, "seeds_graph",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("input_0",
                                                                              "input_1")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, out_shape)
         for n in ("output_0", "output_1", "output_2")],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _quantize_mixed(model: onnx.ModelProto, promote: list[str], weight_type: str,
                    workdir: Path) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration_feeds(model))

        def get_next(self):
            return next(self._it, None)

    path = workdir / "float.onnx"
    onnx.save_model(model, path)
    overrides = {t: [{"quant_type": QuantType.QUInt16}] for t in promote}
    config = get_qnn_qdq_config(str(path), Reader(), activation_type=QuantType.QUInt8,
                                weight_type=QuantType[weight_type],
                                init_overrides=overrides or None)
    out = workdir / "mixed.onnx"
    quantize(str(path), str(out), config)
    return onnx.load_model(out)


def mixed_model(model: onnx.ModelProto, promote: list[str], weight_type: str = "QUInt8",
                *, cache_dir: str | os.PathLike | None = None) -> onnx.ModelProto:
    """``model`` quantized to uint8 with the tensors in ``promote`` overridden to uint16."""
    import onnxruntime

    key = hashlib.sha256(model.SerializeToString() + repr((sorted(promote), weight_type,
                                                           onnxruntime.__version__)).encode())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / f"{model.graph.name}.mixed.{key.hexdigest()[:16]}.onnx"
    if cached.is_file():
        return onnx.load_model(cached)
    with tempfile.TemporaryDirectory(prefix="tvm_qdq_mixed.") as tmp:
        qmodel = _quantize_mixed(model, promote, weight_type, Path(tmp))
    write_atomic(cached, qmodel.SerializeToString())
    return qmodel


#: Named mixed-precision cases: (float model factory, tensors promoted to uint16).
MIXED_CASES = {
    "seeds_op4_u16": (seeds_graph, ["Op4_out"]),
    "resnet_region_u16": (lambda: float_model("resnet_cnn"), ["relu_2_out"]),
    "transformer_region_u16": (lambda: float_model("transformer_encoder"), ["add_5_out"]),
}


def mixed_case(name: str, weight_type: str = "QUInt8") -> onnx.ModelProto:
    factory, promote = MIXED_CASES[name]
    return mixed_model(factory(), promote, weight_type)
