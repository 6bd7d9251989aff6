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

from ..contract import PREFIX, ModelContract
from ..data import load_mnist
from ..datasource import resolve_data_dir
from ..errors import DataError, ModelError
from ..fileio import check_writable, write_bytes, write_json
from ..runtime.session import load_model
from .build import build_candidate, preprocess, quantized_metadata, read_metadata, set_metadata
from .calibration import CALIBRATION_SPLIT, model_inputs, read_image_file, training_images
from .layer_report import format_table, layer_errors
from .reference import SAMPLE, compare_with_reference
from .settings import QuantSettings
from .structure import check_metadata, check_structure
from .validation import DEFAULT_MAX_ACCURACY_DROP, accuracy_gate, check_max_drop, file_sizes, measure


def quantize_model(model: Path, out: Path, *, data_dir: Path | None = None, settings: QuantSettings | None = None,
                   max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP, report: Path | None = None,
                   force: bool = False, calibration_images: Path | None = None,
                   on_step: Callable[[str], None] | None = None) -> dict:
    """Quantize `model` to int8 at `out`, validated; returns the validation report.

    `data_dir` holds MNIST (None: $LENET_EDGE_DATA or the download cache); calibration uses
    its training split, or `calibration_images` (.npy of raw 28x28 digits) if given. `report`
    receives the per-layer error report (JSON). Raises ValidationError, and writes no model,
    when the int8 model loses more than `max_accuracy_drop` points of test accuracy.
    """
    model, out = Path(model), Path(out)
    step = on_step or (lambda message: None)
    settings = (settings or QuantSettings()).resolve()
    max_accuracy_drop = check_max_drop(max_accuracy_drop)
    if out.resolve() == model.resolve():
        raise DataError(f"{out}: the output is the fp32 model itself (expected a new path for the int8 model)")
    check_writable(out, force)
    if report is not None:
        check_writable(Path(report), force)
    fp32 = load_model(model)
    if fp32.contract.quantization is not None:
        raise ModelError(f"{model}: already quantized ({fp32.contract.quantization.get('mode')} int8; "
                         f"expected the fp32 model from lenet-edge export)")
    fp32_props = read_metadata(model)
    prep = fp32.contract.preprocessing
    data = resolve_data_dir(data_dir)
    test_images, test_labels = load_mnist(data, "test")

    calibration, calibration_source = None, None
    if settings.is_static:
        if calibration_images is not None:
            raw = read_image_file(calibration_images)[:settings.calibration_count]
            settings = replace(settings, calibration_count=len(raw))
            calibration_source = Path(calibration_images).name
        else:
            raw = training_images(data, settings.calibration_count, settings.calibration_seed)
            calibration_source = f"MNIST {CALIBRATION_SPLIT} split"
        calibration = model_inputs(raw, prep, calibration_source)

    with tempfile.TemporaryDirectory(prefix="lenet-edge-quantize-") as tmp:
        work = Path(tmp)
        step("pre-processing with onnxruntime")
        float_path = preprocess(model, work)
        step(f"quantizing ({settings.mode}{f', {settings.format}, {settings.method}' if settings.is_static else ''})")
        candidate = build_candidate(float_path, settings, work, calibration=calibration, metadata=fp32_props,
                                    source=out.name)
        structure = check_structure(candidate, out.name)
        step(f"validating on {len(test_labels)} test images")
        int8 = load_model(candidate.path)
        test_inputs = prep(test_images)  # (10000, 1, 32, 32)
        measured = measure(fp32, int8, test_inputs, test_labels)
        sample = test_inputs[:SAMPLE]
        reference = compare_with_reference(candidate.path, sample, int8.predict(sample), out.name)
        record = ModelContract.from_metadata(read_metadata(candidate.path)).quantization
        if settings.is_static:
            record["calibration_source"] = calibration_source
        record["validation"] = {k: measured[k] for k in ("test_images", "fp32_accuracy", "int8_accuracy",
                                                         "accuracy_drop_points", "top1_agreement")}
        final_props = quantized_metadata(fp32_props, record, out.name)
        final_props[PREFIX + "test_accuracy"] = repr(measured["int8_accuracy"])  # the int8 model's own figure
        set_metadata(candidate.path, final_props)
        _check_model(candidate.path, out.name)
        check_metadata(fp32_props, read_metadata(candidate.path), record, out.name)
        data_bytes = candidate.path.read_bytes()
        measured.update(file_sizes(model, len(data_bytes)))
        result = {"model": str(out), "fp32_model": str(model), "settings": record, "validation": measured,
                  "max_accuracy_drop": max_accuracy_drop, "structure": structure, "reference": reference}

        if report is not None:
            step("measuring per-layer error")
            layers = layer_errors(candidate, test_inputs, work, calibration=calibration)
            write_json(Path(report), {**result, "layers": layers})
            result.update(layers=layers, layer_table=format_table(layers), report=str(report))
        accuracy_gate(measured, max_accuracy_drop, out.name, report)
        write_bytes(out, data_bytes)
    return result


def _check_model(path: Path, source: str) -> None:
    import onnx

    from ..errors import ValidationError

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValidationError(f"{source}: onnx.checker refuses the int8 model ({first})") from exc
