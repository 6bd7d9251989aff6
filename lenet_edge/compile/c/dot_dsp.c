static inline int32_t dot_${kind}_i8(const ${ctype} *x, const int8_t *w, int n, int32_t acc)
{
  for (; n >= 4; n -= 4, x += 4, w += 4) {
    const uint32_t xs = *(const unaligned_word *)x, ws = *(const unaligned_word *)w;
    acc = __smlad((int32_t)${widen}(xs), (int32_t)__sxtb16(ws), acc);  /* taps 0 and 2 */
    acc = __smlad((int32_t)${widen}(__ror(xs, 8)), (int32_t)__sxtb16(__ror(ws, 8)), acc);  /* 1 and 3 */
  }
  for (; n > 0; n--) acc += *x++ * *w++;
  return acc;
}
