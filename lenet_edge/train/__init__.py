"""Training stage (needs torch): LeNet-5 variants, the training loop and checkpoints."""
