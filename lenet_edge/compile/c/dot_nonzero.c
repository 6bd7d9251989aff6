static inline int32_t dot_nonzero_${kind}(const ${ctype} *value, const uint16_t *tap, int n, const int8_t *w,
                                       int32_t acc)
{
  for (int i = 0; i < n; i++) acc += value[i] * w[tap[i]];
  return acc;
}
