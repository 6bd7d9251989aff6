"""The steps every quantization shares, one recipe or a search: read and check the inputs, judge a
candidate against the fp32 model, make the file it would ship as, add the per-layer report.

A candidate's file holds no lenet-edge metadata while it is judged (it runs with the fp32
model's contract, which it inherits); `judge` writes the contract, the quantization record
and the validation into the model once, in memory, and keeps the bytes to ship.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import graph
from ..contract import PREFIX, ModelContract
from ..data import load_mnist
from ..errors import DataError, ModelError, ValidationError, first_line, require
from ..fileio import check_writable, write_json
from ..runtime.session import LoadedModel, load_model
from .build import Candidate
from .calibration import CALIBRATION_SPLIT, model_inputs, read_calibration_file, training_images
from .layer_report import format_table, layer_errors
from .reference import SAMPLE, compare_with_reference
from .settings import QuantSettings
from .structure import check_metadata, check_structure
from .validation import Accuracy, measure

onnx = require("onnx", "quantize")


@dataclass(frozen=True)
class Inputs:
    """What every quantization reads and checks before building anything."""

    fp32: LoadedModel
    fp32_props: dict[str, str]  # the fp32 model's metadata_props, carried over
    fp32_bytes: int
    settings: QuantSettings  # resolved; calibration_count is what the calibration inputs hold
    calibration: np.ndarray | None  # (N, 1, 32, 32) model inputs; None for dynamic quantization
    calibration_source: str | None
    test_inputs: np.ndarray  # (10000, 1, 32, 32) the official test set by the model's contract
    test_labels: np.ndarray  # (10000,)


def open_inputs(model: Path, out: Path, report: Path | None, force: bool, data_dir: Path,
                settings: QuantSettings, calibration_images: Path | None) -> Inputs:
    """Refuse unusable outputs first, then load the fp32 model, the test set and the calibration inputs."""
    if out.resolve() == model.resolve():
        raise DataError(f"{out}: the output is the fp32 model itself (expected a new path for the int8 model)")
    check_writable(out, force)
    if report is not None:
        check_writable(report, force)
    fp32 = load_model(model)
    if fp32.contract.quantization is not None:
        raise ModelError(f"{model}: already quantized ({fp32.contract.quantization.get('mode')} int8; "
                         f"expected the fp32 model from lenet-edge export)")
    prep = fp32.contract.preprocessing
    data = Path(data_dir)
    settings = settings.resolve()
    calibration, source = None, None
    if not settings.is_static and calibration_images is not None:
        raise DataError(f"{calibration_images}: calibration images given for dynamic quantization "
                        f"(expected static mode; dynamic quantization has no calibration)")
    if settings.is_static and calibration_images is not None:
        calibration = read_calibration_file(calibration_images, prep, settings.calibration_count)
        source = Path(calibration_images).name
    elif settings.is_static:
        source = f"MNIST {CALIBRATION_SPLIT} split"
        raw = training_images(data, settings.calibration_count, settings.calibration_seed)  # (N, 28, 28)
        calibration = model_inputs(raw, prep, source)
    if calibration is not None:
        settings = replace(settings, calibration_count=len(calibration))  # a file may hold fewer
    test_images, test_labels = load_mnist(data, "test")
    return Inputs(fp32, graph.metadata(graph.load(model)), model.stat().st_size, settings, calibration, source,
                  prep(test_images), test_labels)


@dataclass(frozen=True)
class Judged:
    """A candidate that passed every check, with the file it would ship as."""

    candidate: Candidate
    accuracy: Accuracy
    structure: dict  # int8 and float layer counts after onnxruntime's optimisation
    reference: dict  # agreement with the ONNX reference implementation
    record: dict  # the quantization record in its metadata
    data: bytes  # the int8 model file, metadata included
    fp32_bytes: int

    @property
    def times_smaller(self) -> float:
        return self.fp32_bytes / len(self.data)

    def to_record(self) -> dict:
        sizes = {"fp32_bytes": self.fp32_bytes, "int8_bytes": len(self.data),
                 "size_ratio": round(len(self.data) / self.fp32_bytes, 4),  # int8 / fp32
                 "times_smaller": round(self.times_smaller, 4)}  # fp32 / int8
        return {"settings": self.record, "validation": {**self.accuracy.to_record(), **sizes},
                "structure": self.structure, "reference": self.reference}


def judge(inputs: Inputs, candidate: Candidate, extra_record: dict, source: str) -> Judged:
    """Everything that judges a candidate against its fp32 model, raising ValidationError on a failed
    check (the accuracy budget is the caller's): int8 kernel counts, accuracy of both on the test set,
    the reference implementation, onnx.checker on the final file. `extra_record` joins its record."""
    structure = check_structure(candidate, source)
    int8 = load_model(candidate.path, contract=inputs.fp32.contract)
    accuracy = measure(inputs.fp32, int8, inputs.test_inputs, inputs.test_labels)
    model = graph.load(candidate.path)
    sample = inputs.test_inputs[:SAMPLE]
    reference = compare_with_reference(model, sample, int8.predict(sample), source)
    record = {**candidate.record, **extra_record, "validation": accuracy.to_record()}
    data = final_bytes(model, inputs.fp32_props, record, accuracy.int8_accuracy, source)
    return Judged(candidate, accuracy, structure, reference, record, data, inputs.fp32_bytes)


def final_bytes(model: onnx.ModelProto, fp32_props: dict[str, str], record: dict, int8_accuracy: float,
                source: str) -> bytes:
    """The int8 model with the fp32 model's metadata, the quantization record and its own test accuracy,
    checked by onnx.checker, serialised."""
    contract = replace(ModelContract.from_metadata(fp32_props, source), quantization=record)
    graph.set_metadata(model, {**fp32_props, **contract.to_metadata(),
                               PREFIX + "test_accuracy": repr(int8_accuracy)})  # the int8 model's own figure
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ValidationError(f"{source}: onnx.checker refuses the int8 model ({first_line(exc)})") from exc
    check_metadata(fp32_props, graph.metadata(model), record, source)
    return model.SerializeToString()


def with_layer_report(result: dict, judged: Judged, inputs: Inputs, report: Path, force: bool = False) -> dict:
    """`result` written to `report` with the per-layer errors added; returned with them and their table."""
    layers = layer_errors(judged.candidate, inputs.test_inputs, judged.candidate.path.parent,
                          calibration=inputs.calibration)
    write_json(report, {**result, "layers": layers}, replace=force)
    return {**result, "layers": layers, "layer_table": format_table(layers), "report": str(report)}
