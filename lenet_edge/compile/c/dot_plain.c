static inline int32_t dot_${kind}_i8(const ${ctype} *x, const int8_t *w, int n, int32_t acc)
{
  for (; n >= 4; n -= 4, x += 4, w += 4) acc += x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + x[3] * w[3];
  for (; n > 0; n--) acc += *x++ * *w++;
  return acc;
}
