"""`quantize --auto`: build candidate int8 models, judge each as `quantize` judges one, time them
against the fp32 model side by side, and ship the one a stated rule picks.

Why a search: on x86 no quantizer setting alone makes this LeNet-5's int8 model faster than fp32 (C1's
single input channel sends its int8 conv down a slow path); the exact rewrite of the fp32 graph
(rewrite.py) does for every trained variant, but whether int8 wins depends on the CPU, so the stage
measures instead of assuming. The candidates are settings.candidate_recipes; each is judged by
stage.judge, timed in one process with bench's interleaved timer (batch 1 and 64, 1 and 2 threads;
per cell the paired latency ratio, so a burst of load hits one round, not the result), and RULE picks
the winner. The steps in full: docs/quantize.md, "--auto".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import graph
from ..bench.environment import cpu_info, load_average
from ..bench.ratio import latency_ratio
from ..bench.timing import time_interleaved
from ..contract import ModelContract
from ..errors import DataError, ModelError, ValidationError, require
from ..fileio import write_bytes, write_json
from ..progress import Progress
from ..runtime.session import LoadedModel, load_model
from ..scratch import scratch_directory
from . import stage
from .rewrite import kernel_friendly, verify_rewrite
from .settings import AUTO_MAX_ACCURACY_DROP, ChosenRecipe, QuantRecipe, QuantSettings, candidate_recipes

onnx = require("onnx", "quantize")

BASELINE = "fp32"
MIN_TIMES_SMALLER = 3.0  # the int8 file must be at least this many times smaller than the fp32 file
TIE = 0.05  # worst-case latency ratios within 5% of the best count as tied (timing noise on a shared machine)
RULE_IN_METADATA = (f"quantize --auto: fastest in the worst case vs fp32, within the accuracy budget, "
                    f">= {MIN_TIMES_SMALLER:g}x smaller")
RULE = (f"among the candidates that pass every check, lose at most --max-accuracy-drop points of test accuracy "
        f"and are at least {MIN_TIMES_SMALLER:g}x smaller than fp32, the lowest worst-case latency ratio vs fp32 "
        f"over all (threads, batch) cells; ratios within {TIE:.0%} of the best are a tie, won by the earlier "
        f"candidate in the list (the simpler recipe). If none is {MIN_TIMES_SMALLER:g}x smaller, the same among "
        f"those within the accuracy budget, and the result says so.")


@dataclass(frozen=True)
class TimingPlan:
    batch_sizes: tuple[int, ...] = (1, 64)
    threads: tuple[int, ...] = (1, 2)
    rounds: int = 9  # interleaved rounds per cell; the ratio is their median
    seconds_per_turn: float = 0.04  # one model's share of a round, at least
    warmup: int = 10  # untimed calls per model and cell
    min_calls: int = 3  # per turn, even for a model slower than the turn

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.min_calls < 1 or self.warmup < 0 or not self.seconds_per_turn > 0:
            raise DataError(f"timing plan {asdict(self)} (expected rounds and min_calls >= 1, warmup >= 0 "
                            f"and seconds_per_turn > 0)")
        if not self.batch_sizes or not self.threads:
            raise DataError(f"timing plan {asdict(self)} (expected at least one batch size and thread count)")

    def cells(self) -> list[str]:
        return [f"{t}t_b{b}" for t in self.threads for b in self.batch_sizes]

    def to_record(self) -> dict:
        return {**asdict(self), "batch_sizes": list(self.batch_sizes), "threads": list(self.threads)}


DEFAULT_PLAN = TimingPlan()  # batch 1 and 64, 1 and 2 threads, 9 rounds: ~10-15 s of timing for 5 candidates


@dataclass(frozen=True)
class Trial:
    """One candidate as the search table shows it."""

    name: str
    what: str
    status: str  # "ok", "failed" or "not applicable"
    detail: str = ""  # why it failed or does not apply
    settings: dict = field(default_factory=dict)
    kernel_friendly: bool = False
    accuracy: float | None = None
    accuracy_drop_points: float | None = None
    top1_agreement: float | None = None
    bytes: int | None = None
    times_smaller: float | None = None
    latency_ratio: dict[str, float] = field(default_factory=dict)  # cell -> median ratio vs fp32 (<1: faster)
    latency_ms: dict[str, float] = field(default_factory=dict)  # cell -> median call

    @classmethod
    def of(cls, recipe: QuantRecipe, status: str, detail: str = "", judged: stage.Judged | None = None) -> Trial:
        v = judged and judged.quantization.validation
        figures = {} if judged is None else {
            "accuracy": v.int8_accuracy, "accuracy_drop_points": v.accuracy_drop_points,
            "top1_agreement": v.top1_agreement, "bytes": judged.size.int8_bytes,
            "times_smaller": judged.size.times_smaller}
        return cls(recipe.name, recipe.what, status, detail, recipe.settings.to_json(), recipe.kernel_friendly,
                   **figures)

    @property
    def worst_cell(self) -> str | None:
        return max(self.latency_ratio, key=self.latency_ratio.get) if self.latency_ratio else None

    @property
    def worst_latency_ratio(self) -> float | None:
        return self.latency_ratio[self.worst_cell] if self.latency_ratio else None

    def to_record(self, verdict: str) -> dict:
        return {**asdict(self), "worst_cell": self.worst_cell, "worst_latency_ratio": self.worst_latency_ratio,
                "verdict": verdict}


@dataclass(frozen=True)
class Choice:
    winner: str | None  # None: no candidate within the accuracy budget
    why: str
    verdicts: dict[str, str]  # candidate name -> one line


def auto_quantize(model: Path, out: Path, *, data_dir: Path, base: QuantSettings | None = None,
                  max_accuracy_drop: float = AUTO_MAX_ACCURACY_DROP, report: Path | None = None,
                  force: bool = False, calibration_images: Path | None = None, plan: TimingPlan | None = None,
                  progress: Progress | None = None, also_write: dict[str, Path] | None = None) -> stage.Quantized:
    """Search the candidates for `model`, write the winner to `out`, validated; return its result.

    `base` gives every candidate its target CPU, calibration count and seed (static mode; the
    search varies format, weight granularity, exclusions and the kernel-friendly rewrite). `plan`
    sets the timing (default DEFAULT_PLAN). The result is stage.quantize_model's for the winner,
    with `search` (see `search_record`). Raises ValidationError, and writes no model, when no
    candidate is within the accuracy budget. `also_write` (candidate name -> path) writes those
    candidates too, with their metadata, where they pass every check within the accuracy budget and
    did not win; the result's `also_written` says which were.
    """
    base = base or QuantSettings()
    if not base.is_static:
        raise DataError("quantize --auto searches static quantization recipes (found mode 'dynamic')")
    plan = plan or DEFAULT_PLAN
    inputs = stage.open_inputs(model, out, report, max_accuracy_drop, force, data_dir, base, calibration_images)
    model, out, report, max_accuracy_drop = inputs.model, inputs.out, inputs.report, inputs.max_accuracy_drop
    load_start = load_average()
    with scratch_directory("quantize") as tmp:  # a killed run's is removed by the next
        standard = stage.preprocess(model, tmp / "standard")
        friendly, rewrite = prepare_rewrite(tmp / "kernel-friendly", inputs)
        first_conv = graph.first_node(standard.proto.graph, "Conv")
        recipes = candidate_recipes(inputs.settings, first_conv and first_conv.name)
        float_models = {False: standard, True: friendly}
        buildable = sum(float_models[r.kernel_friendly] is not None for r in recipes)
        steps = stage.Steps(progress, buildable + len(plan.cells()) + (report is not None))
        trials, judged = [], {}
        for recipe in recipes:
            float_model = float_models[recipe.kernel_friendly]
            if float_model is None:
                trials.append(Trial.of(recipe, "not applicable", rewrite["reason"]))
                continue
            steps(f"candidate {recipe.name}: quantizing and validating")
            chosen = ChosenRecipe(recipe.name, tuple(rewrite["rewrites"]) if recipe.kernel_friendly else (),
                                  recipe.op_types, recipe.float_logits, tuple(r.name for r in recipes),
                                  RULE_IN_METADATA)
            try:
                candidate = stage.build(inputs, recipe, float_model)
                judged[recipe.name] = stage.judge(inputs, candidate, chosen, plan.threads[0])
            except ValidationError as exc:
                trials.append(Trial.of(recipe, "failed", str(exc)))
                continue
            trials.append(Trial.of(recipe, "ok", judged=judged[recipe.name]))

        timings = side_by_side({BASELINE: model, **{n: j.candidate.path for n, j in judged.items()}},
                               inputs.fp32.contract, inputs.test_inputs, plan, steps,
                               opened={n: j.int8 for n, j in judged.items()})
        trials = [replace(t, latency_ratio={c: round(timings[c][t.name]["ratio"], 4) for c in timings},
                          latency_ms={c: timings[c][t.name]["median_ms"] for c in timings})
                  if t.name in judged else t for t in trials]
        choice = choose(trials, max_accuracy_drop)
        load = {"start": load_start, "end": load_average()}
        search = search_record(trials, choice, rewrite, plan, inputs, timings, load)
        if choice.winner is None:
            if report is not None:
                write_json(report, {"model": None, "fp32_model": str(model), "search": search}, replace=force)
            raise ValidationError(f"{out.name}: {choice.why}; no model written"
                                  + (f"; every candidate in {report}" if report is not None else ""))
        result = stage.shipped(judged[choice.winner], inputs, steps, search)
        write_bytes(out, judged[choice.winner].data, replace=force)
        if also_write:
            result = replace(result, also_written=write_also(also_write, judged, trials, choice.winner,
                                                             max_accuracy_drop, force))
    return result


def write_also(paths: dict[str, Path], judged: dict[str, stage.Judged], trials: list[Trial], winner: str,
               max_accuracy_drop: float, force: bool = False) -> dict[str, str]:
    """Write the candidates named in `paths` that pass every check within the accuracy budget, the winner
    excepted (it is the stage's output already); {name: path} of those written (replacing files only with
    `force`)."""
    passed = {t.name for t in within_budget(trials, max_accuracy_drop)}
    written = {}
    for name, path in paths.items():
        if name != winner and name in passed:
            write_bytes(path, judged[name].data, replace=force)
            written[name] = str(path)
    return written


def prepare_rewrite(workdir: Path, inputs: stage.Inputs) -> tuple[stage.FloatModel | None, dict]:
    """The kernel-friendly fp32 graph, pre-processed and proven exact on the test set, and a record of
    it; (None, {"applies": False, "reason"}) when the model does not fit or the proof fails."""
    model = inputs.model
    try:
        workdir.mkdir()
        rewritten = workdir / "rewritten.onnx"
        friendly, rewrites = kernel_friendly(inputs.fp32_proto, model.name)
        onnx.save(friendly, str(rewritten))
        float_model = stage.preprocess(rewritten, workdir)
        verification = verify_rewrite(model, float_model.path, inputs.test_inputs, inputs.out.name)  # what is quantized
    except (ModelError, ValidationError) as exc:  # NotRewritable is a ModelError
        return None, {"applies": False, "reason": str(exc)}
    return float_model, {"applies": True, "rewrites": rewrites, "verification": verification}


def side_by_side(models: dict[str, Path], contract: ModelContract, inputs: np.ndarray, plan: TimingPlan,
                 on_cell: Callable[[str], None] = lambda cell: None,
                 opened: dict[str, LoadedModel] | None = None) -> dict[str, dict[str, dict]]:
    """{cell: {label: {"ratio", "median_ms", "round_ratios"}}} for every cell of `plan`, ratios to the
    first model; `inputs` are preprocessed test images (N >= max batch, 1, 32, 32), and every model
    runs with the same SessionOptions (runtime's: default graph optimisation, intra-op threads).
    `opened`: sessions of some of the models with the plan's first thread count, used for it."""
    if len(inputs) < max(plan.batch_sizes):
        raise DataError(f"{len(inputs)} timing inputs for batch size {max(plan.batch_sizes)} "
                        f"(expected at least as many)")
    baseline = next(iter(models))
    cells, result = iter(plan.cells()), {}
    for threads in plan.threads:
        reuse = opened if threads == plan.threads[0] and opened else {}
        loaded = {label: reuse.get(label) or load_model(path, threads, contract) for label, path in models.items()}
        for batch in plan.batch_sizes:
            cell = next(cells)
            on_cell(f"timing {len(models) - 1} candidate(s) against fp32: {threads} thread(s), batch {batch}")
            x = np.ascontiguousarray(inputs[:batch])  # (batch, 1, 32, 32)
            runs = {label: (m.logits, x) for label, m in loaded.items()}  # bench's call path
            per_round = time_interleaved(runs, [plan.min_calls] * plan.rounds, plan.warmup,
                                         plan.seconds_per_turn * 1e3)
            medians = {label: np.array([np.median(r) for r in rounds]) for label, rounds in per_round.items()}  # ms
            result[cell] = {label: {"ratio": latency_ratio(m, medians[baseline], paired=True),
                                    "median_ms": float(np.median(m)),
                                    "round_ratios": [round(float(r), 4) for r in m / medians[baseline]]}
                            for label, m in medians.items()}
    return result


def within_budget(trials: list[Trial], max_accuracy_drop: float) -> list[Trial]:
    """The candidates that passed every check and lose at most `max_accuracy_drop` points."""
    return [t for t in trials if t.status == "ok" and t.accuracy_drop_points <= max_accuracy_drop]


def choose(trials: list[Trial], max_accuracy_drop: float) -> Choice:
    """The winner by RULE, why, and a verdict for every candidate."""
    passed = within_budget(trials, max_accuracy_drop)
    eligible = [t for t in passed if t.times_smaller >= MIN_TIMES_SMALLER]
    verdicts = {}
    for t in trials:
        if t.status != "ok":
            verdicts[t.name] = f"{t.status}: {t.detail}"
        elif t not in passed:
            verdicts[t.name] = f"loses {t.accuracy_drop_points:.2f} points (limit {max_accuracy_drop:g})"
        elif t not in eligible:
            verdicts[t.name] = f"only {t.times_smaller:.2f}× smaller (needs {MIN_TIMES_SMALLER:g}×)"
    if not passed:
        return Choice(None, f"no candidate passes its checks within {max_accuracy_drop:g} points of fp32 accuracy "
                            f"({len(trials)} tried: {', '.join(t.name for t in trials)})", verdicts)
    pool, note = (eligible, "") if eligible else (passed, f"; no candidate is {MIN_TIMES_SMALLER:g}× smaller, "
                                                          f"so the size requirement was dropped")
    best = min(t.worst_latency_ratio for t in pool)
    tied = [t for t in pool if t.worst_latency_ratio <= best * (1 + TIE)]
    w = tied[0]  # trials are in preference order
    for t in pool:
        verdicts[t.name] = ("winner" if t is w else
                            f"tied with {w.name} (worst {t.worst_latency_ratio:.2f}x, within {TIE:.0%}); "
                            f"{w.name} comes first" if t in tied else
                            f"slower: worst {t.worst_latency_ratio:.2f}x vs {w.worst_latency_ratio:.2f}x")
    why = (f"{w.name} has the lowest worst-case latency vs fp32, {w.worst_latency_ratio:.2f}x at "
           f"{w.worst_cell}, of the {len(pool)} candidate(s) that pass every check within "
           f"{max_accuracy_drop:g} points of fp32 accuracy" + ("" if note else f" and {MIN_TIMES_SMALLER:g}× smaller")
           + f" (its drop: {w.accuracy_drop_points:+.2f} points; {w.times_smaller:.2f}× smaller)" + note)
    if len(tied) > 1:
        why += f"; tied within {TIE:.0%} with {', '.join(t.name for t in tied[1:])}, and listed first"
    return Choice(w.name, why, verdicts)


def search_record(trials: list[Trial], choice: Choice, rewrite: dict, plan: TimingPlan, inputs: stage.Inputs,
                  timings: dict, load: dict) -> dict:
    """The search as it goes into the result and the report: every candidate with its figures."""
    cpu = cpu_info()
    baseline = {"name": BASELINE, "accuracy": inputs.fp32.contract.test_accuracy, "bytes": inputs.fp32_bytes,
                "latency_ms": {c: timings[c][BASELINE]["median_ms"] for c in timings}}
    return {
        "rule": RULE, "winner": choice.winner, "why": choice.why, "max_accuracy_drop": inputs.max_accuracy_drop,
        "min_times_smaller": MIN_TIMES_SMALLER, "kernel_friendly_rewrite": rewrite,
        "timing": {**plan.to_record(), "cells": plan.cells(),
                   "method": "median over interleaved rounds of (candidate / fp32), each turn the median of its calls "
                             "(bench/timing.py's timer); same onnxruntime SessionOptions (default graph optimisation) "
                             "and test images for all",
                   "cpu": {k: cpu[k] for k in ("model", "flags", "usable_cores")}, "load_average": load},
        "baseline": baseline, "candidates": [t.to_record(choice.verdicts.get(t.name, "")) for t in trials],
    }


def format_search(search: dict) -> str:
    """The search table as printed by `quantize --auto`."""
    cells = search["timing"]["cells"]
    head = f"{'candidate':<28} {'accuracy':>8} {'drop':>6} {'KB':>6} {'smaller':>7} " + " ".join(
        f"{c:>7}" for c in cells) + f" {'worst':>6}  verdict"
    b = search["baseline"]
    fp32_ms = ", ".join(f"{c} {b['latency_ms'][c]:.3f} ms" for c in cells)
    lines = [f"search: {len(search['candidates'])} candidates; latency = median ratio vs fp32 over "
             f"{search['timing']['rounds']} interleaved rounds (<1 is faster; cells: threads t, batch b)",
             head,
             f"{b['name']:<28} {_pct(b['accuracy']):>8} {'':>6} {b['bytes'] / 1024:>6.1f} {'1.00×':>7} "
             + " ".join(f"{1:>7.2f}" for _ in cells) + f" {1:>6.2f}  ({fp32_ms})"]
    for r in search["candidates"]:
        if r["status"] != "ok":
            lines.append(f"{r['name']:<28} {r['verdict']}")
            continue
        ratios = " ".join(f"{r['latency_ratio'][c]:>7.2f}" for c in cells)
        lines.append(f"{r['name']:<28} {_pct(r['accuracy']):>8} {r['accuracy_drop_points']:>6.2f} "
                     f"{r['bytes'] / 1024:>6.1f} {r['times_smaller']:>6.2f}× {ratios} "
                     f"{r['worst_latency_ratio']:>6.2f}  {r['verdict']}")
    lines.append(f"why: {search['why']}")
    rewrite = search["kernel_friendly_rewrite"]
    if rewrite["applies"]:
        v = rewrite["verification"]
        lines.append(f"kernel-friendly rewrite: fp32 logits within {v['max_abs_diff']:.1e} of the original "
                     f"(tolerance {v['tolerance']:.1e}), argmax identical on {v['images']} test images")
    else:
        lines.append(f"kernel-friendly rewrite not applied, standard recipes only: {rewrite['reason']}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"
