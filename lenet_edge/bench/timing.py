"""Side-by-side latency of several models in one process, on the same inputs.

numpy + onnxruntime only; PyTorch eager rows are added when a checkpoint is given, and
only then is torch imported.

Method. The inputs are real MNIST-style digits: the first max(batch sizes) of the official
test set (--data-dir or $LENET_EDGE_DATA), of a file the user gives (IDX, .npy or image), or of
the official test digits carried in the package (no network needed), repeated when a batch is
larger than the set; preprocessed once by each model's own contract. For every
(threads, batch size) row, every model gets an
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

The report is a BenchReport (bench/records.py; its JSON fields: docs/bench-report.md).
rows[].runs is the number of calls timed: settings.runs, or more where turns of
min_turn_ms needed more. Latencies are per call (one batch) in milliseconds; throughput_ips is images per second
at the mean latency (batch_size * 1000 / mean). Percentiles interpolate linearly between
the sorted timings (numpy.percentile), so p99 of fewer than 100 runs lies between the two
slowest. round_cv is the sample standard deviation of the round means over their mean.
round_p50s_ms are the rounds' medians: a ratio of two models' medians round by round is what
stays steady at batch 1, where a few stalled calls (a thread woken late) move a round's mean.
check.accuracy is the model's accuracy on up to the first 1,000 test images, computed
before timing, so a fast but broken model shows (null for a user's file, which has no labels).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..defaults import (
    BENCH_BATCH_SIZES,
    DEFAULT_MIN_TURN_MS,
    DEFAULT_ROUNDS,
    DEFAULT_RUNS,
    DEFAULT_WARMUP,
    MAX_RUNS,
    MAX_TURN_MS,
)
from ..errors import DataError
from ..progress import Progress
from ..runtime.session import check_batch_size
from ..sessions import check_threads
from .environment import environment, load_average
from .records import BenchModel, BenchReport, BenchRow, Latency, ModelCheck, Spread
from .runners import OrtRunner, Runner, TorchRunner, bench_inputs

CHECK_IMAGES = 1000
TORCH_LABEL = "pytorch-eager"


def check_timing_settings(models: dict, batch_sizes, threads, runs: int, warmup: int, rounds: int,
                          min_turn_ms: float) -> None:
    """Every setting of a bench or profile run, before any model is opened."""
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
        check_threads(t)
    if not 2 <= runs <= MAX_RUNS:
        raise DataError(f"runs must be between 2 and {MAX_RUNS} (found {runs})")
    if not 0 <= warmup <= MAX_RUNS:
        raise DataError(f"warmup must be between 0 and {MAX_RUNS} (found {warmup})")
    if not 2 <= rounds <= runs:
        raise DataError(f"rounds must be between 2 and runs={runs} (found {rounds}); the spread needs two or more")
    if not 0 <= min_turn_ms <= MAX_TURN_MS:
        raise DataError(f"min_turn_ms must be between 0 and {MAX_TURN_MS:g} (found {min_turn_ms})")


def row_from_timings(model: str, batch_size: int, threads: int, rounds: list[list[float]]) -> BenchRow:
    """A row's figures from its timings (ms), one list per round."""
    latencies_ms = np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds])
    mean = float(latencies_ms.mean())
    means = np.asarray([np.mean(r) for r in rounds])
    p50, p90, p99 = (float(v) for v in np.percentile(latencies_ms, [50, 90, 99]))
    return BenchRow(
        model=model, batch_size=batch_size, threads=threads, runs=len(latencies_ms),
        latency_ms=Latency(mean=mean, std=float(latencies_ms.std(ddof=1)), min=float(latencies_ms.min()),
                           p50=p50, p90=p90, p99=p99, max=float(latencies_ms.max())),
        throughput_ips=batch_size * 1000.0 / mean,
        spread=Spread(rounds=len(rounds), round_means_ms=[float(m) for m in means],
                      round_p50s_ms=[float(np.median(r)) for r in rounds],
                      round_cv=float(means.std(ddof=1) / means.mean()), p90_over_p50=p90 / p50))


