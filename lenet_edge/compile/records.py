"""The compile stage's record as types: what check.py measures, what NAME.footprint.json holds, and what the
Markdown, the pipeline's report and benchmarks/mcu.py show. One name for each figure from where it is made to
where it is shown; the figures are measured once (check.py) and read, never recomputed, by those that show them.

NAME.footprint.json is CompileRecord.to_json(), its keys those the stage has always written (an artefact);
`from_json` reads one back, from another machine or an older release, every field checked (json_fields).

Standard library only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..json_fields import FieldReader, json_lists
from ..parity import LogitComparison

CALLS = "calls"  # the entry function's own instructions: the calls from one layer to the next
WHAT = "a compile footprint record (NAME.footprint.json)"


@dataclass(frozen=True)
class BuildCheck:
    """One build (the host's or an emulated core's) against onnxruntime on the same images."""

    target: str  # "host" or a toolchain.TARGETS name
    where: str  # "native x86_64", "emulated (unicorn)"
    images: int
    max_abs_diff: float
    argmax_mismatches: int
    bit_mismatches: int  # images whose logits differ anywhere in their float32 bits
    tolerance: float  # inf where only the argmax is promised (float kernels)

    @classmethod
    def of(cls, target: str, where: str, comparison: LogitComparison) -> BuildCheck:
        return cls(target, where, **asdict(comparison))

    @property
    def bit_identical(self) -> int:
        return self.images - self.bit_mismatches

    @property
    def same_argmax(self) -> int:
        return self.images - self.argmax_mismatches

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> BuildCheck:
        return cls(r.get(obj, "target", str, where), r.get(obj, "where", str, where), r.get(obj, "images", int, where),
                   r.number(obj, "max_abs_diff", where), r.get(obj, "argmax_mismatches", int, where),
                   r.get(obj, "bit_mismatches", int, where), _tolerance(r, obj, where))


@dataclass(frozen=True)
class InstructionCounts:
    """Instructions per inference counted by the emulator, over `images` test images."""

    images: int
    min: int
    max: int
    mean: int  # rounded

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> InstructionCounts:
        return cls(*(r.get(obj, key, int, where) for key in ("images", "min", "max", "mean")))


@dataclass(frozen=True)
class CoreFootprint:
    """One emulated core's build: sizes read from its ELF, the stack measured, the instructions counted."""

    target: str
    description: str
    where: str
    optimisation: str
    flash_bytes: int  # code + constants + .data's initial values
    code_bytes: int
    constant_bytes: int
    ram_bytes: int  # arena + .data + the stack's high-water mark
    arena_bytes: int  # .bss
    data_bytes: int
    stack_bytes: int
    instructions_per_inference: InstructionCounts
    instructions_per_layer: dict[str, int]  # each layer's function, then CALLS: adding up to the mean

    @property
    def static_ram_bytes(self) -> int:
        """RAM reserved before the first call: the arena and .data."""
        return self.arena_bytes + self.data_bytes

    def layer_share(self, function: str) -> float:
        """The share of the mean instructions per inference spent in `function` (or CALLS)."""
        return self.instructions_per_layer[function] / self.instructions_per_inference.mean

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> CoreFootprint:
        texts = [r.get(obj, key, str, where) for key in ("target", "description", "where", "optimisation")]
        sizes = [r.get(obj, key, int, where) for key in ("flash_bytes", "code_bytes", "constant_bytes", "ram_bytes",
                                                           "arena_bytes", "data_bytes", "stack_bytes")]
        counts = InstructionCounts.from_json(r, r.get(obj, "instructions_per_inference", dict, where),
                                             where + "instructions_per_inference.")
        per_layer = r.get(obj, "instructions_per_layer", dict, where)
        layers = {label: r.get(per_layer, label, int, where + "instructions_per_layer.") for label in per_layer}
        if sum(layers.values()) != counts.mean:
            raise r.refuse(where + "instructions_per_layer", f"adds up to {sum(layers.values()):,} "
                                                              f"(expected the mean per inference, {counts.mean:,})")
        return cls(*texts, *sizes, counts, layers)


@dataclass(frozen=True)
class CompiledLayer:
    """One generated function and the model's layers it computes."""

    function: str  # layer1
    layer: str  # C1+S2
    description: str
    multiply_accumulates: int

    @classmethod
    def from_json(cls, r: FieldReader, obj: dict, where: str) -> CompiledLayer:
        return cls(*(r.get(obj, key, str, where) for key in ("function", "layer", "description")),
                   r.get(obj, "multiply_accumulates", int, where))


