/* mlas's tanh (onnxruntime's CPU kernel): clamp to [-9, 9], then a rational approximation (Eigen's
   coefficients, spelled as in mlas), each step a fused multiply-add as onnxruntime computes it on x86
   with FMA3 and on ARM64. */
#if defined(__ARM_FEATURE_FMA) && defined(__thumb__)
/* Cortex-M4F/M7: VFMA.F32 rounds once (clang would call a software fmaf here, ~40x slower) */
static inline float muladd(float a, float b, float c)
{
  __asm__("vfma.f32 %0, %1, %2" : "+t"(c) : "t"(a), "t"(b));
  return c;
}
#elif !HAVE_FPU
/* no FPU (Cortex-M0+/M3): a software fused multiply-add costs ~3,000 instructions, 10^8 per image here;
   two roundings instead, so the logits may differ from onnxruntime's in the last bits */
static inline float muladd(float a, float b, float c) { return a * b + c; }
#else
static inline float muladd(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
#endif
static float tanh_mlas(float x)
{
  x = x < -9.0f ? -9.0f : x;
  x = x > 9.0f ? 9.0f : x;
  const float x2 = x * x;
  float p = muladd(x2, -2.76076847742355e-16f, 2.00018790482477e-13f);
  p = muladd(p, x2, -8.60467152213735e-11f);
  p = muladd(p, x2, 5.12229709037114e-08f);
  p = muladd(p, x2, 1.48572235717979e-05f);
  p = muladd(p, x2, 6.37261928875436e-04f);
  p = muladd(p, x2, 4.89352455891786e-03f);
  p = p * x;
  float q = muladd(x2, 1.19825839466702e-06f, 1.18534705686654e-04f);
  q = muladd(q, x2, 2.26843463243900e-03f);
  q = muladd(q, x2, 4.89352518554385e-03f);
  return p / q;
}
