/* GCC contracts a * b + c into one fused multiply-add by default (-ffp-contract=fast): not here. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* Round half to even with the float adder itself (onnxruntime's cvtps2dq does the same);
   exact for |v| <= 2^22, and every caller clamps first. */
static inline float round_half_even(float v) { return (v + 12582912.0f) - 12582912.0f; }

/* Helpers that not every model calls (a Cortex-M0+ build requantises in integers) draw no warning. */
#if defined(__GNUC__)
#define MAYBE_UNUSED __attribute__((unused))
#define OUT_OF_LINE __attribute__((noinline))
#else
#define MAYBE_UNUSED
#define OUT_OF_LINE
#endif

/* onnxruntime's QuantizeLinear and requantisation: clamp to the type's range around the zero point,
   round half to even, add the zero point. */
static inline MAYBE_UNUSED int32_t quantize(float v, float lo, float hi, int32_t zero_point)
{
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  return (int32_t)round_half_even(v) + zero_point;
}

/* A core with the DSP extension (Cortex-M4, M7, M33) multiplies two halfword pairs per instruction (SMLAD):
   its convolutions take halfword patches; one without (Cortex-M0+, a host) plain loops. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define HAVE_DSP 1
#include <arm_acle.h>
#else
#define HAVE_DSP 0
#endif

/* A core without an FPU (Cortex-M0+, M3) is a Thumb core without __ARM_FP: its float steps are integer code
   or soft float; every other build (Cortex-M4F, a host) has float instructions. */
#if defined(__thumb__) && !defined(__ARM_FP)
#define HAVE_FPU 0
#else
#define HAVE_FPU 1
#endif

/* One function per layer, kept out of line so that each layer's instructions can be counted apart (the
   calls cost a few instructions per inference). GCC also gets no interprocedural optimisation of them:
   GCC 12.2 at -O2 computed a wrong max pool (the --auto rewrite's 1x4 one) once it had cloned the layer for
   its constant arena pointers and vectorised the clone; -O0, -O1, -Os and clang were right. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define NOINLINE __attribute__((noipa))
#elif defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* The layers before the first and after the last that do real work (the input table, the output layer, the
   logits: generate.py's _is_edge) are built for size. At -O2 clang unrolls and vectorises their loops, which
   would cost lenet5-modern 544 bytes of the Cortex-M4F's flash to save 5,008 of 790,537 instructions
   (clang's minsize; GCC optimises a function marked cold for size). */
#if defined(__clang__)
#define FOR_SIZE __attribute__((minsize))
#elif defined(__GNUC__)
#define FOR_SIZE __attribute__((cold))
#else
#define FOR_SIZE
#endif

/* Loops that stay loops: unrolled, the inner loops of the convolutions would cost more flash than the
   model's budget leaves for code (clang unrolls them at -O2; GCC does not unroll at -O2). */
#if defined(__clang__)
#define NO_UNROLL _Pragma("clang loop unroll(disable)")
#define UNROLL_2 _Pragma("clang loop unroll_count(2)")
#else
#define NO_UNROLL
#define UNROLL_2
#endif

/* Requantisation of an int32 accumulator, as onnxruntime computes it: quantize((float)acc * scale, ...). */
#if HAVE_FPU
static inline int32_t requantize(int32_t acc, float scale, int32_t lo, int32_t hi, int32_t zero_point)
{
  return quantize((float)acc * scale, (float)lo, (float)hi, zero_point);
}
#else
/* A core without an FPU (Cortex-M0+): the same two float roundings (acc and the product to 24 significant
   bits, half to even, then to an integer, half to even) in integer arithmetic, about a fifth of the
   instructions of the soft-float routines, and none of their flash. Exact for every int32 accumulator and
   every finite scale (the generator writes no other: c_float refuses it). One copy out of line: inlined into
   each layer it would cost 1.3 KB of the M0+'s flash. */
