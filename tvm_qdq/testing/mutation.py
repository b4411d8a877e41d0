"""Mutation check: plant one rounding / zero-point / saturation fault at a time in the integer
code paths and show that the fast (single-op) tests fail for each.

A fault is a list of exact source edits ``(file, snippet, replacement)``. Each snippet must
occur exactly once in its file, else the check stops with an error naming the fault (so a
refactor that moves the code makes the fault list fail loudly instead of testing nothing).

Faults are never applied to the working tree: every fault gets a fresh copy of a git revision
(``git archive``, default ``HEAD``) in a temporary directory, the edits are applied there, and
pytest runs in that copy with ``PYTHONPATH`` set to it. A small pytest plugin written into the
copy refuses to run unless ``tvm_qdq`` and ``relay_passes`` are imported from the copy (the
package is installed editable from the main tree) and records the failing test ids.

A test that already fails without any fault (the baseline run) is never counted as killing
a fault.

Run: ``bash scripts/mutation_check`` (``--help`` for the options); the table goes to
``docs/MUTATION.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Edit", "Fault", "FAULTS", "FAST_TESTS", "MutationError", "apply_fault", "main"]

#: Fast single-op test files (no whole models), cheapest and most sensitive first.
FAST_TESTS: tuple[str, ...] = (
    "tests/test_qnn.py",
    "tests/test_rules.py",
    "tests/test_qdq_nodes.py",
    "tests/test_qoperator_nodes.py",
    "tests/test_qoperator_ops.py",
    "tests/test_x86_saturate_requantize.py",
    "tests/test_lut_fold.py",
)

#: Fast tests of the PyTorch front end, run (in addition) for its faults only: importing torch
#: would slow every other run down.
TORCH_TESTS: tuple[str, ...] = (
    "tests/test_torch_dynamic.py::test_reference_is_pytorchs_linear_dynamic",
    "tests/test_torch_dynamic.py::test_relax_qparams_and_linear_match_reference",
)

#: Failures a fault's run may have beyond ``--maxfail`` (room for tests that fail without it).
BASELINE_SLACK = 0

ROUND = "round half up"
ZERO_POINT = "zero point off by one"
CLIP = "missing clip"

OPS = "tvm_qdq/qnn/ops.py"
LEGALIZE = "tvm_qdq/qnn/legalize.py"
ELEMENTWISE = "relay_passes/rules/elementwise.py"
ACTIVATION = "relay_passes/rules/activation.py"
MOVEMENT = "relay_passes/rules/movement.py"
LOOKUP = "relay_passes/rules/lookup.py"
QDQ_RULE = "relay_passes/rules/qdq.py"
X86_ROUNDING = "tvm_qdq/backend/x86/rounding.py"


class MutationError(RuntimeError):
    """A fault cannot be applied (snippet missing or ambiguous, or the result does not
    compile)."""


@dataclass(frozen=True)
class Edit:
    """Replace ``snippet`` (which must occur exactly once) by ``replacement`` in ``path``
    (relative to the repository root)."""

    path: str
    snippet: str
    replacement: str


@dataclass(frozen=True)
class Fault:
    """One planted fault: an id, the op family it belongs to, its kind and the edits."""

    id: str
    family: str
    kind: str
    description: str
    edits: tuple[Edit, ...] = field(default_factory=tuple)
    extra_tests: tuple[str, ...] = ()

    @property
    def files(self) -> list[str]:
        """The files the fault edits, in order, without repeats."""
        return list(dict.fromkeys(e.path for e in self.edits))


# --- the requantize op: its default form, and its operands restricted to one caller -------

_RQ_ROUND = "    f = bb.emit(relax.op.round(f))\n"
_RQ_ZP = 'f = bb.emit(relax.op.add(f, const(rq.zero_point_out, "float64")))'
_RQ_CLIP = "    f = bb.emit(relax.op.clip(f, rq.qmin, rq.qmax))\n"
_HALF_UP_F = 'relax.op.floor(relax.op.add(f, relax.const(0.5, "float64")))'
_OP_ZP = "zp_out = dst.broadcast(dst.zero_point, len(shape_of(value))) if dst.has_zero_point"
_OP_CLIP = "dst.qtype.qmin, dst.qtype.qmax, dst.qtype.container,"
_OP_OFFSET = "None if offset is None else np.asarray(offset, np.float64))"
#: ``rhe(v + TIE_NUDGE)`` is ``v`` rounded half up for the ``v`` of the tests (|v| ≪ 2^20).
TIE_NUDGE = "1e-9"


def _requantize_faults(prefix: str, family: str, where: str, condition: str | None,
                       extra: tuple[Edit, ...] = ()) -> list[Fault]:
    """Round / zero-point / clip faults of the requantize op. Without ``condition``: in its
    default form (``qnn/legalize.py emit_requantize``). With ``condition`` (a Python
    expression over ``requantize_by``'s arguments, e.g. ``name == "qnn_mul_requantize"``): in
    the operands ``requantize_by`` gives the op, for the calls it selects only, so one op
    family's requantize is wrong (in every form) and the others are not: a nudged offset
    (ties round up), the output zero point + 1, a clip range wider than the type."""
    if condition is None:
        edits = (Edit(LEGALIZE, _RQ_ROUND, f"    f = bb.emit({_HALF_UP_F})\n"),
                 Edit(LEGALIZE, _RQ_ZP, _RQ_ZP.replace("rq.zero_point_out,",
                                                       "rq.zero_point_out + 1,")),
                 Edit(LEGALIZE, _RQ_CLIP, ""))
        what = ("round(f) → floor(f + 0.5)", "output zero point + 1 (where it is nonzero)",
                "no clip to [qmin, qmax] before the cast")
    else:
        edits = (Edit(OPS, _OP_OFFSET,
                      f"(np.asarray(0.0 if offset is None else offset, np.float64) + "
                      f"{TIE_NUDGE}) if ({condition}) else ({_OP_OFFSET[:-1]}))"),
                 Edit(OPS, _OP_ZP, _OP_ZP.replace(
                     "len(shape_of(value)))", f"len(shape_of(value))) + ({condition})")),
                 Edit(OPS, _OP_CLIP, f"(-(2**31) if ({condition}) else dst.qtype.qmin), "
                                     f"(2**31 - 1 if ({condition}) else dst.qtype.qmax), "
                                     "dst.qtype.container,"))
        what = (f"ties rounded up (offset + {TIE_NUDGE})",
                "output zero point + 1 (where it is nonzero)",
                "clip range [-2^31, 2^31) instead of [qmin, qmax]")
    kinds = (("round", ROUND), ("zp", ZERO_POINT), ("clip", CLIP))
    return [Fault(f"{prefix}-{name}", family, kind, f"{where}: {text}", (*extra, edit))
            for (name, kind), text, edit in zip(kinds, what, edits, strict=True)]


POOL = "relay_passes/rules/pool.py"
_POOL_TIE = ("    y = ctx.emit(relax.op.subtract(y, relax.op.astype("
             'relax.op.logical_and(tie, odd), "int64")))\n')
_POOL_ZP = 'const(int(out.zero_point), "int64")'
_POOL_CLIP = ("    y = ctx.emit(relax.op.clip(y, out.qtype.qmin, out.qtype.qmax))\n"
              "    return ctx.emit(relax.op.astype(y, out.qtype.container), name)\n")


def _pool_faults(prefix: str, family: str, condition: str) -> list[Fault]:
    """Round / zero-point / clip faults in ``rules/pool.py: requantize_sum`` (the exact int64
    ``round_half_even(sum · a / b)``) for the calls ``condition`` selects (by name)."""
    where = f"rules/pool.py requantize_sum ({condition})"
    return [
        Fault(f"{prefix}-round", family, ROUND, f"{where}: no tie-to-even correction (half up)",
              (Edit(POOL, _POOL_TIE, f"    if not ({condition}):\n    " + _POOL_TIE),)),
        Fault(f"{prefix}-zp", family, ZERO_POINT, f"{where}: output zero point + 1",
              (Edit(POOL, _POOL_ZP,
                    _POOL_ZP.replace("int(out.zero_point)",
                                     f"int(out.zero_point) + ({condition})")),)),
        Fault(f"{prefix}-clip", family, CLIP, f"{where}: no clip before the cast",
              (Edit(POOL, _POOL_CLIP, f"    if not ({condition}):\n    "
                    + _POOL_CLIP.split("\n", 1)[0] + "\n" + _POOL_CLIP.split("\n", 1)[1]),)),
    ]


# Concat requantizes through RewriteContext.requantize (shared, memoized): to fault only
# Concat, its rule calls ops.requantize directly under a name of its own.
_CONCAT_ROUTING = (
    Edit(OPS, "def requantize(\n    bb: relax.BlockBuilder, value: relax.Expr, src: QParams, "
              "dst: QParams\n) -> relax.Expr:",
         "def requantize(\n    bb: relax.BlockBuilder, value: relax.Expr, src: QParams, "
         "dst: QParams,\n    name: str = \"qnn_requantize\",\n) -> relax.Expr:"),
    Edit(OPS, "return requantize_by(bb, value, src.broadcast(src.zero_point, ndim), multiplier, "
              "dst)",
         "return requantize_by(bb, value, src.broadcast(src.zero_point, ndim), multiplier, "
         "dst, name)"),
    Edit(MOVEMENT, "from tvm_qdq.qnn.ops import const, shape_of\n",
         "from tvm_qdq.qnn import ops as _mutation_ops\n"
         "from tvm_qdq.qnn.ops import const, shape_of\n"),
    Edit(MOVEMENT, "parts = [ctx.requantize(item.value, item.params, out) for item in items]",
         "parts = [_mutation_ops.requantize(ctx.bb, item.value, item.params, out, "
         "\"qnn_concat_part\") for item in items]"),
)


def _table_faults(prefix: str, family: str, path: str, where: str, round_edit: tuple[str, str],
                  zp_edit: tuple[str, str], clip_edit: tuple[str, str]) -> list[Fault]:
    return [
        Fault(f"{prefix}-round", family, ROUND, f"{where}: np.rint → floor(x + 0.5)",
              (Edit(path, *round_edit),)),
        Fault(f"{prefix}-zp", family, ZERO_POINT, f"{where}: output zero point + 1",
              (Edit(path, *zp_edit),)),
        Fault(f"{prefix}-clip", family, CLIP, f"{where}: no clip to [qmin, qmax]",
              (Edit(path, *clip_edit),)),
    ]


def _faults() -> tuple[Fault, ...]:
    faults: list[Fault] = []
    # Requantize: the quantize rule (DQ → Q chains), conv / matmul / gemm epilogues, and the
    # requantize inside concat, clip, pad, where.
    faults += _requantize_faults("requantize", "requantize",
                                 "qnn/legalize.py emit_requantize (default form)", None)
    faults.append(Fault(
        "requantize-zp-in", "requantize", ZERO_POINT,
        "qnn/legalize.py shifted_input (every form): input zero point + 1",
        (Edit(LEGALIZE, "t = bb.emit(relax.op.subtract(t, const(rq.zero_point_in, work)))",
              "t = bb.emit(relax.op.subtract(t, const(rq.zero_point_in + 1, work)))"),)))
    # Add / Sub: the sum op's int64 default form (rounding shift), zero point, clip.
    faults += [
        Fault("add-round", "add/sub", ROUND,
              "qnn/legalize.py round_shift (default form): ties always up (no half-to-even)",
              (Edit(LEGALIZE, "relax.op.logical_and(relax.op.equal(rest, half), odd))",
                    "relax.op.equal(rest, half))"),)),
        Fault("add-zp", "add/sub", ZERO_POINT,
              "qnn/legalize.py finish_sum (every form): output zero point + 1",
              (Edit(LEGALIZE, 'y = bb.emit(relax.op.add(y, const(rs.zero_point_out, "int64")))',
                    'y = bb.emit(relax.op.add(y, const(rs.zero_point_out + 1, "int64")))'),)),
        Fault("add-clip", "add/sub", CLIP,
              "qnn/legalize.py finish_sum (every form): no clip before the cast",
              (Edit(LEGALIZE, "    y = bb.emit(relax.op.clip(y, rs.qmin, rs.qmax))\n", ""),)),
    ]
    faults += _requantize_faults("mul", "mul", "qnn/ops.py requantize_by (multiply's op)",
                                 'name == "qnn_mul_requantize"')
    # x86: the requantize op with its saturation moved onto the int32 accumulator, and the
    # float64 form of the sum op (backend/x86/rounding.py).
    faults += [
        Fault("x86-sat-round", "x86 requantize epilogue", ROUND,
              "backend/x86/rounding.py saturate_before_requantize: round → floor(x + 0.5)",
              (Edit(X86_ROUNDING, 'q = relax.op.astype(relax.op.round(x), "int32")',
                    'q = relax.op.astype(relax.op.floor(relax.op.add(x, '
                    'relax.const(0.5, "float64"))), "int32")'),)),
        Fault("x86-sat-zp", "x86 requantize epilogue", ZERO_POINT,
              "backend/x86/rounding.py saturate_before_requantize: zero point + 1",
              (Edit(X86_ROUNDING, 'relax.const(z.astype(np.int32), "int32")',
                    'relax.const(z.astype(np.int32) + 1, "int32")'),)),
        Fault("x86-sat-clip", "x86 requantize epilogue", CLIP,
              "backend/x86/rounding.py saturate_before_requantize: no int32 clamp",
              (Edit(X86_ROUNDING,
                    "relax.op.astype(relax.op.minimum(relax.op.maximum(d, lo), hi), "
                    '"float64")',
                    'relax.op.astype(d, "float64")'),)),
        Fault("x86-sat-bound", "x86 requantize epilogue", "clip bound off by one",
              "backend/x86/rounding.py saturation_bounds: upper clamp bound one too high",
              (Edit(X86_ROUNDING, "    return a_lo, a_hi, m, c\n",
                    "    return a_lo, a_hi + 1, m, c\n"),)),
        Fault("x86-shift-round", "x86 add (float64 form of the sum op)", ROUND,
              "backend/x86/rounding.py _float_rounding: round → floor(total + 0.5)",
              (Edit(X86_ROUNDING, 'return relax.op.astype(relax.op.round(total), "int64")',
                    'return relax.op.astype(relax.op.floor(relax.op.add(total, '
                    'relax.const(0.5, "float64"))), "int64")'),)),
    ]
    # Average pool and global average pool / mean: their own exact int64 requantize of the
    # window sums (rules/pool.py requantize_sum), one family at a time through its name.
    faults += _pool_faults("avgpool", "avg pool", 'name == "qnn_avg_pool"')
    faults += _pool_faults("gap", "global avg pool / mean", 'name == "qnn_mean"')
    faults += _requantize_faults("concat", "concat", "qnn/ops.py requantize_by (concat's op)",
                                 'name == "qnn_concat_part"', _CONCAT_ROUTING)
    # Clip / Relu: the saturation is the op itself.
    faults += [
        Fault("clip-round", "clip", ROUND, "rules/activation.py: clip bounds np.rint → floor+0.5",
              (Edit(ACTIVATION,
                    "q = np.rint(np.float64(np.float32(bound)) / out.scale) + "
                    "int(out.zero_point)",
                    "q = np.floor(np.float64(np.float32(bound)) / out.scale + 0.5) + "
                    "int(out.zero_point)"),)),
        Fault("clip-zp", "clip", ZERO_POINT, "rules/activation.py: clip bounds zero point + 1",
              (Edit(ACTIVATION,
                    "/ out.scale) + int(out.zero_point)\n",
                    "/ out.scale) + int(out.zero_point) + 1\n"),)),
        Fault("clip-clip", "clip", CLIP, "rules/activation.py clip: no clamp to the bounds",
              (Edit(ACTIVATION, "if lo is not None and lo > out.qtype.qmin:", "if False:"),
               Edit(ACTIVATION, "if hi is not None and hi < out.qtype.qmax:", "if False:"))),
        Fault("relu-zp", "relu", ZERO_POINT, "rules/activation.py relu: max(q, zp + 1)",
              (Edit(ACTIVATION,
                    "zero = const(q.params.broadcast(q.params.zero_point, q.ndim), dtype)",
                    "zero = const(q.params.broadcast(q.params.zero_point, q.ndim) + 1, dtype)"),
               )),
    ]
    # Bias off the accumulator grid: its requantize op carries the bias as its offset.
    faults += _requantize_faults("bias", "bias add (off grid)",
                                 "qnn/ops.py requantize_by (_accumulator_plus_constant's op)",
                                 'name == "qnn_bias_requantize"')
    # Lookup tables: sigmoid / tanh / erf / leaky relu, and the constant-operand Add/Mul table.
    faults += _table_faults(
        "lut", "lookup table (sigmoid/tanh/erf/leakyrelu)", LOOKUP, "rules/lookup.py table",
        ("np.rint(y / np.float32(out.scale))",
         "np.floor(y / np.float32(out.scale) + np.float32(0.5))"),
        ("+ int(out.zero_point), out.qtype.qmin,", "+ int(out.zero_point) + 1, out.qtype.qmin,"),
        ("table = np.clip(np.rint(y / np.float32(out.scale)) + int(out.zero_point), "
         "out.qtype.qmin,\n                    out.qtype.qmax)",
         "table = np.rint(y / np.float32(out.scale)) + int(out.zero_point)"))
    faults += _table_faults(
        "const-operand", "add/mul with a constant (table)", ELEMENTWISE,
        "rules/elementwise.py constant_operand_table",
        ("code = np.rint(y.astype(np.float32) / np.float32(out.scale))",
         "code = np.floor(y.astype(np.float32) / np.float32(out.scale) + np.float32(0.5))"),
        ("code = np.nan_to_num(code, nan=0.0) + int(out.zero_point)",
         "code = np.nan_to_num(code, nan=0.0) + int(out.zero_point) + 1"),
        ("return np.clip(code, out.qtype.qmin, out.qtype.qmax).astype(out.qtype.container)",
         "return code.astype(out.qtype.container)"))
    # Conv / MatMul: the activation zero point of the exact accumulator.
    faults += [
        Fault("conv-zp", "conv", ZERO_POINT, "rules/conv.py: activation zero point + 1",
              (Edit("relay_passes/rules/conv.py",
                    "x.value, x.params.qtype, int(x.params.zero_point), w_shift,",
                    "x.value, x.params.qtype, int(x.params.zero_point) + 1, w_shift,"),)),
        Fault("matmul-zp", "matmul", ZERO_POINT,
              "rules/matmul.py (constant B): activation zero point + 1",
              (Edit("relay_passes/rules/matmul.py", "int(a.params.zero_point), b_shift)",
                    "int(a.params.zero_point) + 1, b_shift)"),)),
    ]
    # Pad value / where scalar branch, constant quantize folding.
    faults += [
        Fault("pad-round", "pad / where constant", ROUND,
              "rules/movement.py _pad_fill: np.rint → floor(x + 0.5)",
              (Edit(MOVEMENT, "code = np.rint(np.float32(value) / np.float32(p.scale))",
                    "code = np.floor(np.float32(value) / np.float32(p.scale) + np.float32(0.5))"),
               )),
        Fault("pad-zp", "pad / where constant", ZERO_POINT,
              "rules/movement.py _pad_fill: zero point + 1",
              (Edit(MOVEMENT, "/ np.float32(p.scale)) + int(p.zero_point)\n",
                    "/ np.float32(p.scale)) + int(p.zero_point) + 1\n"),)),
        Fault("fold-round", "quantize of a constant (folded)", ROUND,
              "rules/qdq.py folded_quantize: np.rint → floor(x + 0.5)",
              (Edit(QDQ_RULE, "code = np.rint(x.astype(np.float32) / scale)",
                    "code = np.floor(x.astype(np.float32) / scale + np.float32(0.5))"),)),
        Fault("fold-clip", "quantize of a constant (folded)", CLIP,
              "rules/qdq.py folded_quantize: no clip",
              (Edit(QDQ_RULE,
                    "return np.clip(code, p.qtype.qmin, p.qtype.qmax).astype(p.qtype.container)",
                    "return code.astype(p.qtype.container)"),)),
    ]
    # Dynamic quantization (ONNX DynamicQuantizeLinear, PyTorch quantize_dynamic).
    faults += [
        Fault("dynq-round", "dynamic quantize (ONNX)", ROUND,
              "frontend/onnx/qoperator.py dynamic_quantize: zero point round → floor(+0.5)",
              (Edit("tvm_qdq/frontend/onnx/qoperator.py",
                    "zp_f = relax.op.round(relax.op.clip(",
                    "zp_f = relax.op.floor(relax.op.add(relax.const(0.5, \"float32\"), "
                    "relax.op.clip("),
               Edit("tvm_qdq/frontend/onnx/qoperator.py",
                    "                                        0, 255))",
                    "                                        0, 255)))"))),
        Fault("torch-dynq-round", "dynamic quantize (PyTorch)", ROUND,
              "frontend/torch/dynamic.py: activation round → floor(t + 0.5)",
              (Edit("tvm_qdq/frontend/torch/dynamic.py",
                    't = op.round(op.astype(t, "float32"))',
                    't = op.floor(op.add(op.astype(t, "float32"), '
                    'relax.const(0.5, "float32")))'),), TORCH_TESTS),
        Fault("torch-dynq-clip", "dynamic quantize (PyTorch)", CLIP,
              "frontend/torch/dynamic.py: no clip of the activation codes",
              (Edit("tvm_qdq/frontend/torch/dynamic.py",
                    'bb.emit(op.astype(op.clip(t, QMIN, QMAX), "uint8"), "qnn_dyn_quantize")',
                    'bb.emit(op.astype(t, "uint8"), "qnn_dyn_quantize")'),), TORCH_TESTS),
    ]
    ids = [f.id for f in faults]
    assert len(ids) == len(set(ids)), "fault ids must be unique"
    return tuple(faults)


FAULTS: tuple[Fault, ...] = _faults()


# --- applying a fault to a copy -------------------------------------------------------------

def apply_fault(root: Path, fault: Fault) -> None:
    """Apply ``fault``'s edits to the tree at ``root`` (a throw-away copy) and byte-compile
    the edited files; :class:`MutationError` if a snippet is not found exactly once."""
    for edit in fault.edits:
        path = root / edit.path
        text = path.read_text()
        count = text.count(edit.snippet)
        if count != 1:
            raise MutationError(f"{fault.id}: snippet found {count} times in {edit.path} "
                                f"(expected exactly once):\n{edit.snippet}")
        path.write_text(text.replace(edit.snippet, edit.replacement))
    for rel in fault.files:
        try:
            py_compile.compile(str(root / rel), doraise=True,
                               cfile=str(Path(tempfile.gettempdir()) / "mutation_check.pyc"))
        except py_compile.PyCompileError as err:
            raise MutationError(f"{fault.id}: mutated {rel} does not compile: {err}") from err


def export_tree(repo: Path, rev: str, dest: Path) -> None:
    """Copy the files of ``rev`` (tracked files only) into ``dest`` with ``git archive``."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


_GUARD = '''"""pytest plugin of the mutation check (written into the throw-away copy)."""
import json
import os

import pytest

ROOT = os.path.realpath(os.environ["TVM_QDQ_MUTATION_ROOT"])
OUT = os.environ["TVM_QDQ_MUTATION_RESULT"]
FAILED = []


def pytest_configure(config):
    import tvm_qdq  # first: relay_passes imported alone is a circular import
    import relay_passes

    for module in (tvm_qdq, relay_passes):
        where = os.path.realpath(module.__file__)
        if not where.startswith(ROOT + os.sep):
            raise pytest.UsageError(
                f"{module.__name__} imported from {where}, not from the mutated copy {ROOT}")


def _record(nodeid):
    if nodeid not in FAILED:
        FAILED.append(nodeid)


def pytest_runtest_logreport(report):
    if report.failed:
        _record(report.nodeid)


def pytest_collectreport(report):
    if report.failed:
        _record("ERROR collecting " + report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    with open(OUT, "w") as f:
        json.dump({"failed": FAILED, "exitstatus": int(exitstatus),
                   "collected": session.testscollected}, f)
'''


@dataclass
class RunResult:
    """Outcome of one pytest run in a copy."""

    failed: list[str]
    exitstatus: int
    seconds: float
    collected: int = 0
    timed_out: bool = False
    log_tail: str = ""


def run_tests(root: Path, tests: list[str], maxfail: int | None, timeout: float,
              python: str) -> RunResult:
    """pytest ``tests`` inside the copy ``root``; the guard plugin checks the imports."""
    (root / "_mutation_guard.py").write_text(_GUARD)
    result_file = root / "_mutation_result.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["TVM_QDQ_MUTATION_ROOT"] = str(root)
    env["TVM_QDQ_MUTATION_RESULT"] = str(result_file)
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_mutation_guard",
           "--rootdir", str(root), "-o", "addopts=", "--tb=no", "--no-header"]
    if maxfail:
        cmd.append(f"--maxfail={maxfail}")
    cmd += tests
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        return RunResult([], -1, time.monotonic() - start, timed_out=True, log_tail=out[-2000:])
    seconds = time.monotonic() - start
    tail = (proc.stdout + proc.stderr)[-3000:]
    if not result_file.exists():
        raise MutationError(f"pytest did not finish (exit {proc.returncode}):\n{tail}")
    data = json.loads(result_file.read_text())
    if data["exitstatus"] == 4:  # usage error: the guard found the wrong import location
        raise MutationError(f"pytest refused to run in the copy:\n{tail}")
    return RunResult(data["failed"], data["exitstatus"], seconds, data["collected"],
                     log_tail=tail)


