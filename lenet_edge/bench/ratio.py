"""The one latency ratio lenet-edge reports: bench's table, compare, quantize --auto's search, the pipeline's
report and the benchmarks all call `latency_ratio`.

Why this statistic, on a noisy machine. Every figure starts from each round's median call (a round's p50): at
batch 1 a call takes ~0.07 ms and a few calls stalled by a thread woken late move a round's mean by several
per cent, not its median. Models timed in one run take turns round by round, so a burst of load or a change of
clock hits both in the same round: the ratio of the two medians *in each round* cancels it, and the median of
those per-round ratios keeps one disturbed round out of the result. Rows from different runs (`compare` across
devices) have no common rounds to pair, so there the ratio is of the medians of their round medians.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SPREAD_FACTOR = 2.0  # a ratio beyond 2 standard deviations of the combined run-to-run spread is marked


def latency_ratio(round_p50s_ms: Sequence[float], baseline_round_p50s_ms: Sequence[float], paired: bool) -> float:
    """Latency of a row over its baseline's (below 1: faster), from each row's per-round median calls.
    `paired`: both rows were timed in the same interleaved rounds of one run."""
    a, b = np.asarray(round_p50s_ms, np.float64), np.asarray(baseline_round_p50s_ms, np.float64)
    if paired:
        if a.shape != b.shape or not len(a):
            raise ValueError(f"paired rows need the same rounds (found {len(a)} and {len(b)})")
        return float(np.median(a / b))
    return float(np.median(a) / np.median(b))


def beyond_spread(ratio: float, cv_a: float, cv_b: float) -> bool:
    """Whether a latency ratio exceeds the measured run-to-run spread (round CV) of both rows:
    |ln(ratio)| > SPREAD_FACTOR * sqrt(cv_a^2 + cv_b^2)."""
    return abs(math.log(ratio)) > SPREAD_FACTOR * math.hypot(cv_a, cv_b)
