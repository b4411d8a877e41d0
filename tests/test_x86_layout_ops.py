"""Channels-last propagation through Split, Concat, nearest Resize and the whole-tensor min/max
of DynamicQuantizeLinear (``backend/x86/layout.py``).

A dynamically quantized CNN block as ORT's ``quantize_dynamic`` writes it (YOLO's C2f shape):
``DynamicQuantizeLinear → ConvInteger → ·scale → Split(channels) → ConvInteger on one half →
Concat(channels) → Resize(nearest, ×2) → DynamicQuantizeLinear → ConvInteger``. Between the
convs every op follows the NHWC layout, so the lowered module transposes only at the model's
input and output; the outputs equal ORT's reference path (the integer convs are exact and the
float ops are elementwise, so the values do not depend on the layout).
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper

import tvm_qdq
from tvm_qdq.backend.legalize_signedness import legalize_signedness
from tvm_qdq.backend.x86 import has_vnni, lower_integer_kernels
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing import fuzz
from tvm_qdq.testing.oracle import run_ort

TARGET = resolve_target("x86")
pytestmark = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")


def _conv(name: str, x: str, w: np.ndarray, scale: float, inits: list, nodes: list) -> str:
    """``Cast(ConvInteger(DynamicQuantizeLinear(x), w)) · (x_scale · scale)`` (3×3, pad 1)."""
    inits += [numpy_helper.from_array(w, f"{name}_w"),
              numpy_helper.from_array(np.array(scale, np.float32), f"{name}_ws")]
    nodes += [
        helper.make_node("DynamicQuantizeLinear", [x], [f"{name}_q", f"{name}_s", f"{name}_z"]),
        helper.make_node("ConvInteger", [f"{name}_q", f"{name}_w", f"{name}_z"], [f"{name}_i"],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Cast", [f"{name}_i"], [f"{name}_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{name}_s", f"{name}_ws"], [f"{name}_m"]),
        helper.make_node("Mul", [f"{name}_f", f"{name}_m"], [f"{name}_y"]),
    ]
    return f"{name}_y"


def _block(channels: int, size: int, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    half = channels // 2

    def weights(o: int, i: int) -> np.ndarray:
        return rng.integers(-127, 128, size=(o, i, 3, 3)).astype(np.int8)

    inits: list = [numpy_helper.from_array(np.array([half, half], np.int64), "halves"),
                   numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes: list = []
    a = _conv("c1", "x", weights(channels, 3), 0.01, inits, nodes)
    nodes.append(helper.make_node("Relu", [a], ["a"]))
    nodes.append(helper.make_node("Split", ["a", "halves"], ["s0", "s1"], axis=1))
    b = _conv("c2", "s1", weights(half, half), 0.02, inits, nodes)
    nodes.append(helper.make_node("Concat", ["s0", "s1", b], ["cat"], axis=1))
    nodes.append(helper.make_node("Resize", ["cat", "", "scales"], ["up"], mode="nearest"))
    y = _conv("c3", "up", weights(channels, channels + half), 0.005, inits, nodes)
    graph = helper.make_graph(
        nodes, "c2f_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _map_transposes(lowered: tvm.IRModule) -> list[str]:
    """The kernels of ``main`` that transpose a feature map (not a per-channel vector such as
    a zero point's correction term ``[1, 1, 1, C]``)."""
    moves = []
    for line in lowered["main"].script(show_meta=False).splitlines():
        if "R.call_tir(" not in line or "transpose" not in line.split("R.call_tir(")[1][:60]:
            continue
        shape = re.search(r"out_ty=R\.Tensor\(\(([^)]*)\)", line)
        dims = [int(d) for d in shape.group(1).split(",") if d.strip()] if shape else []
        if sum(d > 1 for d in dims) > 1:
            moves.append(line.strip())
    return moves


@pytest.mark.parametrize("channels,size", [(32, 12), (48, 9)])
def test_split_concat_resize_stay_channels_last(channels: int, size: int) -> None:
    model = _block(channels, size, seed=channels)
    integer = legalize_signedness(tvm_qdq.to_integer(tvm_qdq.from_onnx(model)), "x86")
    lowered = lower_integer_kernels(integer, TARGET)
    moves = _map_transposes(lowered)
    # the input's NCHW → NHWC (fused into the first quantize) and the output's NHWC → NCHW
    assert len(moves) <= 2, "\n".join(moves)
    compiled = tvm_qdq.compile(model, "x86")
    rng = np.random.default_rng(size)
    for x in (rng.normal(0, 1, (1, 3, size, size)), rng.uniform(0, 2, (1, 3, size, size))):
        x = x.astype(np.float32)
        want = run_ort(model, {"x": x}, optimization_level=fuzz.ORT_REFERENCE_LEVEL)[0]
        got = compiled.run({"x": x})[0]
        np.testing.assert_array_equal(got, want)
