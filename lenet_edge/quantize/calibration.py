"""Calibration images: training images only, checked before any quantization starts.

Static quantization runs the fp32 model on these to learn each activation's range, so a
wrong input (none, NaN/Inf, the wrong shape) must stop the run here with a clear message
rather than surface later as an onnxruntime error or a silently bad int8 model. A file of
calibration digits is read by lenet_edge.inputs, by the same rules as `run`'s inputs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAME
from ..data import Preprocessing, load_mnist
from ..errors import DataError, require
from ..inputs import iter_batches, open_input

require("onnx", "quantize")
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod  # noqa: E402  (needs onnx)
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data  # noqa: E402

CALIBRATION_SPLIT = "train"  # never "test": the test set is what the int8 model is judged on
BATCH = 100  # images per calibration run: bounded memory
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
# onnxruntime's calibrator options per method. quantize_static cannot pass histogram sizes, and
# its entropy default (128 bins quantized to 128) leaves the KL search a single candidate, the
# full range, i.e. min-max again; 512 bins give it 193 thresholds to choose from at ~1/5 of the
# time 2048 bins take in onnxruntime's Python search. Percentile keeps onnxruntime's defaults.
METHOD_OPTIONS = {"minmax": {}, "entropy": {"num_bins": 512, "num_quantized_bins": 128}, "percentile": {}}


def training_images(data_dir: Path, count: int, seed: int) -> np.ndarray:
    """`count` training images (count, 28, 28) uint8, a seeded random subset of the train split."""
    images, _ = load_mnist(data_dir, CALIBRATION_SPLIT)
    if count > len(images):
        raise DataError(f"{data_dir}: {len(images)} training images, fewer than the {count} "
                        f"asked for calibration (expected a calibration count of at most {len(images)})")
    order = np.random.default_rng(seed).permutation(len(images))[:count]
    return images[np.sort(order)]


def read_calibration_file(path: Path, preprocessing: Preprocessing, count: int) -> np.ndarray:
    """The first `count` digits of an input file, read and checked by the rules `run` applies to its
    inputs (images, .npy arrays, IDX files), as model inputs (N, 1, 32, 32) float32."""
    source = open_input(path, preprocessing)
    batches = iter_batches([source], preprocessing, batch_size=min(count, source.records))
    return next(batches)[1]


def model_inputs(images: np.ndarray, preprocessing: Preprocessing, source: str) -> np.ndarray:
    """Raw digits (N, 28, 28) -> the model's inputs (N, 1, 32, 32) float32 by its own contract."""
    with np.errstate(divide="ignore", invalid="ignore"):  # judged just below
        x = preprocessing(images)
    if not np.isfinite(x).all():  # e.g. a contract with std 0
        raise DataError(f"{source}: preprocessing by the model's contract ({preprocessing}) "
                        f"gives NaN or Inf inputs (expected finite values)")
    return x


class BatchReader(CalibrationDataReader):
    """Feeds preprocessed inputs (N, 1, 32, 32) to onnxruntime's calibrators, BATCH at a time."""

    def __init__(self, inputs: np.ndarray, input_name: str, batch: int = BATCH):
        self.inputs = inputs
        self.input_name = input_name
        self.batch = batch
        self.start = 0

    def get_next(self) -> dict | None:
        if self.start >= len(self.inputs):
            return None
        chunk = self.inputs[self.start:self.start + self.batch]  # (B, 1, 32, 32)
        self.start += self.batch
        return {self.input_name: chunk}

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch)

    def rewind(self) -> None:
        self.start = 0


def calibrate(float_path: Path, inputs: np.ndarray, method: str, cache: Path) -> Path:
    """Activation ranges of the fp32 model on `inputs` by onnxruntime's calibrator, saved as its
    calibration cache (what quantize_static reads); an existing cache is reused."""
    if cache.is_file():
        return cache
    with tempfile.TemporaryDirectory(prefix="calibration-", dir=cache.parent) as tmp:
        calibrator = create_calibrator(Path(float_path), [], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=METHODS[method], extra_options=METHOD_OPTIONS[method])
        calibrator.collect_data(BatchReader(inputs, INPUT_NAME))
        save_tensors_data(calibrator.compute_data(), cache)
    return cache
