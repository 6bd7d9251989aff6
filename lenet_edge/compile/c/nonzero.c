
/* Without a DSP extension a multiply-accumulate costs its two loads, a multiply and an add: only the nonzero
   inputs of a window are multiplied (each with its tap's weight). Exact: a zero code adds nothing, since
   the input zero point is folded into the bias. LeNet's activations are mostly zero (MNIST's padded digits:
   86 % of C1's inputs; 46 to 69 % of the later layers' after ReLU), so on a Cortex-M0+ this takes about half
   the instructions of a dense dot product, and the count varies with the image. */
#if !HAVE_DSP
${functions}#endif
