
/* A check build, not for a device: each layer's output copied into ${name}_trace as it is written (the
   layers reuse the arena), so that a check can name the first layer that differs from onnxruntime. */
uint8_t ${name}_trace[${trace_bytes}];

static void trace(int at, const void *data, int bytes)
{
  for (int i = 0; i < bytes; i++) ${name}_trace[at + i] = ((const uint8_t *)data)[i];
}
