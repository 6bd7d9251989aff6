"""The bench report as typed records: what `bench` makes, `compare` reads back from another device, and the
Markdown, the charts and the pipeline's report show. One name for each field from where it is made to where
it is shown; the JSON form (schema "lenet-edge-bench", version 1, docs/bench-report.md) is what `to_json`
writes and `from_json` checks field by field, since reports come from other machines and browsers.

Device side: numpy (through ratio.py) and the standard library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from ..errors import DataError
from ..json_fields import FieldReader
from ..text import has_non_printing
from .ratio import latency_ratio

SCHEMA = "lenet-edge-bench"
VERSION = 1
EXECUTION_KINDS = ("native", "emulated", "virtualised", "browser", "unknown")


class RowKey(NamedTuple):
    """What rows are matched on, within a report and across reports."""

    model: str
    batch_size: int
    threads: int


@dataclass(frozen=True)
class Latency:
    """Per call (one batch), ms, over every timed call of a row."""

    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True)
class Spread:
    """The run-to-run spread: each round's mean and median call (ms), and the CV of the round means."""

    rounds: int
    round_means_ms: list[float]
    round_p50s_ms: list[float]
    round_cv: float
    p90_over_p50: float


@dataclass(frozen=True)
class BenchRow:
    model: str
    batch_size: int
    threads: int
    runs: int
    latency_ms: Latency
    throughput_ips: float
    spread: Spread

    @property
    def key(self) -> RowKey:
        return RowKey(self.model, self.batch_size, self.threads)


@dataclass(frozen=True)
class ModelCheck:
    images: int
    accuracy: float | None  # None: a user's file has no labels


@dataclass(frozen=True)
class BenchModel:
    label: str
    kind: str  # "onnxruntime" | "pytorch-eager" | "onnxruntime-web"
    file: str
    sha256: str
    bytes: int
    variant: str
    precision: str  # "fp32" | "int8"
    check: ModelCheck


@dataclass
class BenchReport:
    created: str
    duration_s: float
    settings: dict  # as run: batch sizes, threads, runs, warm-up, rounds, turn, inputs, timer, session
    environment: dict  # bench/environment.py's record (the browser page writes its own of the same shape)
    models: list[BenchModel]
    rows: list[BenchRow]
    schema: str = SCHEMA
    version: int = VERSION
    by_key: dict[RowKey, BenchRow] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.by_key = {row.key: row for row in self.rows}

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    @property
    def execution(self) -> str:
        return (self.environment.get("execution") or {}).get("kind", "unknown")

    @property
    def emulated(self) -> bool:
        """Timings from an emulator measure the emulator, not the CPU: never ranked."""
        return self.execution == "emulated"

    def ratio(self, row: BenchRow, baseline: str) -> float | None:
        """`row`'s latency over `baseline`'s in the same cell, paired round by round (bench/ratio.py);
        None where the baseline has no such row or the timings are emulated."""
        base = self.by_key.get(RowKey(baseline, row.batch_size, row.threads))
        if base is None or self.emulated:
            return None
        return latency_ratio(row.spread.round_p50s_ms, base.spread.round_p50s_ms, paired=True)

    def to_json(self) -> dict:
        record = asdict(self)
        record.pop("by_key")
        return {"schema": record.pop("schema"), "version": record.pop("version"), **record}

    @classmethod
    def from_json(cls, obj: object, source: str) -> BenchReport:
        """A report read from a file, every field this package reads checked: a one-line DataError naming the
        field, what it is and what was expected."""
        r = FieldReader(source, f"a {SCHEMA} report")
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
            found = obj.get("schema") if isinstance(obj, dict) else type(obj).__name__
            raise DataError(f"{source}: schema {found!r} (expected {SCHEMA!r} from lenet-edge bench)")
        if obj.get("version") != VERSION:
            raise DataError(f"{source}: {SCHEMA} version {obj.get('version')!r} (expected {VERSION}; "
                            f"use the lenet-edge release that wrote it)")
        environment = r.get(obj, "environment", dict)
        _check_environment(r, environment)
        settings = r.get(obj, "settings", dict)
        for key in ("runs", "warmup", "rounds"):
            r.get(settings, key, int, "settings.")
        r.number(settings, "min_turn_ms", "settings.", optional=True)
        r.get(r.get(settings, "inputs", dict, "settings."), "source", str, "settings.inputs.")
        models = [_model(r, m, f"models[{i}].") for i, m in enumerate(r.get(obj, "models", list))]
        rows = [_row(r, row, f"rows[{i}].") for i, row in enumerate(r.get(obj, "rows", list))]
        if not rows:
            raise DataError(f"{source}: no rows (expected at least one timed row)")
        return cls(created=r.get(obj, "created", str), duration_s=r.number(obj, "duration_s"),
                   settings=settings, environment=environment, models=models, rows=rows)