static inline uint64_t round_shift(uint64_t x, int k)  /* x / 2^k, rounded half to even; 1 <= k <= 63 */
{
  const uint64_t q = x >> k, r = x & (((uint64_t)1 << k) - 1), half = (uint64_t)1 << (k - 1);
  return q + (r > half || (r == half && (q & 1)));
}

static OUT_OF_LINE int32_t requantize(int32_t acc, float scale, int32_t lo, int32_t hi, int32_t zero_point)
{
  union { float f; uint32_t u; } s = {scale};
  const int exponent = (int)(s.u >> 23 & 0xff);
  if (acc <= 0 && lo == 0 && !(s.u >> 31))  /* after a ReLU: a negative product clamps to the zero point */
    return zero_point;
  int32_t rounded = 0;  /* also for a zero or subnormal scale: |acc * scale| < 2^31 * 2^-126 rounds to 0 */
  if (acc != 0 && exponent != 0) {
    uint32_t a = acc < 0 ? 0u - (uint32_t)acc : (uint32_t)acc;
    int power = exponent - 150;  /* |value| = a * mantissa * 2^power */
    const int a_bits = 32 - __builtin_clz(a);
    if (a_bits > 24) {  /* (float)acc */
      a = (uint32_t)round_shift(a, a_bits - 24);
      power += a_bits - 24;
    }
    uint64_t p = (uint64_t)a * ((s.u & 0x7fffff) | 0x800000);
    const int p_bits = 64 - __builtin_clzll(p);
    if (p_bits > 24) {  /* the float product */
      p = round_shift(p, p_bits - 24);
      power += p_bits - 24;
    }
    uint32_t magnitude;  /* |value| rounded to an integer, capped far beyond any clamp */
    if (power >= 0)
      magnitude = power > 6 ? 0x40000000u : (uint32_t)(p << power);
    else
      magnitude = power < -26 ? 0u : (uint32_t)round_shift(p, -power);
    const int negative = (acc < 0) != (int)(s.u >> 31);
    rounded = negative ? -(int32_t)magnitude : (int32_t)magnitude;
  }
  rounded = rounded < lo ? lo : rounded;
  rounded = rounded > hi ? hi : rounded;
  return rounded + zero_point;
}
#endif

/* DequantizeLinear of an 8-bit code, as onnxruntime computes it: (float)(x - zero_point) * scale. */
static inline MAYBE_UNUSED float dequantize(int32_t q, float scale)  /* q = x - zero_point: |q| <= 255 */
{
#if HAVE_FPU
  return (float)q * scale;
#else
  /* Without an FPU: |q| times the scale's 24-bit significand is exact in 32 bits; rounded to 24 bits, half
     to even, it is the float product. For the constant scale the generator writes, the first test folds away
     (a zero or subnormal scale, or one whose products could overflow, take soft float). */
  union { float f; uint32_t u; } s = {scale}, r;
  const int exponent = (int)(s.u >> 23 & 0xff);
  if (exponent == 0 || exponent > 0xfe - 9)
    return (float)q * scale;
  const uint32_t sign = ((uint32_t)(q < 0) << 31) ^ (s.u & 0x80000000u);
  if (q == 0) {
    r.u = sign;  /* +0 times the scale: a zero with the scale's sign */
    return r.f;
  }
  uint32_t p = (q < 0 ? 0u - (uint32_t)q : (uint32_t)q) * ((s.u & 0x7fffff) | 0x800000);
  int biased = exponent;  /* |value| = p * 2^(biased - 150), p in [2^23, 2^32) */
  const int bits = 32 - __builtin_clz(p);
  if (bits > 24) {
    const int k = bits - 24;
    const uint32_t rest = p & ((1u << k) - 1), half = 1u << (k - 1);
    p >>= k;
    p += rest > half || (rest == half && (p & 1));
    biased += k;
    if (p >> 24) {  /* rounded up to 2^24 */
      p >>= 1;
      biased++;
    }
  }
  r.u = sign | (uint32_t)biased << 23 | (p & 0x7fffff);
  return r.f;
#endif
}
