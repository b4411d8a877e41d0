"""``from_torch`` with symbolic dimensions: ``torch.export`` programs with ``dynamic_shapes``.

The dynamic axes stay symbolic in ``main`` with tvm-qdq's names (``dynamic=`` or
``{input}_dim{axis}``) and the program's ranges as bounds; one compile runs every size and is
compared with PyTorch's own output of the same program at that size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from torch.export import Dim

import tvm_qdq
from tvm_qdq.errors import DimensionBoundError
from tvm_qdq.frontend.torch import TorchImportError, from_torch


class Gate(nn.Module):
    """``softmax(linear(x)) · mean(y)`` over the last axis: two inputs sharing batch/seq."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), -1) * y.mean(-1, keepdim=True)


EXAMPLE = (torch.randn(2, 5, 16), torch.randn(2, 5, 16))
NAMED = {"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}}


@pytest.fixture(scope="module")
def gate() -> nn.Module:
    torch.manual_seed(0)
    return Gate().eval()


@pytest.fixture(scope="module")
def gate_compiled(gate):
    return tvm_qdq.compile(from_torch(gate, EXAMPLE, dynamic=NAMED, bounds={"seq": 64}),
                           "x86")


def test_dynamic_module_keeps_named_dims_and_bounds(gate_compiled) -> None:
    assert [s.shape for s in gate_compiled.inputs] == [["batch", "seq", 16]] * 2
    assert gate_compiled.outputs[0].shape == ["batch", "seq", 8]
    assert gate_compiled.bounds.upper == {"seq": 64}
    assert gate_compiled.bounds.lower == {"batch": 1, "seq": 1}


def test_dynamic_module_matches_pytorch_at_every_size(gate, gate_compiled, tmp_path) -> None:
    loaded = tvm_qdq.load(gate_compiled.export(tmp_path / "gate"))
    assert loaded.inputs == gate_compiled.inputs
    for batch, seq in ((1, 3), (4, 64), (3, 17)):
        x, y = torch.randn(batch, seq, 16), torch.randn(batch, seq, 16)
        expected = gate(x, y).detach().numpy()
        out = gate_compiled.run({"x": x.numpy(), "y": y.numpy()})[0]
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(loaded.run([x.numpy(), y.numpy()])[0], out)
    with pytest.raises(DimensionBoundError, match=r"'seq'\) = 65 exceeds bounds\['seq'\] = 64"):
        gate_compiled.run({"x": np.zeros((1, 65, 16), np.float32),
                           "y": np.zeros((1, 65, 16), np.float32)})


def _dims(param) -> list[int | str]:
    return [int(d) if isinstance(d, tvm.tirx.IntImm) else str(d) for d in param.ty.shape.values]


def test_program_dims_get_default_names_and_the_program_s_range(gate) -> None:
    seq = Dim("s", max=100)
    program = torch.export.export(gate, EXAMPLE, dynamic_shapes={"x": {1: seq}, "y": {1: seq}})
    func = from_torch(program)["main"]
    assert _dims(func.params[0]) == _dims(func.params[1]) == [2, "x_dim1", 16]
    assert {k: int(v) for k, v in func.attrs["tir_var_upper_bound"].items()} == {"x_dim1": 100}
    assert {k: int(v) for k, v in func.attrs["tir_var_lower_bound"].items()} == {"x_dim1": 1}
    named = from_torch(program, dynamic={"y": {1: "seq"}}, bounds={"seq": 50})["main"]
    assert _dims(named.params[0]) == [2, "seq", 16]
    assert {k: int(v) for k, v in named.attrs["tir_var_upper_bound"].items()} == {"seq": 50}


def test_dynamic_mistakes_are_named_errors(gate) -> None:
    seq = Dim("s", max=100)
    program = torch.export.export(gate, EXAMPLE, dynamic_shapes={"x": {1: seq}, "y": {1: seq}})
    with pytest.raises(TorchImportError, match=r"input 'x' axis 0 is static \(2\) in the "
                                               r"program; export it with dynamic_shapes="):
        from_torch(program, dynamic={"x": {0: "batch"}})
    with pytest.raises(TorchImportError, match=r"unknown input\(s\) \['z'\]"):
        from_torch(program, dynamic={"z": {1: "seq"}})
    with pytest.raises(TorchImportError, match="input 'y' axis 1 has the same size as input 'x' "
                                               "axis 1 in the program; dynamic= names them "
                                               "'b' and 'a'"):
        from_torch(program, dynamic={"x": {1: "a"}, "y": {1: "b"}})
    with pytest.raises(TorchImportError, match=r"bounds\['x_dim1'\] = 200 is above the "
                                               "program's maximum 100"):
        from_torch(program, bounds={"x_dim1": 200})
    with pytest.raises(TorchImportError, match=r"unknown dimension\(s\) \['seq'\]"):
        from_torch(program, bounds={"seq": 10})
    with pytest.raises(TorchImportError, match=r"unknown input\(s\) \['z'\]"):
        from_torch(torch.jit.trace(gate, EXAMPLE), EXAMPLE, dynamic={"z": {1: "seq"}})


@pytest.fixture(scope="module")
def pt2e_program():
    pytest.importorskip("torchao")
    from tvm_qdq.testing.pt2_models import pt2e_static

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    calibration = [(torch.randn(1, 20, 16),) for _ in range(4)]
    program, _ = pt2e_static(model, (torch.randn(1, 6, 16),), calibration,
                             dynamic_shapes=({1: Dim("seq", max=128)},))
    return program


def _run_pt2e(program, compiled, atol: float) -> None:
    for seq in (5, 77):
        x = torch.randn(1, seq, 16)
        expected = program.module()(x).detach().numpy()
        np.testing.assert_allclose(compiled.run([x.numpy()])[0], expected, rtol=0, atol=atol)


def test_pt2e_program_faithful_build_matches_pytorch_at_two_sizes(pt2e_program) -> None:
    mod = from_torch(pt2e_program, dynamic={"input": {1: "seq"}})
    compiled = tvm_qdq.compile(mod, "x86", integer=False)
    assert compiled.inputs[0].shape == [1, "seq", 16]
    assert compiled.bounds.upper == {"seq": 128}
    _run_pt2e(pt2e_program, compiled, atol=1e-5)


def test_pt2e_program_integer_build_matches_pytorch_at_two_sizes(pt2e_program) -> None:
    compiled = tvm_qdq.compile(from_torch(pt2e_program, dynamic={"input": {1: "seq"}}), "x86")
    _run_pt2e(pt2e_program, compiled, atol=0.05)  # a few output LSBs
