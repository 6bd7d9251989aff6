"""One way to compare two models' logits and refuse a difference: export's parity with PyTorch,
onnx.reference against onnxruntime, the .ort file, the kernel-friendly rewrite, generated C.

numpy only: the device side (runtime, the ARM64 job, the microcontroller checks) uses it too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import ValidationError


@dataclass(frozen=True)
class LogitComparison:
    """How far `found` (N, 10) is from `expected` (N, 10)."""

    images: int
    max_abs_diff: float
    argmax_mismatches: int
    bit_mismatches: int  # rows whose float32 bit patterns differ anywhere (0: bit-identical)
    tolerance: float

    def to_record(self) -> dict:
        return asdict(self)


def compare_logits(expected: np.ndarray, found: np.ndarray, tolerance: float = 0.0) -> LogitComparison:
    """Measure the difference of two (N, 10) logit arrays; nothing is judged here."""
    expected, found = np.asarray(expected, np.float32), np.asarray(found, np.float32)
    if expected.shape != found.shape:
        raise ValidationError(f"logits of shape {found.shape} cannot be compared with {expected.shape}")
    n = len(expected)
    diff = np.abs(expected.astype(np.float64) - found.astype(np.float64))
    return LogitComparison(
        images=n,
        max_abs_diff=float(diff.max()) if n else 0.0,  # NaN propagates, and NaN is never within a tolerance
        argmax_mismatches=int((expected.argmax(1) != found.argmax(1)).sum()) if n else 0,
        bit_mismatches=int((expected.view(np.uint32) != found.view(np.uint32)).any(axis=1).sum()) if n else 0,
        tolerance=tolerance,
    )


def require_close(expected: np.ndarray, found: np.ndarray, tolerance: float, what: str) -> LogitComparison:
    """`found` within `tolerance` of `expected` everywhere, finite, with the same argmax on every row; else
    ValidationError naming `what` ("model.onnx: onnxruntime vs PyTorch at batch size 7") and the figures."""
    result = compare_logits(expected, found, tolerance)
    finite = bool(np.isfinite(np.asarray(found, np.float32)).all())
    if not finite or not result.max_abs_diff <= tolerance or result.argmax_mismatches:
        raise ValidationError(
            f"{what}: max abs logit difference {result.max_abs_diff:.3g} (tolerance {tolerance:g})"
            f"{'' if finite else ', non-finite logits'}, argmax differs on {result.argmax_mismatches} "
            f"of {result.images} images")
    return result


def require_bit_identical(expected: np.ndarray, found: np.ndarray, what: str) -> LogitComparison:
    """Every float32 logit of `found` bit for bit that of `expected`; else ValidationError with the counts."""
    result = compare_logits(expected, found)
    if result.bit_mismatches:
        raise ValidationError(
            f"{what}: logits differ bit-wise on {result.bit_mismatches} of {result.images} images "
            f"(max abs difference {result.max_abs_diff:.3g}, argmax differs on {result.argmax_mismatches})")
    return result
