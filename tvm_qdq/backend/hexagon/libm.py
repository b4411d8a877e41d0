"""The math library of the freestanding Hexagon image (no libm is linked).

The kernels TVM builds for the Hexagon triple call libm (and Hexagon's compiler-rt) for the
float ops LLVM does not expand inline. Most float islands never reach these: :mod:`.lower`
rewrites float32 ``R.exp``, ``R.erf``, ``R.sigmoid``, ``R.nn.gelu`` and ``R.nn.softmax`` into
the TIR polynomials of :mod:`tvm_qdq.backend.fast_math` (the same expressions as the x86
build, so the same results). What is left — ``sqrt``/``rsqrt`` (LayerNorm), the two ``e^x``
of TVM's ``tanh`` expansion, ``log``, a float64 division (LayerNorm's float64 mean over a
row length that is not a power of two) — is :data:`LIBM_C`, compiled into the image:

``sqrt`` / ``__hexagon_sqrtdf2`` and ``__hexagon_sqrtf`` / ``sqrtf``
    **correctly rounded** (as x86's ``sqrtsd``/``sqrtss``): ``x = m·2^e`` with ``e`` even,
    ``r = ⌊√(m·2^60)⌋`` by the digit-by-digit integer square root (``r`` has ≥ 56 bits),
    the remainder ``≠ 0`` as sticky bit, then one round-to-nearest-even of ``r·2^((e−60)/2)``
    (a square root is never a tie). float32: ``float(sqrt(double(x)))``, exact since
    ``53 ≥ 2·24 + 2`` (the double rounding of ``√`` and ``/`` is then innocuous).
``__hexagon_divdf3`` / ``__hexagon_divsf3``
    **correctly rounded** float64 (float32, through float64 as for ``sqrtf``) ``a / b``
    (clang-16 calls the float32 one; TVM's LLVM divides float32 inline): the 53-bit
    significands divided by restoring long division to a ≥ 56-bit quotient, remainder
    ``≠ 0`` as sticky bit, one rounding (subnormal results, overflow to ``±inf``, zeros,
    infinities and NaN per IEEE 754).
``expf``
    the algorithm and coefficients of ``fast_math.exp_expr``: ``n = ⌊x·log2 e + ½⌋``,
    ``r = (x − n·ln2_hi) − n·ln2_lo``, ``e^x = p(r)·2^⌊n/2⌋·2^(n−⌊n/2⌋)`` (degree-6 ``p``,
    ``x`` clamped to ``[−104, 89]``, NaN propagates).
``erff``
    the algorithm and coefficients of ``fast_math.erf_expr`` (``x + x·R(x²)`` for
    ``|x| ≤ 0.921875``, else ``±(1 − e^Q(|x|−0.921875))``).
``logf``
    ``x = 2^k·m`` with ``m ∈ [√½, √2)``, ``f = m − 1``, ``s = f/(2+f)``, ``z = s²``:
    ``log(1+f) = f − f²/2 + s·(f²/2 + R(z))`` with ``R(z) = 2z/3 + 2z²/5 + 2z³/7 + 2z⁴/9``
    (the series of ``2·atanh(s) = log(1+f)``, truncation ≤ 7e-10 absolute on
    ``|s| ≤ 0.1716``), plus ``k·ln2_hi + k·ln2_lo`` (``ln2_hi`` has 16 bits, ``k·ln2_hi``
    is exact). Zero → ``−inf``, negative → NaN, ``+inf`` → ``+inf``; subnormals normalized.

Measured under ``qemu-hexagon`` (``tests/test_hexagon_float_islands.py``), in ulp of the
float32 nearest the float64 value: :data:`EXP_MAX_ULP`, :data:`ERF_MAX_ULP`,
:data:`LOG_MAX_ULP`; the square roots and the float64 division are bit-identical to numpy's
(IEEE) results. The C functions use only ``+ − × ≤``, the division above and integer code;
``floorf`` is the runtime's.
"""

