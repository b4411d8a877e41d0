"""Hexagon disassembly: packets, instruction counts, HVX share and the instruction mix.

``llvm-objdump --mcpu=hexagonv68`` prints one instruction (or one duplex pair, joined by
``;``) per line and marks packets with ``{`` ... ``}``. Constant extenders (``immext``) are
not counted as instructions. An instruction is HVX when it names a vector register
(``v0``..``v31``, pairs ``v1:0``), a vector predicate (``q0``..``q3``) or ``vmem``.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_HVX = re.compile(r"\b[vq]\d+(:\d+)?\b|\bvmem|\bvtmp\b")
_LINE = re.compile(r"^\s*([0-9a-f]+):\s*(.*)$")
_SYM = re.compile(r"^([0-9a-f]+) <(.+)>:$")
_MNEMONIC = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(")


@dataclass
class Packet:
    """One VLIW packet: its instructions and how many of them are HVX."""

    address: int
    instructions: list[str] = field(default_factory=list)

    @property
    def hvx(self) -> int:
        return sum(1 for i in self.instructions if _HVX.search(i))


@dataclass
class Disassembly:
    """Packets by address and function symbols ``name → (start, end)``."""

    packets: dict[int, Packet]
    functions: dict[str, tuple[int, int]]

    def function_packets(self, name: str) -> list[Packet]:
        start, end = self.functions[name]
        return [p for a, p in self.packets.items() if start <= a < end]


def _split(text: str) -> list[str]:
    text = text.replace("{", " ").replace("}", " ").strip()
    parts = [p.strip() for p in text.split(";") if p.strip()]
    return [p for p in parts if not p.startswith("immext")]


def disassemble(objdump: str, path: Path, mcpu: str = "hexagonv68",
                mattr: tuple[str, ...] = ("+hvxv68", "+hvx-length128b")) -> Disassembly:
    """Disassemble an ELF (object or executable) into packets and function ranges (HVX
    instructions decode only with the HVX features in ``mattr``)."""
    cmd = [objdump, "-d", "--no-show-raw-insn", f"--mcpu={mcpu}"]
    if mattr:
        cmd.append("--mattr=" + ",".join(mattr))
    text = subprocess.run([*cmd, str(path)], capture_output=True, text=True, check=True).stdout
    packets: dict[int, Packet] = {}
    starts: list[tuple[int, str]] = []
    current: Packet | None = None
    for line in text.splitlines():
        sym = _SYM.match(line.strip())
        if sym:
            starts.append((int(sym.group(1), 16), sym.group(2)))
            current = None
            continue
        m = _LINE.match(line)
        if not m:
            continue
        addr, body = int(m.group(1), 16), m.group(2)
        if "{" in body or current is None:
            current = Packet(addr)
            packets[addr] = current
        current.instructions.extend(_split(body))
        if "}" in body:
            current = None
    starts.sort()
    functions = {}
    for i, (addr, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else max(packets, default=addr) + 4
        functions[name] = (addr, end)
    return Disassembly(packets, functions)


def mnemonic(instruction: str) -> str:
    """A short name for an instruction (``vrmpy``, ``vmem``, ``memw``, ``add``, ``jump``...)."""
    text = instruction.strip()
    if text.startswith("if "):
        depth, cut = 0, len(text)
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if ch == ")" and depth == 0:
                cut = i + 1
                break
        text = text[cut:].strip()
    lhs, _, rhs = text.partition("=") if "=" in text else ("", "", text)
    if "mem" in lhs:
        rhs = lhs
    rhs = rhs.strip()
    m = _MNEMONIC.match(rhs)
    if m:
        return m.group(1)
    word = re.match(r"[A-Za-z_][A-Za-z0-9_.:]*", rhs)
    return word.group(0) if word else (rhs.split()[0] if rhs else "?")


def instruction_mix(packets: list[Packet], top: int = 12) -> dict:
    """Static mix of a function: packets, instructions, HVX instructions, top mnemonics."""
    names = Counter()
    hvx = total = 0
    for p in packets:
        for ins in p.instructions:
            total += 1
            is_hvx = bool(_HVX.search(ins))
            hvx += is_hvx
            names[("hvx:" if is_hvx else "") + mnemonic(ins)] += 1
    return {"packets": len(packets), "instructions": total, "hvx": hvx,
            "vrmpy": sum(n for k, n in names.items() if "vrmpy" in k),
            "top": dict(names.most_common(top))}


_STORE = re.compile(r"^(?:if \([^)]*\) )?(mem[a-z]*\([^)]*\))\s*=")
_LOAD = re.compile(r"=\s*(mem[a-z]*\([^)]*\))")


def same_address_store_load(dis: Disassembly) -> list[int]:
    """Addresses of packets that store to and load from the same address expression.

    qemu-hexagon 7.2 executes such a pair in the wrong order (the load sees the old value);
    LLVM emits it for a volatile reload, so the runtime avoids volatile temporaries.
    """
    bad = []
    for addr, packet in dis.packets.items():
        stores = {m.group(1).replace(" ", "") for i in packet.instructions
                  if (m := _STORE.match(i.strip()))}
        loads = {m.group(1).replace(" ", "") for i in packet.instructions
                 if (m := _LOAD.search(i)) and not _STORE.match(i.strip())}
        if stores & loads:
            bad.append(addr)
    return bad
