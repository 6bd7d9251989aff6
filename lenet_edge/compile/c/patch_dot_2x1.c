static inline void patch_dot_2x1(const int16_t *p, const int8_t *wa, const int8_t *wb, int groups, int32_t acc[2])
{
  int32_t a0 = acc[0], b0 = acc[1];
  UNROLL_2 for (int g = 0; g < groups; g++, p += 4, wa += 4, wb += 4) {
    const uint32_t wide_a = *(const patch_word *)wa, wide_b = *(const patch_word *)wb;
    const int32_t p01 = (int32_t)*(const patch_word *)p, p23 = (int32_t)*(const patch_word *)(p + 2);
    a0 = __smlad(p01, (int32_t)__sxtb16(wide_a), a0);
    a0 = __smlad(p23, (int32_t)__sxtb16(__ror(wide_a, 8)), a0);
    b0 = __smlad(p01, (int32_t)__sxtb16(wide_b), b0);
    b0 = __smlad(p23, (int32_t)__sxtb16(__ror(wide_b, 8)), b0);
  }
  acc[0] = a0;
  acc[1] = b0;
}
