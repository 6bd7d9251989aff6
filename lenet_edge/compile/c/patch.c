
/* Two output channels' accumulators over one window's inputs widened to halfwords (a "patch", in groups of
   four, zero padded) or over two such windows at once. Each channel's weights are stored in groups of four
   bytes in the order w0 w2 w1 w3: SXTB16 of the word then gives the halfword pair (w0, w1), of the word
   rotated by 8 bits (w2, w3), the pairs the patch's two words hold; each weight is widened once for both
   windows and each input once for both channels. Exact integer arithmetic, in another order. */
#if HAVE_DSP
typedef uint32_t __attribute__((aligned(1), may_alias)) patch_word;  /* loads at any address, any type */
${functions}#endif
