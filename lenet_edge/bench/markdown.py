"""A bench report as Markdown (ratios against a baseline model), and writing its artefacts.

Ratios are bench/ratio.py's latency_ratio; a ratio is marked when it is beyond the run-to-run
spread of both rows (ratio.beyond_spread). Smaller differences are not told apart from noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..fileio import uninterrupted, write_json, write_text
from .ratio import beyond_spread
from .records import BenchModel, BenchReport


def describe_execution(env: dict) -> str:
    """Where a report ran: 'emulated (evidence; ...)', its --device label and board; reports from before
    these fields existed say 'not recorded'."""
    execution = env.get("execution")
    where = "not recorded" if not execution else execution["kind"]
    if execution and execution.get("evidence"):
        where += f" ({'; '.join(execution['evidence'])})"
    if env.get("device"):
        where += f", device {env['device']}"
    if env.get("board"):
        where += f", board {env['board']}"
    return where


def describe_environment(env: dict) -> str:
    cpu = env["cpu"]
    cores = f"{cpu['logical_cores']} logical cores" + (f", {cpu['usable_cores']} usable"
                                                        if cpu.get("usable_cores") != cpu["logical_cores"] else "")
    flags = ", ".join(cpu["flags"]) or "unknown"
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    ort = env.get("onnxruntime")
    build = f" · onnxruntime {', '.join(ort['wheel_tags']) or 'build unknown'}, {', '.join(ort['providers'])}" \
        if ort else ""
    return (f"{cpu['model']} ({cpu['architecture']}, {cores}; flags: {flags}) · "
            f"{env['os']['system']} {env['os']['release']} · {versions}{build}")


def format_markdown(report: BenchReport, baseline: str | None = None) -> str:
    """The bench report's Markdown: a title, then bench_section."""
    return "\n".join(["# lenet-edge bench", "", *bench_section(report, baseline)]) + "\n"


def bench_section(report: BenchReport, baseline: str | None = None) -> list[str]:
    """Environment, settings, and one table row per (model, batch size, threads)."""
    labels = report.labels
    baseline = baseline or labels[0]
    if baseline not in labels:
        raise DataError(f"baseline {baseline!r} is not a model of this report (expected one of {', '.join(labels)})")
    s, env = report.settings, report.environment
    load = env.get("load_average") or {}
    lines = [
        f"- machine: {describe_environment(env)}",
        f"- ran: {describe_execution(env)}",
        f"- settings: {s['warmup']} warm-up and at least {s['runs']} timed runs per row in {s['rounds']} rounds, "
        f"models interleaved, a turn lasting at least {s.get('min_turn_ms', 0):g} ms; inputs: {s['inputs']['source']}; "
        f"{report.created}, {report.duration_s:.1f} s",
        f"- load average (1, 5, 15 min) at start {load.get('start')}, at end {load.get('end')}",
        "- models: " + "; ".join(
            f"{m.label} = {m.file} ({m.kind}, {m.variant} {m.precision}, {m.bytes / 1024:.0f} KiB, "
            f"{_check(m)})" for m in report.models),
        "",
        f"Latency per call in ms. Ratio = latency / latency of {baseline} at the same batch size and threads: the "
        "median over rounds of the ratio of the two models' median calls in each round (below 1 is faster); "
        "* marks a ratio beyond the run-to-run spread (round CV) of both rows.",
        *(["", "EMULATED: these timings measure the emulator, not the CPU it imitates; no ratios are given."]
          if report.emulated else []),
        "",
        f"| model | batch | threads | mean | p50 | p90 | p99 | images/s | spread (CV) | vs {baseline} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(report.rows, key=lambda r: (r.threads, r.batch_size, labels.index(r.model))):
        lat, cv = r.latency_ms, r.spread.round_cv
        value = report.ratio(r, baseline)
        if report.emulated:
            ratio = "– (emulated)"
        elif r.model == baseline:
            ratio = "1.00 (baseline)"
        elif value is None:
            ratio = "–"
        else:
            base = report.by_key[(baseline, r.batch_size, r.threads)]
            ratio = f"{value:.2f}{'*' if beyond_spread(value, cv, base.spread.round_cv) else ''}"
        lines.append(f"| {r.model} | {r.batch_size} | {r.threads} | {lat.mean:.3f} | {lat.p50:.3f} | "
                     f"{lat.p90:.3f} | {lat.p99:.3f} | {r.throughput_ips:,.0f} | {cv:.1%} | {ratio} |")
    return lines


def _check(model: BenchModel) -> str:
    if model.check.accuracy is None:
        return f"{model.check.images} unlabelled images, no accuracy"
    return f"accuracy {model.check.accuracy:.1%} on {model.check.images} test images"


@dataclass(frozen=True)
class BenchOutputs:
    json: Path
    md: Path
    png: Path | None  # None: matplotlib is not installed
    markdown: str


def output_paths(out_json: Path) -> tuple[Path, Path, Path]:
    """The report's JSON, and the Markdown and PNG beside it (same name, other suffix)."""
    out_json = Path(out_json)
    return out_json, out_json.with_suffix(".md"), out_json.with_suffix(".png")


def write_bench_outputs(report: BenchReport, out_json: Path, out_md: Path, out_png: Path | None,
                        baseline: str | None = None, record: bool = True, replace: bool = False) -> BenchOutputs:
    """Write JSON, Markdown and (when matplotlib is installed) the PNG chart, each atomically; with
    `record`, into the directory's MANIFEST.sha256 (a pipeline's reports, not a user's -o).

    Returns the paths written (png None when the chart was skipped) and the Markdown.
    """
    from ..charts import plot_bench

    markdown = format_markdown(report, baseline)  # checks the baseline before anything is written
    with uninterrupted():  # the JSON, its table and its chart are written as a set
        write_json(Path(out_json), report.to_json(), record, replace=replace)
        write_text(Path(out_md), markdown, record, replace=replace)
        drawn = out_png is not None and plot_bench(report, Path(out_png), record, replace=replace)
        png = Path(out_png) if drawn else None
    return BenchOutputs(Path(out_json), Path(out_md), png, markdown)
