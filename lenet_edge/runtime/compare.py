"""Line up the rows of bench reports from different runs or devices, with ratios.

Rows match when model label, batch size and threads are equal. The first report is the
reference: each other run's mean latency is divided by the reference's, and a ratio is
marked when it is beyond the run-to-run spread of both rows (report.beyond_spread:
|ln(ratio)| > 2 * sqrt(cv_ref^2 + cv_run^2), cv = the rows' round CV). Rows missing
from a run are shown as missing, never filled in.

A run whose report says it was emulated (environment.execution) is lined up and marked, but
never ranked: no ratio against it or, when it is the reference, against any run. Emulation
slows each kind of instruction by its own factor (an emulated Arm run once came out 234x and
2,490x slower than x86 in two rows of one comparison), so a ratio would measure the emulator.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..reading import check_file, read_json
from ..text import has_non_printing
from .bench import SCHEMA, VERSION
from .environment import EXECUTION_KINDS
from .report import beyond_spread, describe_execution, is_emulated

MAX_REPORT_BYTES = 32 << 20
COMPARE_SCHEMA = "lenet-edge-compare"
COMPARE_VERSION = 1


def _require(path, obj: dict, key: str, kind, where: str):
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{path}: {where}{key} is {type(value).__name__} "
                        f"(expected {getattr(kind, '__name__', 'number')} in a {SCHEMA} report)")
    if isinstance(value, str) and has_non_printing(value):  # compare prints it: no escape sequences
        raise DataError(f"{path}: {where}{key} {value[:40]!r} holds control characters (expected printable text)")
    return value


def _optional(path, obj: dict, key: str, kind, where: str):
    """A field compare reads when it is there: absent or null is fine, another type is not."""
    if obj.get(key) is None:
        return None
    return _require(path, obj, key, kind, where)


def load_report(path: str | Path) -> dict:
    """Read a bench report and check its schema, version and every field compare reads
    (reports come from other devices: nothing in them is trusted)."""
    path = Path(path)
    expected = f"a {SCHEMA} JSON report from lenet-edge bench"
    size = check_file(path, DataError, expected)
    if size > MAX_REPORT_BYTES:
        raise DataError(f"{path}: {size} bytes (expected a report of at most {MAX_REPORT_BYTES})")
    report = read_json(path, DataError, expected)
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise DataError(f"{path}: schema {found!r} (expected {SCHEMA!r} from lenet-edge bench)")
    if report.get("version") != VERSION:
        raise DataError(f"{path}: {SCHEMA} version {report.get('version')!r} (expected {VERSION}; "
                        f"use the lenet-edge release that wrote it)")
    env = _require(path, report, "environment", dict, "")
    if env.get("execution") is not None:  # absent from reports written before it was recorded
        execution = _require(path, env, "execution", dict, "environment.")
        kind = _require(path, execution, "kind", str, "environment.execution.")
        evidence = _require(path, execution, "evidence", list, "environment.execution.")
        if kind not in EXECUTION_KINDS or not all(isinstance(e, str) and not has_non_printing(e) for e in evidence):
            raise DataError(f"{path}: environment.execution is {execution!r} (expected kind one of "
                            f"{', '.join(EXECUTION_KINDS)} and a list of evidence strings)")
    cpu = _optional(path, env, "cpu", dict, "environment.") or {}
    _optional(path, cpu, "model", str, "environment.cpu.")
    _optional(path, cpu, "logical_cores", int, "environment.cpu.")
    versions = _optional(path, env, "versions", dict, "environment.") or {}
    _optional(path, versions, "onnxruntime", str, "environment.versions.")
    for key in ("device", "board"):
        _optional(path, env, key, str, "environment.")
    _optional(path, report, "created", str, "")
    settings = _optional(path, report, "settings", dict, "") or {}
    for key in ("warmup", "runs", "rounds"):
        _optional(path, settings, key, int, "settings.")
    _optional(path, settings, "min_turn_ms", (int, float), "settings.")
    rows = _require(path, report, "rows", list, "")
    if not rows:
        raise DataError(f"{path}: no rows (expected at least one timed row)")
    for i, row in enumerate(rows):
        where = f"rows[{i}]."
        _require(path, row, "model", str, where)
        _require(path, row, "batch_size", int, where)
        _require(path, row, "threads", int, where)
        latency = _require(path, row, "latency_ms", dict, where)
        spread = _require(path, row, "spread", dict, where)
        mean = _require(path, latency, "mean", (int, float), where + "latency_ms.")
        cv = _require(path, spread, "round_cv", (int, float), where + "spread.")
        if not mean > 0 or not cv >= 0:
            raise DataError(f"{path}: {where[:-1]} has mean {mean} ms and round CV {cv} (expected positive values)")
    return report


def run_names(paths: list[Path]) -> list[str]:
    """Each report's file stem, or its path when stems repeat."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(p) for p in paths]


