"""Line up the rows of bench reports from different runs or devices, with ratios.

Rows match on their RowKey (model label, batch size, threads). The first report is the reference:
each run's row is shown by the median of its rounds' median calls, and its ratio to the reference's
row is bench/ratio.py's latency_ratio for rows of different runs (no common rounds to pair). A
ratio is marked when it is beyond the run-to-run spread of both rows (ratio.beyond_spread). Rows
missing from a run are shown as missing, never filled in.

A run whose report says it was emulated (environment.execution) is lined up and marked, but
never ranked: no ratio against it or, when it is the reference, against any run. Emulation
slows each kind of instruction by its own factor (an emulated Arm run once came out 234x and
2,490x slower than x86 in two rows of one comparison), so a ratio would measure the emulator.
A browser run is real hardware and is ranked.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import DataError
from ..reading import check_file, read_json
from .markdown import describe_execution
from .ratio import beyond_spread, latency_ratio
from .records import SCHEMA, BenchReport, RowKey

MAX_REPORT_BYTES = 32 << 20
COMPARE_SCHEMA = "lenet-edge-compare"
COMPARE_VERSION = 1


@dataclass(frozen=True)
class ComparedRun:
    name: str
    cpu: str
    cores: int
    execution: str  # native | emulated | virtualised | browser | unknown
    emulated: bool
    where: str
    onnxruntime: str
    created: str
    settings: str


@dataclass(frozen=True)
class ComparedRow:
    model: str
    batch_size: int
    threads: int
    p50_ms: list[float | None]  # per run: the median of the row's round medians; None where the run lacks it
    round_cv: list[float | None]
    ratios: list[float | None]  # per run vs run 0; None: missing, or either run emulated
    exceeds_spread: list[bool | None]


@dataclass(frozen=True)
class Comparison:
    runs: list[ComparedRun]
    rows: list[ComparedRow]
    schema: str = COMPARE_SCHEMA
    version: int = COMPARE_VERSION

    def to_json(self) -> dict:
        record = asdict(self)
        return {"schema": record.pop("schema"), "version": record.pop("version"), **record}


def load_report(path: str | Path) -> BenchReport:
    """Read a bench report and check its schema, version and every field compare reads."""
    path = Path(path)
    expected = f"a {SCHEMA} JSON report from lenet-edge bench"
    size = check_file(path, DataError, expected)  # a FIFO or a device is not a report
    if size > MAX_REPORT_BYTES:
        raise DataError(f"{path}: {size} bytes (expected a report of at most {MAX_REPORT_BYTES})")
    return BenchReport.from_json(read_json(path, DataError, expected), str(path))


def run_names(paths: list[Path]) -> list[str]:
    """Each report's file stem, or its path when stems repeat."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(p) for p in paths]


def compare(reports: list[BenchReport], names: list[str] | None = None) -> Comparison:
    """Every row of every report, lined up by RowKey in order of first appearance, with ratios to run 0."""
    if len(reports) < 2:
        raise DataError(f"{len(reports)} report(s) given (expected two or more to compare)")
    names = names or [f"run{i + 1}" for i in range(len(reports))]
    if len(names) != len(reports):
        raise DataError(f"{len(names)} names for {len(reports)} reports (expected one name per report)")
    keys: list[RowKey] = list(dict.fromkeys(k for rep in reports for k in rep.by_key))
    rows = []
    for key in keys:
        found = [rep.by_key.get(key) for rep in reports]
        reference = found[0]
        ratios, exceeds = [], []
        for rep, row in zip(reports, found, strict=True):
            if row is None or reference is None or rep.emulated or reports[0].emulated:
                ratios.append(None)
                exceeds.append(None)
                continue
            ratio = latency_ratio(row.spread.round_p50s_ms, reference.spread.round_p50s_ms, paired=False)
            ratios.append(ratio)
            exceeds.append(beyond_spread(ratio, row.spread.round_cv, reference.spread.round_cv))
        rows.append(ComparedRow(*key, p50_ms=[statistics.median(r.spread.round_p50s_ms) if r else None for r in found],
                                round_cv=[r.spread.round_cv if r else None for r in found], ratios=ratios,
                                exceeds_spread=exceeds))
    runs = [ComparedRun(name=name, cpu=rep.environment["cpu"]["model"],
                        cores=rep.environment["cpu"]["logical_cores"], execution=rep.execution,
                        emulated=rep.emulated, where=describe_execution(rep.environment),
                        onnxruntime=rep.environment["versions"].get("onnxruntime", "unknown"),
                        created=rep.created, settings=_settings(rep.settings))
            for name, rep in zip(names, reports, strict=True)]
    return Comparison(runs, rows)


def _settings(s: dict) -> str:
    turns = f", turns >= {s['min_turn_ms']:g} ms" if s.get("min_turn_ms") is not None else ""
    return f"{s['warmup']} warm-up, {s['runs']} runs in {s['rounds']} rounds{turns}"


def format_compare_markdown(comparison: Comparison) -> str:
    runs = comparison.runs
    lines = ["# lenet-edge compare", "", "| run | CPU | cores | ran | onnxruntime | created | settings |",
             "|---|---|---:|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.name}{' †' if r.emulated else ''} | {r.cpu} | {r.cores} | "
                     f"{r.where} | {r.onnxruntime} | {r.created} | {r.settings} |")
    if any(r.emulated for r in runs):
        lines += ["", "† EMULATED: its timings measure the emulator, not the CPU it imitates. They are lined up "
                      "here but never ranked: no ratio is given against an emulated run."]
    if len({r.settings for r in runs}) > 1:
        lines += ["", "Note: the runs used different settings; their spreads are still comparable, "
                      "but read small differences with care."]
    lines += [
        "",
        "Latency per call in ms (the median of the rounds' median calls) ± round CV. "
        f"Ratio = run / {runs[0].name} (below 1 is faster); "
        "* marks a ratio beyond the run-to-run spread of both rows; – a row the run does not have.",
        "",
        "| model | batch | threads | " + " | ".join(r.name + (" †" if r.emulated else "") for r in runs) + " |",
        "|---|---:|---:|" + "---:|" * len(runs),
    ]
    for row in comparison.rows:
        cells = []
        for k, (p50, cv) in enumerate(zip(row.p50_ms, row.round_cv, strict=True)):
            if p50 is None:
                cells.append("–")
                continue
            cell = f"{p50:.3f} ±{cv:.0%}" + (" †" if runs[k].emulated else "")
            if k > 0 and row.ratios[k] is not None:
                cell += f" ({row.ratios[k]:.2f}{'*' if row.exceeds_spread[k] else ''})"
            cells.append(cell)
        lines.append(f"| {row.model} | {row.batch_size} | {row.threads} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
