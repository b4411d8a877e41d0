"""Run a Hexagon ELF under ``qemu-hexagon`` and count what it executes.

:func:`run_elf` pipes the inputs on stdin and returns stdout. :func:`profile_elf` runs it
with a small TCG plugin (:data:`PLUGIN_C`, built with the host C compiler on first use) that
counts executed **packets** per kernel: qemu-hexagon translates one VLIW packet per guest
"instruction", so the plugin sees packets; the instructions in each packet and whether they
are HVX come from the disassembly (:mod:`.isa`). A packet is attributed to the kernel being
run: the plugin switches the current kernel when a translation block starts inside a
kernel's functions (``__tvm_ffi_SYMBOL`` / ``SYMBOL_compute_``) or in the driver.

The plugin is written against the QEMU plugin API version 1 (QEMU 7.2, Debian 12); the few
declarations it needs are inlined so no QEMU development headers are required.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .target import QEMU_CPU
from .toolchain import Toolchain

PLUGIN_C = r"""/* tvm-qdq: count executed Hexagon packets per translation block and per kernel. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int, void *);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *, qemu_plugin_vcpu_udata_cb_t,
                                          enum qemu_plugin_cb_flags, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_OWNERS 512
typedef struct { uint64_t start, end; int owner; } Range;
typedef struct Tb {
  uint64_t vaddr;
  int n;
  int owner;
  uint64_t *pcs;
  uint64_t *counts;
  struct Tb *next;
} Tb;

static Range *ranges;
static int n_ranges;
static int n_owners = 1;
static int current;
static Tb *tbs;
static char out_path[4096] = "insn_count.txt";

static int owner_of(uint64_t pc) {
  for (int i = 0; i < n_ranges; ++i)
    if (pc >= ranges[i].start && pc < ranges[i].end) return ranges[i].owner;
  return -1;
}

static void on_exec(unsigned int vcpu, void *udata) {
  Tb *tb = (Tb *)udata;
  (void)vcpu;
  if (tb->owner >= 0) current = tb->owner;
  tb->counts[current] += 1;
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *qtb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(qtb);
  Tb *tb = (Tb *)calloc(1, sizeof(Tb));
  tb->n = (int)n;
  tb->pcs = (uint64_t *)calloc(n ? n : 1, sizeof(uint64_t));
  tb->counts = (uint64_t *)calloc(n_owners, sizeof(uint64_t));
  for (size_t i = 0; i < n; ++i)
    tb->pcs[i] = qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(qtb, i));
  tb->vaddr = n ? tb->pcs[0] : 0;
  tb->owner = owner_of(tb->vaddr);
  tb->next = tbs;
  tbs = tb;
  qemu_plugin_register_vcpu_tb_exec_cb(qtb, on_exec, QEMU_PLUGIN_CB_NO_REGS, tb);
}

static void on_plugin_exit(qemu_plugin_id_t id, void *p) {
  (void)id; (void)p;
  FILE *f = fopen(out_path, "w");
  if (!f) return;
  for (Tb *tb = tbs; tb; tb = tb->next) {
    for (int o = 0; o < n_owners; ++o) {
      if (!tb->counts[o]) continue;
      fprintf(f, "%d %llu", o, (unsigned long long)tb->counts[o]);
      for (int i = 0; i < tb->n; ++i) fprintf(f, " %llx", (unsigned long long)tb->pcs[i]);
      fprintf(f, "\n");
    }
  }
  fclose(f);
}

static void load_ranges(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  unsigned long long s, e;
  int o, cap = 64;
  ranges = (Range *)malloc(cap * sizeof(Range));
  while (fscanf(f, "%llx %llx %d", &s, &e, &o) == 3) {
    if (n_ranges == cap) { cap *= 2; ranges = (Range *)realloc(ranges, cap * sizeof(Range)); }
    if (o >= MAX_OWNERS) o = MAX_OWNERS - 1;
    ranges[n_ranges].start = s; ranges[n_ranges].end = e; ranges[n_ranges].owner = o;
    ++n_ranges;
    if (o + 1 > n_owners) n_owners = o + 1;
  }
  fclose(f);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "out=", 4) == 0) snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
    if (strncmp(argv[i], "ranges=", 7) == 0) load_ranges(argv[i] + 7);
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
  qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
  return 0;
}
"""


class EmulatorError(RuntimeError):
    """The ELF failed under qemu (non-zero exit status)."""


def run_elf(tools: Toolchain, elf: Path, stdin: bytes, args: tuple[str, ...] = (),
            plugin: list[str] | None = None, timeout: float = 600) -> bytes:
    """Run ``elf`` under ``qemu-hexagon -cpu v67`` and return its stdout."""
    cmd = [tools.qemu, "-cpu", QEMU_CPU]
    if plugin:
        cmd += ["-plugin", ",".join(plugin)]
    cmd += [str(elf), *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise EmulatorError(f"{' '.join(cmd)} exited with {proc.returncode}: "
                            f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.stdout


def plugin_path(tools: Toolchain) -> Path:
    """Build (once, cached by source hash) and return the counting plugin."""
    if tools.host_cc is None:
        raise EmulatorError("a host C compiler (cc) is needed to build the qemu plugin")
    digest = hashlib.sha256(PLUGIN_C.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tvm-qdq"
    cache.mkdir(parents=True, exist_ok=True)
    lib = cache / f"hexagon_insn_count_{digest}.so"
    if not lib.exists():
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "plugin.c"
            src.write_text(PLUGIN_C)
            built = Path(tmp) / lib.name
            proc = subprocess.run([tools.host_cc, "-O2", "-shared", "-fPIC", "-o", str(built),
                                   str(src)], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise EmulatorError(f"building the qemu plugin failed: {proc.stderr}")
            os.replace(built, lib)
    return lib


@dataclass
class PacketCounts:
    """Executed packets per owner (0 = driver/runtime, i + 1 = kernel symbol i)."""

    owners: list[str]
    #: owner index → {packet address: executions}
    packets: dict[int, dict[int, int]] = field(default_factory=dict)


def profile_elf(tools: Toolchain, elf: Path, stdin: bytes, ranges: list[tuple[int, int, int]],
                owners: list[str], args: tuple[str, ...] = ()) -> tuple[bytes, PacketCounts]:
    """Run ``elf`` with the counting plugin; ``ranges`` are ``(start, end, owner)``."""
    lib = plugin_path(tools)
    with tempfile.TemporaryDirectory() as tmp:
        rfile = Path(tmp) / "ranges.txt"
        rfile.write_text("".join(f"{s:x} {e:x} {o}\n" for s, e, o in ranges))
        out = Path(tmp) / "counts.txt"
        stdout = run_elf(tools, elf, stdin, args,
                         plugin=[str(lib), f"out={out}", f"ranges={rfile}"])
        counts = PacketCounts(owners)
        for line in out.read_text().splitlines():
            parts = line.split()
            owner, times = int(parts[0]), int(parts[1])
            table = counts.packets.setdefault(owner, {})
            for pc in parts[2:]:
                addr = int(pc, 16)
                table[addr] = table.get(addr, 0) + times
    return stdout, counts