from __future__ import annotations

#: Bounds of the C ``expf``/``erff``/``logf`` (dense samples under qemu, rounded up).
EXP_MAX_ULP = 1.1
ERF_MAX_ULP = 1.1
LOG_MAX_ULP = 1.0

LIBM_C = r"""/* tvm-qdq: libm-free float math for the freestanding Hexagon image. */
#include <stdint.h>

float floorf(float x);

typedef union { float f; uint32_t u; } qdq_f32;
typedef union { double f; uint64_t u; } qdq_f64;

static float qdq_from_bits32(uint32_t u) { qdq_f32 v; v.u = u; return v.f; }
static uint32_t qdq_bits32(float f) { qdq_f32 v; v.f = f; return v.u; }
static double qdq_from_bits64(uint64_t u) { qdq_f64 v; v.u = u; return v.f; }
static uint64_t qdq_bits64(double f) { qdq_f64 v; v.f = f; return v.u; }

static int qdq_bitlen64(uint64_t m) { int n = 0; while (m) { ++n; m >>= 1; } return n; }

/* Pre-shift m so that at most 62 bits are dropped; the lost bits join the sticky bit (they
 * are all below the rounding bit). */
static uint64_t qdq_limit_shift(uint64_t m, int *shift, int *sticky) {
  if (*shift > 62) {
    int extra = *shift - 62;
    if (extra >= 64) { *sticky |= m != 0; m = 0; }
    else { *sticky |= (m & ((1ull << extra) - 1u)) != 0; m >>= extra; }
    *shift = 62;
  }
  return m;
}

/* round(m·2^shift) → integer, nearest even; the true value is (m + d)·2^-shift with
 * 0 <= d < 1 and d > 0 iff sticky; shift >= 1. */
static uint64_t qdq_round_shift(uint64_t m, int shift, int sticky) {
  uint64_t q = m >> shift, rest = m & ((1ull << shift) - 1u), half = 1ull << (shift - 1);
  if (rest > half || (rest == half && (sticky || (q & 1u)))) ++q;
  return q;
}

/* The float64 nearest (m + d)·2^e (m > 0 with >= 55 bits). */
static double qdq_pack64(uint64_t sign, uint64_t m, int e, int sticky) {
  int E = qdq_bitlen64(m) - 1 + e;
  int lsb = E >= -1022 ? E - 52 : -1074;
  int shift = lsb - e;
  m = qdq_limit_shift(m, &shift, &sticky);
  uint64_t q = qdq_round_shift(m, shift, sticky);
  uint64_t bits;
  if (E >= -1022) {
    if (E > 1023) return qdq_from_bits64(0x7ff0000000000000ull | sign);
    bits = ((uint64_t)(E + 1022) << 52) + q;  /* q in [2^52, 2^53] */
    if (bits >= 0x7ff0000000000000ull) bits = 0x7ff0000000000000ull;
  } else {
    bits = q;
  }
  return qdq_from_bits64(bits | sign);
}

/* floor(sqrt(hi·2^64 + lo)) by the digit-by-digit method; *inexact = remainder != 0.
 * Valid while the root stays below 2^61. */
static uint64_t qdq_isqrt128(uint64_t hi, uint64_t lo, int *inexact) {
  uint64_t rem = 0, res = 0;
  for (int i = 63; i >= 0; --i) {
    uint64_t pair = i >= 32 ? (hi >> (2 * (i - 32))) & 3u : (lo >> (2 * i)) & 3u;
    rem = (rem << 2) | pair;
    uint64_t trial = (res << 2) | 1u;
    if (rem >= trial) { rem -= trial; res = (res << 1) | 1u; } else { res <<= 1; }
  }
  *inexact = rem != 0;
  return res;
}


double sqrt(double x) {
  uint64_t ix = qdq_bits64(x);
  if ((ix & 0x7fffffffffffffffull) == 0) return x;
  if ((ix & 0x7fffffffffffffffull) > 0x7ff0000000000000ull)
    return qdq_from_bits64(ix | 0x0008000000000000ull);
  if (ix & 0x8000000000000000ull) return qdq_from_bits64(0x7ff8000000000000ull);
  if (ix == 0x7ff0000000000000ull) return x;
  int e = (int)(ix >> 52);
  uint64_t m = ix & 0xfffffffffffffull;
  if (e == 0) { e = 1; while (!(m & 0x10000000000000ull)) { m <<= 1; --e; } }
  else m |= 0x10000000000000ull;
  e -= 1075;
  if (e & 1) { m <<= 1; --e; }
  int inexact;
  uint64_t r = qdq_isqrt128(m >> 4, m << 60, &inexact);
  return qdq_pack64(0, r, (e - 60) / 2, inexact);
}
double __hexagon_sqrtdf2(double x) { return sqrt(x); }
double __hexagon_sqrt(double x) { return sqrt(x); }
float __hexagon_sqrtf(float x) { return (float)sqrt((double)x); }
float sqrtf(float x) { return (float)sqrt((double)x); }

static uint64_t qdq_unpack64(uint64_t ix, int *e) {
  int be = (int)((ix >> 52) & 0x7ffu);
  uint64_t m = ix & 0xfffffffffffffull;
  if (be == 0) { be = 1; while (!(m & 0x10000000000000ull)) { m <<= 1; --be; } }
  else m |= 0x10000000000000ull;
  *e = be - 1075;
  return m;
}

double __hexagon_divdf3(double a, double b) {
  uint64_t ia = qdq_bits64(a), ib = qdq_bits64(b);
  uint64_t sign = (ia ^ ib) & 0x8000000000000000ull;
  uint64_t aa = ia & 0x7fffffffffffffffull, ab = ib & 0x7fffffffffffffffull;
  const uint64_t inf = 0x7ff0000000000000ull, qnan = 0x7ff8000000000000ull;
  if (aa > inf) return qdq_from_bits64(ia | 0x0008000000000000ull);
  if (ab > inf) return qdq_from_bits64(ib | 0x0008000000000000ull);
  if (aa == inf) return qdq_from_bits64(ab == inf ? qnan : (inf | sign));
  if (ab == inf) return qdq_from_bits64(sign);
  if (ab == 0) return qdq_from_bits64(aa == 0 ? qnan : (inf | sign));
  if (aa == 0) return qdq_from_bits64(sign);
  int ea, eb;
  uint64_t ma = qdq_unpack64(aa, &ea), mb = qdq_unpack64(ab, &eb);
  /* q = floor(ma·2^56 / mb) in (2^55, 2^57), r the remainder */
  uint64_t q = 0, r = ma;
  if (r >= mb) { r -= mb; q = 1; }
  for (int i = 0; i < 56; ++i) {
    r <<= 1; q <<= 1;
    if (r >= mb) { r -= mb; q |= 1u; }
  }
  return qdq_pack64(sign, q, ea - eb - 56, r != 0);
}

/* float32 in float64 and back: both roundings together are the correctly rounded float32
 * quotient / root (53 >= 2·24 + 2 bits, so the double rounding is innocuous). */
float __hexagon_divsf3(float a, float b) {
  return (float)__hexagon_divdf3((double)a, (double)b);
}

/* e^x: fast_math.exp_expr in C. */
static const float qdq_exp_poly[7] = {1.0f, 1.0f, 0.49999991059303284f, 0.16666419804096222f,
                                      0.04166822507977486f, 0.008374815806746483f,
                                      0.0013836845755577087f};
#define QDQ_LOG2E 1.4426950216293335f
#define QDQ_LN2_HI 0.693145751953125f
#define QDQ_LN2_LO 1.428606765330187e-06f

static float qdq_pow2i(int n) { return qdq_from_bits32((uint32_t)(n + 127) << 23); }

static float qdq_horner(float u, const float *c, int n) {
  float acc = c[n - 1];
  for (int k = n - 2; k >= 0; --k) acc = acc * u + c[k];
  return acc;
}

/* e^y = p·2^n with |r| <= ln2/2 (y in [-104, 89]) */
static float qdq_exp_reduced(float y, int *n) {
  float nf = floorf(y * QDQ_LOG2E + 0.5f);
  float r = (y - nf * QDQ_LN2_HI) - nf * QDQ_LN2_LO;
  *n = (int)nf;
  return qdq_horner(r, qdq_exp_poly, 7);
}

float expf(float x) {
  if (x != x) return x;
  float y = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x);
  int n;
  float p = qdq_exp_reduced(y, &n);
  int h = n >> 1;
  return p * qdq_pow2i(h) * qdq_pow2i(n - h);
}

/* erf(x): fast_math.erf_expr in C. */
static const float qdq_erf_small[7] = {0.12837916612625122f, -0.37612634897232056f,
                                       0.11283701658248901f, -0.026859702542424202f,
                                       0.005201716907322407f, -0.0008149815257638693f,
                                       8.397829515160993e-05f};
static const float qdq_erf_large[8] = {-1.6485618352890015f, -2.508012533187866f,
                                       -0.8329886198043823f, -0.044826023280620575f,
                                       0.010854143649339676f, -0.0021452377550303936f,
                                       0.00029877296765334904f, -2.118417432939168e-05f};

float erff(float x) {
  float a = x < 0.0f ? -x : x;
  if (!(a > 0.921875f)) return x * qdq_horner(x * x, qdq_erf_small, 7) + x;  /* NaN too */
  float u = (a < 4.0f ? a : 4.0f) - 0.921875f;
  int n;
  float p = qdq_exp_reduced(qdq_horner(u, qdq_erf_large, 8), &n);
  float big = 1.0f - p * qdq_pow2i(n);
  return x < 0.0f ? -big : big;
}

/* log(x) = k·ln2 + log(1 + f), see tvm_qdq/backend/hexagon/libm.py */
float logf(float x) {
  uint32_t ix = qdq_bits32(x);
  if (ix > 0x7f800000u && !(ix & 0x80000000u)) return x;             /* NaN */
  if ((ix & 0x7fffffffu) == 0) return qdq_from_bits32(0xff800000u);  /* -inf */
  if (ix & 0x80000000u) return qdq_from_bits32(0x7fc00000u);         /* NaN */
  if (ix == 0x7f800000u) return x;
  int k = 0;
  if (ix < 0x00800000u) { ix = qdq_bits32(x * 33554432.0f); k = -25; }  /* subnormal: ·2^25 */
  k += (int)(ix >> 23) - 127;
  uint32_t mant = ix & 0x007fffffu;
  if (mant > 0x003504f3u) { mant |= 0x3f000000u; ++k; } else mant |= 0x3f800000u;
  float f = qdq_from_bits32(mant) - 1.0f;                            /* exact */
  float s = f / (2.0f + f);
  float z = s * s;
  float R = z * (0.6666666666666666f + z * (0.4f + z * (0.2857142857142857f
                                                        + z * 0.2222222222222222f)));
  float hfsq = 0.5f * f * f;
  float dk = (float)k;
  return dk * QDQ_LN2_HI - ((hfsq - (s * (hfsq + R) + dk * QDQ_LN2_LO)) - f);
}
"""

#: Symbols :data:`LIBM_C` defines (for the driver's link step and the tests).
LIBM_SYMBOLS = ("__hexagon_sqrtf", "sqrtf", "sqrt", "__hexagon_sqrtdf2", "__hexagon_sqrt",
                "__hexagon_divdf3", "__hexagon_divsf3", "expf", "erff", "logf")
