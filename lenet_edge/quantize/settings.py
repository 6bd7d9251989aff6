"""Quantization settings (one frozen object per candidate) and the choice of int8 types.

The activation/weight types follow the guidance in onnxruntime's `quantize_static`
docstring ("Choosing parameters for CPU inference"): on x86-64 uint8 activations with
int8 weights, full range on CPUs with VNNI and 7-bit weights (reduce_range) without it;
on ARM int8 for both. The target CPU is the host (runtime.environment.cpu_info) unless the
user names another one. No onnx import, so settings can be built and compared cheaply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..errors import DataError
from ..runtime.environment import cpu_info

MODES = ("static", "dynamic")
FORMATS = ("qdq", "qoperator")
METHODS = ("minmax", "entropy", "percentile")
TYPES = ("uint8", "int8")
TARGETS = ("host", "x86-vnni", "x86", "arm")
DEFAULT_CALIBRATION_COUNT = 1000
DEFAULT_MAX_ACCURACY_DROP = 0.2  # percentage points of test accuracy: 20 of the 10,000 test images
AUTO_MAX_ACCURACY_DROP = 0.1  # --auto ships a model chosen for speed; it is held to the tighter budget

GUIDANCE = "onnxruntime's CPU guidance for quantize_static"


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

    def to_record(self) -> dict:
        """The settings as they go into the int8 model's metadata (JSON types only)."""
        record = asdict(self)
        record["exclude_nodes"] = list(self.exclude_nodes)
        record["exclude_op_types"] = list(self.exclude_op_types)
        if not self.is_static:  # these have no meaning without calibration
            for key in ("format", "method", "calibration_count", "calibration_seed"):
                record.pop(key)
        return record


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
