"""Generate the C driver of a :class:`~.plan.Plan` and link it with the kernels into one ELF.

The driver (``qdq_model.c``) holds the static memory plan: one 128-byte aligned arena for the
inputs, intermediates and outputs, the constants as a blob (``.incbin`` of ``consts.bin``),
one static ``DLTensor`` per buffer and one static argument array per kernel call. Its API
(``qdq_model.h``) is what a device project calls::

    void *qdq_model_input(int i);   size_t qdq_model_input_bytes(int i);
    int   qdq_model_run(void);      /* 0, or the index + 1 of the kernel that failed */
    const void *qdq_model_output(int i);  size_t qdq_model_output_bytes(int i);

``qdq_main`` (the ELF's entry, see :mod:`.runtime`) reads every input from stdin in order,
runs the model ``argv[1]`` times (default 1) and writes every output to stdout.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import tvm

from .libm import LIBM_C
from .plan import Plan
from .runtime import ABI_H, RUNTIME_C
from .toolchain import Toolchain

HEXAGON_TRIPLE = "hexagon-unknown-linux-musl"


def _c_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_header(plan: Plan) -> str:
    """``qdq_model.h``: the driver API, buffer sizes, shapes and dtypes as comments."""
    lines = [
        "/* tvm-qdq: a quantized model compiled for Hexagon (generated). */",
        "#ifndef TVM_QDQ_MODEL_H_",
        "#define TVM_QDQ_MODEL_H_",
        "#include <stddef.h>",
        "",
        f"#define QDQ_MODEL_NUM_INPUTS {len(plan.inputs)}",
        f"#define QDQ_MODEL_NUM_OUTPUTS {len(plan.outputs)}",
        f"#define QDQ_MODEL_NUM_KERNELS {len(plan.calls)}",
        f"#define QDQ_MODEL_ARENA_BYTES {plan.arena_size}",
        f"#define QDQ_MODEL_CONST_BYTES {plan.const_size}",
    ]
    for kind, ids in (("INPUT", plan.inputs), ("OUTPUT", plan.outputs)):
        for i, idx in enumerate(ids):
            buf = plan.buffers[idx]
            lines.append(f"/* {kind.lower()} {i}: {buf.name} {buf.dtype}{list(buf.shape)} */")
            lines.append(f"#define QDQ_MODEL_{kind}{i}_BYTES {buf.nbytes}")
    lines += [
        "",
        "void *qdq_model_input(int i);",
        "size_t qdq_model_input_bytes(int i);",
        "const void *qdq_model_output(int i);",
        "size_t qdq_model_output_bytes(int i);",
        "/* Runs every kernel in order: 0 on success, else 1 + the failing kernel's index. */",
        "int qdq_model_run(void);",
        "/* Name of kernel i (for profiles). */",
        "const char *qdq_model_kernel_name(int i);",
        "#endif",
        "",
    ]
    return "\n".join(lines)


def driver_source(plan: Plan, consts_path: str | None) -> str:
    """``qdq_model.c``: static buffers, tensors, argument arrays and ``qdq_model_run``."""
    out = ['#include "qdq_abi.h"', '#include "qdq_model.h"', ""]
    if plan.const_size:
        if consts_path is not None:
            out.append('__asm__(".section .rodata.qdq_consts,\\"a\\",@progbits\\n"')
            out.append('        ".balign 128\\n.globl qdq_consts\\nqdq_consts:\\n"')
            out.append(f'        ".incbin " {_c_str(_c_str(consts_path))} "\\n.text\\n");')
        out.append("extern const unsigned char qdq_consts[];")
    out.append(f"static unsigned char qdq_arena[{max(plan.arena_size, 128)}] "
               "__attribute__((aligned(128)));")
    for sym in dict.fromkeys(call.symbol for call in plan.calls):
        out.append(f"extern int __tvm_ffi_{sym}(void *, const QdqFFIAny *, int32_t, "
                   "QdqFFIAny *);")
    out.append("")
    used = sorted({i for call in plan.calls for i in call.args} | set(plan.inputs)
                  | set(plan.outputs))
    for idx in used:
        buf = plan.buffers[idx]
        dt = tvm.DataType(buf.dtype)
        base = "qdq_consts" if buf.kind == "const" else "qdq_arena"
        shape = ", ".join(str(d) for d in buf.shape) or "1"
        out.append(f"static int64_t qdq_shape{idx}[] = {{{shape}}};")
        out.append(
            f"static QdqDLTensor qdq_t{idx} = {{(void *)({base} + {buf.offset}), "
            f"{{QDQ_DL_CPU, 0}}, {len(buf.shape)}, {{{dt.type_code}, {dt.bits}, {dt.lanes}}}, "
            f"qdq_shape{idx}, 0, 0}};  /* {buf.kind} {buf.name} {buf.dtype} */")
    out.append("")
    for step, call in enumerate(plan.calls):
        args = ", ".join(f"{{QDQ_FFI_DLTENSOR_PTR, 0, {{.v_ptr = &qdq_t{i}}}}}"
                         for i in call.args)
        out.append(f"static QdqFFIAny qdq_args{step}[] = {{{args}}};")
    out.append("")
    names = ", ".join(_c_str(call.symbol) for call in plan.calls) or "0"
    out.append(f"static const char *const qdq_kernel_names[] = {{{names}}};")
    out.append("const char *qdq_model_kernel_name(int i) {")
    out.append(f"  return (i >= 0 && i < {len(plan.calls)}) ? qdq_kernel_names[i] : 0;")
    out.append("}")
    for kind, ids, const in (("input", plan.inputs, ""), ("output", plan.outputs, "const ")):
        out.append(f"{const}void *qdq_model_{kind}(int i) {{")
        out.append("  switch (i) {")
        for i, idx in enumerate(ids):
            out.append(f"  case {i}: return qdq_t{idx}.data;")
        out.append("  default: return 0;\n  }\n}")
        out.append(f"size_t qdq_model_{kind}_bytes(int i) {{")
        out.append("  switch (i) {")
        for i, idx in enumerate(ids):
            out.append(f"  case {i}: return {plan.buffers[idx].nbytes};")
        out.append("  default: return 0;\n  }\n}")
    out.append("int qdq_model_run(void) {")
    out.append("  QdqFFIAny ret;")
    for step, call in enumerate(plan.calls):
        out.append(f"  if (__tvm_ffi_{call.symbol}(0, qdq_args{step}, {len(call.args)}, &ret)"
                   f" != 0) return {step + 1};")
    out.append("  return 0;\n}")
    out.append("/* Debug: run and write every kernel's outputs to fd after it runs. */")
    out.append("long qdq_write_all(int fd, const void *buf, size_t n);")
    out.append("int qdq_model_run_dump(int fd) {")
    out.append("  QdqFFIAny ret;")
    for step, call in enumerate(plan.calls):
        out.append(f"  if (__tvm_ffi_{call.symbol}(0, qdq_args{step}, {len(call.args)}, &ret)"
                   f" != 0) return {step + 1};")
        for idx in call.args[len(call.args) - call.num_outputs:]:
            out.append(f"  qdq_write_all(fd, qdq_t{idx}.data, {plan.buffers[idx].nbytes});")
    out.append("  return 0;\n}")
    out.append("")
    return "\n".join(out)


MAIN_C = r"""/* ELF entry for qemu-hexagon: inputs on stdin, outputs on stdout. */
#include <stddef.h>
#include "qdq_model.h"
long qdq_read_all(int fd, void *buf, size_t n);
long qdq_write_all(int fd, const void *buf, size_t n);
void qdq_puts(int fd, const char *s);

