"""Choices and defaults of the device-side library that its commands show in --help.

Pure Python: the commands import them from here, so `lenet-edge --help` loads no numpy.
"""

INVERT_CHOICES = ("auto", "yes", "no")  # inputs: make a digit light-on-dark when its border is lighter, always, never
DEFAULT_MIN_TURN_MS = 50.0  # bench: a model's shortest turn in a round (why 50: runtime/bench.py)
MAX_BATCH = 65_536  # 256 MiB of (1, 32, 32) float32 inputs per session.run; more is refused
MAX_THREADS = 1024
MAX_TURN_MS = 60_000.0  # bench
MAX_RUNS = 1_000_000  # bench
