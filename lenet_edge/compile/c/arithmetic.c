/* GCC contracts a * b + c into one fused multiply-add by default (-ffp-contract=fast): not here. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* Round half to even with the float adder itself (onnxruntime's cvtps2dq does the same);
   exact for |v| <= 2^22, and every caller clamps first. */
static inline float round_half_even(float v) { return (v + 12582912.0f) - 12582912.0f; }

/* onnxruntime's QuantizeLinear and requantisation: clamp to the type's range around the zero point,
   round half to even, add the zero point. */
static inline int32_t quantize(float v, float lo, float hi, int32_t zero_point)
{
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  return (int32_t)round_half_even(v) + zero_point;
}

/* One function per layer, kept out of line so that each layer's instructions can be counted apart (the
   calls cost a few instructions per inference). */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif
