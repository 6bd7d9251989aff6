"""The quantization stage: fp32 model.onnx -> validated int8 model.onnx (+ optional per-layer report).

A plain `quantize` is the search (search.py) over one recipe, the user's settings, untimed.
Order of work: check the inputs (outputs writable, contract, calibration images) before any
quantizing; build the candidate; check its structure, its accuracy on the test set against
the fp32 model, its agreement with the ONNX reference implementation and the final file;
write the per-layer report (also when the accuracy gate then refuses the model, since that
is when it is needed); write the model only when everything passed.
"""

from __future__ import annotations

from pathlib import Path

from .search import Progress, run
from .settings import DEFAULT_MAX_ACCURACY_DROP, QuantSettings


def quantize_model(model: Path, out: Path, *, data_dir: Path, settings: QuantSettings | None = None,
                   max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP, report: Path | None = None,
                   force: bool = False, calibration_images: Path | None = None,
                   progress: Progress | None = None) -> dict:
    """Quantize `model` to int8 at `out`, validated; returns the validation report.

    `data_dir` holds MNIST (the command line resolves --data-dir, $LENET_EDGE_DATA or the download
    cache into it); calibration uses its training split, or `calibration_images` (any input file
    `run` reads) if given. `report` receives the per-layer error report (JSON). Raises
    ValidationError, and writes no model, when the int8 model loses more than `max_accuracy_drop`
    points of test accuracy.

    Returns {"model", "fp32_model", "settings" (the record in the int8 model's metadata),
    "validation": {"test_images", "fp32_accuracy", "int8_accuracy", "accuracy_drop_points",
    "top1_agreement", "fp32_bytes", "int8_bytes", "size_ratio", "times_smaller"}, "max_accuracy_drop",
    "structure": {"expected_int8", "int8", "float", "optimized_op_counts"}, "reference":
    {"images", "top1_agreement", "max_abs_logit_diff"}} and with a report "layers",
    "layer_table" and "report".
    """
    return run(model, out, settings or QuantSettings(), None, data_dir=data_dir, max_accuracy_drop=max_accuracy_drop,
               report=report, force=force, calibration_images=calibration_images, progress=progress)