def compare(reports: list[dict], names: list[str] | None = None) -> dict:
    """The comparison: {"schema", "version", "runs": [{name, cpu, cores, emulated, where, onnxruntime, created,
    settings}],
    "rows": [{model, batch_size, threads, mean_ms: [per run or None], round_cv: [...],
    ratios: [per run vs run 0, or None (missing or emulated)], exceeds_spread: [bool or None]}]}."""
    if len(reports) < 2:
        raise DataError(f"{len(reports)} report(s) given (expected two or more to compare)")
    names = names or [f"run{i + 1}" for i in range(len(reports))]
    if len(names) != len(reports):
        raise DataError(f"{len(names)} names for {len(reports)} reports (expected one name per report)")
    keyed = [{(r["model"], r["batch_size"], r["threads"]): r for r in rep["rows"]} for rep in reports]
    emulated = [is_emulated(rep["environment"]) for rep in reports]
    order = list(dict.fromkeys(k for table in keyed for k in table))  # first appearance
    rows = []
    for key in order:
        found = [table.get(key) for table in keyed]
        means = [r["latency_ms"]["mean"] if r else None for r in found]
        cvs = [r["spread"]["round_cv"] if r else None for r in found]
        ratios, exceeds = [], []
        for mean, cv, emulated_run in zip(means, cvs, emulated, strict=True):
            if mean is None or means[0] is None or emulated_run or emulated[0]:
                ratios.append(None)
                exceeds.append(None)
            else:
                ratios.append(mean / means[0])
                exceeds.append(beyond_spread(mean / means[0], cv, cvs[0]))
        rows.append({"model": key[0], "batch_size": key[1], "threads": key[2], "mean_ms": means, "round_cv": cvs,
                     "ratios": ratios, "exceeds_spread": exceeds})
    runs = []
    for name, rep in zip(names, reports, strict=True):
        env = rep["environment"]
        cpu = env.get("cpu") or {}
        runs.append({"name": name, "cpu": cpu.get("model") or "unknown", "cores": cpu.get("logical_cores"),
                     "emulated": is_emulated(env), "where": describe_execution(env),
                     "onnxruntime": (env.get("versions") or {}).get("onnxruntime") or "unknown",
                     "created": rep.get("created") or "unknown", "settings": _settings(rep)})
    return {"schema": COMPARE_SCHEMA, "version": COMPARE_VERSION, "runs": runs, "rows": rows}


def _settings(report: dict) -> str:
    s = report.get("settings") or {}
    turns = f", turns >= {s['min_turn_ms']:g} ms" if isinstance(s.get("min_turn_ms"), (int, float)) else ""
    return f"{s.get('warmup', '?')} warm-up, {s.get('runs', '?')} runs in {s.get('rounds', '?')} rounds{turns}"


def format_compare_markdown(comparison: dict) -> str:
    runs = comparison["runs"]
    lines = ["# lenet-edge compare", "", "| run | CPU | cores | ran | onnxruntime | created | settings |",
             "|---|---|---:|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['name']}{' †' if r['emulated'] else ''} | {r['cpu']} | {r['cores']} | "
                     f"{r['where']} | {r['onnxruntime']} | {r['created']} | {r['settings']} |")
    if any(r["emulated"] for r in runs):
        lines += ["", "† EMULATED: its timings measure the emulator, not the CPU it imitates. They are lined up "
                      "here but never ranked: no ratio is given against an emulated run."]
    if len({r["settings"] for r in runs}) > 1:
        lines += ["", "Note: the runs used different settings; their spreads are still comparable, "
                      "but read small differences with care."]
    lines += [
        "",
        f"Mean latency per call in ms ± round CV. Ratio = run / {runs[0]['name']} (below 1 is faster); "
        "* marks a ratio beyond the run-to-run spread of both rows; – a row the run does not have.",
        "",
        "| model | batch | threads | " + " | ".join(r["name"] + (" †" if r["emulated"] else "") for r in runs) + " |",
        "|---|---:|---:|" + "---:|" * len(runs),
    ]
    for row in comparison["rows"]:
        cells = []
        for k, (mean, cv) in enumerate(zip(row["mean_ms"], row["round_cv"], strict=True)):
            if mean is None:
                cells.append("–")
                continue
            cell = f"{mean:.3f} ±{cv:.0%}" + (" †" if runs[k]["emulated"] else "")
            if k > 0 and row["ratios"][k] is not None:
                cell += f" ({row['ratios'][k]:.2f}{'*' if row['exceeds_spread'][k] else ''})"
            cells.append(cell)
        lines.append(f"| {row['model']} | {row['batch_size']} | {row['threads']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
