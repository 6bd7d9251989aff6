"""Build one candidate int8 model: the calibration inputs, then onnxruntime's own tooling.

`quant_pre_process` (shape inference and graph optimisation before quantization), its
calibrators writing a calibration cache that `quantize_static` reads (so a search over formats,
types and exclusions calibrates once per method), and `quantize_dynamic`. Calibration images
are training images only, checked before any quantization starts: static quantization runs
the fp32 model on them to learn each activation's range, so a wrong input (none, NaN/Inf, the
wrong shape) must stop the run here with a clear message rather than surface later as an
onnxruntime error or a silently bad int8 model. A file of calibration digits is read by
lenet_edge.runtime.inputs, by the same rules as `run`'s inputs.

Candidates are written into a work directory and read back once, into the proto the checks
and the shipped file use; only the stage writes metadata, once, into the model it ships.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import graph
from ..contract import INPUT_NAME
from ..errors import DataError, ModelError, ValidationError, first_line, require
from ..mnist import Preprocessing, load_mnist
from ..runtime.inputs import iter_batches, open_input
from .rewrite import lean_file
from .settings import QuantRecipe, QuantSettings

onnx = require("onnx", "quantize")
from onnxruntime.quantization import (  # noqa: E402  (needs onnx)
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data  # noqa: E402
from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: E402

QUANT_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
QUANT_FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
CALIBRATION_SPLIT = "train"  # never "test": the test set is what the int8 model is judged on
BATCH = 100  # images per calibration run: bounded memory
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
# onnxruntime's calibrator options per method. quantize_static cannot pass histogram sizes, and
# its entropy default (128 bins quantized to 128) leaves the KL search a single candidate, the
# full range, i.e. min-max again; 512 bins give it 193 thresholds to choose from at ~1/5 of the
# time 2048 bins take in onnxruntime's Python search. Percentile keeps onnxruntime's defaults.
METHOD_OPTIONS = {"minmax": {}, "entropy": {"num_bins": 512, "num_quantized_bins": 128}, "percentile": {}}


# ---------------------------------------------------------------- calibration inputs
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


# ---------------------------------------------------------------- the candidate
@dataclass(frozen=True)
class FloatModel:
    """A pre-processed fp32 model that candidates are quantized from, read once."""

    path: Path
    proto: onnx.ModelProto


@dataclass(frozen=True)
class Candidate:
    recipe: QuantRecipe
    settings: QuantSettings  # the recipe's, resolved: types decided
    path: Path  # the int8 model file, without lenet-edge metadata yet
    model: onnx.ModelProto  # the same, read once: what the checks read and the stage ships
    float_model: FloatModel  # what it came from (same tensor names)
    excluded_nodes: tuple[str, ...]  # node names kept in float, op-type exclusions expanded
    calibration_source: str | None  # static only


def preprocess(fp32_path: Path, workdir: Path) -> FloatModel:
    """onnxruntime's pre-processing: symbolic shape inference and graph optimisation."""
    out = workdir / "float.preprocessed.onnx"
    try:
        with quiet():
            quant_pre_process(str(fp32_path), str(out))
    except Exception as exc:  # onnxruntime's shape inference raises untyped errors
        raise ModelError(f"{fp32_path}: onnxruntime's quantization pre-processing failed "
                         f"({first_line(exc)})") from exc
    return FloatModel(out, graph.load(out))


def build_candidate(recipe: QuantRecipe, float_model: FloatModel, workdir: Path, *, calibration: np.ndarray | None,
                    calibration_source: str | None = None, source: str = "model") -> Candidate:
    """Quantize the pre-processed fp32 model by `recipe` into `workdir/NAME.onnx`.

    `calibration` holds preprocessed training inputs (N, 1, 32, 32) for static mode, from
    `calibration_source`. Candidates in one workdir share calibration per method and count.
    """
    settings = recipe.settings.resolve()
    if settings.is_static and calibration is None:
        raise DataError(f"{source}: static quantization needs calibration inputs (found none)")
    excluded = graph.nodes_to_exclude(float_model.proto.graph, settings.exclude_nodes, settings.exclude_op_types,
                                      source)
    out, float_path = workdir / f"{recipe.name}.onnx", str(float_model.path)
    common = {"per_channel": settings.per_channel, "reduce_range": settings.reduce_range,
              "weight_type": QUANT_TYPES[settings.weight_type], "nodes_to_exclude": list(excluded),
              "op_types_to_quantize": list(recipe.op_types) if recipe.op_types else None}
    try:
        with quiet():
            if settings.is_static:
                cache = workdir / f"calibration.{settings.method}.{len(calibration)}.{settings.calibration_seed}.json"
                calibrate(float_model.path, calibration, settings.method, cache)
                quantize_static(float_path, str(out), None, quant_format=QUANT_FORMATS[settings.format],
                                activation_type=QUANT_TYPES[settings.activation_type],
                                calibrate_method=METHODS[settings.method], calibration_cache_path=str(cache), **common)
            else:
                quantize_dynamic(float_path, str(out), **common)
    except ValueError as exc:  # onnxruntime refuses a combination of settings
        raise ValidationError(f"{source}: onnxruntime cannot quantize with {settings.to_json()} "
                              f"({first_line(exc)})") from exc
    model = graph.load(out)
    if recipe.float_logits:
        lean_file(model)
        onnx.save(model, str(out))
    return Candidate(recipe, settings, out, model, float_model, excluded,
                     calibration_source if settings.is_static else None)


@contextlib.contextmanager
def quiet():
    """onnxruntime's quantization tools print progress and log warnings; the CLI speaks for itself."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
