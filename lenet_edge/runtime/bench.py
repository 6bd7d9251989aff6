"""Side-by-side latency of several models in one process, on the same inputs.

numpy + onnxruntime only; PyTorch eager rows are added when a checkpoint is given, and
only then is torch imported.

Method. The inputs are real MNIST test images (the first max(batch sizes) of the official
test set, repeated when a batch is larger than the set), preprocessed once by each
model's own contract. For every (threads, batch size) row, every model gets an
onnxruntime CPU session with the same SessionOptions (intra-op threads = threads,
inter-op threads = 1, default graph optimisations); PyTorch gets
torch.set_num_threads(threads) and runs under torch.inference_mode(). Each model is
first run `warmup` times, then timed at least `runs` times, one inference per timing, with
time.perf_counter_ns. The timed runs are split into `rounds` rounds; in each round every
model runs its share back to back, the models taking turns in a rotated order, so slow
drift of the machine (heat, other load) hits all models alike. A turn lasts at least
`min_turn_ms` (its call count estimated from the warm-up's median call): at batch 1 a call
takes ~0.05 ms, and a turn of 40 calls would time the switch between sessions (the other
model's pool threads still spinning, cold caches) as much as the model, so there a row gets
more runs than asked. The mean latency of each round gives the run-to-run spread
(round_cv), which `compare` uses to tell a real difference from noise.

Report (JSON, "schema": "lenet-edge-bench", "version": 1; docs/bench-report.md has every
field):

    schema, version, created (UTC ISO 8601), duration_s
    settings:    batch_sizes, threads, runs, warmup, rounds, min_turn_ms, inputs {source, images,
                 distinct_images},
                 timer, session {provider, intra_op_threads, inter_op_threads,
                 graph_optimization_level, execution_mode}
    environment: cpu {model, architecture, flags, flags_source, int8_dot_product,
                 logical_cores, usable_cores, physical_cores}, os {system, release},
                 versions {python, numpy, onnxruntime, lenet-edge[, torch]},
                 load_average {start, end}
    models:      [{label, kind ("onnxruntime" | "pytorch-eager"), file, sha256, bytes,
                 variant, precision ("fp32" | "int8"), check {images, accuracy}}]
    rows:        [{model, batch_size, threads, runs, latency_ms {mean, std, min, p50, p90,
                 p99, max}, throughput_ips, spread {rounds, round_means_ms, round_p50s_ms,
                 round_cv, p90_over_p50}}]

rows[].runs is the number of calls timed: settings.runs, or more where turns of
min_turn_ms needed more. Latencies are per call (one batch) in milliseconds; throughput_ips is images per second
at the mean latency (batch_size * 1000 / mean). Percentiles interpolate linearly between
the sorted timings (numpy.percentile), so p99 of fewer than 100 runs lies between the two
slowest. round_cv is the sample standard deviation of the round means over their mean.
round_p50s_ms are the rounds' medians: a ratio of two models' medians round by round is what
stays steady at batch 1, where a few stalled calls (a thread woken late) move a round's mean.
check.accuracy is the model's accuracy on up to the first 1,000 test images, computed
before timing, so a fast but broken model shows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAME, OUTPUT_NAME
from ..data import Preprocessing, load_mnist
from ..errors import DataError
from ..fileio import sha256_file
from ..progress import Progress
from .defaults import DEFAULT_MIN_TURN_MS
from .environment import environment, load_average
from .session import MAX_THREADS, check_batch_size, load_model

SCHEMA = "lenet-edge-bench"
VERSION = 1
DEFAULT_BATCH_SIZES = (1, 32, 256)
DEFAULT_RUNS = 200
DEFAULT_WARMUP = 20
DEFAULT_ROUNDS = 5
MAX_TURN_MS = 60_000.0
MAX_RUNS = 1_000_000
CHECK_IMAGES = 1000
TORCH_LABEL = "pytorch-eager"



class _Runner:
    """One model, callable on a prepared batch; sessions are made per thread count."""

    def __init__(self, label: str, info: dict, preprocessing: Preprocessing):
        self.label, self.info, self.preprocessing = label, info, preprocessing

    def configure(self, threads: int) -> None:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _OrtRunner(_Runner):
    def __init__(self, label: str, path: Path):
        model = load_model(path)
        contract = model.contract
        info = {"label": label, "kind": "onnxruntime", "file": path.name, "sha256": sha256_file(path),
                "bytes": path.stat().st_size, "variant": contract.variant,
                "precision": "int8" if contract.quantization else "fp32"}
        super().__init__(label, info, contract.preprocessing)
        self.path, self.model = path, model

    def configure(self, threads: int) -> None:
        self.model = load_model(self.path, threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.model.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


class _TorchRunner(_Runner):
    def __init__(self, label: str, checkpoint: Path):
        from ..errors import require

        self.torch = require("torch", "train")
        require("safetensors", "train")
        from ..train.checkpoint import load_checkpoint

        self.model, meta = load_checkpoint(checkpoint)
        info = {"label": label, "kind": "pytorch-eager", "file": checkpoint.name, "sha256": sha256_file(checkpoint),
                "bytes": checkpoint.stat().st_size, "variant": meta["variant"], "precision": "fp32"}
        super().__init__(label, info, Preprocessing.from_dict(meta["preprocessing"]))
        self.saved_threads = self.torch.get_num_threads()

    def configure(self, threads: int) -> None:
        self.torch.set_num_threads(threads)

    def restore(self) -> None:
        self.torch.set_num_threads(self.saved_threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(x)).numpy()


def _check_settings(models: dict, batch_sizes, threads, runs: int, warmup: int, rounds: int,
                    min_turn_ms: float) -> None:
    if not models:
        raise DataError("no models to benchmark (expected at least one .onnx model)")
    for name, values in (("batch sizes", batch_sizes), ("thread counts", threads)):
        if not values:
            raise DataError(f"no {name} given (expected at least one)")
        if len(set(values)) != len(values):
            raise DataError(f"{name} {list(values)} list a value twice (expected distinct values)")
    for b in batch_sizes:
        check_batch_size(b)
    for t in threads:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 1 <= t <= MAX_THREADS:
            raise DataError(f"threads must be integers between 1 and {MAX_THREADS} (found {t!r})")
    if not 2 <= runs <= MAX_RUNS:
        raise DataError(f"runs must be between 2 and {MAX_RUNS} (found {runs})")
    if not 0 <= warmup <= MAX_RUNS:
        raise DataError(f"warmup must be between 0 and {MAX_RUNS} (found {warmup})")
    if not 2 <= rounds <= runs:
        raise DataError(f"rounds must be between 2 and runs={runs} (found {rounds}); the spread needs two or more")
    if not 0 <= min_turn_ms <= MAX_TURN_MS:
        raise DataError(f"min_turn_ms must be between 0 and {MAX_TURN_MS:g} (found {min_turn_ms})")


def _inputs(data_dir, count: int) -> tuple[np.ndarray, np.ndarray, str, int]:
    """The first `count` test images (N, 28, 28) and labels, repeated if the set is smaller;
    also the file's name and how many distinct images it holds."""
    from ..data import split_paths

    images, labels = load_mnist(data_dir, "test")
    images_file, distinct = split_paths(Path(data_dir), "test")[0].name, len(images)
    if count > len(images):
        repeats = -(-count // len(images))
        images, labels = np.tile(images, (repeats, 1, 1)), np.tile(labels, repeats)
    return images[:count], labels[:count], images_file, distinct


def _stats(rounds: list[list[float]], batch_size: int) -> dict:
    """The row's figures from its timings (ms), one list per round."""
    latencies_ms = np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds])
    mean = float(latencies_ms.mean())
    round_means = [float(np.mean(r)) for r in rounds]
    p50, p90, p99 = (float(v) for v in np.percentile(latencies_ms, [50, 90, 99]))
    means = np.asarray(round_means)
    return {
        "latency_ms": {"mean": mean, "std": float(latencies_ms.std(ddof=1)), "min": float(latencies_ms.min()),
                       "p50": p50, "p90": p90, "p99": p99, "max": float(latencies_ms.max())},
        "throughput_ips": batch_size * 1000.0 / mean,
        "spread": {"rounds": len(round_means), "round_means_ms": round_means,
                   "round_p50s_ms": [float(np.median(r)) for r in rounds],
                   "round_cv": float(means.std(ddof=1) / means.mean()), "p90_over_p50": p90 / p50},
    }


