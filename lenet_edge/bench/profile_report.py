"""The per-layer profile report: typed records, its versioned JSON and its Markdown.

JSON ("schema": "lenet-edge-profile", "version": 1):

    schema, version, created (UTC ISO 8601), duration_s
    settings:    batch_sizes, threads, runs, warmup, rounds, min_turn_ms, inputs {kind, source, images,
                 distinct_images}, timer, profiler
    environment: the record bench writes (lenet_edge.bench.environment.environment(), load_average)
    models:      [{label, file, sha256, bytes, variant, precision}]
    rows:        [{model, batch_size, threads, runs, call_median_us, unprofiled_median_us, run_median_us,
                 layers: [{layer, nodes, ops, median_us, share}],
                 nodes: [{name, op, layer, median_us, share}]}]

Per (model, batch size, threads) row, over its timed calls: call = time.perf_counter_ns around the call
(the profiler on), run = onnxruntime's model_run event, a node's time its trace event's dur, and
unprofiled = the same model's calls timed by a session with the profiler off, in the same rounds. median_us
is the median over the calls of a node's time (of a layer: of the sum of its nodes in each call; of the call
overhead: of each call minus the sum of its nodes). share is a median over the sum of the row's layer
medians, call overhead included: the shares add up to 1, and a call stalled by another process moves none.

The call overhead is Python's call into onnxruntime, the executor between nodes and the profiler's own
bookkeeping; the profiler also lengthens each node by a few us (its timestamps and memory statistics), so at
batch 1 the profiled call is several times the unprofiled one and small nodes read high. The unprofiled
median says by how much; the larger the batch, the less it matters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..contract import LAYER_MACS, LAYERS
from ..errors import DataError
from ..fileio import uninterrupted, write_json, write_text
from ..json_fields import FieldReader, json_lists
from .markdown import describe_environment, describe_execution

SCHEMA = "lenet-edge-profile"
VERSION = 1
OVERHEAD = "call overhead"
SHARE_TOLERANCE = 1e-6  # the layers' shares of a row must add up to 1 within this


@dataclass(frozen=True)
class LayerTime:
    layer: str  # C1 ... OUTPUT, a node's own name when it maps to no layer, or OVERHEAD
    nodes: int  # onnxruntime nodes in it (0 for the call overhead)
    ops: tuple[str, ...]  # their operators, in run order
    median_us: float
    share: float

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> LayerTime:
        return cls(r.get(obj, "layer", str, where), r.get(obj, "nodes", int, where), r.strings(obj, "ops", where),
                   r.number(obj, "median_us", where), r.number(obj, "share", where))


@dataclass(frozen=True)
class NodeTime:
    name: str  # onnxruntime's name for the node it ran
    op: str
    layer: str
    median_us: float
    share: float

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> NodeTime:
        return cls(*(r.get(obj, k, str, where) for k in ("name", "op", "layer")),
                   r.number(obj, "median_us", where), r.number(obj, "share", where))


@dataclass(frozen=True)
class ProfileRow:
    model: str
    batch_size: int
    threads: int
    runs: int  # timed calls
    call_median_us: float
    unprofiled_median_us: float  # the same model's calls with the profiler off, timed in the same rounds
    run_median_us: float  # onnxruntime's model_run event
    layers: tuple[LayerTime, ...]  # LAYERS order, then unmapped nodes in run order, then OVERHEAD
    nodes: tuple[NodeTime, ...]  # in run order

    def layer(self, name: str) -> LayerTime | None:
        return next((entry for entry in self.layers if entry.layer == name), None)

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> ProfileRow:
        layers = tuple(LayerTime.from_json(r, v, f"{where}layers[{i}].")
                       for i, v in enumerate(r.get(obj, "layers", list, where)))
        nodes = tuple(NodeTime.from_json(r, v, f"{where}nodes[{i}].")
                      for i, v in enumerate(r.get(obj, "nodes", list, where)))
        counts = (r.get(obj, k, int, where) for k in ("batch_size", "threads", "runs"))
        times = (r.number(obj, k, where) for k in ("call_median_us", "unprofiled_median_us", "run_median_us"))
        row = cls(r.get(obj, "model", str, where), *counts, *times, layers, nodes)
        total = sum(entry.share for entry in layers)
        if abs(total - 1.0) > SHARE_TOLERANCE or not layers or layers[-1].layer != OVERHEAD:
            raise r.refuse(where, f"has layer shares adding up to {total:.6f} with {OVERHEAD!r} "
                                  f"{'last' if layers and layers[-1].layer == OVERHEAD else 'missing'} "
                                  "(expected shares adding up to 1, the call overhead last)")
        return row


@dataclass(frozen=True)
class ModelRecord:
    label: str
    file: str
    sha256: str
    bytes: int
    variant: str
    precision: str  # fp32 | int8

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> ModelRecord:
        return cls(*(r.get(obj, k, str, where) for k in ("label", "file", "sha256")), r.get(obj, "bytes", int, where),
                   *(r.get(obj, k, str, where) for k in ("variant", "precision")))


@dataclass(frozen=True)
class InputsRecord:
    kind: str  # mnist-test-set | file | packaged
    source: str
    images: int
    distinct_images: int

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> InputsRecord:
        return cls(r.get(obj, "kind", str, where), r.get(obj, "source", str, where),
                   r.get(obj, "images", int, where), r.get(obj, "distinct_images", int, where))


@dataclass(frozen=True)
class ProfileSettings:
    batch_sizes: tuple[int, ...]
    threads: tuple[int, ...]
    runs: int
    warmup: int
    rounds: int
    min_turn_ms: float
    inputs: InputsRecord
    timer: str
    profiler: str

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> ProfileSettings:
        return cls(r.ints(obj, "batch_sizes", where), r.ints(obj, "threads", where),
                   *(r.get(obj, k, int, where) for k in ("runs", "warmup", "rounds")),
                   r.number(obj, "min_turn_ms", where),
                   InputsRecord.from_json(r, r.get(obj, "inputs", dict, where), f"{where}inputs."),
                   r.get(obj, "timer", str, where), r.get(obj, "profiler", str, where))


@dataclass(frozen=True)
class PeakRecord:
    """The CPU's peak at `threads` cores: GFLOP/s fp32 and GOP/s int8 (2 per multiply-accumulate), or None."""

    threads: int
    fp32: float | None
    int8: float | None
    basis: str

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> PeakRecord:
        rates = [r.number(obj, k, where, optional=True) for k in ("fp32", "int8")]
        return cls(r.get(obj, "threads", int, where), *rates, r.get(obj, "basis", str, where))

    def share(self, macs: int, batch_size: int, median_us: float, precision: str) -> float | None:
        """The share of this peak that `macs` per image, `batch_size` images in `median_us`, reach."""
        peak = self.int8 if precision == "int8" else self.fp32
        if not peak or not median_us > 0:
            return None
        return 2 * macs * batch_size / (median_us * 1e-6) / (peak * 1e9)


