"""What decides an int8 model and what its record says: settings, recipes, the quantization record.

Settings are one frozen object per candidate; the activation/weight types follow onnxruntime's
`quantize_static` guidance for the target CPU (the host's unless the user names one). A recipe is
settings plus three choices the builder (stage.py) follows: the fp32 graph or its kernel-friendly
rewrite, the op types to quantize, float logits or not; `candidate_recipes` is `--auto`'s preference
order. The quantization record is one QuantizationRecord from where the stage makes it to the
metadata key lenet_edge.quantization and quantize.json's `quantization` (docs/quantize.md).
No onnx import: all of this is built and compared cheaply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..bench.environment import cpu_info
from ..errors import DataError, ModelError

MODES = ("static", "dynamic")
FORMATS = ("qdq", "qoperator")
METHODS = ("minmax", "entropy", "percentile")
TYPES = ("uint8", "int8")
TARGETS = ("host", "x86-vnni", "x86", "arm")
DEFAULT_CALIBRATION_COUNT = 1000
DEFAULT_MAX_ACCURACY_DROP = 0.2  # percentage points of test accuracy: 20 of the 10,000 test images
AUTO_MAX_ACCURACY_DROP = 0.1  # --auto ships a model chosen for speed; it is held to the tighter budget

GUIDANCE = "onnxruntime's CPU guidance for quantize_static"
STATIC_ONLY = ("format", "method", "calibration_count", "calibration_seed")  # no meaning without calibration
STANDARD = "standard"
# The kernel-friendly recipes quantize these only: onnxruntime's QDQ propagation still runs the
# Reshape/Transpose/Flatten in between on uint8, and the file holds no Q/DQ pairs for them.
KERNEL_FRIENDLY_OP_TYPES = ("Conv", "Gemm", "Relu", "Sigmoid", "MaxPool")


@dataclass(frozen=True)
class QuantSettings:
    """Everything that decides what int8 model comes out; a candidate of a search is one of these.

    `activation_type`, `weight_type` and `reduce_range` left as None follow the target CPU;
    `resolve()` fills them in and says why in `type_reason`.
    """

    mode: str = "static"  # static: calibrated activation ranges; dynamic: ranges computed per batch at run time
    format: str = "qdq"  # static only: QuantizeLinear/DequantizeLinear pairs, or QLinear* operators
    per_channel: bool = True  # one weight scale per output channel
    method: str = "minmax"  # static only: how calibration turns activations into ranges
    calibration_count: int = DEFAULT_CALIBRATION_COUNT  # training images used for calibration
    calibration_seed: int = 0  # which training images: a seeded random subset
    target: str = "host"
    activation_type: str | None = None
    weight_type: str | None = None
    reduce_range: bool | None = None
    exclude_nodes: tuple[str, ...] = ()  # node names kept in float
    exclude_op_types: tuple[str, ...] = ()  # op types kept in float (all nodes of the type)
    type_reason: str = ""

    def __post_init__(self) -> None:
        for name, value, allowed in (("mode", self.mode, MODES), ("format", self.format, FORMATS),
                                     ("method", self.method, METHODS), ("target", self.target, TARGETS)):
            if value not in allowed:
                raise DataError(f"quantization settings: {name} {value!r} (expected one of {', '.join(allowed)})")
        for name, value in (("activation_type", self.activation_type), ("weight_type", self.weight_type)):
            if value is not None and value not in TYPES:
                raise DataError(f"quantization settings: {name} {value!r} (expected one of {', '.join(TYPES)})")
        if self.activation_type == "int8" and self.weight_type == "uint8":
            raise DataError("quantization settings: int8 activations with uint8 weights "
                            "(onnxruntime supports uint8/int8, uint8/uint8 and int8/int8)")
        if self.mode == "dynamic" and self.activation_type == "int8":
            raise DataError("quantization settings: dynamic quantization always uses uint8 activations "
                            "(onnxruntime's DynamicQuantizeLinear), found int8")
        if not isinstance(self.calibration_count, int) or self.calibration_count < 1:
            raise DataError(f"calibration count {self.calibration_count!r}: no images to calibrate on "
                            f"(expected at least 1 training image)")
        # tuples, so that settings stay hashable and a list passed by a caller cannot change later
        object.__setattr__(self, "exclude_nodes", tuple(self.exclude_nodes))
        object.__setattr__(self, "exclude_op_types", tuple(self.exclude_op_types))

    @property
    def is_static(self) -> bool:
        return self.mode == "static"

    def resolve(self, cpu: dict | None = None) -> QuantSettings:
        """A copy with the target, types and reduce_range decided, and the reason recorded; `cpu` is
        what runtime.environment.cpu_info() says of the host (read when None and needed)."""
        if self.type_reason:  # already resolved
            return self
        target = self.target if self.target != "host" else cpu_target(cpu or cpu_info())
        act, weight, reduce_range, reason = recommended_types(target)
        if self.target == "host":
            reason = f"host CPU: {reason}"
        if self.mode == "dynamic":
            act = "uint8"
        chosen = (self.activation_type or act, self.weight_type or weight,
                  reduce_range if self.reduce_range is None else self.reduce_range)
        user_set = [name for name, value in (("activation type", self.activation_type),
                                             ("weight type", self.weight_type),
                                             ("reduce_range", self.reduce_range)) if value is not None]
        if user_set:
            reason += f"; {', '.join(user_set)} set by the user"
        if self.mode == "dynamic":
            reason += "; dynamic quantization always has uint8 activations"
        return replace(self, target=target, activation_type=chosen[0], weight_type=chosen[1],
                       reduce_range=chosen[2], type_reason=reason)

    def to_json(self) -> dict:
        """The settings as they go into the int8 model's metadata (JSON types only)."""
        record = asdict(self)
        record["exclude_nodes"] = list(self.exclude_nodes)
        record["exclude_op_types"] = list(self.exclude_op_types)
        if not self.is_static:  # these have no meaning without calibration
            for key in STATIC_ONLY:
                record.pop(key)
        return record

    @classmethod
    def from_json(cls, record: dict) -> QuantSettings:
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})