def _time_ms(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        start = time.perf_counter_ns()
        run(x)
        timings.append((time.perf_counter_ns() - start) / 1e6)
    return timings


def bench(models: dict[str, str | Path], batch_sizes=DEFAULT_BATCH_SIZES, threads=(1,), *, data_dir: str | Path,
          runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP, checkpoint: str | Path | None = None,
          progress: Progress | None = None, rounds: int = DEFAULT_ROUNDS,
          min_turn_ms: float = DEFAULT_MIN_TURN_MS) -> dict:
    """Time every model (label -> .onnx path, plus PyTorch eager when `checkpoint` is given)
    for every (threads, batch size) on the test images in data_dir, a directory of MNIST IDX files, and
    return the report described in the module docstring."""
    batch_sizes, threads = [int(b) for b in batch_sizes], [int(t) for t in threads]
    _check_settings(models, batch_sizes, threads, runs, warmup, rounds, min_turn_ms)
    runners: list[_Runner] = [_OrtRunner(label, Path(path)) for label, path in models.items()]
    if checkpoint is not None:
        if TORCH_LABEL in models:
            raise DataError(f"model label {TORCH_LABEL!r} is kept for the PyTorch eager rows (expected another label)")
        runners.append(_TorchRunner(TORCH_LABEL, Path(checkpoint)))
    started, load_start = time.perf_counter(), load_average()
    images, labels, images_file, distinct = _inputs(data_dir, max(max(batch_sizes), CHECK_IMAGES))
    prepared = {r.preprocessing: r.preprocessing(images) for r in runners}  # (N, 1, 32, 32) per contract
    for r in runners:
        check = min(CHECK_IMAGES, distinct)
        r.configure(threads[0])
        x = prepared[r.preprocessing][:check]
        predicted = np.concatenate([r(x[i:i + 250]) for i in range(0, check, 250)]).argmax(axis=1)
        r.info["check"] = {"images": check, "accuracy": float((predicted == labels[:check]).mean())}

    total, done, rows = len(threads) * len(batch_sizes) * rounds * len(runners), 0, []
    shares = [runs // rounds + (1 if k < runs % rounds else 0) for k in range(rounds)]  # runs per round
    try:
        for t in threads:
            for r in runners:
                r.configure(t)
            for b in batch_sizes:
                per_round: dict[str, list[list[float]]] = {r.label: [] for r in runners}
                per_call = {}  # ms, the warm-up's median call; inf (no estimate) without a warm-up
                for r in runners:
                    warm = _time_ms(r, prepared[r.preprocessing][:b], warmup)
                    per_call[r.label] = float(np.median(warm)) if warm else math.inf
                for k, share in enumerate(shares):
                    for j in range(len(runners)):
                        r = runners[(j + k) % len(runners)]  # rotate who goes first each round
                        if progress:
                            progress(done, total, f"batch {b}, {t} thread(s), round {k + 1}/{rounds}: {r.label}")
                        calls = max(share, math.ceil(min_turn_ms / max(per_call[r.label], 1e-6)))
                        part = _time_ms(r, prepared[r.preprocessing][:b], calls)
                        per_round[r.label].append(part)
                        done += 1
                for r in runners:
                    rows.append({"model": r.label, "batch_size": b, "threads": t,
                                 "runs": sum(len(part) for part in per_round[r.label]),
                                 **_stats(per_round[r.label], b)})
    finally:
        for r in runners:
            if isinstance(r, _TorchRunner):
                r.restore()
    if progress:
        progress(total, total, "done")
    extra = {"torch": runners[-1].torch.__version__} if checkpoint is not None else None
    env = environment(extra)
    env["load_average"] = {"start": load_start, "end": load_average()}
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 3),
        "settings": {
            "batch_sizes": batch_sizes, "threads": threads, "runs": runs, "warmup": warmup, "rounds": rounds,
            "min_turn_ms": min_turn_ms,
            "inputs": {"source": f"MNIST official test set ({images_file})", "images": int(max(batch_sizes)),
                       "distinct_images": int(min(distinct, max(batch_sizes)))},
            "timer": "time.perf_counter_ns, one inference per timing",
            "session": {"provider": "CPUExecutionProvider", "intra_op_threads": "threads",
                        "inter_op_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL (default)",
                        "execution_mode": "ORT_SEQUENTIAL (default)"},
        },
        "environment": env,
        "models": [r.info for r in runners],
        "rows": rows,
    }
