"""`quantize --auto`: build a few candidate int8 models, validate each, time each against the fp32
model side by side, and keep the one a stated rule picks.

Why a search. On x86 no quantizer setting alone makes this LeNet-5's int8 model faster than
fp32 (C1's single input channel sends its int8 conv down a slow path); an exact rewrite of
the fp32 graph (rewrite.py) does. The rewrite only fits the ReLU/max-pool LeNet-5, and
whether int8 wins depends on the CPU, so the stage measures instead of assuming:

1. candidates (recipes.py): the standard recipe, standard with C1 in float, and, where the
   rewrite applies and is proven exact on the test set, the rewrite in QDQ per-tensor,
   per-channel and QOperator form;
2. each is validated exactly as `quantize` validates one model (structure, accuracy on the
   official test set vs fp32, top-1 agreement, ONNX reference implementation) and sized;
3. all are timed against fp32 in one process (timing.py), batch 1 and 64, 1 and 2 threads;
4. RULE picks the winner. The table of every candidate and why the winner won goes into the
   returned result, the printed summary and the report; the winner's metadata records its recipe.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError, ValidationError, require
from ..fileio import write_bytes, write_json
from ..runtime.environment import cpu_info, load_average
from .build import preprocess, quantized_metadata, read_metadata, set_metadata
from .layer_report import format_table, layer_errors
from .quantizer import calibration_inputs, evaluate_candidate, finalize, open_inputs, settings_record
from .recipes import Recipe, build_recipe, candidate_recipes, first_conv_name
from .rewrite import REWRITES, kernel_friendly, verify_rewrite
from .settings import AUTO_MAX_ACCURACY_DROP, QuantSettings
from .timing import TimingPlan, cell_key, side_by_side
from .validation import check_max_drop, file_sizes

onnx = require("onnx", "quantize")

BASELINE = "fp32"
DEFAULT_PLAN = TimingPlan()  # batch 1 and 64, 1 and 2 threads, 9 rounds: ~10-15 s of timing for 5 candidates
MIN_TIMES_SMALLER = 3.0  # the int8 file must be at least this many times smaller than the fp32 file
TIE = 0.05  # worst-case latency ratios within 5% of the best count as tied (timing noise on a shared machine)
RULE_IN_METADATA = (f"quantize --auto: fastest in the worst case vs fp32, within the accuracy budget, "
                    f">= {MIN_TIMES_SMALLER:g}x smaller")
RULE = (f"among the candidates that pass every check, lose at most --max-accuracy-drop points of test accuracy "
        f"and are at least {MIN_TIMES_SMALLER:g}x smaller than fp32, the lowest worst-case latency ratio vs fp32 "
        f"over all (threads, batch) cells; ratios within {TIE:.0%} of the best are a tie, won by the earlier "
        f"candidate in the list (the simpler recipe). If none is {MIN_TIMES_SMALLER:g}x smaller, the same among "
        f"those within the accuracy budget, and the result says so.")


def auto_quantize(model: Path, out: Path, *, data_dir: Path | None = None, base: QuantSettings | None = None,
                  max_accuracy_drop: float = AUTO_MAX_ACCURACY_DROP, report: Path | None = None,
                  force: bool = False, calibration_images: Path | None = None, plan: TimingPlan | None = None,
                  on_step: Callable[[str], None] | None = None) -> dict:
    """Search the candidates for `model`, write the winner to `out`, validated; return its report.

    `base` gives every candidate its target CPU, calibration count and seed (static mode; the
    search varies format, weight granularity, exclusions and the graph rewrite). `plan` sets
    the timing (default DEFAULT_PLAN). Returns what
    quantizer.quantize_model returns for the winner, plus "search" (see `search_record`).
    Raises ValidationError, and writes no model, when no candidate is within the accuracy budget.
    """
    model, out = Path(model), Path(out)
    step = on_step or (lambda message: None)
    base = (base or QuantSettings()).resolve()
    if not base.is_static:
        raise DataError("quantize --auto searches static quantization recipes (found mode 'dynamic')")
    plan = plan or DEFAULT_PLAN
    max_accuracy_drop = check_max_drop(max_accuracy_drop)
    fp32, fp32_props, data, test_images, test_labels = open_inputs(model, out, report, force, data_dir)
    calibration, source = calibration_inputs(base, data, fp32.contract.preprocessing, calibration_images)
    base = replace(base, calibration_count=len(calibration))  # a file may hold fewer
    test_inputs = fp32.contract.preprocessing(test_images)  # (10000, 1, 32, 32)
    load_start = load_average()

    with tempfile.TemporaryDirectory(prefix="lenet-edge-auto-") as tmp:
        work = Path(tmp)
        step("pre-processing with onnxruntime")
        standard_float = preprocess(model, _mkdir(work / "standard"))
        rewrite_float, rewrite = prepare_rewrite(model, _mkdir(work / "kernel-friendly"), test_inputs, out.name)
        step(f"kernel-friendly rewrite: exact on {rewrite['verification']['images']} test images (max logit "
             f"difference {rewrite['verification']['max_abs_diff']:.1e})" if rewrite["applies"] else
             f"kernel-friendly rewrite does not apply, falling back to the standard recipes: {rewrite['reason']}")
        recipes = candidate_recipes(base, first_conv_name(standard_float))
        float_paths = {False: standard_float, True: rewrite_float}
        rows, built = [], {}
        for recipe in recipes:
            if float_paths[recipe.rewrite] is None:
                rows.append(_row(recipe, "not applicable", rewrite["reason"]))
                continue
            step(f"candidate {recipe.name}: quantizing and validating")
            try:
                built[recipe.name] = build_and_check(recipe, float_paths[recipe.rewrite], fp32, model, fp32_props,
                                                     calibration, source, test_inputs, test_labels, out.name)
            except ValidationError as exc:
                rows.append(_row(recipe, "failed", str(exc)))
                continue
            rows.append(_row(recipe, "ok", "", built[recipe.name][1]["validation"]))

        step(f"timing {len(built)} candidate(s) against fp32 side by side")
        timings = side_by_side({BASELINE: model, **{name: c.path for name, (c, _) in built.items()}},
                               test_inputs, plan, BASELINE, on_cell=lambda cell: step(f"  timing {cell}"))
        for row in rows:
            if row["name"] in built:
                _add_latency(row, timings, plan)
        winner, why = choose(rows, max_accuracy_drop)
        search = search_record(rows, winner, why, rewrite, plan, fp32, model, timings, max_accuracy_drop,
                               {"start": load_start, "end": load_average()})
        if winner is None:
            if report is not None:
                write_json(Path(report), {"model": None, "fp32_model": str(model), "search": search})
            raise ValidationError(f"{out.name}: {why}; no model written"
                                  + (f"; every candidate in {report}" if report is not None else ""))

        candidate, checks = built[winner]
        step(f"winner: {winner}")
        record = {**settings_record(candidate.path),
                  "search": {"chosen_from": [r["name"] for r in rows], "rule": RULE_IN_METADATA}}
        set_metadata(candidate.path, quantized_metadata(read_metadata(candidate.path), record, out.name))
        data_bytes = finalize(candidate, fp32_props, checks["validation"], out.name)
        checks["validation"].update(file_sizes(model, len(data_bytes)))
        result = {"model": str(out), "fp32_model": str(model), "settings": settings_record(candidate.path),
                  "max_accuracy_drop": max_accuracy_drop, **checks, "search": search}
        if report is not None:
            step("measuring per-layer error")
            layers = layer_errors(candidate, test_inputs, candidate.float_path.parent, calibration=calibration)
            write_json(Path(report), {**result, "layers": layers})
            result.update(layers=layers, layer_table=format_table(layers), report=str(report))
        write_bytes(out, data_bytes)
    return result


def build_and_check(recipe: Recipe, float_path: Path, fp32, model: Path, fp32_props: dict[str, str],
                    calibration: np.ndarray, calibration_source: str, inputs: np.ndarray, labels: np.ndarray,
                    source: str) -> tuple:
    """(candidate, checks) of one recipe: built, judged as `quantize` judges a model (structure, accuracy
    on `inputs` vs fp32, reference implementation), finalized with its metadata and sized."""
    candidate = build_recipe(recipe, float_path, float_path.parent, calibration=calibration, metadata=fp32_props,
                             calibration_source=calibration_source, source=source)
    checks = evaluate_candidate(fp32, candidate, inputs, labels, source)
    size = len(finalize(candidate, fp32_props, checks["validation"], source))
    checks["validation"].update(file_sizes(model, size))
    return candidate, checks


def prepare_rewrite(model: Path, workdir: Path, inputs: np.ndarray, source: str) -> tuple[Path | None, dict]:
    """The kernel-friendly fp32 graph, pre-processed and proven exact on `inputs` (N, 1, 32, 32), and a
    record of it; (None, {"applies": False, "reason"}) when the model does not fit or the proof fails."""
    try:
        rewritten = workdir / "rewritten.onnx"
        onnx.save(kernel_friendly(onnx.load(str(model)), model.name), str(rewritten))
        float_path = preprocess(rewritten, workdir)
        verification = verify_rewrite(model, float_path, inputs, source)  # what gets quantized, vs the original
    except (ModelError, ValidationError) as exc:  # NotRewritable is a ModelError
        return None, {"applies": False, "reason": str(exc)}
    return float_path, {"applies": True, "rewrites": list(REWRITES), "verification": verification}


def choose(rows: list[dict], max_accuracy_drop: float) -> tuple[str | None, str]:
    """(winner's name or None, why) by RULE; fills each row's "verdict"."""
    passed = [r for r in rows if r["status"] == "ok" and r["accuracy_drop_points"] <= max_accuracy_drop]
    eligible = [r for r in passed if r["times_smaller"] >= MIN_TIMES_SMALLER]
    for r in rows:
        if r["status"] != "ok":
            r["verdict"] = f"{r['status']}: {r['detail']}"
        elif r not in passed:
            r["verdict"] = f"loses {r['accuracy_drop_points']:.2f} points (limit {max_accuracy_drop:g})"
        elif r not in eligible:
            r["verdict"] = f"only {r['times_smaller']:.2f}x smaller (needs {MIN_TIMES_SMALLER:g}x)"
    if not passed:
        return None, (f"no candidate passes its checks within {max_accuracy_drop:g} points of fp32 accuracy "
                      f"({len(rows)} tried: {', '.join(r['name'] for r in rows)})")
    pool, note = (eligible, "") if eligible else (passed, f"; no candidate is {MIN_TIMES_SMALLER:g}x smaller, "
                                                          f"so the size requirement was dropped")
    best = min(r["worst_latency_ratio"] for r in pool)
    tied = [r for r in pool if r["worst_latency_ratio"] <= best * (1 + TIE)]
    winner = tied[0]  # rows are in preference order
    for r in pool:
        if r is winner:
            r["verdict"] = "winner"
        elif r in tied:
            r["verdict"] = (f"tied with {winner['name']} (worst {r['worst_latency_ratio']:.2f}x, within {TIE:.0%}); "
                            f"{winner['name']} comes first")
        else:
            r["verdict"] = f"slower: worst {r['worst_latency_ratio']:.2f}x vs {winner['worst_latency_ratio']:.2f}x"
    w = winner
    why = (f"{w['name']} has the lowest worst-case latency vs fp32, {w['worst_latency_ratio']:.2f}x at "
           f"{w['worst_cell']}, of the {len(pool)} candidate(s) that pass every check within "
           f"{max_accuracy_drop:g} points of fp32 accuracy" + ("" if note else f" and {MIN_TIMES_SMALLER:g}x smaller")
           + f" (its drop: {w['accuracy_drop_points']:+.2f} points; {w['times_smaller']:.2f}x smaller)" + note)
    if len(tied) > 1:
        why += f"; tied within {TIE:.0%} with {', '.join(r['name'] for r in tied[1:])}, and listed first"
    return w["name"], why


def search_record(rows, winner, why, rewrite, plan, fp32, model, timings, max_accuracy_drop, load) -> dict:
    """The search as it goes into the result and the report: every candidate with its figures."""
    cells = [cell_key(t, b) for t, b in plan.cells()]
    baseline = {"name": BASELINE, "accuracy": fp32.contract.test_accuracy, "bytes": Path(model).stat().st_size,
                "latency_ms": {c: timings[c][BASELINE]["median_ms"] for c in cells}}
    cpu = cpu_info()
    return {
        "rule": RULE, "winner": winner, "why": why, "max_accuracy_drop": max_accuracy_drop,
        "min_times_smaller": MIN_TIMES_SMALLER, "rewrite": rewrite,
        "timing": {**plan.to_record(), "cells": cells,
                   "method": "median over interleaved rounds of (candidate / fp32), each turn the median of its calls; "
                             "same onnxruntime SessionOptions (default graph optimisation) and test images for all",
                   "cpu": {k: cpu[k] for k in ("model", "flags", "usable_cores")}, "load_average": load},
        "baseline": baseline, "candidates": rows,
    }


def _row(recipe: Recipe, status: str, detail: str, validation: dict | None = None) -> dict:
    row = {"name": recipe.name, "what": recipe.what, "status": status, "detail": detail,
           "settings": recipe.settings.to_record(), "rewrite": recipe.rewrite}
    if validation is not None:
        row.update(accuracy=validation["int8_accuracy"], accuracy_drop_points=validation["accuracy_drop_points"],
                   top1_agreement=validation["top1_agreement"], bytes=validation["int8_bytes"],
                   times_smaller=round(validation["fp32_bytes"] / validation["int8_bytes"], 4))
    return row


def _add_latency(row: dict, timings: dict, plan: TimingPlan) -> None:
    cells = [cell_key(t, b) for t, b in plan.cells()]
    row["latency_ratio"] = {c: round(timings[c][row["name"]]["ratio"], 4) for c in cells}
    row["latency_ms"] = {c: timings[c][row["name"]]["median_ms"] for c in cells}
    row["worst_cell"] = max(cells, key=lambda c: row["latency_ratio"][c])
    row["worst_latency_ratio"] = row["latency_ratio"][row["worst_cell"]]


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


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
             f"{b['name']:<28} {_pct(b['accuracy']):>8} {'':>6} {b['bytes'] / 1024:>6.1f} {'1.00x':>7} "
             + " ".join(f"{1:>7.2f}" for _ in cells) + f" {1:>6.2f}  ({fp32_ms})"]
    for r in search["candidates"]:
        if r["status"] != "ok":
            lines.append(f"{r['name']:<28} {r['verdict']}")
            continue
        ratios = " ".join(f"{r['latency_ratio'][c]:>7.2f}" for c in cells)
        lines.append(f"{r['name']:<28} {_pct(r['accuracy']):>8} {r['accuracy_drop_points']:>6.2f} "
                     f"{r['bytes'] / 1024:>6.1f} {r['times_smaller']:>6.2f}x {ratios} "
                     f"{r['worst_latency_ratio']:>6.2f}  {r['verdict']}")
    lines.append(f"why: {search['why']}")
    rewrite = search["rewrite"]
    if rewrite["applies"]:
        v = rewrite["verification"]
        lines.append(f"kernel-friendly rewrite: fp32 logits within {v['max_abs_diff']:.1e} of the original "
                     f"(tolerance {v['tolerance']:.1e}), argmax identical on {v['images']} test images")
    else:
        lines.append(f"kernel-friendly rewrite not applied, standard recipes only: {rewrite['reason']}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"

