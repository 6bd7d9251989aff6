static inline void patch_dot_2x2(const int16_t *p, const int16_t *q, const int8_t *wa, const int8_t *wb,
                                 int groups, int32_t acc[4])
{
  int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
  UNROLL_2 for (int g = 0; g < groups; g++, p += 4, q += 4, wa += 4, wb += 4) {
    const uint32_t wide_a = *(const patch_word *)wa, wide_b = *(const patch_word *)wb;
    const int32_t a01 = (int32_t)__sxtb16(wide_a), a23 = (int32_t)__sxtb16(__ror(wide_a, 8));
    const int32_t b01 = (int32_t)__sxtb16(wide_b), b23 = (int32_t)__sxtb16(__ror(wide_b, 8));
    const int32_t p01 = (int32_t)*(const patch_word *)p, p23 = (int32_t)*(const patch_word *)(p + 2);
    const int32_t q01 = (int32_t)*(const patch_word *)q, q23 = (int32_t)*(const patch_word *)(q + 2);
    a0 = __smlad(p01, a01, a0);
    a0 = __smlad(p23, a23, a0);
    a1 = __smlad(q01, a01, a1);
    a1 = __smlad(q23, a23, a1);
    b0 = __smlad(p01, b01, b0);
    b0 = __smlad(p23, b23, b0);
    b1 = __smlad(q01, b01, b1);
    b1 = __smlad(q23, b23, b1);
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = b0;
  acc[3] = b1;
}
