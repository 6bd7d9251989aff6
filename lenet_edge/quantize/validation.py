"""Judge a candidate int8 model against its fp32 model on the official MNIST test set.

Both models run in onnxruntime through lenet_edge.runtime (what a device runs), on the same
preprocessed inputs; the accuracy gate compares in percentage points.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, ValidationError
from ..runtime.session import LoadedModel


@dataclass(frozen=True)
class Accuracy:
    """Both models on the same test images; what the int8 model's metadata records as its validation."""

    test_images: int
    fp32_accuracy: float
    int8_accuracy: float
    accuracy_drop_points: float  # (fp32 - int8) in percentage points, rounded to 4 decimals
    top1_agreement: float

    def to_record(self) -> dict:
        return asdict(self)


def measure(fp32: LoadedModel, int8: LoadedModel, inputs: np.ndarray, labels: np.ndarray) -> Accuracy:
    """Accuracy of both models, the drop in points and their top-1 agreement on `inputs` (N, 1, 32, 32)."""
    if fp32.contract.preprocessing != int8.contract.preprocessing:
        raise ValidationError(f"{int8.path}: preprocessing {int8.contract.preprocessing} differs from the fp32 "
                              f"model's {fp32.contract.preprocessing} (expected the contract carried over)")
    fp32_top1 = fp32.predict(inputs).argmax(1)  # (N,)
    int8_top1 = int8.predict(inputs).argmax(1)  # (N,)
    fp32_acc, int8_acc = float((fp32_top1 == labels).mean()), float((int8_top1 == labels).mean())
    return Accuracy(len(labels), fp32_acc, int8_acc, round((fp32_acc - int8_acc) * 100, 4),
                    float((fp32_top1 == int8_top1).mean()))


def check_max_drop(max_accuracy_drop: float) -> float:
    if not isinstance(max_accuracy_drop, (int, float)) or not math.isfinite(max_accuracy_drop) or max_accuracy_drop < 0:
        raise DataError(f"maximum accuracy drop {max_accuracy_drop!r} (expected a finite number of points >= 0)")
    return float(max_accuracy_drop)


def accuracy_gate(measured: Accuracy, max_accuracy_drop: float, source: str, report: Path | None = None) -> None:
    """Refuse an int8 model that loses more than `max_accuracy_drop` points of test accuracy."""
    drop = measured.accuracy_drop_points
    if drop > max_accuracy_drop:
        raise ValidationError(
            f"{source}: int8 accuracy {measured.int8_accuracy:.2%} is {drop:.2f} points below fp32 "
            f"{measured.fp32_accuracy:.2%} on {measured.test_images} test images (expected a drop of at "
            f"most {max_accuracy_drop:g} points, --max-accuracy-drop); no model written"
            + (f"; per-layer errors in {report}" if report is not None else ""))
