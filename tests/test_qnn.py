"""QNN building blocks against their numpy references (and the references against ORT)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

from tvm_qdq.dtypes import QTYPES
from tvm_qdq.qnn import QParams, ops, reference
from tvm_qdq.qnn.ops import accumulator_for, smallest_int_type
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.oracle import run_ort


def _run(build, *inputs: np.ndarray) -> np.ndarray:
    bb = relax.BlockBuilder()
    params = [relax.Var(f"i{k}", relax.TensorType(x.shape, str(x.dtype)))
              for k, x in enumerate(inputs)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(build(bb, *params))
        bb.emit_func_output(out)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), target=resolve_target("x86")), tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(x) for x in inputs]).numpy()


@pytest.mark.parametrize(("src", "dst"), [("int32", "uint8"), ("uint8", "uint16"),
                                          ("uint16", "uint8"), ("int8", "uint8"),
                                          ("int16", "int8")])
def test_requantize_matches_reference_exactly(src: str, dst: str) -> None:
    rng = np.random.default_rng(0)
    qs, qd = QTYPES[src], QTYPES[dst]
    lo, hi = max(qs.qmin, -(2**20)), min(qs.qmax, 2**20)
    q = rng.integers(lo, hi, size=(4, 64), endpoint=True).astype(qs.container)
    zp_in = 0 if src == "int32" else (qs.qmin + qs.qmax + 1) // 2
    s_in = np.float32(0.0031) if src != "int32" else np.float32(2.7e-6)
    s_out, zp_out = np.float32(0.021), (qd.qmin + qd.qmax + 1) // 3
    src_p = QParams(s_in, zp_in, qs)
    dst_p = QParams(s_out, zp_out, qd)
    got = _run(lambda bb, x: ops.requantize(bb, x, src_p, dst_p), q)
    want = reference.requantize(q, s_in, zp_in, s_out, zp_out, qd)
    np.testing.assert_array_equal(got, want)


def test_requantize_with_identical_params_folds_away() -> None:
    p = QParams(np.float32(0.1), 3, QTYPES["uint8"])
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2,), "uint8"))
    with bb.function("main", [x]):
        assert ops.requantize(bb, x, p, QParams(np.float32(0.1), 3, QTYPES["uint8"])) is x
        bb.emit_func_output(x)


def test_reference_quantize_matches_ort() -> None:
    x = np.linspace(-30, 30, 241, dtype=np.float32)
    inits = [numpy_helper.from_array(np.float32(0.25), "s"),
             numpy_helper.from_array(np.uint8(120), "zp")]
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [241])],
        [helper.make_tensor_value_info("q", TensorProto.UINT8, [241])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    np.testing.assert_array_equal(reference.quantize(x, 0.25, 120, QTYPES["uint8"]),
                                  run_ort(model, {"x": x})[0])


def test_accumulator_choice_is_exact_at_the_int32_limit() -> None:
    assert accumulator_for(2**31 - 1) == "int32"
    assert accumulator_for(2**31) == "int64"
    assert smallest_int_type(-128, 127) == "int8"
    assert smallest_int_type(-255, 255) == "int16"
    assert smallest_int_type(0, 70000) == "int32"


# ----------------------------------------------------------------------------------------------
# The integer-IR ops (qnn/integer_ops.py): default forms against the numpy definitions
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [None, 0.25])
def test_requantize_op_default_form_rounds_ties_to_even(offset: float | None) -> None:
    """``tvm_qdq.requantize`` built by TVM's own pipeline (its ``FLegalize``, the default
    float64 form) equals :func:`reference.requantize_codes`, with every odd input on a tie."""
    q = np.arange(-600, 600, dtype=np.int32).reshape(2, 600)
    dst = QParams(np.float32(1.0), 7, QTYPES["uint8"])
    zp_in = np.asarray(3, np.int64)
    half = None if offset is None else np.float64(offset)
    got = _run(lambda bb, x: ops.requantize_by(bb, x, zp_in, np.float64(0.5), dst,
                                               offset=half), q)
    want = reference.requantize_codes(q, zp_in, 0.5, 7, 0, 255, "uint8", half)
    np.testing.assert_array_equal(got, want)


def test_requantize_sum_op_default_form_matches_reference() -> None:
    """``tvm_qdq.requantize_sum`` (default int64 form): exact ties to even, zero points and
    saturation as :func:`reference.requantize_sum_codes`."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(4, 64)).astype(np.uint8)
    b = rng.integers(-128, 128, size=(1, 64)).astype(np.int8)
    dst = QParams(np.float32(0.05), 11, QTYPES["uint8"])
    ratios = [np.float64(0.5), np.float64(-0.25)]  # multiples of 2^-2: frequent exact ties
    terms = [(a, np.int64(128)), (b, np.int64(-5))]
    ints, shift = ops.fixed_point_multipliers(ratios, 8)
    got = _run(lambda bb, x, y: ops.add_integer(
        bb, [(x, terms[0][1], ratios[0]), (y, terms[1][1], ratios[1])], dst, 8), a, b)
    want = reference.requantize_sum_codes(terms, ints, shift, 11, 0, 255, "uint8")
    np.testing.assert_array_equal(got, want)
    exact = (a.astype(np.int64) - 128) * 0.5 + (b.astype(np.int64) + 5) * -0.25
    assert np.any(exact % 1 == 0.5)


def test_importing_registers_no_op() -> None:
    """Importing the package (and its backends) sets no TVM op attribute: the ops register on
    first use."""
    import subprocess
    import sys

    code = ("import tvm, tvm_qdq, relay_passes, tvm_qdq.backend.x86, tvm_qdq.backend.hexagon\n"
            "import tvm_qdq.qnn.legalize\n"
            "print([n for n in tvm.ir.Op.list_op_names() if n.startswith('tvm_qdq')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