@dataclass(frozen=True)
class CompileRecord:
    """The compiled model, every check of its builds and each core's footprint: NAME.footprint.json."""

    model: str  # the int8 model's path, as given
    model_sha256: str
    name: str  # the C prefix and file names
    variant: str
    bit_exact_required: bool  # every kernel reproduces onnxruntime's arithmetic exactly
    arena_bytes: int
    constant_bytes: int
    multiply_accumulates: int  # per inference, zero taps skipped not counted
    entry_function: str
    layers: tuple[CompiledLayer, ...]
    checks: tuple[BuildCheck, ...]  # the host first, then each core
    footprint: tuple[CoreFootprint, ...]  # one per emulated core

    def at(self, model: str) -> CompileRecord:
        """The same record naming the model where it now is (the pipeline's copy, not a scratch file)."""
        return replace(self, model=model)

    def to_json(self) -> dict:
        return json_lists(asdict(self))

    @classmethod
    def from_json(cls, obj: object, source: str) -> CompileRecord:
        """A footprint JSON read back, every field checked: DataError naming `source` and the field."""
        r = FieldReader(source, WHAT)
        if not isinstance(obj, dict):
            raise r.refuse("", f"holds {type(obj).__name__} (expected an object, {WHAT})")
        texts = [r.get(obj, key, str) for key in ("model", "model_sha256", "name", "variant")]
        exact = r.get(obj, "bit_exact_required", bool)
        sizes = [r.get(obj, key, int) for key in ("arena_bytes", "constant_bytes", "multiply_accumulates")]
        layers = tuple(CompiledLayer.from_json(r, v, f"layers[{i}].") for i, v in enumerate(r.get(obj, "layers", list)))
        checks = tuple(BuildCheck.from_json(r, v, f"checks[{i}].") for i, v in enumerate(r.get(obj, "checks", list)))
        footprint = tuple(CoreFootprint.from_json(r, v, f"footprint[{i}].")
                          for i, v in enumerate(r.get(obj, "footprint", list)))
        functions = [layer.function for layer in layers] + [CALLS]
        for i, core in enumerate(footprint):
            if list(core.instructions_per_layer) != functions:
                raise r.refuse(f"footprint[{i}].instructions_per_layer", f"counts {list(core.instructions_per_layer)} "
                                                                         f"(expected {functions}, the layers' own)")
        return cls(*texts, exact, *sizes, r.get(obj, "entry_function", str), layers, checks, footprint)


@dataclass(frozen=True)
class BuildCandidate:
    """One int8 model's build as the pipeline compares it, per emulated core."""

    instructions_per_inference: dict[str, int]  # target -> the mean
    ram_bytes: dict[str, int]
    flash_bytes: dict[str, int]

    @classmethod
    def of(cls, record: CompileRecord) -> BuildCandidate:
        cores = record.footprint
        return cls({f.target: f.instructions_per_inference.mean for f in cores},
                   {f.target: f.ram_bytes for f in cores}, {f.target: f.flash_bytes for f in cores})

    @property
    def most_ram_bytes(self) -> int:
        return max(self.ram_bytes.values())


@dataclass(frozen=True)
class BuildChoice:
    """Which build the pipeline ships, by what rule, and what it was compared with (the shipped model first)."""

    chosen: str
    why: str
    rule: str
    candidates: dict[str, BuildCandidate]

    @property
    def shipped(self) -> str:
        return next(iter(self.candidates))


@dataclass(frozen=True)
class PipelineBuild:
    """The pipeline's microcontroller stage: the chosen build's record and the choice, or why nothing was
    built (no toolchain on this machine)."""

    record: CompileRecord | None = None
    choice: BuildChoice | None = None
    skipped: str | None = None

    def __post_init__(self) -> None:
        built = self.record is not None and self.choice is not None
        if built == (self.skipped is not None) or (self.record is None) != (self.choice is None):
            raise ValueError("a pipeline build holds a record and its choice, or the reason it was skipped")


def _tolerance(r: FieldReader, obj: dict, where: str) -> float:
    """A check's tolerance: a finite number, or inf (JSON Infinity) where only the argmax is promised."""
    value = obj.get("tolerance") if isinstance(obj, dict) else None
    return float("inf") if value == float("inf") else r.number(obj, "tolerance", where)
