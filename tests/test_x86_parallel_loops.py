"""Which loop of a conv kernel runs on the thread pool (``schedules/common.parallel_chunks``,
``schedules/vnni.parallel_row_loop``, ``schedules/depthwise.DW_PARALLEL_MIN_MACS``).

The late layers of a CNN have small maps: 7 or 14 output rows, one AMX row tile per pixel
row, under a million MACs in a depthwise conv. Each kernel below must still have a parallel
loop with more than one iteration around its compute block, and stay exact."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_qdq.backend.x86 import has_vnni
from tvm_qdq.backend.x86.amx import has_amx, host_has_amx
from tvm_qdq.targets import resolve_target
from tvm_qdq.testing.kernel_cases import lower_and_build, random_ints
from tvm_qdq.testing.numpy_reference import conv_integer

TARGET = resolve_target("x86")
pytestmark = pytest.mark.skipif(not has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")
_PARALLEL = re.compile(r"^(\s*)for \w+ in T\.parallel\(T\.int64\((\d+)\)\)")
_FOR = re.compile(r"^(\s*)for ")


def _parallel_extent_around(script: str, block_prefix: str) -> int:
    """The extent of the innermost parallel loop enclosing the first block whose name starts
    with ``block_prefix`` (0 when none does)."""
    lines = script.splitlines()
    at = next(i for i, line in enumerate(lines) if f'T.sblock("{block_prefix}' in line)
    indent = len(lines[at]) - len(lines[at].lstrip())
    for line in reversed(lines[:at]):
        loop = _FOR.match(line)
        if loop is None or len(loop.group(1)) >= indent:
            continue
        indent = len(loop.group(1))
        parallel = _PARALLEL.match(line)
        if parallel is not None:
            return int(parallel.group(2))
    return 0


# (input NCHW, weight OIHW, padding, groups, compute block, kernel kind)
CASES = {
    "vnni_3x3_on_7_rows": ((1, 64, 7, 7), (128, 64, 3, 3), 1, 1, "tq_vnni_conv_update",
                           "vnni_conv2d"),
    "depthwise_under_1M_macs": ((1, 480, 14, 14), (480, 1, 3, 3), 1, 480, "tq_dw_conv_update",
                                "depthwise"),
    "amx_pointwise_14_rows": ((1, 112, 14, 14), (672, 112, 1, 1), 0, 1,
                              "tq_amx_matmul_update", "amx_matmul"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_small_map_kernels_are_parallel_and_exact(name: str) -> None:
    shape, wshape, pad, groups, block, kind = CASES[name]
    if kind == "amx_matmul" and not (host_has_amx() and has_amx(TARGET)):
        pytest.skip("host CPU has no AMX-INT8")
    rng = np.random.default_rng(len(name))
    w = random_ints(rng, wshape, "int8")
    vm, report, _, lowered = lower_and_build(
        lambda bb, x: relax.op.nn.conv2d(x, relax.const(w), padding=[pad] * 4, groups=groups,
                                         out_dtype="int32"),
        {"x": (shape, "uint8")}, TARGET)
    assert [k["kind"] for k in report.kernels] == [kind], report.to_json()
    extents = [_parallel_extent_around(f.script(), block) for f in lowered.functions.values()
               if isinstance(f, tvm.tirx.PrimFunc) and f'sblock("{block}' in f.script()]
    assert extents and extents[0] > 1, (name, extents)
    x = random_ints(rng, shape, "uint8")
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = conv_integer(x, w, 0, 0, strides=[1, 1], pads=[pad] * 4, dilations=[1, 1],
                        group=groups)
    np.testing.assert_array_equal(got, want.astype(np.int32))
