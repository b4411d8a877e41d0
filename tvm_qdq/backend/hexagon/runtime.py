"""C sources of the freestanding Hexagon runtime and the ABI header shared with device projects.

The kernels TVM builds for ``hexagon-unknown-linux-musl`` need only a handful of symbols
besides each other: ``TVMFFIErrorSetRaisedFromCStrParts``, the workspace allocator hooks
``__TVMBackendAllocWorkspace`` / ``__TVMBackendFreeWorkspace`` (weak function-pointer
variables in the object), ``memcpy`` / ``memset`` (and Hexagon's
``__hexagon_memcpy_likely_aligned_min32bytes_mult8bytes``) and, for float rounding,
``nearbyintf``. :data:`RUNTIME_C` provides them plus ``_start`` and Linux syscalls by
``trap0(#1)`` (number in r6) so that one static ELF runs under ``qemu-hexagon`` without libc.
Integer division by a non-constant is a libcall on Hexagon (``__hexagon_divsi3``...): the
runtime has them too, written without ``/``.
"""

from __future__ import annotations

#: The ABI of the TVM kernels (``tvm-ffi`` packed calling convention, DLPack tensors).
ABI_H = r"""/* tvm-qdq Hexagon kernels: the calling convention of the TVM-built object.
 *
 * Each kernel is  int SYMBOL(void *self, const TVMFFIAny *args, int32_t num_args,
 *                            TVMFFIAny *result)
 * with args[i].type_index = 7 (DLTensor pointer) and args[i].v_ptr = &tensor; it returns 0
 * on success, else it has called TVMFFIErrorSetRaisedFromCStrParts. Tensors are C-contiguous
 * (strides NULL), device {kDLCPU = 1, 0}, data aligned to 128 bytes.
 * The object also needs: TVMFFIErrorSetRaisedFromCStrParts, memcpy, memset and the
 * workspace hooks __TVMBackendAllocWorkspace / __TVMBackendFreeWorkspace (function pointers).
 */
#ifndef TVM_QDQ_HEXAGON_ABI_H_
#define TVM_QDQ_HEXAGON_ABI_H_
#include <stdint.h>
#include <stddef.h>

typedef struct { int32_t device_type; int32_t device_id; } QdqDLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } QdqDLDataType;
typedef struct {
  void *data;
  QdqDLDevice device;
  int32_t ndim;
  QdqDLDataType dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} QdqDLTensor;
typedef struct {
  int32_t type_index;
  uint32_t zero_padding;
  union { int64_t v_int64; double v_float64; void *v_ptr; } u;
} QdqFFIAny;
typedef int (*QdqKernel)(void *self, const QdqFFIAny *args, int32_t num_args,
                         QdqFFIAny *result);
#define QDQ_FFI_DLTENSOR_PTR 7
#define QDQ_DL_CPU 1
#endif
"""

