"""The preprocessing contract that travels inside every ONNX model's metadata_props.

Export writes it, quantize carries it over (adding its quantization record), and the runtime reads
it back, so a device needs nothing but the .onnx file to prepare inputs correctly.
Pure Python: imported on the device side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .data import CLASS_LABELS, Preprocessing
from .errors import ModelError

INPUT_NAME = "image"  # (N, 1, 32, 32) float32, preprocessed
OUTPUT_NAME = "logits"  # (N, 10) float32
PREFIX = "lenet_edge."
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelContract:
    variant: str
    preprocessing: Preprocessing
    class_labels: tuple[str, ...] = CLASS_LABELS
    checkpoint_sha256: str = ""
    versions: dict = field(default_factory=dict)
    test_accuracy: float | None = None  # measured on the official MNIST test set
    quantization: dict | None = None  # an int8 model's record, as quantize.settings.QuantizationRecord.to_json

    def to_metadata(self) -> dict[str, str]:
        """Flat string key/values, as ONNX metadata_props hold them."""
        props = {
            "format_version": str(FORMAT_VERSION),
            "variant": self.variant,
            "preprocessing": json.dumps(self.preprocessing.to_dict(), sort_keys=True),
            "class_labels": json.dumps(list(self.class_labels)),
            "checkpoint_sha256": self.checkpoint_sha256,
            "versions": json.dumps(self.versions, sort_keys=True),
        }
        if self.test_accuracy is not None:
            props["test_accuracy"] = repr(float(self.test_accuracy))
        if self.quantization is not None:
            props["quantization"] = json.dumps(self.quantization, sort_keys=True)
        return {PREFIX + k: v for k, v in props.items()}

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = "model") -> ModelContract:
        """Read the contract back; a model without one is refused with a clear message."""
        p = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if "preprocessing" not in p or "variant" not in p:
            raise ModelError(f"{source}: no lenet-edge preprocessing contract in its metadata (expected keys "
                             f"{PREFIX}variant and {PREFIX}preprocessing; export it with lenet-edge export)")
        try:
            labels = tuple(json.loads(p.get("class_labels", json.dumps(CLASS_LABELS))))
            return cls(
                variant=p["variant"],
                preprocessing=Preprocessing.from_dict(json.loads(p["preprocessing"])),
                class_labels=labels,
                checkpoint_sha256=p.get("checkpoint_sha256", ""),
                versions=json.loads(p.get("versions", "{}")),
                test_accuracy=float(p["test_accuracy"]) if "test_accuracy" in p else None,
                quantization=json.loads(p["quantization"]) if "quantization" in p else None,
            )
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{source}: malformed lenet-edge metadata ({exc})") from exc
