"""``compile_hexagon`` and :class:`HexagonCompiled`: a whole model as one Hexagon ELF.

``compile_hexagon(integer_mod, target)`` lowers the integer Relax module (:mod:`.lower`),
builds every kernel into one Hexagon object, generates the driver (:mod:`.driver`) and links
a freestanding ELF. :class:`HexagonCompiled` is a :class:`~..base.CompiledModel`: ``run``
writes the inputs to the ELF's stdin, runs it under ``qemu-hexagon`` and reads the outputs
from its stdout.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm

from ...dtypes import from_container, to_container
from ...errors import InputError
from ..base import (
    CompiledModel,
    Feeds,
    TensorSpec,
    check_index_range,
    checked_element_type,
    read_export,
)
from . import isa
from .backend import FORMAT
from .driver import link_elf, write_sources
from .emulator import profile_elf, run_elf
from .lower import build_for_qemu, lower
from .target import is_hexagon, target_cpu
from .toolchain import Toolchain, find_toolchain

ELF_FILE = "model.elf"
KERNELS_FILE = "kernels.o"
#: Kernels rebuilt with one instruction per packet (qemu's same-packet store/load order).
SOLO_FILE = "kernels_solo.o"


@dataclass
class KernelProfile:
    """Executed packets / instructions / HVX instructions of one kernel (or the driver)."""

    name: str
    calls: int
    packets: int
    instructions: int
    hvx: int
    vrmpy: int

    @property
    def hvx_share(self) -> float:
        return self.hvx / self.instructions if self.instructions else 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "calls": self.calls, "packets": self.packets,
                "instructions": self.instructions, "hvx": self.hvx, "vrmpy": self.vrmpy,
                "hvx_share": round(self.hvx_share, 4)}


@dataclass
class Profile:
    """Instructions executed per inference on the Hexagon ISA (qemu), per kernel."""

    kernels: list[KernelProfile]

    @property
    def packets(self) -> int:
        return sum(k.packets for k in self.kernels)

    @property
    def instructions(self) -> int:
        return sum(k.instructions for k in self.kernels)

    @property
    def hvx(self) -> int:
        return sum(k.hvx for k in self.kernels)

    @property
    def hvx_share(self) -> float:
        return self.hvx / self.instructions if self.instructions else 0.0

    def to_dict(self) -> dict:
        return {"packets": self.packets, "instructions": self.instructions, "hvx": self.hvx,
                "hvx_share": round(self.hvx_share, 4),
                "kernels": [k.to_dict() for k in self.kernels]}


class HexagonCompiled(CompiledModel):
    """A model compiled to one freestanding Hexagon ELF; runs under ``qemu-hexagon``.

    The :class:`~..base.CompiledModel` surface plus :meth:`profile` and
    :meth:`instruction_mix`; ``meta`` holds the build's plan (buffers, kernel symbols, calls).
    """

    format = FORMAT

    def __init__(self, folder: Path, meta: dict, inputs: list[TensorSpec],
                 outputs: list[TensorSpec], report=None,
                 owner: tempfile.TemporaryDirectory | None = None):
        super().__init__(inputs, outputs, meta["target"], report)
        self.folder = Path(folder)
        self.meta = meta
        self._owner = owner  # keeps a temporary build folder alive
        self._tools: Toolchain | None = None

    @property
    def elf(self) -> Path:
        return self.folder / ELF_FILE

    def _check(self, spec: TensorSpec, value, plan_in: dict) -> np.ndarray:
        array = checked_element_type(spec, value)
        if list(array.shape) != list(plan_in["shape"]):
            raise InputError(f"input '{spec.name}': expected shape {plan_in['shape']}, got "
                             f"{list(array.shape)} (the Hexagon build has static shapes)")
        return np.ascontiguousarray(to_container(array)).astype(plan_in["dtype"], copy=False)

    def _stdin(self, feeds: Feeds) -> bytes:
        arrays = [self._check(s, v, p) for s, v, p in
                  zip(self.inputs, self._ordered(feeds), self.meta["plan_inputs"], strict=True)]
        for spec, array in zip(self.inputs, arrays, strict=True):
            check_index_range(spec, array)
        return b"".join(a.tobytes() for a in arrays)

    def _decode(self, data: bytes) -> list[np.ndarray]:
        result, pos = [], 0
        for spec, out in zip(self.outputs, self.meta["plan_outputs"], strict=True):
            dtype = np.dtype(out["dtype"]) if out["dtype"] != "bool" else np.dtype(np.bool_)
            size = int(np.prod(out["shape"], dtype=np.int64)) * dtype.itemsize
            if pos + size > len(data):
                raise RuntimeError("the Hexagon ELF wrote fewer output bytes than expected")
            array = np.frombuffer(data[pos:pos + size], dtype=dtype).reshape(out["shape"])
            pos += size
            result.append(from_container(array.copy(), spec.type))
        return result

    def tools(self) -> Toolchain:
        if self._tools is None:
            self._tools = find_toolchain()
        return self._tools

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        """Run once under qemu-hexagon. ``feeds``: a dict by input name or a list."""
        return self._decode(run_elf(self.tools(), self.elf, self._stdin(feeds)))

    # -- profiling ------------------------------------------------------------------------------

    def _disassembly(self) -> isa.Disassembly:
        return isa.disassemble(self.tools().objdump, self.elf, self.meta["mcpu"],
                               tuple(self.meta.get("mattr", ())))

    def _owners(self, dis: isa.Disassembly) -> tuple[list[str], list[tuple[int, int, int]]]:
        owners = ["driver"] + list(self.meta["symbols"])
        ranges = []
        for name in ("qdq_main", "qdq_model_run"):
            if name in dis.functions:
                ranges.append((*dis.functions[name], 0))
        for i, sym in enumerate(self.meta["symbols"]):
            for fname in (f"__tvm_ffi_{sym}", f"{sym}_compute_"):
                if fname in dis.functions:
                    ranges.append((*dis.functions[fname], i + 1))
        return owners, ranges

    def profile(self, feeds: Feeds,
                iterations: int = 1) -> tuple[list[np.ndarray], Profile]:
        """Run with the instruction-count plugin: outputs and the per-kernel :class:`Profile`
        (counts divided by ``iterations``; the driver's stdin/stdout work counts once)."""
        dis = self._disassembly()
        owners, ranges = self._owners(dis)
        stdout, counts = profile_elf(self.tools(), self.elf, self._stdin(feeds), ranges, owners,
                                     args=(str(iterations),))
        calls = {}
        for sym in self.meta["calls"]:
            calls[sym] = calls.get(sym, 0) + 1
        kernels = []
        for owner, name in enumerate(owners):
            table = counts.packets.get(owner, {})
            packets = instructions = hvx = vrmpy = 0
            for addr, times in table.items():
                packet = dis.packets.get(addr)
                if packet is None:
                    continue
                packets += times
                instructions += times * len(packet.instructions)
                hvx += times * packet.hvx
                vrmpy += times * sum("vrmpy" in i for i in packet.instructions)
            div = 1 if owner == 0 else iterations
            kernels.append(KernelProfile(name, calls.get(name, 0), packets // div,
                                         instructions // div, hvx // div, vrmpy // div))
        return self._decode(stdout), Profile(kernels)

    def instruction_mix(self) -> dict[str, dict]:
        """Static instruction mix of every kernel (both its functions) from the disassembly."""
        dis = self._disassembly()
        mix = {}
        for sym in self.meta["symbols"]:
            packets = []
            for fname in (f"__tvm_ffi_{sym}", f"{sym}_compute_"):
                if fname in dis.functions:
                    packets += dis.function_packets(fname)
            mix[sym] = isa.instruction_mix(packets)
        return mix

    # -- export --------------------------------------------------------------------------------

    def _write_files(self, out: Path) -> None:
        """Copy the ELF, the kernel object and the driver sources/headers to ``out``.

        A device project compiles ``qdq_model.c`` (it ``.incbin``s ``consts.bin``) against
        ``qdq_model.h`` / ``qdq_abi.h`` and links ``kernels.o`` (and ``kernels_solo.o`` if the
        build has one: kernels rebuilt unpacketized for qemu, see ``lower.build_for_qemu``);
        ``qdq_runtime.c`` is the freestanding runtime used for qemu (replace it with the
        device's libc and hooks), ``qdq_libm.c`` the libm-free float math the float islands
        call (:mod:`.libm`).
        """
        for name in (ELF_FILE, KERNELS_FILE, SOLO_FILE, "qdq_model.c", "qdq_model.h",
                     "qdq_abi.h", "qdq_runtime.c", "qdq_libm.c", "qdq_main.c", "consts.bin"):
            if (self.folder / name).exists() and self.folder.resolve() != out.resolve():
                shutil.copy2(self.folder / name, out / name)

    def _export_meta(self) -> dict:
        return self.meta


def compile_hexagon(mod: tvm.IRModule, target: tvm.target.Target | dict, *, inputs: list,
                   outputs: list, report=None, requantize: str = "fixed", vrmpy: bool = True,
                   schedule: bool = True, workdir: str | os.PathLike | None = None
                   ) -> HexagonCompiled:
    """Build the integer Relax module ``mod`` into one Hexagon ELF.

    ``inputs``/``outputs``: the model's TensorSpecs (as ``tvm_qdq.compile`` computes them);
    ``requantize``: ``"fixed"`` (default: multiplier + shift integer code, HVX lanes, within
    1 LSB of the float formula, :mod:`.requant`) or ``"float"`` (the integer pass's float64
    formula, scalar IEEE code: bit-exact with the x86 build).
    """
    tgt = target if isinstance(target, tvm.target.Target) else tvm.target.Target(target)
    if not is_hexagon(tgt):
        raise ValueError(f"not a Hexagon target: {tgt}")
    tools = find_toolchain()
    owner = None
    if workdir is None:
        owner = tempfile.TemporaryDirectory(prefix="tvm-qdq-hexagon-")
        folder = Path(owner.name)
    else:
        folder = Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
    lowered = lower(mod, tgt, vrmpy=vrmpy, requantize=requantize, schedule=schedule)
    plan = lowered.plan
    objects, solo = build_for_qemu(lowered.kernels, tgt, folder / KERNELS_FILE, tools.objdump)
    lowered.notes["solo_packets"] = solo
    write_sources(plan, folder)
    mcpu, mattr = target_cpu(tgt)
    link_elf(tools, folder, objects, mcpu, mattr, folder / ELF_FILE)
    meta = {
        "format": FORMAT,
        "target": str(tgt),
        "mcpu": mcpu,
        "mattr": mattr,
        "requantize": requantize,
        "symbols": list(dict.fromkeys(c.symbol for c in plan.calls)),
        "calls": [c.symbol for c in plan.calls],
        "functions": {c.symbol: c.func for c in plan.calls},
        "plan_inputs": [{"dtype": plan.buffers[i].dtype, "shape": list(plan.buffers[i].shape)}
                        for i in plan.inputs],
        "plan_outputs": [{"dtype": plan.buffers[i].dtype, "shape": list(plan.buffers[i].shape)}
                         for i in plan.outputs],
        "arena_bytes": plan.arena_size,
        "const_bytes": plan.const_size,
        "notes": json.loads(json.dumps(lowered.notes, default=str)),
    }
    return HexagonCompiled(folder, meta, inputs, outputs, report, owner)


def load_hexagon(path: str | os.PathLike) -> HexagonCompiled:
    """Load what :meth:`HexagonCompiled.export` wrote (runs the exported ELF)."""
    folder = Path(path)
    meta, inputs, outputs, report = read_export(folder, FORMAT)
    return HexagonCompiled(folder, meta, inputs, outputs, report)
