"""Per layer, where the time of a call goes: every model timed side by side as bench times it, with
onnxruntime's own profiler on, each node it ran mapped back to the model's layers.

numpy + onnxruntime only: a device runs it. For every (threads, batch size) each model gets a new session
with the profiler on (sessions.session_options(threads, profile_prefix=...)), then bench's timer
(time_interleaved: warm-up, interleaved rounds, turns of at least min_turn_ms) calls the models on the same
inputs; the trace of each session (session.end_profiling()) gives, per call, the nodes onnxruntime ran after
its graph optimisations, which graph_layers maps to C1 ... OUTPUT. The report and its arithmetic:
profile_report.py. The profiler's bookkeeping costs a few us per node, so these calls are slower than
bench's: the layers' shares, not the absolute call, are what this measures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..contract import LAYERS
from ..defaults import DEFAULT_MIN_TURN_MS, DEFAULT_ROUNDS, DEFAULT_RUNS, DEFAULT_WARMUP, PROFILE_BATCH_SIZES
from ..errors import DataError
from ..progress import Progress
from ..runtime.model_file import read_model_bytes
from ..runtime.session import load_model
from ..scratch import scratch_directory
from .environment import environment, load_average
from .graph_layers import LayerMap, layer_map
from .peak import cpu_peak
from .profile_report import (
    OVERHEAD,
    InputsRecord,
    LayerTime,
    ModelRecord,
    NodeTime,
    PeakRecord,
    ProfileReport,
    ProfileRow,
    ProfileSettings,
)
from .runners import OrtRunner, bench_inputs
from .timing import check_timing_settings, time_interleaved
from .trace import TraceRun, read_trace

PROFILER = ("onnxruntime's profiler (SessionOptions.enable_profiling): per call, the Node events of the graph "
            "onnxruntime runs after its optimisations, dur in us")
TIMER = ("time.perf_counter_ns around each call, one inference per call; every model also timed in the same "
         "rounds by a session with the profiler off")
UNPROFILED = "profiler off"


def summarise(model: str, batch_size: int, threads: int, calls_us: list[float], runs: list[TraceRun],
              layer_of: Callable[[str, str], str], unprofiled_us: list[float]) -> ProfileRow:
    """A row from its timed calls (us, measured around each call) and their trace runs, in the same order,
    and the calls of the same model timed without the profiler in the same rounds: per node and per layer
    the median over the calls; the call overhead is each call minus the sum of its nodes; a share is a
    median over the sum of the row's layer medians, call overhead included."""
    if len(calls_us) != len(runs) or not runs or not unprofiled_us:
        raise ValueError(f"{len(calls_us)} timed calls for {len(runs)} trace runs and {len(unprofiled_us)} calls "
                         f"without the profiler (expected as many calls as runs, at least one of each)")
    calls = np.asarray(calls_us, dtype=np.float64)
    per_node: dict[str, np.ndarray] = {}  # node name -> its us in each call (0 where a call did not run it)
    ops: dict[str, str] = {}
    for k, run in enumerate(runs):
        for node in run.nodes:
            per_node.setdefault(node.name, np.zeros(len(runs)))[k] += node.dur_us
            ops.setdefault(node.name, node.op)
    layers_of = {name: layer_of(name, ops[name]) for name in per_node}
    names = list(dict.fromkeys(layers_of.values()))
    order = [n for n in LAYERS if n in names] + [n for n in names if n not in LAYERS]
    members = {layer: [name for name in per_node if layers_of[name] == layer] for layer in order}
    medians = {layer: float(np.median(np.sum([per_node[n] for n in found], axis=0)))
               for layer, found in members.items()}
    medians[OVERHEAD] = float(np.median(calls - np.sum(list(per_node.values()), axis=0)))
    whole = sum(medians.values())
    layers = [LayerTime(layer, len(members.get(layer, ())), tuple(ops[n] for n in members.get(layer, ())), us,
                        us / whole) for layer, us in medians.items()]
    nodes = tuple(NodeTime(name, ops[name], layers_of[name], float(np.median(us)), float(np.median(us)) / whole)
                  for name, us in per_node.items())
    return ProfileRow(model, batch_size, threads, len(runs), float(np.median(calls)),
                      float(np.median(unprofiled_us)), float(np.median([r.run_us for r in runs])), tuple(layers), nodes)