# --- the report -----------------------------------------------------------------------------

@dataclass
class FaultOutcome:
    """A fault and what the fast tests made of it."""

    fault: Fault
    killers: list[str]
    seconds: float
    status: str  # "killed", "SURVIVED", "TIMEOUT" or "PENDING" (not run yet)


def _short(nodeid: str) -> str:
    return nodeid.removeprefix("tests/")


def render(outcomes: list[FaultOutcome], tests: list[str], baseline: RunResult | None,
           rev: str, commit: str, maxfail: int, started: str) -> str:
    """The Markdown report (the whole of docs/MUTATION.md)."""
    survived = [o for o in outcomes if o.status in ("SURVIVED", "TIMEOUT")]
    pending = [o for o in outcomes if o.status == "PENDING"]
    lines = [
        "# Mutation check",
        "",
        "Generated by `bash scripts/mutation_check` (`tvm_qdq/testing/mutation.py`); do not",
        "edit by hand. Each row plants one fault (exact source edits, listed in",
        "`mutation.py: FAULTS`) in a throw-away copy of the tree, runs the fast single-op",
        "tests below there and lists the first failing tests (at most "
        f"{maxfail}; pytest stops there).",
        "A fault nobody notices is **SURVIVED**. Not covered: the Hexagon fixed-point",
        "requantize (`qnn/fixed_point.py`, `backend/hexagon/requant*.py`; its tests need qemu).",
        "Rerun: `bash scripts/mutation_check --jobs 3` (`--list`, `--only ID ...`, `--check`,",
        "`--combine` for runs that shared the faults).",
        "",
        f"* revision: `{rev}` = `{commit}`; run started {started}",
        "* fast tests: " + ", ".join(f"`{t}`" for t in tests),
    ]
    for extra in dict.fromkeys(o.fault.extra_tests for o in outcomes if o.fault.extra_tests):
        ids = ", ".join(f"`{o.fault.id}`" for o in outcomes if o.fault.extra_tests == extra)
        lines.append(f"* and for {ids} also: " + ", ".join(f"`{t}`" for t in extra))
    if baseline is not None:
        base = (f"{baseline.collected} tests, {len(baseline.failed)} failing without any "
                f"fault ({baseline.seconds:.0f} s)")
        if baseline.failed:
            base += ": " + ", ".join(f"`{_short(t)}`" for t in baseline.failed[:10])
            base += " (never counted as killing a fault)"
        lines.append(f"* baseline: {base}")
    killed = sum(o.status == "killed" for o in outcomes)
    lines += [f"* result: {killed} of {len(outcomes)} faults killed, "
              f"{len(survived)} survived" + (
                  ": " + ", ".join(f"**{o.fault.id}**" for o in survived) if survived else "")
              + (f"; {len(pending)} not run yet" if pending else ""),
              "",
              "| fault | family | kind | what is planted | result: failing tests | s |",
              "|---|---|---|---|---|---:|"]
    for o in outcomes:
        if o.status == "killed":
            result = "<br>".join(f"`{_short(t)}`" for t in o.killers[:maxfail])
        elif o.status == "PENDING":
            result = "not run yet"
        else:
            result = f"**{o.status}**"
        desc = o.fault.description.replace("|", "\\|")
        lines.append(f"| `{o.fault.id}` | {o.fault.family} | {o.fault.kind} | {desc} | "
                     f"{result} | {o.seconds:.0f} |")
    lines.append("")
    return "\n".join(lines)


