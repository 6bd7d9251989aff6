"""Every default, limit and choice that a command shows in --help, in one place: the library reads them
from here and so do the CLI's options (lenet_edge/options.py), so that a default is never a literal beside
the constant it copies. Pure Python: `lenet-edge --help` loads no numpy.
"""

# The model variants (lenet_edge/train/models.py builds them; a test holds the two together).
VARIANT_NAMES = ("lenet5-modern", "lenet5", "lenet5-tanh")
DEFAULT_VARIANT = "lenet5-modern"

# onnxruntime sessions (lenet_edge/sessions.py).
MAX_THREADS = 1024
DEFAULT_BATCH = 1000  # images per session.run: bounded memory, near-peak throughput
MAX_BATCH = 65_536  # 256 MiB of (1, 32, 32) float32 inputs per session.run; more is refused

# run: pictures and predictions.
INVERT_CHOICES = ("auto", "yes", "no")  # make a digit light-on-dark when its border is lighter, always, never
PREDICTION_FORMATS = ("table", "json", "csv")

# bench and profile: interleaved rounds (lenet_edge/bench/timing.py says why).
BENCH_BATCH_SIZES = (1, 32, 256)
PROFILE_BATCH_SIZES = (1, 64)
DEFAULT_RUNS = 200
DEFAULT_WARMUP = 20
DEFAULT_ROUNDS = 5
DEFAULT_MIN_TURN_MS = 50.0  # a model's shortest turn in a round
MAX_TURN_MS = 60_000.0
MAX_RUNS = 1_000_000

# train (Recipe.check and the CLI's ranges).
MAX_SEED = 2**32 - 1  # numpy's legacy seed range; torch's generator takes seed * 1000 + epoch, far inside 2**64
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MIN_MOMENTUM, MAX_MOMENTUM = 0.0, 1.0  # Nesterov momentum needs 0 < momentum; 1 or more diverges

# compile: the MNIST test images each build must reproduce bit for bit (the pipeline's too).
DEFAULT_CHECK_IMAGES = 1000
MAX_CHECK_IMAGES = 10_000
