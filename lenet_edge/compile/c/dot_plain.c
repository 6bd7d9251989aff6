static inline int32_t dot_${kind}_i8(const ${ctype} *x, const int8_t *w, int n, int32_t acc)
{
  for (int i = 0; i < n; i++) acc += x[i] * w[i];
  return acc;
}