def _time_ms(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        start = time.perf_counter_ns()
        run(x)
        timings.append((time.perf_counter_ns() - start) / 1e6)
    return timings


def time_interleaved(models: dict[str, tuple[Callable[[np.ndarray], object], np.ndarray]], shares: list[int],
                     warmup: int, min_turn_ms: float,
                     on_turn: Callable[[str, int], None] | None = None) -> dict[str, list[list[float]]]:
    """The timer: each model (label -> (run, its input batch)) warmed up `warmup` calls, then timed in
    len(shares) rounds; in round k the models take turns in an order rotated by k, each turn
    `shares[k]` calls or more, enough to last `min_turn_ms` by the warm-up's median call.
    Returns per label the ms of every timed call, one list per round; `on_turn(label, k)` before each turn."""
    per_call = {}  # ms, the warm-up's median call; inf (no estimate) without a warm-up
    for label, (run, x) in models.items():
        warm = _time_ms(run, x, warmup)
        per_call[label] = float(np.median(warm)) if warm else math.inf
    labels = list(models)
    per_round: dict[str, list[list[float]]] = {label: [] for label in labels}
    for k, share in enumerate(shares):
        for j in range(len(labels)):
            label = labels[(j + k) % len(labels)]  # rotate who goes first each round
            if on_turn:
                on_turn(label, k)
            calls = max(share, math.ceil(min_turn_ms / max(per_call[label], 1e-6)))
            per_round[label].append(_time_ms(*models[label], calls))
    return per_round


def bench(models: dict[str, str | Path], batch_sizes=BENCH_BATCH_SIZES, threads=(1,), runs: int = DEFAULT_RUNS,
          warmup: int = DEFAULT_WARMUP, checkpoint: str | Path | None = None, data_dir: str | Path | None = None,
          progress: Progress | None = None, rounds: int = DEFAULT_ROUNDS,
          min_turn_ms: float = DEFAULT_MIN_TURN_MS, inputs: str | Path | None = None,
          device: str | None = None) -> BenchReport:
    """Time every model (label -> .onnx path, plus PyTorch eager when `checkpoint` is given)
    for every (threads, batch size) and return the report described in the module docstring.

    The digits come from `inputs` (a file), else `data_dir` (a directory of MNIST IDX files, resolved
    by the caller), else the packaged test digits (see runners.bench_inputs); `device` is the user's name for the
    machine, recorded in the environment."""
    batch_sizes, threads = [int(b) for b in batch_sizes], [int(t) for t in threads]
    check_timing_settings(models, batch_sizes, threads, runs, warmup, rounds, min_turn_ms)
    runners: list[Runner] = [OrtRunner(label, Path(path)) for label, path in models.items()]
    if checkpoint is not None:
        if TORCH_LABEL in models:
            raise DataError(f"model label {TORCH_LABEL!r} is kept for the PyTorch eager rows (expected another label)")
        runners.append(TorchRunner(TORCH_LABEL, Path(checkpoint)))
    started, load_start = time.perf_counter(), load_average()
    if inputs is not None and data_dir is not None:
        raise DataError(f"both an inputs file ({inputs}) and a data directory ({data_dir}) given (expected one)")
    images, labels, inputs_record = bench_inputs(data_dir, inputs, max(max(batch_sizes), CHECK_IMAGES))
    distinct = inputs_record["distinct_images"]
    prepared = {r.preprocessing: np.ascontiguousarray(r.preprocessing(images)) for r in runners}  # (N, 1, 32, 32)
    for r in runners:
        check = min(CHECK_IMAGES, distinct)
        r.configure(threads[0])
        x = prepared[r.preprocessing][:check]
        predicted = np.concatenate([r(x[i:i + 250]) for i in range(0, check, 250)]).argmax(axis=1)
        accuracy = None if labels is None else float((predicted == labels[:check]).mean())  # a user's file: no labels
        r.info["check"] = ModelCheck(check, accuracy)

    total, done, rows = len(threads) * len(batch_sizes) * rounds * len(runners), 0, []
    shares = [runs // rounds + (1 if k < runs % rounds else 0) for k in range(rounds)]  # runs per round
    try:
        for t in threads:
            for r in runners:
                r.configure(t)
            for b in batch_sizes:
                def on_turn(label: str, k: int, b=b, t=t) -> None:
                    nonlocal done
                    if progress:
                        progress(done, total, f"batch {b}, {t} thread(s), round {k + 1}/{rounds}: {label}")
                    done += 1

                per_round = time_interleaved({r.label: (r, prepared[r.preprocessing][:b]) for r in runners},
                                             shares, warmup, min_turn_ms, on_turn)
                rows += [row_from_timings(r.label, b, t, per_round[r.label]) for r in runners]
    finally:
        for r in runners:
            if isinstance(r, TorchRunner):
                r.restore()
    if progress:
        progress(total, total, "done")
    extra = {"torch": runners[-1].torch.__version__} if checkpoint is not None else None
    env = environment(extra, device)
    env["load_average"] = {"start": load_start, "end": load_average()}
    return BenchReport(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - started, 3),
        settings={
            "batch_sizes": batch_sizes, "threads": threads, "runs": runs, "warmup": warmup, "rounds": rounds,
            "min_turn_ms": min_turn_ms,
            "inputs": {"kind": inputs_record["kind"], "source": inputs_record["source"],
                       "images": int(max(batch_sizes)), "distinct_images": int(min(distinct, max(batch_sizes)))},
            "timer": "time.perf_counter_ns, one inference per timing",
            "session": {"provider": "CPUExecutionProvider", "intra_op_threads": "threads",
                        "inter_op_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL (default)",
                        "execution_mode": "ORT_SEQUENTIAL (default)"},
        },
        environment=env,
        models=[BenchModel(**r.info) for r in runners],
        rows=rows,
    )