def cpu_target(cpu: dict) -> str:
    """The target of a CPU described as runtime.environment.cpu_info() describes it."""
    if cpu["architecture"].lower().startswith(("arm", "aarch64")):
        return "arm"
    return "x86-vnni" if {"avx512_vnni", "avx_vnni"} & set(cpu["flags"]) else "x86"


def recommended_types(target: str) -> tuple[str, str, bool, str]:
    """(activation type, weight type, reduce_range, reason) for a target CPU."""
    if target == "arm":
        return "int8", "int8", False, f"ARM, so int8 activations and weights by {GUIDANCE}"
    if target == "x86-vnni":
        return "uint8", "int8", False, (f"x86-64 with VNNI, so uint8 activations and int8 weights at full range "
                                        f"by {GUIDANCE}")
    if target == "x86":
        return "uint8", "int8", True, (f"x86-64 without VNNI, so uint8 activations and int8 weights reduced to "
                                       f"7 bits against saturation by {GUIDANCE}")
    raise DataError(f"unknown target CPU {target!r} (expected one of {', '.join(TARGETS[1:])})")


@dataclass(frozen=True)
class QuantRecipe:
    name: str
    settings: QuantSettings
    kernel_friendly: bool = False  # quantize the kernel-friendly rewrite of the fp32 graph, not the graph itself
    what: str = ""  # what this candidate tests, one line
    op_types: tuple[str, ...] | None = None  # op types to quantize; None: every type onnxruntime quantizes
    float_logits: bool = False  # rewrite.lean_file on the int8 graph: float logits, no shape annotations