def _check_environment(r: FieldReader, env: dict) -> None:
    execution = r.get(env, "execution", dict, "environment.", optional=True)  # absent from the earliest reports
    if execution is not None:
        kind = r.get(execution, "kind", str, "environment.execution.")
        evidence = r.get(execution, "evidence", list, "environment.execution.")
        if kind not in EXECUTION_KINDS or not all(isinstance(e, str) and not has_non_printing(e) for e in evidence):
            raise DataError(f"{r.source}: environment.execution is {execution!r} (expected kind one of "
                            f"{', '.join(EXECUTION_KINDS)} and a list of evidence strings)")
    for key in ("device", "board"):
        r.get(env, key, str, "environment.", optional=True)
    cpu = r.get(env, "cpu", dict, "environment.")
    r.get(cpu, "model", str, "environment.cpu.")
    r.get(cpu, "architecture", str, "environment.cpu.")
    r.get(cpu, "logical_cores", int, "environment.cpu.")
    r.get(cpu, "usable_cores", int, "environment.cpu.", optional=True)
    r.strings(cpu, "flags", "environment.cpu.")
    os_record = r.get(env, "os", dict, "environment.")
    r.get(os_record, "system", str, "environment.os.")
    r.get(os_record, "release", str, "environment.os.")
    versions = r.get(env, "versions", dict, "environment.")
    for key in versions:
        r.get(versions, key, str, "environment.versions.")
    ort = r.get(env, "onnxruntime", dict, "environment.", optional=True)
    if ort is not None:
        r.get(ort, "wheel_tags", list, "environment.onnxruntime.")
        r.get(ort, "providers", list, "environment.onnxruntime.")


def _model(r: FieldReader, m: dict, where: str) -> BenchModel:
    check = r.get(m, "check", dict, where)
    accuracy = r.number(check, "accuracy", where + "check.", optional=True)
    return BenchModel(label=r.get(m, "label", str, where), kind=r.get(m, "kind", str, where),
                      file=r.get(m, "file", str, where), sha256=r.get(m, "sha256", str, where),
                      bytes=r.get(m, "bytes", int, where), variant=r.get(m, "variant", str, where),
                      precision=r.get(m, "precision", str, where),
                      check=ModelCheck(r.get(check, "images", int, where + "check."), accuracy))


def _row(r: FieldReader, row: dict, where: str) -> BenchRow:
    lat = r.get(row, "latency_ms", dict, where)
    spread = r.get(row, "spread", dict, where)
    latency = Latency(**{k: r.number(lat, k, where + "latency_ms.")
                         for k in ("mean", "std", "min", "p50", "p90", "p99", "max")})
    cv = r.number(spread, "round_cv", where + "spread.")
    if not latency.mean > 0 or not cv >= 0:
        raise DataError(f"{r.source}: {where[:-1]} has mean {latency.mean} ms and round CV {cv} "
                        f"(expected positive values)")
    p50s = r.numbers(spread, "round_p50s_ms", where + "spread.")
    rounds = r.get(spread, "rounds", int, where + "spread.")
    if len(p50s) != rounds or not all(p > 0 for p in p50s):
        raise DataError(f"{r.source}: {where}spread.round_p50s_ms has {len(p50s)} values for {rounds} rounds "
                        f"(expected one positive median per round)")
    return BenchRow(model=r.get(row, "model", str, where), batch_size=r.get(row, "batch_size", int, where),
                    threads=r.get(row, "threads", int, where), runs=r.get(row, "runs", int, where),
                    latency_ms=latency, throughput_ips=r.number(row, "throughput_ips", where),
                    spread=Spread(rounds, r.numbers(spread, "round_means_ms", where + "spread."), p50s, cv,
                                  r.number(spread, "p90_over_p50", where + "spread.")))