@dataclass(frozen=True)
class ProfileReport:
    created: str
    duration_s: float
    settings: ProfileSettings
    environment: dict  # bench's environment record, as it is
    models: tuple[ModelRecord, ...]
    rows: tuple[ProfileRow, ...]
    peaks: tuple[PeakRecord, ...] = ()  # the CPU's peak at each thread count (bench/peak.py), as benchmarks use it

    def to_json(self) -> dict:
        body = {f.name: asdict(self)[f.name] if f.name != "environment" else self.environment for f in fields(self)}
        return {"schema": SCHEMA, "version": VERSION, **json_lists(body)}

    def row(self, model: str, batch_size: int, threads: int) -> ProfileRow | None:
        return next((r for r in self.rows if (r.model, r.batch_size, r.threads) == (model, batch_size, threads)), None)

    @classmethod
    def from_json(cls, obj: object, source: str) -> ProfileReport:
        """A report read back from its JSON, every field checked; DataError naming `source` otherwise."""
        r = FieldReader(source, f"a {SCHEMA} report")
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
            found = obj.get("schema") if isinstance(obj, dict) else type(obj).__name__
            raise DataError(f"{source}: schema {found!r} (expected {SCHEMA!r})")
        if obj.get("version") != VERSION:
            raise DataError(f"{source}: {SCHEMA} version {obj.get('version')!r} (expected {VERSION})")
        models = tuple(ModelRecord.from_json(r, m, f"models[{i}].") for i, m in enumerate(r.get(obj, "models", list)))
        rows = tuple(ProfileRow.from_json(r, row, f"rows[{i}].") for i, row in enumerate(r.get(obj, "rows", list)))
        labels = [m.label for m in models]
        for i, row in enumerate(rows):
            if row.model not in labels:
                raise r.refuse(f"rows[{i}].model", f"{row.model!r} (expected one of {', '.join(labels)})")
        peaks = tuple(PeakRecord.from_json(r, p, f"peaks[{i}].")  # absent from the first reports
                      for i, p in enumerate(r.get(obj, "peaks", list, optional=True) or []))
        return cls(r.get(obj, "created", str), r.number(obj, "duration_s"),
                   ProfileSettings.from_json(r, r.get(obj, "settings", dict), "settings."),
                   r.get(obj, "environment", dict), models, rows, peaks)

    def peak(self, threads: int) -> PeakRecord | None:
        return next((p for p in self.peaks if p.threads == threads), None)


def _of_peak(peak: PeakRecord | None, precision: str, variant: str, layer: str, batch_size: int,
             median_us: float) -> str:
    macs = LAYER_MACS.get(variant, {}).get(layer)
    share = peak.share(macs, batch_size, median_us, precision) if peak and macs else None
    return "" if share is None else f" ({share:.1%} of peak)"