def _layer_maps(runners: list[OrtRunner]) -> dict[str, LayerMap]:
    """Each model's layer map; a quantized one borrows what it lacks from an fp32 model of the same checkpoint."""
    maps = {r.label: layer_map(read_model_bytes(r.path), str(r.path)) for r in runners}
    for r in runners:
        source = r.model.contract.checkpoint_sha256
        sibling = next((o for o in runners if o.info["precision"] == "fp32" and o is not r and source
                        and o.model.contract.checkpoint_sha256 == source), None)
        if r.info["precision"] == "int8" and sibling is not None:
            maps[r.label] = maps[r.label].borrowing(maps[sibling.label])
    return maps


def profile(models: dict[str, str | Path], batch_sizes=PROFILE_BATCH_SIZES, threads=(1,), runs: int = DEFAULT_RUNS,
            warmup: int = DEFAULT_WARMUP, rounds: int = DEFAULT_ROUNDS, min_turn_ms: float = DEFAULT_MIN_TURN_MS,
            data_dir: str | Path | None = None, inputs: str | Path | None = None, progress: Progress | None = None,
            device: str | None = None) -> ProfileReport:
    """Profile every model (label -> .onnx path) at every (threads, batch size); the digits come from
    `inputs`, else `data_dir`, else the packaged test digits, as for bench."""
    batch_sizes, threads = [int(b) for b in batch_sizes], [int(t) for t in threads]
    check_timing_settings(models, batch_sizes, threads, runs, warmup, rounds, min_turn_ms)
    if inputs is not None and data_dir is not None:
        raise DataError(f"both an inputs file ({inputs}) and a data directory ({data_dir}) given (expected one)")
    runners = [OrtRunner(label, Path(path)) for label, path in models.items()]
    maps = _layer_maps(runners)
    started, load_start = time.perf_counter(), load_average()
    images, _, inputs_record = bench_inputs(data_dir, inputs, max(batch_sizes))
    prepared = {r.preprocessing: np.ascontiguousarray(r.preprocessing(images)) for r in runners}  # (N, 1, 32, 32)
    shares = [runs // rounds + (1 if k < runs % rounds else 0) for k in range(rounds)]  # calls per round
    total, done, rows = len(threads) * len(batch_sizes) * rounds * 2 * len(runners), 0, []
    for t in threads:
        for b in batch_sizes:
            def on_turn(key, k: int, b=b, t=t) -> None:
                nonlocal done
                if progress:
                    what = f"{key[0]} ({UNPROFILED})" if isinstance(key, tuple) else key
                    progress(done, total, f"batch {b}, {t} thread(s), round {k + 1}/{rounds}: {what}")
                done += 1

            with scratch_directory("profile") as tmp:  # the traces; a killed run's are removed by the next
                loaded = {r.label: load_model(r.path, t, profile_prefix=tmp / f"model{i}")
                          for i, r in enumerate(runners)}
                plain = {r.label: load_model(r.path, t) for r in runners}  # the same calls, the profiler off
                turns = {}
                for r in runners:
                    x = prepared[r.preprocessing][:b]
                    turns[r.label] = (loaded[r.label].logits, x)
                    turns[(r.label, UNPROFILED)] = (plain[r.label].logits, x)
                per_round = time_interleaved(turns, shares, warmup, min_turn_ms, on_turn)
                for r in runners:
                    calls_ms = [ms for part in per_round[r.label] for ms in part]
                    trace = Path(loaded[r.label].session.end_profiling())
                    traced = read_trace(trace, warmup + len(calls_ms))[warmup:]  # the warm-up's runs come first
                    unprofiled = [ms * 1000 for part in per_round[(r.label, UNPROFILED)] for ms in part]
                    rows.append(summarise(r.label, b, t, [ms * 1000 for ms in calls_ms], traced,
                                          maps[r.label].layer_of, unprofiled))
    if progress:
        progress(total, total, "done")
    env = environment(None, device)
    env["load_average"] = {"start": load_start, "end": load_average()}
    settings = ProfileSettings(tuple(batch_sizes), tuple(threads), runs, warmup, rounds, float(min_turn_ms),
                               InputsRecord(inputs_record["kind"], inputs_record["source"], int(max(batch_sizes)),
                                            int(min(inputs_record["distinct_images"], max(batch_sizes)))),
                               TIMER, PROFILER)
    return ProfileReport(datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         round(time.perf_counter() - started, 3), settings, env,
                         tuple(ModelRecord(**{k: r.info[k] for k in ("label", "file", "sha256", "bytes", "variant",
                                                                     "precision")}) for r in runners),
                         tuple(rows), tuple(_peak(t) for t in threads))


def _peak(threads: int) -> PeakRecord:
    peak = cpu_peak(threads)
    return PeakRecord(threads, peak.fp32, peak.int8, peak.basis)
