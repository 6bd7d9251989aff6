"""onnxruntime's profile (a Chrome trace: a JSON list of events) read into one record per call.

numpy-free and onnx-free: this is what a device runs. With SessionOptions.enable_profiling each
session.run writes one `model_run` event (cat "Session") spanning the call inside onnxruntime, and per
node it ran one `NAME_kernel_time` event (cat "Node", args.op_name = the operator it ran, dur in us).
A node event belongs to the run whose span holds its start. Every call must be there: onnxruntime stops
recording at its event limit and says so only in its log, so a trace with fewer runs than calls, a run
without nodes or a node outside every run is refused rather than averaged over.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import ValidationError

RUN_EVENT = "model_run"
NODE_SUFFIX = "_kernel_time"  # other Node events (older releases' _fence_before/_fence_after) time no kernel


@dataclass(frozen=True)
class NodeEvent:
    name: str  # onnxruntime's node name, without NODE_SUFFIX
    op: str  # the operator onnxruntime ran (after fusions: FusedConv, QLinearConv, NhwcMaxPool, ...)
    dur_us: float


@dataclass(frozen=True)
class TraceRun:
    run_us: float  # the model_run event: the call inside onnxruntime
    nodes: tuple[NodeEvent, ...]  # in the order they started


def read_trace(path: Path, expected_runs: int) -> list[TraceRun]:
    """The runs of a profile file, in call order; refuses a trace that does not hold `expected_runs` runs."""
    path = Path(path)
    try:
        events = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{path}: not a readable onnxruntime profile ({exc})") from exc
    if not isinstance(events, list):
        raise ValidationError(f"{path}: a JSON {type(events).__name__} (expected onnxruntime's list of trace events)")
    runs, nodes = [], []
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            raise ValidationError(f"{path}: event {i} is a {type(event).__name__} (expected a JSON object)")
        if event.get("cat") == "Session" and event.get("name") == RUN_EVENT:
            runs.append(_span(path, i, event))
        elif event.get("cat") == "Node" and str(event.get("name", "")).endswith(NODE_SUFFIX):
            op = (event.get("args") or {}).get("op_name") if isinstance(event.get("args"), dict) else None
            if not isinstance(op, str) or not op:
                raise ValidationError(f"{path}: node event {event['name']!r} has no args.op_name "
                                      f"(expected the operator onnxruntime ran)")
            start, dur = _span(path, i, event)
            nodes.append((start, NodeEvent(event["name"][:-len(NODE_SUFFIX)], op, dur)))
    if len(runs) != expected_runs:
        raise ValidationError(f"{path}: {len(runs)} {RUN_EVENT} events (expected {expected_runs}, one per call; "
                              f"onnxruntime drops events past its limit: time fewer calls)")
    runs.sort()
    starts = [start for start, _ in runs]
    per_run: list[list[NodeEvent]] = [[] for _ in runs]
    for start, node in sorted(nodes, key=lambda n: n[0]):
        k = bisect.bisect_right(starts, start) - 1
        if k < 0 or start > runs[k][0] + runs[k][1]:
            raise ValidationError(f"{path}: node event {node.name!r} at {start} us lies outside every "
                                  f"{RUN_EVENT} (expected each node inside the call that ran it)")
        per_run[k].append(node)
    for k, found in enumerate(per_run):
        if not found:
            raise ValidationError(f"{path}: {RUN_EVENT} {k + 1} of {len(runs)} has no node events "
                                  f"(expected the nodes of every call)")
    return [TraceRun(dur, tuple(found)) for (_, dur), found in zip(runs, per_run, strict=True)]


def _span(path: Path, i: int, event: dict) -> tuple[float, float]:
    """(ts, dur) of an event, in us."""
    values = [event.get("ts"), event.get("dur")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
               for v in values):
        raise ValidationError(f"{path}: event {i} ({event.get('name')!r}) has ts {values[0]!r} and dur {values[1]!r} "
                              f"(expected non-negative numbers of us)")
    return float(values[0]), float(values[1])