#: Freestanding runtime: entry point, syscalls, memory and math helpers, error hook.
RUNTIME_C = r"""/* tvm-qdq freestanding runtime for hexagon-unknown-linux-musl (no libc). */
#include <stdint.h>
#include <stddef.h>

#define SYS_read 63
#define SYS_write 64
#define SYS_exit 93
#define SYS_exit_group 94

long qdq_syscall3(long n, long a, long b, long c) {
  register long r0 __asm__("r0") = a;
  register long r1 __asm__("r1") = b;
  register long r2 __asm__("r2") = c;
  register long r6 __asm__("r6") = n;
  __asm__ volatile("trap0(#1)" : "+r"(r0) : "r"(r1), "r"(r2), "r"(r6) : "memory");
  return r0;
}

void qdq_exit(int code) {
  qdq_syscall3(SYS_exit_group, code, 0, 0);
  qdq_syscall3(SYS_exit, code, 0, 0);
  for (;;) {}
}

long qdq_write_all(int fd, const void *buf, size_t n) {
  const char *p = (const char *)buf;
  size_t done = 0;
  while (done < n) {
    long r = qdq_syscall3(SYS_write, fd, (long)(p + done), (long)(n - done));
    if (r <= 0) return -1;
    done += (size_t)r;
  }
  return (long)done;
}

long qdq_read_all(int fd, void *buf, size_t n) {
  char *p = (char *)buf;
  size_t done = 0;
  while (done < n) {
    long r = qdq_syscall3(SYS_read, fd, (long)(p + done), (long)(n - done));
    if (r <= 0) return -1;
    done += (size_t)r;
  }
  return (long)done;
}

static size_t qdq_strlen(const char *s) { size_t n = 0; while (s[n]) ++n; return n; }

void qdq_puts(int fd, const char *s) { qdq_write_all(fd, s, qdq_strlen(s)); }

void *memcpy(void *dst, const void *src, size_t n) {
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *s = (const unsigned char *)src;
  if ((((uintptr_t)d | (uintptr_t)s | n) & 7u) == 0) {
    uint64_t *d8 = (uint64_t *)dst;
    const uint64_t *s8 = (const uint64_t *)src;
    for (size_t i = 0; i < n / 8; ++i) d8[i] = s8[i];
    return dst;
  }
  for (size_t i = 0; i < n; ++i) d[i] = s[i];
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *s = (const unsigned char *)src;
  if (d < s) { for (size_t i = 0; i < n; ++i) d[i] = s[i]; }
  else { for (size_t i = n; i > 0; --i) d[i - 1] = s[i - 1]; }
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  unsigned char *d = (unsigned char *)dst;
  for (size_t i = 0; i < n; ++i) d[i] = (unsigned char)c;
  return dst;
}

void *__hexagon_memcpy_likely_aligned_min32bytes_mult8bytes(void *d, const void *s, size_t n) {
  return memcpy(d, s, n);
}

/* Round to nearest, ties to even (the default rounding mode), like x86's roundss. */
float nearbyintf(float x) {
  union { float f; uint32_t u; } v = {x};
  uint32_t sign = v.u & 0x80000000u;
  v.u &= 0x7fffffffu;
  if (v.u >= 0x4b000000u) return x; /* |x| >= 2^23 (or inf/nan): already integral */
  float big = 8388608.0f;
  /* opaque to the optimizer, kept in a register: a volatile stack slot makes LLVM put its
   * store and reload in one packet, which qemu-hexagon 7.2 executes in the wrong order */
  __asm__("" : "+r"(big));
  float r = (v.f + big) - big;
  v.f = r;
  v.u |= sign;
  return v.f;
}
float rintf(float x) { return nearbyintf(x); }
float roundevenf(float x) { return nearbyintf(x); }

double nearbyint(double x) {
  union { double f; uint64_t u; } v = {x};
  uint64_t sign = v.u & 0x8000000000000000ull;
  v.u &= 0x7fffffffffffffffull;
  if (v.u >= 0x4330000000000000ull) return x;
  double big = 4503599627370496.0;
  __asm__("" : "+r"(big));
  double r = (v.f + big) - big;
  v.f = r;
  v.u |= sign;
  return v.f;
}
double rint(double x) { return nearbyint(x); }

float floorf(float x) {
  float r = nearbyintf(x);
  return r > x ? r - 1.0f : r;
}
float ceilf(float x) {
  float r = nearbyintf(x);
  return r < x ? r + 1.0f : r;
}
float truncf(float x) { return x < 0 ? ceilf(x) : floorf(x); }
float roundf(float x) {
  float t = truncf(x);
  float d = x - t;
  if (d >= 0.5f) return t + 1.0f;
  if (d <= -0.5f) return t - 1.0f;
  return t;
}
float fabsf(float x) { return x < 0 ? -x : x; }
float fminf(float a, float b) { return a < b ? a : b; }
float fmaxf(float a, float b) { return a > b ? a : b; }

/* Integer division libcalls (Hexagon has no divide instruction). */
static uint64_t qdq_udivmod64(uint64_t n, uint64_t d, uint64_t *rem) {
  uint64_t q = 0, r = 0;
  if (d == 0) { if (rem) *rem = 0; return 0; }
  for (int i = 63; i >= 0; --i) {
    r = (r << 1) | ((n >> i) & 1u);
    if (r >= d) { r -= d; q |= (uint64_t)1 << i; }
  }
  if (rem) *rem = r;
  return q;
}
uint64_t __hexagon_udivdi3(uint64_t n, uint64_t d) { return qdq_udivmod64(n, d, 0); }
uint64_t __hexagon_umoddi3(uint64_t n, uint64_t d) {
  uint64_t r; qdq_udivmod64(n, d, &r); return r;
}
int64_t __hexagon_divdi3(int64_t n, int64_t d) {
  uint64_t un = n < 0 ? -(uint64_t)n : (uint64_t)n, ud = d < 0 ? -(uint64_t)d : (uint64_t)d;
  uint64_t q = qdq_udivmod64(un, ud, 0);
  return ((n < 0) != (d < 0)) ? -(int64_t)q : (int64_t)q;
}
int64_t __hexagon_moddi3(int64_t n, int64_t d) {
  uint64_t un = n < 0 ? -(uint64_t)n : (uint64_t)n, ud = d < 0 ? -(uint64_t)d : (uint64_t)d;
  uint64_t r; qdq_udivmod64(un, ud, &r);
  return n < 0 ? -(int64_t)r : (int64_t)r;
}
uint32_t __hexagon_udivsi3(uint32_t n, uint32_t d) { return (uint32_t)__hexagon_udivdi3(n, d); }
uint32_t __hexagon_umodsi3(uint32_t n, uint32_t d) { return (uint32_t)__hexagon_umoddi3(n, d); }
int32_t __hexagon_divsi3(int32_t n, int32_t d) { return (int32_t)__hexagon_divdi3(n, d); }
int32_t __hexagon_modsi3(int32_t n, int32_t d) { return (int32_t)__hexagon_moddi3(n, d); }

/* Errors raised by a kernel: written to stderr; the driver exits with status 3. */
void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **parts, int32_t n) {
  qdq_puts(2, "tvm-qdq hexagon kernel error: ");
  qdq_puts(2, kind ? kind : "Error");
  qdq_puts(2, ": ");
  for (int32_t i = 0; i < n; ++i) if (parts[i]) qdq_puts(2, parts[i]);
  qdq_puts(2, "\n");
}
void TVMFFIErrorSetRaisedFromCStr(const char *kind, const char *message) {
  const char *parts[1] = {message};
  TVMFFIErrorSetRaisedFromCStrParts(kind, parts, 1);
}

/* Workspace: a stack allocator in .bss; a freed block is reclaimed once every block above
 * it is free too (kernels may free in any order). */
#ifndef QDQ_WORKSPACE_BYTES
#define QDQ_WORKSPACE_BYTES (32u << 20)
#endif
#define QDQ_WORKSPACE_BLOCKS 1024
static unsigned char qdq_workspace[QDQ_WORKSPACE_BYTES] __attribute__((aligned(128)));
static size_t qdq_block_start[QDQ_WORKSPACE_BLOCKS];
static unsigned char qdq_block_free[QDQ_WORKSPACE_BLOCKS];
static int qdq_blocks;
static size_t qdq_workspace_top;
static void *qdq_alloc_workspace(int dev_type, int dev_id, uint64_t nbytes, int code, int bits) {
  (void)dev_type; (void)dev_id; (void)code; (void)bits;
  size_t size = (size_t)((nbytes + 127u) & ~(uint64_t)127u);
  if (qdq_blocks == QDQ_WORKSPACE_BLOCKS || qdq_workspace_top + size > QDQ_WORKSPACE_BYTES) {
    qdq_puts(2, "tvm-qdq hexagon: workspace exhausted\n");
    return 0;
  }
  qdq_block_start[qdq_blocks] = qdq_workspace_top;
  qdq_block_free[qdq_blocks] = 0;
  ++qdq_blocks;
  void *p = qdq_workspace + qdq_workspace_top;
  qdq_workspace_top += size;
#ifdef QDQ_WORKSPACE_POISON
  memset(p, QDQ_WORKSPACE_POISON, size);
#endif
  return p;
}
static int qdq_free_workspace(int dev_type, int dev_id, void *ptr) {
  (void)dev_type; (void)dev_id;
  size_t start = (size_t)((unsigned char *)ptr - qdq_workspace);
  for (int i = qdq_blocks - 1; i >= 0; --i) {
    if (qdq_block_start[i] == start) { qdq_block_free[i] = 1; break; }
  }
  while (qdq_blocks > 0 && qdq_block_free[qdq_blocks - 1]) {
    --qdq_blocks;
    qdq_workspace_top = qdq_block_start[qdq_blocks];
  }
  return 0;
}
void *(*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = qdq_alloc_workspace;
int (*__TVMBackendFreeWorkspace)(int, int, void *) = qdq_free_workspace;

int qdq_main(int argc, char **argv);

void qdq_start_c(long *sp) {
  int argc = (int)sp[0];
  char **argv = (char **)(sp + 1);
  qdq_exit(qdq_main(argc, argv));
}

__asm__(
    ".text\n"
    ".globl _start\n"
    ".type _start,@function\n"
    "_start:\n"
    "  r0 = r29\n"
    "  r29 = and(r29, #-128)\n"
    "  call qdq_start_c\n"
    "  trap0(#1)\n");
"""