def _rate(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f}"


def row_layers(rows: list[ProfileRow]) -> list[str]:
    """The layer rows of a table over several models: LAYERS, then the other names as they first come, the
    call overhead last."""
    found = [entry.layer for r in rows for entry in r.layers]
    others = [name for name in dict.fromkeys(found) if name not in LAYERS and name != OVERHEAD]
    return [name for name in LAYERS if name in found] + others + [OVERHEAD]


def format_markdown(report: ProfileReport) -> str:
    """Environment and method, then per (threads, batch size) a table of layers x models, then the nodes."""
    s, env = report.settings, report.environment
    load = env.get("load_average") or {}
    labels = [m.label for m in report.models]
    precision = {m.label: m.precision for m in report.models}
    variant = {m.label: m.variant for m in report.models}
    lines = [
        "# lenet-edge profile: where the time goes, per layer",
        "",
        f"- machine: {describe_environment(env)}",
        f"- ran: {describe_execution(env)}",
        f"- settings: {s.warmup} warm-up and at least {s.runs} timed calls per row in {s.rounds} interleaved rounds, "
        f"a turn lasting at least {s.min_turn_ms:g} ms; inputs: {s.inputs.source}; {report.created}, "
        f"{report.duration_s:.1f} s",
        f"- load average (1, 5, 15 min) at start {load.get('start')}, at end {load.get('end')}",
        "- models: " + "; ".join(f"{m.label} = {m.file} ({m.variant} {m.precision}, {m.bytes / 1024:.0f} KiB)"
                                 for m in report.models),
        f"- method: {s.profiler}. Per cell: the median us per call over the timed calls, and its share of the sum "
        f"of the column's medians. {OVERHEAD} = the call (time.perf_counter_ns, profiler on) minus the sum of its "
        "nodes. The profiler lengthens every node by a few us and the call by more: compare the call with the "
        "profiler off, timed in the same rounds. A layer's share of the CPU's peak credits its useful "
        "multiply-accumulates (contract.LAYER_MACS: zero taps of a rewrite are not counted) at its median time.",
    ]
    for t in s.threads:
        for b in s.batch_sizes:
            rows = [r for label in labels if (r := report.row(label, b, t)) is not None]
            if not rows:
                continue
            peak = report.peak(t)
            lines += ["", f"## batch {b}, {t} thread{'s' if t > 1 else ''}", "",
                      *([f"Peak of {t} core(s): fp32 {_rate(peak.fp32)} GFLOP/s, int8 {_rate(peak.int8)} GOP/s "
                         f"({peak.basis}); a layer's share of it in brackets.", ""] if peak else []),
                      "| layer | " + " | ".join(f"{r.model} us | {r.model} share" for r in rows) + " |",
                      "|---|" + "---:|---:|" * len(rows)]
            for name in row_layers(rows):
                cells = []
                for r in rows:
                    entry = r.layer(name)
                    cells += ["–", "–"] if entry is None else [f"{entry.median_us:,.1f}", f"{entry.share:.1%}"
                                                               + _of_peak(peak, precision[r.model], variant[r.model],
                                                                          name, b, entry.median_us)]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("| **call, profiler on** | " + " | ".join(f"**{r.call_median_us:,.1f}** | {r.runs} calls"
                                                                   for r in rows) + " |")
            lines.append("| of which onnxruntime's run | " + " | ".join(f"{r.run_median_us:,.1f} | " for r in rows)
                         + " |")
            lines.append("| call, profiler off | " + " | ".join(f"{r.unprofiled_median_us:,.1f} | " for r in rows)
                         + " |")
            lines += ["", "| model | node (as onnxruntime runs it) | operator | layer | median us | share |",
                      "|---|---|---|---|---:|---:|"]
            lines += [f"| {r.model} | `{n.name}` | {n.op} | {n.layer} | {n.median_us:,.1f} | {n.share:.1%} |"
                      for r in rows for n in r.nodes]
    return "\n".join(lines) + "\n"


def write_profile_outputs(report: ProfileReport, out_json: Path, out_md: Path, out_png: Path,
                          record: bool = True, replace: bool = False) -> tuple[Path | None, str]:
    """The JSON, the Markdown and (with matplotlib) the chart, each atomically and as a set; with `record`,
    into the directory's MANIFEST.sha256; existing files replaced only with `replace`. Returns the chart's
    path (None when it was skipped) and the Markdown."""
    from .profile_chart import plot_profile

    markdown = format_markdown(report)
    with uninterrupted():
        write_json(Path(out_json), report.to_json(), record, replace=replace)
        write_text(Path(out_md), markdown, record, replace=replace)
        drawn = plot_profile(report, Path(out_png), record, replace=replace)
    return (Path(out_png) if drawn else None), markdown