int qdq_model_run_dump(int fd);

int qdq_main(int argc, char **argv) {
  int iterations = 1;
  if (argc > 1) {
    iterations = 0;
    for (const char *p = argv[1]; *p >= '0' && *p <= '9'; ++p) iterations = iterations * 10
                                                                              + (*p - '0');
  }
  for (int i = 0; i < QDQ_MODEL_NUM_INPUTS; ++i) {
    if (qdq_read_all(0, qdq_model_input(i), qdq_model_input_bytes(i)) < 0) {
      qdq_puts(2, "tvm-qdq hexagon: short read on stdin\n");
      return 2;
    }
  }
  if (argc > 2 && argv[2][0] == 'd') return qdq_model_run_dump(1) ? 3 : 0;
  for (int it = 0; it < iterations; ++it) {
    int status = qdq_model_run();
    if (status != 0) {
      qdq_puts(2, "tvm-qdq hexagon: kernel failed: ");
      qdq_puts(2, qdq_model_kernel_name(status - 1));
      qdq_puts(2, "\n");
      return 3;
    }
  }
  for (int i = 0; i < QDQ_MODEL_NUM_OUTPUTS; ++i) {
    if (qdq_write_all(1, qdq_model_output(i), qdq_model_output_bytes(i)) < 0) return 4;
  }
  return 0;
}
"""


def _cflags(mcpu: str, hvx: list[str]) -> list[str]:
    flags = [f"--target={HEXAGON_TRIPLE}", f"-mcpu={mcpu}", "-O2", "-ffreestanding",
             "-fno-builtin", "-nostdlib", "-fno-pic", "-G0", "-Wall", "-Werror"]
    if hvx:
        flags += ["-mhvx", "-mhvx-length=128B"]
    return flags


def write_sources(plan: Plan, folder: Path, consts_name: str = "consts.bin") -> dict[str, Path]:
    """Write the driver, headers, runtime and constant blob into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = bytearray(plan.const_size)
    for buf in plan.buffers:
        if buf.kind == "const":
            data = buf.value.astype(buf.value.dtype, copy=False).tobytes(order="C")
            blob[buf.offset:buf.offset + len(data)] = data
    files = {
        "consts": folder / consts_name,
        "abi": folder / "qdq_abi.h",
        "header": folder / "qdq_model.h",
        "driver": folder / "qdq_model.c",
        "runtime": folder / "qdq_runtime.c",
        "libm": folder / "qdq_libm.c",
        "main": folder / "qdq_main.c",
    }
    files["consts"].write_bytes(bytes(blob))
    files["abi"].write_text(ABI_H)
    files["header"].write_text(model_header(plan))
    files["driver"].write_text(driver_source(plan, consts_name))
    files["runtime"].write_text(RUNTIME_C)
    files["libm"].write_text(LIBM_C)
    files["main"].write_text(MAIN_C)
    return files


def link_elf(tools: Toolchain, folder: Path, kernels_obj: Path | list[Path], mcpu: str,
             hvx: list[str], out: Path) -> Path:
    """Compile the driver, runtime and entry with clang and link them with the kernels
    (one object or several)."""
    kernel_objs = kernels_obj if isinstance(kernels_obj, list) else [kernels_obj]
    objects = []
    for name in ("qdq_model.c", "qdq_runtime.c", "qdq_libm.c", "qdq_main.c"):
        obj = folder / (name[:-2] + ".o")
        _run([tools.clang, *_cflags(mcpu, hvx), "-c", name, "-o", obj.name], folder)
        objects.append(obj.name)
    _run([tools.lld, "-static", "--no-pie", "-e", "_start", "-o", str(out), *objects,
          *[str(o) for o in kernel_objs]], folder)
    return out


def _run(cmd: list, cwd: Path) -> None:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(str(c) for c in cmd)} failed:\n{proc.stderr[-4000:]}")
