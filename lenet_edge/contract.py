"""The preprocessing contract that travels inside every ONNX model's metadata_props.

Export writes it, quantize carries it over (adding its quantization record), and the runtime reads
it back, so a device needs nothing but the .onnx file to prepare inputs correctly.
Pure Python: imported on the device side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import DataError, ModelError
from .mnist import CLASS_LABELS, Preprocessing
from .text import has_non_printing

INPUT_NAME = "image"  # (N, 1, 32, 32) float32, preprocessed
OUTPUT_NAME = "logits"  # (N, 10) float32
PREFIX = "lenet_edge."
FORMAT_VERSION = 1
# The layers of every LeNet-5 variant, as its modules are named (train/models.py); the exporter keeps the
# names in each node's scopes, which is how a profile maps onnxruntime's nodes back to them.
LAYERS = ("C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT")
# Each layer's useful multiply-accumulates for one image (weights x output positions; pooling, activations and
# bias adds left out), the work a share of the CPU's peak is credited with. The kernel-friendly int8 rewrites
# execute zero taps on top of these; they are not credited. lenet5's C3 is the paper's sparse table (60 of
# the 96 map pairs: 1,500 weights x 100 positions) and its OUTPUT the RBF's 840 squared differences.
_DENSE_MACS = {"C1": 6 * 28 * 28 * 25, "C3": 16 * 10 * 10 * 6 * 25, "C5": 120 * 16 * 25, "F6": 84 * 120,
               "OUTPUT": 10 * 84}
LAYER_MACS = {"lenet5-modern": _DENSE_MACS, "lenet5-tanh": _DENSE_MACS, "lenet5": {**_DENSE_MACS, "C3": 1_500 * 100}}


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
        """Read the contract back and check it once, here: a model's metadata is untrusted input
        (a forged or damaged file must be refused as a model error, not trusted or crash later)."""
        p = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if "preprocessing" not in p or "variant" not in p:
            raise ModelError(f"{source}: no lenet-edge preprocessing contract in its metadata (expected keys "
                             f"{PREFIX}variant and {PREFIX}preprocessing; export it with lenet-edge export)")
        try:
            labels = json.loads(p.get("class_labels", json.dumps(CLASS_LABELS)))
            preprocessing = Preprocessing.from_dict(json.loads(p["preprocessing"]))
            versions = json.loads(p.get("versions", "{}"))
            quantization = json.loads(p["quantization"]) if "quantization" in p else None
            test_accuracy = float(p["test_accuracy"]) if "test_accuracy" in p else None
        except DataError as exc:
            raise ModelError(f"{source}: {exc} in its lenet-edge metadata") from exc
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{source}: malformed lenet-edge metadata ({exc})") from exc
        except RecursionError:
            raise ModelError(f"{source}: lenet-edge metadata nested too deeply to read (expected JSON records)") \
                from None
        _check_labels(labels, source)
        if not isinstance(p["variant"], str) or not _printable(p["variant"]):
            raise ModelError(f"{source}: variant {p['variant'][:MAX_LABEL_CHARS]!r} in its metadata (expected 1 to "
                             f"{MAX_LABEL_CHARS} printable characters)")
        if not isinstance(versions, dict) or not (quantization is None or isinstance(quantization, dict)):
            raise ModelError(f"{source}: lenet-edge metadata versions or quantization that are not JSON objects "
                             f"(expected records as lenet-edge writes them)")
        if test_accuracy is not None and not 0 <= test_accuracy <= 1:  # NaN fails too
            raise ModelError(f"{source}: test accuracy {test_accuracy} in its metadata (expected 0 to 1)")
        return cls(variant=p["variant"], preprocessing=preprocessing, class_labels=tuple(labels),
                   checkpoint_sha256=p.get("checkpoint_sha256", ""), versions=versions,
                   test_accuracy=test_accuracy, quantization=quantization)


MAX_LABEL_CHARS = 32


def _check_labels(labels, source: str) -> None:
    """Class labels are printed to terminals and files: printable text only. A control character
    (ESC, BEL, a bidirectional override) could set a terminal's title, clear it or recolour output."""
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise ModelError(f"{source}: class labels {str(labels)[:80]} (expected a non-empty JSON list of strings)")
    for label in labels:
        if not _printable(label):
            raise ModelError(f"{source}: class label {label[:MAX_LABEL_CHARS]!r} (expected 1 to {MAX_LABEL_CHARS} "
                             f"printable characters, no control characters)")
    if len(set(labels)) != len(labels):
        raise ModelError(f"{source}: class labels {labels} repeat (expected distinct labels)")


def _printable(text: str) -> bool:
    """1 to MAX_LABEL_CHARS characters, none of them a control, format, private or unassigned one."""
    return 0 < len(text) <= MAX_LABEL_CHARS and bool(text.strip()) and not has_non_printing(text)
