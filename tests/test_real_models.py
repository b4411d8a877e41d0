"""The real-model corpus, as its authors shipped it: import, integer, compile, run, agree.

Each model of ``tvm_qdq.testing.real_corpus`` is compiled for x86 with no preprocessing
(only ``shapes=`` for inputs declared with symbolic sizes), every quantized conv/matmul must
be integer, and the output must agree with ORT's reference path under the float-output
yardstick (``tvm_qdq.testing.yardstick``); classifiers must give the same top-1 class.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import tvm_qdq
from tvm_qdq.testing import real_corpus, yardstick
from tvm_qdq.testing.ir import compute_calls

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", [m.name for m in real_corpus.CORPUS])
def test_real_model_imports_compiles_and_agrees(name: str) -> None:
    entry = real_corpus.BY_NAME[name]
    path = real_corpus.model_path(name)
    proto = onnx.load_model(path)
    integer = tvm_qdq.to_integer(tvm_qdq.from_onnx(proto, shapes=entry.shapes))
    left_float = real_corpus.dequantized_float_compute(integer)
    assert not left_float, f"quantized conv/matmul left float: {left_float[:5]}"
    integer_calls = [c for c in compute_calls(integer)
                     if not any(d.startswith("float") for d in c[1])]
    assert len(integer_calls) >= real_corpus.quantized_compute_nodes(proto)
    compiled = tvm_qdq.compile(integer, "x86")

    feeds = entry.feeds(0)
    expected = yardstick.reference(proto, feeds)
    actual = compiled.run(feeds)
    movement = yardstick.input_sensitivity(proto, feeds, expected)
    for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert got.shape == want.shape and got.dtype == want.dtype
        if not np.issubdtype(want.dtype, np.floating):
            np.testing.assert_array_equal(got, want)
            continue
        verdict = yardstick.judge(got, want, None if movement is None else movement[i])
        assert verdict.ok, f"{name} output {i}: {verdict}"
        if entry.kind == "classifier":
            assert np.array_equal(np.argmax(got, axis=-1), np.argmax(want, axis=-1))