def candidate_recipes(base: QuantSettings, first_conv: str | None) -> list[QuantRecipe]:
    """`--auto`'s candidates, built on `base` (the user's target and calibration); `first_conv` is C1's
    node name in the pre-processed fp32 graph (None: no such candidate). In preference order, since a tie
    on speed goes to the earlier: standard needs no rewrite; QDQ per-tensor before per-channel, QDQ before
    QOperator, whose com.microsoft operators only onnxruntime runs natively."""
    per_tensor = replace(base, per_channel=False)
    recipes = [QuantRecipe(STANDARD, base, what="the stage's default: QDQ, per-channel weights, MinMax")]
    if first_conv is not None:
        recipes.append(QuantRecipe("standard+c1-float", replace(base, exclude_nodes=(first_conv,)),
                                   what="C1 (one input channel, a slow int8 conv) kept in float"))
    friendly = {"kernel_friendly": True, "op_types": KERNEL_FRIENDLY_OP_TYPES, "float_logits": True}
    return recipes + [
        QuantRecipe("kernel-friendly", per_tensor, **friendly,
                    what="exact rewrite (C1+pool as a 4->64-channel conv, C3 over column pairs, C5 as Gemm), "
                         "QDQ per-tensor weights, float logits"),
        QuantRecipe("kernel-friendly+per-channel", base, **friendly, what="the rewrite with per-channel weights"),
        QuantRecipe("kernel-friendly+qoperator", replace(per_tensor, format="qoperator"), **friendly,
                    what="the rewrite in QOperator format"),
    ]


@dataclass(frozen=True)
class Accuracy:
    """Both models on the same test images (the official MNIST test set)."""

    test_images: int
    fp32_accuracy: float
    int8_accuracy: float
    accuracy_drop_points: float  # (fp32 - int8) in percentage points, rounded to 4 decimals
    top1_agreement: float


@dataclass(frozen=True)
class ChosenRecipe:
    """Which of `--auto`'s candidates the model is, how it was built, and by what rule it was chosen
    (compact: the metadata counts in the file's size)."""

    name: str
    graph_rewrite: tuple[str, ...]  # ids of the kernel-friendly rewrites applied to the fp32 graph
    op_types_to_quantize: tuple[str, ...] | None  # None: every type onnxruntime quantizes
    float_logits: bool
    chosen_from: tuple[str, ...]
    rule: str

    def to_json(self) -> dict:
        return {"name": self.name, "graph_rewrite": list(self.graph_rewrite),
                "op_types_to_quantize": list(self.op_types_to_quantize) if self.op_types_to_quantize else "all",
                "float_logits": self.float_logits, "chosen_from": list(self.chosen_from), "rule": self.rule}

    @classmethod
    def from_json(cls, record: dict) -> ChosenRecipe:
        op_types = record["op_types_to_quantize"]
        return cls(record["name"], tuple(record["graph_rewrite"]), None if op_types == "all" else tuple(op_types),
                   record["float_logits"], tuple(record["chosen_from"]), record["rule"])


@dataclass(frozen=True)
class QuantizationRecord:
    """How an int8 model was made and how it did against its fp32 model: the metadata's
    lenet_edge.quantization, written once into the model the stage ships."""

    settings: QuantSettings  # resolved: types decided, calibration_count what calibration held
    excluded_nodes: tuple[str, ...]  # node names kept in float, op-type exclusions expanded
    onnxruntime: str  # the version that quantized it
    calibration_source: str | None  # static only: where the calibration images came from
    validation: Accuracy
    recipe: ChosenRecipe | None = None  # `--auto` only

    def to_json(self) -> dict:
        """JSON types only, settings at the top level (as a device reads `mode`)."""
        record = {**self.settings.to_json(), "excluded_nodes": list(self.excluded_nodes),
                  "onnxruntime": self.onnxruntime}
        if self.settings.is_static:
            record["calibration_source"] = self.calibration_source
        if self.recipe is not None:
            record["recipe"] = self.recipe.to_json()
        return {**record, "validation": asdict(self.validation)}

    @classmethod
    def from_json(cls, record: dict) -> QuantizationRecord:
        """The record of a model's metadata (as ModelContract.quantization holds it) as this type."""
        try:
            return cls(QuantSettings.from_json(record), tuple(record["excluded_nodes"]), record["onnxruntime"],
                       record.get("calibration_source"), Accuracy(**record["validation"]),
                       ChosenRecipe.from_json(record["recipe"]) if "recipe" in record else None)
        except (KeyError, TypeError) as exc:
            raise ModelError(f"quantization record {sorted(record)} (expected the keys QuantizationRecord.to_json "
                            f"writes; {type(exc).__name__}: {exc})") from exc
