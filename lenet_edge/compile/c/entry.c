
/* The one activation buffer: ${arena_bytes} bytes, word-aligned; layers reuse it by lifetime. */
static uint32_t arena_words[${upper}_ARENA_BYTES / 4];

void ${name}_infer(const uint8_t pixels[${upper}_PIXELS], float logits[${upper}_CLASSES])
{
  uint8_t *arena = (uint8_t *)arena_words;
${calls}
}