def combine(reports: list[str]) -> str:
    """One report from several generated ones of the same revision (e.g. two runs sharing
    the faults, the second with ``--no-baseline``): the header of the first with a baseline,
    per fault the row of the first report (in the order given) that ran it, the result line
    recounted."""
    texts = [Path(r).read_text() for r in reports]
    revisions = {line.split("` = `")[1].split("`")[0] for text in texts
                 for line in text.splitlines() if line.startswith("* revision:")}
    if len(revisions) != 1:
        raise MutationError(f"reports of different revisions: {sorted(revisions)}")
    rows: dict[str, str] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith("| `"):
                fid = line.split("`")[1]
                if fid not in rows or "not run yet" in rows[fid]:
                    rows[fid] = line
    order = [f.id for f in FAULTS if f.id in rows]
    status = {fid: ("PENDING" if "not run yet" in rows[fid] else
                    "SURVIVED" if "**SURVIVED**" in rows[fid] else
                    "TIMEOUT" if "**TIMEOUT**" in rows[fid] else "killed") for fid in order}
    survived = [fid for fid in order if status[fid] in ("SURVIVED", "TIMEOUT")]
    pending = [fid for fid in order if status[fid] == "PENDING"]
    killed = sum(status[fid] == "killed" for fid in order)
    result = (f"* result: {killed} of {len(order)} faults killed, {len(survived)} survived"
              + (": " + ", ".join(f"**{fid}**" for fid in survived) if survived else "")
              + (f"; {len(pending)} not run yet" if pending else ""))
    main = next((t for t in texts if "* baseline:" in t), texts[0])
    head = main.split("| fault |")[0].splitlines()
    head = [result if line.startswith("* result:") else line for line in head]
    head.insert(-1, f"* combined from {len(reports)} runs of this revision (the baseline is "
                    "the first run's)")
    table = ["| fault | family | kind | what is planted | result: failing tests | s |",
             "|---|---|---|---|---|---:|"]
    return "\n".join(head + table + [rows[fid] for fid in order]) + "\n"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see ``--help``)."""
    repo = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default="HEAD", help="git revision to mutate (default HEAD)")
    parser.add_argument("--only", nargs="*", help="fault ids (default: all)")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--check", action="store_true",
                        help="only apply every fault to a copy (snippets found, code compiles)")
    parser.add_argument("--tests", nargs="*", help="test files / node ids (default: the fast "
                        "single-op set, FAST_TESTS)")
    parser.add_argument("--maxfail", type=int, default=2, help="stop a run after N failures")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--jobs", type=int, default=1, help="faults tested at the same time")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run without a fault")
    parser.add_argument("--combine", nargs="+", metavar="REPORT",
                        help="only combine generated reports of one revision into --out")
    parser.add_argument("--out", default=str(repo / "docs" / "MUTATION.md"),
                        help="report path ('-' for stdout only)")
    args = parser.parse_args(argv)

    if args.combine:
        text = combine(args.combine)
        if args.out == "-":
            print(text)
        else:
            Path(args.out).write_text(text)
        return 0
    faults = list(FAULTS)
    if args.only:
        unknown = set(args.only) - {f.id for f in faults}
        if unknown:
            parser.error(f"unknown fault ids: {sorted(unknown)}")
        faults = [f for f in faults if f.id in args.only]
    if args.list:
        for f in faults:
            print(f"{f.id:20s} {f.kind:22s} {f.description}")
        return 0
    tests = list(args.tests or FAST_TESTS)
    extra = [] if args.tests else list(dict.fromkeys(t for f in faults for t in f.extra_tests))
    commit = _git(repo, "rev-parse", args.rev)
    started = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="tvm-qdq-mutation-"))
    try:
        pristine = work / "pristine"
        export_tree(repo, commit, pristine)
        if args.check:
            for f in faults:
                copy = work / f.id
                shutil.copytree(pristine, copy)
                apply_fault(copy, f)
                shutil.rmtree(copy)
                print(f"ok  {f.id}")
            return 0
        lock = threading.Lock()
        done: dict[str, FaultOutcome] = {}
        state: dict[str, RunResult | None] = {"baseline": None}

        def write_report() -> None:
            if args.out == "-":
                return
            outcomes = [done.get(f.id) or FaultOutcome(f, [], 0.0, "PENDING") for f in faults]
            text = render(outcomes, tests, state["baseline"], args.rev, commit, args.maxfail,
                          started)
            Path(args.out).write_text(text)

        def baseline_job() -> None:
            res = run_tests(pristine, tests + extra, None, args.timeout, python)
            with lock:
                state["baseline"] = res
                print(f"baseline: {res.collected} tests, {len(res.failed)} failed "
                      f"({', '.join(res.failed[:5])}), {res.seconds:.0f} s", flush=True)
                for f in faults:
                    if f.id in results:
                        done[f.id] = outcome(f, results[f.id], set(res.failed))
                write_report()

        def fault_job(f: Fault, maxfail: int) -> RunResult:
            copy = work / f.id
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(pristine, copy)
            apply_fault(copy, f)
            try:
                own = [] if args.tests else list(f.extra_tests)
                return run_tests(copy, tests + own, maxfail, args.timeout, python)
            finally:
                shutil.rmtree(copy, ignore_errors=True)

        def outcome(f: Fault, res: RunResult, ignore: set[str]) -> FaultOutcome:
            killers = [t for t in res.failed if t not in ignore]
            status = "TIMEOUT" if res.timed_out else ("killed" if killers else "SURVIVED")
            return FaultOutcome(f, killers, res.seconds, status)

        # The baseline (no fault) runs next to the faults; failures it shares with a fault do
        # not count. Each fault may fail SLACK more tests than maxfail so that a few baseline
        # failures cannot end its run before a real failure; a fault left without a real
        # failure after stopping at maxfail is rerun with room for every baseline failure.
        slack = 0 if args.no_baseline else BASELINE_SLACK
        results: dict[str, RunResult] = {}

        def job(item: Fault | None) -> None:
            if item is None:
                baseline_job()
                return
            res = fault_job(item, args.maxfail + slack)
            with lock:
                results[item.id] = res
                base = state["baseline"]
                if base is not None or args.no_baseline:
                    ignore = set(base.failed) if base is not None else set()
                    done[item.id] = outcome(item, res, ignore)
                    o = done[item.id]
                    shown = ", ".join(o.killers[:args.maxfail]) if o.killers else o.status
                    print(f"{item.id:20s} {res.seconds:6.0f} s  {shown}", flush=True)
                else:
                    print(f"{item.id:20s} {res.seconds:6.0f} s  ({len(res.failed)} failed; "
                          "waiting for the baseline)", flush=True)
                write_report()

        items: list[Fault | None] = ([] if args.no_baseline else [None]) + faults
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(job, items))
        ignore = set(state["baseline"].failed) if state["baseline"] is not None else set()
        for f in faults:
            res = results[f.id]
            o = outcome(f, res, ignore)
            if o.status == "SURVIVED" and len(res.failed) >= args.maxfail + slack:
                print(f"{f.id}: only baseline failures before maxfail, rerunning", flush=True)
                o = outcome(f, fault_job(f, args.maxfail + len(ignore)), ignore)
            done[f.id] = o
        write_report()
        if args.out == "-":
            print(render([done[f.id] for f in faults], tests, state["baseline"], args.rev,
                         commit, args.maxfail, started))
        else:
            print(f"wrote {args.out}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
