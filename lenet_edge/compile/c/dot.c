
#if HAVE_DSP
/* Cortex-M4/M7/M33: SMLAD multiplies two pairs of 16-bit halves and adds both products to the
   accumulator; UXTB16/SXTB16 widen bytes 0 and 2 (or 1 and 3 after a rotation) of a word into such
   pairs. Exact integer arithmetic: the same sum, in another order. */
typedef uint32_t __attribute__((aligned(1), may_alias)) unaligned_word;  /* loads at any address */
${dsp}#else
${plain}#endif
