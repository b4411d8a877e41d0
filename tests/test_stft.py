"""ONNX STFT (opset 17, :mod:`tvm_qdq.frontend.onnx.stft`) against ONNX Runtime and the
float64 DFT of the same float32 windowed frames.

ORT's CPU STFT is not exact to float32 rounding for window lengths that are not powers of
two (see the module docstring), so each case checks both: tvm-qdq within float32 rounding
of the float64 DFT, closer to it than ORT for the other lengths (ORT measured 1.7e-6 to
2.5e-5 of the largest bin there, tvm-qdq ≤ 5.8e-7), and within 10× the measured distance
of ORT. Errors are absolute, in units of the largest |bin| of the case (relative).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import tvm_qdq
from tvm_qdq.errors import TvmQdqError

#: (signal shape, window length, frame_step, onesided, window given (else frame_length),
#:  measured max |tvm-qdq − float64 DFT| / max|bin|, measured max |tvm-qdq − ORT| / max|bin|)
CASES = [
    ((2, 64, 1), 16, 4, 1, True, 1.2e-7, 2.5e-7),
    ((1, 200), 25, 10, 1, True, 2.0e-7, 1.8e-6),
    ((2, 100, 2), 16, 8, 0, True, 1.1e-7, 2.4e-7),
    ((1, 600, 1), 400, 160, 1, True, 5.8e-7, 2.5e-5),
    ((2, 50, 2), 12, 5, 1, False, 1.1e-7, 1.7e-6),
    ((1, 300, 1), 256, 22, 1, True, 6.0e-7, 5.6e-7),
    ((3, 90, 1), 30, 30, 0, False, 1.4e-7, 6.5e-6),
]


def _model(shape: tuple, length: int, step: int, onesided: int, windowed: bool,
           window_input: bool = False) -> tuple[onnx.ModelProto, np.ndarray]:
    window = np.hanning(length + 2)[1:-1].astype(np.float32)
    inits = [onnx.numpy_helper.from_array(np.array(step, np.int64), "step")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
    if windowed:
        names = ["x", "step", "w"]
        if window_input:
            inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [length]))
        else:
            inits.append(onnx.numpy_helper.from_array(window, "w"))
    else:
        names = ["x", "step", "", "len"]
        inits.append(onnx.numpy_helper.from_array(np.array(length, np.int64), "len"))
    node = helper.make_node("STFT", names, ["y"], onesided=onesided)
    graph = helper.make_graph([node], "stft", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, (window if windowed else np.ones(length, np.float32))


def _ort(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _dft64(x: np.ndarray, window: np.ndarray, step: int, onesided: int) -> np.ndarray:
    """float64 DFT of the float32 windowed frames (ORT multiplies in float32 first)."""
    signal = x if x.ndim == 3 else x[..., None]
    length = window.shape[0]
    frames = (signal.shape[1] - length) // step + 1
    index = np.arange(frames)[:, None] * step + np.arange(length)[None, :]
    framed = signal[:, index] * window[:, None]  # float32 products, [B, F, W, C]
    z = framed[..., 0].astype(np.float64)
    if signal.shape[2] == 2:
        z = z + 1j * framed[..., 1].astype(np.float64)
    spectrum = np.fft.fft(z, axis=-1)
    if onesided:
        spectrum = spectrum[..., : length // 2 + 1]
    return np.stack([spectrum.real, spectrum.imag], axis=-1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}_w{c[1]}"
                         f"_s{c[2]}_o{c[3]}_{'win' if c[4] else 'len'}")
def test_stft_matches_dft_and_ort(case: tuple) -> None:
    """Real (rank 2 and 3) and complex signals, onesided or not, window or frame_length,
    power-of-two and other window lengths."""
    shape, length, step, onesided, windowed, measured_exact, measured_ort = case
    model, window = _model(shape, length, step, onesided, windowed)
    x = np.random.default_rng(length + step).standard_normal(shape).astype(np.float32)
    got = tvm_qdq.compile(model, "x86").run({"x": x})[0]
    want = _ort(model, {"x": x})
    exact = _dft64(x, window, step, onesided)
    assert got.shape == want.shape == exact.shape
    scale = np.abs(exact).max()
    err_exact = np.abs(got - exact).max() / scale
    assert err_exact <= 10 * measured_exact
    if length & (length - 1):  # ORT's non-power-of-two transform is the less exact one
        assert err_exact < np.abs(want - exact).max() / scale
    assert np.abs(got - want).max() / scale <= 10 * measured_ort


def test_stft_runtime_window() -> None:
    """A window given as a graph input (multiplied at run time). Measured 3.5e-7 of the
    largest bin against ORT."""
    model, window = _model((2, 128, 1), 32, 16, 1, True, window_input=True)
    x = np.random.default_rng(5).standard_normal((2, 128, 1)).astype(np.float32)
    feeds = {"x": x, "w": window}
    got = tvm_qdq.compile(model, "x86").run(feeds)[0]
    want = _ort(model, feeds)
    assert np.abs(got - want).max() / np.abs(want).max() <= 3.5e-6


def test_stft_imports_as_take_and_matmul() -> None:
    """Framing is one ``R.take``, the DFT one ``R.matmul`` by a constant matrix."""
    text = tvm_qdq.from_onnx(_model((1, 64, 1), 16, 8, 1, True)[0]).script()
    assert text.count("R.take") == 1 and text.count("R.matmul") == 1


def test_stft_runtime_frame_step_refused() -> None:
    """frame_step must be a constant: a run-time one is refused naming the node."""
    model, _ = _model((1, 64, 1), 16, 8, 1, True)
    del model.graph.initializer[0]
    model.graph.input.append(helper.make_tensor_value_info("step", TensorProto.INT64, []))
    with pytest.raises(TvmQdqError, match="frame_step"):
        tvm_qdq.from_onnx(model)
