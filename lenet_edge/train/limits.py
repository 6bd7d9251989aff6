"""The ranges of the training options, shared by the CLI (click's ranges) and Recipe.check.

Pure Python: the CLI imports it without torch.
"""

MAX_SEED = 2**32 - 1  # numpy's legacy seed range; torch's generator takes seed * 1000 + epoch, far inside 2**64
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MIN_MOMENTUM, MAX_MOMENTUM = 0.0, 1.0  # Nesterov momentum needs 0 < momentum; 1 or more diverges
MAX_THREADS = 1024
