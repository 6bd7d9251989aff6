"""Latency of candidate models relative to the fp32 model, measured side by side in one process.

A search must rank candidates whose latencies differ by 10x in a few seconds, on a machine
other work may share, so this measures ratios, not absolute times: for every (threads,
batch size) cell all models get onnxruntime sessions with the same SessionOptions (the
runtime's: default graph optimisation, intra-op threads = threads), the same real test
images, and then take turns in interleaved rounds (order rotated each round). In a turn a
model runs for `seconds_per_turn` (at least `min_calls` calls) and keeps the median call; each round gives
one ratio candidate/baseline, and the reported ratio is the median over rounds, so a burst
of load hits one round, not the result. runtime.bench is the full benchmark (mean, tails,
throughput, environment); this is its quick, ratio-only sibling for choosing a candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAME, OUTPUT_NAME
from ..errors import DataError
from ..runtime.session import load_model


@dataclass(frozen=True)
class TimingPlan:
    batch_sizes: tuple[int, ...] = (1, 64)
    threads: tuple[int, ...] = (1, 2)
    rounds: int = 9  # interleaved rounds per cell; the ratio is their median
    seconds_per_turn: float = 0.04  # one model's share of a round
    warmup: int = 10  # untimed calls per model and cell
    min_calls: int = 3  # per turn, even for a model slower than the turn

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.min_calls < 1 or self.warmup < 0 or not self.seconds_per_turn > 0:
            raise DataError(f"timing plan {asdict(self)} (expected rounds and min_calls >= 1, warmup >= 0 "
                            f"and seconds_per_turn > 0)")
        if not self.batch_sizes or not self.threads:
            raise DataError(f"timing plan {asdict(self)} (expected at least one batch size and thread count)")

    def cells(self) -> list[tuple[int, int]]:
        return [(t, b) for t in self.threads for b in self.batch_sizes]

    def to_record(self) -> dict:
        return {**asdict(self), "batch_sizes": list(self.batch_sizes), "threads": list(self.threads)}


def cell_key(threads: int, batch_size: int) -> str:
    return f"{threads}t_b{batch_size}"


def side_by_side(models: dict[str, Path], inputs: np.ndarray, plan: TimingPlan, baseline: str,
                 on_cell: Callable[[str], None] | None = None) -> dict[str, dict[str, dict]]:
    """{cell key: {model label: {"ratio", "median_ms", "round_ratios"}}} for every cell of `plan`;
    `inputs` are preprocessed test images (N >= max batch, 1, 32, 32), `baseline` labels the model the
    ratios are relative to."""
    if baseline not in models:
        raise DataError(f"baseline {baseline!r} is not among the models timed ({', '.join(models)})")
    if len(inputs) < max(plan.batch_sizes):
        raise DataError(f"{len(inputs)} timing inputs for batch size {max(plan.batch_sizes)} "
                        f"(expected at least as many)")
    labels = list(models)
    result: dict[str, dict[str, dict]] = {}
    for threads in plan.threads:
        sessions = {label: load_model(path, threads).session for label, path in models.items()}
        for batch in plan.batch_sizes:
            if on_cell:
                on_cell(f"{threads} thread(s), batch {batch}")
            feed = {INPUT_NAME: np.ascontiguousarray(inputs[:batch])}  # (batch, 1, 32, 32)
            for label in labels:
                _time_calls(sessions[label], feed, plan.warmup, 0.0)
            medians: dict[str, list[float]] = {label: [] for label in labels}  # seconds, one per round
            for k in range(plan.rounds):
                for j in range(len(labels)):
                    label = labels[(j + k) % len(labels)]  # rotate who goes first
                    times = _time_calls(sessions[label], feed, plan.min_calls, plan.seconds_per_turn)
                    medians[label].append(float(np.median(times)))
            base = np.asarray(medians[baseline])
            result[cell_key(threads, batch)] = {
                label: {"ratio": float(np.median(np.asarray(m) / base)), "median_ms": float(np.median(m)) * 1e3,
                        "round_ratios": [round(float(r), 4) for r in np.asarray(m) / base]}
                for label, m in medians.items()}
    return result


def _time_calls(session, feed: dict, min_calls: int, seconds: float) -> list[float]:
    """Seconds per call of at least `min_calls` calls, more until `seconds` have passed: a turn lasts
    about as long for a fast model as for a slow one, and a stall of the machine cannot stretch it."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        times.append(time.perf_counter() - start)
    return times
