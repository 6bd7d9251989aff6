"""The quantization stage: fp32 model.onnx -> validated int8 model.onnx (+ optional per-layer report).

Order of work: check the inputs (outputs writable, contract, calibration images) before any
quantizing; build the candidate; check its structure, its accuracy on the test set against
the fp32 model and its agreement with the ONNX reference implementation; write the per-layer
report (also when the accuracy gate then refuses the model, since that is when it is
needed); write the model only when everything passed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..contract import PREFIX, ModelContract
from ..data import Preprocessing, load_mnist
from ..datasource import resolve_data_dir
from ..errors import DataError, ModelError
from ..fileio import check_writable, write_bytes, write_json
from ..runtime.session import LoadedModel, load_model
from .build import Candidate, build_candidate, preprocess, quantized_metadata, read_metadata, set_metadata
from .calibration import CALIBRATION_SPLIT, model_inputs, read_image_file, training_images
from .layer_report import format_table, layer_errors
from .reference import SAMPLE, compare_with_reference
from .settings import DEFAULT_MAX_ACCURACY_DROP, QuantSettings
from .structure import check_metadata, check_structure
from .validation import accuracy_gate, check_max_drop, file_sizes, measure


def quantize_model(model: Path, out: Path, *, data_dir: Path | None = None, settings: QuantSettings | None = None,
                   max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP, report: Path | None = None,
                   force: bool = False, calibration_images: Path | None = None,
                   on_step: Callable[[str], None] | None = None) -> dict:
    """Quantize `model` to int8 at `out`, validated; returns the validation report.

    `data_dir` holds MNIST (None: $LENET_EDGE_DATA or the download cache); calibration uses
    its training split, or `calibration_images` (.npy of raw 28x28 digits) if given. `report`
    receives the per-layer error report (JSON). Raises ValidationError, and writes no model,
    when the int8 model loses more than `max_accuracy_drop` points of test accuracy.

    Returns {"model", "fp32_model", "settings" (the record in the int8 model's metadata),
    "validation": {"test_images", "fp32_accuracy", "int8_accuracy", "accuracy_drop_points",
    "top1_agreement", "fp32_bytes", "int8_bytes", "size_ratio"}, "max_accuracy_drop",
    "structure": {"expected_int8", "int8", "float", "optimized_op_counts"}, "reference":
    {"images", "top1_agreement", "max_abs_logit_diff"}} and with a report "layers",
    "layer_table" and "report".
    """
    model, out = Path(model), Path(out)
    step = on_step or (lambda message: None)
    settings = (settings or QuantSettings()).resolve()
    max_accuracy_drop = check_max_drop(max_accuracy_drop)
    fp32, fp32_props, data, test_images, test_labels = open_inputs(model, out, report, force, data_dir)
    calibration, source = calibration_inputs(settings, data, fp32.contract.preprocessing, calibration_images)
    if calibration is not None:
        settings = replace(settings, calibration_count=len(calibration))  # a file may hold fewer

    with tempfile.TemporaryDirectory(prefix="lenet-edge-quantize-") as tmp:
        work = Path(tmp)
        step("pre-processing with onnxruntime")
        float_path = preprocess(model, work)
        step(f"quantizing ({settings.mode}{f', {settings.format}, {settings.method}' if settings.is_static else ''})")
        candidate = build_candidate(float_path, settings, work, calibration=calibration, metadata=fp32_props,
                                    calibration_source=source, source=out.name)
        step(f"validating on {len(test_labels)} test images")
        test_inputs = fp32.contract.preprocessing(test_images)  # (10000, 1, 32, 32)
        checks = evaluate_candidate(fp32, candidate, test_inputs, test_labels, out.name)
        data_bytes = finalize(candidate, fp32_props, checks["validation"], out.name)
        checks["validation"].update(file_sizes(model, len(data_bytes)))
        result = {"model": str(out), "fp32_model": str(model), "settings": settings_record(candidate.path),
                  "max_accuracy_drop": max_accuracy_drop, **checks}
        if report is not None:
            step("measuring per-layer error")
            layers = layer_errors(candidate, test_inputs, work, calibration=calibration)
            write_json(Path(report), {**result, "layers": layers})
            result.update(layers=layers, layer_table=format_table(layers), report=str(report))
        accuracy_gate(checks["validation"], max_accuracy_drop, out.name, report)
        write_bytes(out, data_bytes)
    return result


class Inputs(NamedTuple):
    """What every quantization reads before building anything."""

    fp32: LoadedModel
    fp32_props: dict[str, str]
    data: Path
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,)


def open_inputs(model: Path, out: Path, report: Path | None, force: bool, data_dir: Path | None) -> Inputs:
    """Refuse unusable outputs first, then load the fp32 model and the official test set."""
    if out.resolve() == model.resolve():
        raise DataError(f"{out}: the output is the fp32 model itself (expected a new path for the int8 model)")
    check_writable(out, force)
    if report is not None:
        check_writable(Path(report), force)
    fp32 = load_fp32_model(model)
    fp32_props = read_metadata(model)
    data = resolve_data_dir(data_dir)
    test_images, test_labels = load_mnist(data, "test")
    return Inputs(fp32, fp32_props, data, test_images, test_labels)


def load_fp32_model(model: Path) -> LoadedModel:
    """The fp32 model in onnxruntime, its contract checked; an int8 model is refused."""
    fp32 = load_model(model)
    if fp32.contract.quantization is not None:
        raise ModelError(f"{model}: already quantized ({fp32.contract.quantization.get('mode')} int8; "
                         f"expected the fp32 model from lenet-edge export)")
    return fp32


def calibration_inputs(settings: QuantSettings, data_dir: Path, prep: Preprocessing,
                       calibration_images: Path | None = None) -> tuple[np.ndarray | None, str | None]:
    """Checked, preprocessed calibration inputs (N, 1, 32, 32) and where they come from (None for dynamic)."""
    if not settings.is_static:
        if calibration_images is not None:
            raise DataError(f"{calibration_images}: calibration images given for dynamic quantization "
                            f"(expected static mode; dynamic quantization has no calibration)")
        return None, None
    if calibration_images is not None:
        raw = read_image_file(calibration_images)[:settings.calibration_count]
        source = Path(calibration_images).name
    else:
        raw = training_images(data_dir, settings.calibration_count, settings.calibration_seed)
        source = f"MNIST {CALIBRATION_SPLIT} split"
    return model_inputs(raw, prep, source), source


def evaluate_candidate(fp32: LoadedModel, candidate: Candidate, inputs: np.ndarray, labels: np.ndarray,
                       source: str) -> dict:
    """Everything that judges a candidate against its fp32 model, failing on the structural checks:
    int8 kernel counts, accuracy of both on `inputs` (N, 1, 32, 32), and the reference implementation."""
    structure = check_structure(candidate, source)
    int8 = load_model(candidate.path)
    validation = measure(fp32, int8, inputs, labels)
    sample = inputs[:SAMPLE]
    reference = compare_with_reference(candidate.path, sample, int8.predict(sample), source)
    return {"validation": validation, "structure": structure, "reference": reference}


def finalize(candidate: Candidate, fp32_props: dict[str, str], validation: dict, source: str) -> bytes:
    """The candidate's bytes with its validation in the metadata, checked by onnx.checker."""
    record = {**settings_record(candidate.path),
              "validation": {k: validation[k] for k in ("test_images", "fp32_accuracy", "int8_accuracy",
                                                        "accuracy_drop_points", "top1_agreement")}}
    props = quantized_metadata(fp32_props, record, source)
    props[PREFIX + "test_accuracy"] = repr(validation["int8_accuracy"])  # the int8 model's own figure
    set_metadata(candidate.path, props)
    _check_model(candidate.path, source)
    check_metadata(fp32_props, read_metadata(candidate.path), record, source)
    return candidate.path.read_bytes()


def settings_record(path: Path) -> dict:
    return ModelContract.from_metadata(read_metadata(path), str(path)).quantization


def _check_model(path: Path, source: str) -> None:
    import onnx

    from ..errors import ValidationError

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValidationError(f"{source}: onnx.checker refuses the int8 model ({first})") from exc
