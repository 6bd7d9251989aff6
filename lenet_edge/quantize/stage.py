"""The quantization stage for one recipe, and the steps `--auto` (search.py) shares with it.

`quantize_model`: fp32 model.onnx -> validated int8 model.onnx (+ an optional per-layer report).
Order of work: check the inputs (outputs writable, contract, calibration images) before any
quantizing, so a wrong input stops the run with a clear message, not as an onnxruntime error or a
silently bad int8 model; build the candidate with onnxruntime's tooling (quant_pre_process, its
calibrators writing the cache quantize_static reads, so a search calibrates once per method);
check it (checks.py); write the per-layer report (also when the accuracy gate then refuses the
model, since that is when it is needed); write the model only when everything passed.

A candidate is written into a work directory and read back once, into the proto the checks and the
shipped file use. It holds no lenet-edge metadata while it is judged (it runs with the fp32 model's
contract, given to the session); `judge` writes the contract and the quantization record into the
model once, in memory, and keeps the bytes to ship.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import graph
from ..contract import INPUT_NAME, PREFIX, ModelContract
from ..errors import DataError, ModelError, ValidationError, first_line, require
from ..fileio import check_writable, write_bytes, write_json
from ..mnist import Preprocessing, load_mnist
from ..progress import Progress
from ..runtime.inputs import iter_batches, open_input
from ..runtime.session import LoadedModel, load_model
from ..scratch import scratch_directory
from . import checks
from .rewrite import lean_file
from .settings import DEFAULT_MAX_ACCURACY_DROP, STANDARD, ChosenRecipe, QuantizationRecord, QuantRecipe, QuantSettings

onnx = require("onnx", "quantize")
import onnxruntime as ort  # noqa: E402
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


@dataclass(frozen=True)
class Inputs:
    """One quantization's paths and budget, and what it reads and checks before building anything."""

    model: Path  # the fp32 model
    out: Path  # the int8 model to write
    report: Path | None  # the per-layer report to write
    max_accuracy_drop: float
    force: bool  # the stage's outputs may replace existing files (--force)
    fp32: LoadedModel
    fp32_proto: onnx.ModelProto  # read once: its metadata_props are carried over, --auto rewrites it
    fp32_bytes: int
    settings: QuantSettings  # resolved; calibration_count is what the calibration inputs hold
    calibration: np.ndarray | None  # (N, 1, 32, 32) model inputs; None for dynamic quantization
    calibration_source: str | None
    test_inputs: np.ndarray  # (10000, 1, 32, 32) the official test set by the model's contract
    test_labels: np.ndarray  # (10000,)


@dataclass(frozen=True)
class Sizes:
    fp32_bytes: int
    int8_bytes: int  # the shipped file, metadata included

    @property
    def times_smaller(self) -> float:  # fp32 / int8
        return round(self.fp32_bytes / self.int8_bytes, 4)

    def to_json(self) -> dict:
        return {"fp32_bytes": self.fp32_bytes, "int8_bytes": self.int8_bytes,
                "size_ratio": round(self.int8_bytes / self.fp32_bytes, 4), "times_smaller": self.times_smaller}


@dataclass(frozen=True)
class Judged:
    """A candidate that passed every check, with the file it would ship as."""

    candidate: Candidate
    int8: LoadedModel  # the session that judged it (the search times it too)
    quantization: QuantizationRecord  # what its metadata holds
    size: Sizes
    structure: dict  # int8 and float layer counts after onnxruntime's optimisation
    reference: dict  # agreement with the ONNX reference implementation
    data: bytes  # the int8 model file, metadata included


@dataclass(frozen=True)
class Quantized:
    """What the stage returns and `--report` writes (quantize.json): the shipped model's record and figures."""

    model: Path
    fp32_model: Path
    quantization: QuantizationRecord
    size: Sizes
    structure: dict  # {"expected_int8", "int8", "float": {"conv", "fc"}, "optimized_op_counts"}
    reference: dict  # {"images", "top1_agreement", "max_abs_logit_diff"}
    max_accuracy_drop: float
    search: dict | None = None  # --auto: every candidate and why the winner won (search.search_record)
    layers: dict | None = None  # with a report: per-layer errors (layer_report.layer_errors)
    report: Path | None = None
    also_written: dict[str, str] = field(default_factory=dict)  # --auto: losing candidates written too

    def to_json(self) -> dict:
        record = {"model": str(self.model), "fp32_model": str(self.fp32_model),
                  "quantization": self.quantization.to_json(), "size": self.size.to_json(),
                  "structure": self.structure, "reference": self.reference, "max_accuracy_drop": self.max_accuracy_drop}
        optional = {"search": self.search, "layers": self.layers, "also_written": self.also_written or None}
        return {**record, **{key: value for key, value in optional.items() if value is not None}}


def quantize_model(model: Path, out: Path, *, data_dir: Path, settings: QuantSettings | None = None,
                   max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP, report: Path | None = None,
                   force: bool = False, calibration_images: Path | None = None,
                   progress: Progress | None = None) -> Quantized:
    """Quantize `model` to int8 at `out` by one recipe, `settings`, validated.

    `data_dir` holds MNIST (the command line resolves --data-dir, $LENET_EDGE_DATA or the download
    cache into it); calibration uses its training split, or `calibration_images` (any input file
    `run` reads) if given. `report` receives the per-layer error report (JSON). Raises
    ValidationError, and writes no model, when a check fails or the int8 model loses more than
    `max_accuracy_drop` points of test accuracy.
    """
    inputs = open_inputs(model, out, report, max_accuracy_drop, force, data_dir, settings or QuantSettings(),
                         calibration_images)
    with scratch_directory("quantize") as tmp:  # a killed run's is removed by the next
        steps = Steps(progress, 1 + (inputs.report is not None))
        float_model = preprocess(inputs.model, tmp / STANDARD)
        s = inputs.settings
        steps(f"quantizing ({f'{s.mode}, {s.format}, {s.method}' if s.is_static else s.mode}) and validating "
              f"on {len(inputs.test_labels)} test images")
        judged = judge(inputs, build(inputs, QuantRecipe(STANDARD, s, what="the given settings"), float_model))
        result = shipped(judged, inputs, steps)
        checks.accuracy_gate(judged.quantization.validation, inputs.max_accuracy_drop, inputs.out.name, inputs.report)
        write_bytes(inputs.out, judged.data, replace=force)
    return result


# ---------------------------------------------------------------- the shared steps: inputs
def open_inputs(model: Path, out: Path, report: Path | None, max_accuracy_drop: float, force: bool, data_dir: Path,
                settings: QuantSettings, calibration_images: Path | None) -> Inputs:
    """Check the arguments and refuse unusable outputs first, then load the fp32 model, the test set and the
    calibration inputs."""
    model, out, report = Path(model), Path(out), None if report is None else Path(report)
    max_accuracy_drop = checks.check_max_drop(max_accuracy_drop)
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
    return Inputs(model, out, report, max_accuracy_drop, force, fp32, graph.load(model), model.stat().st_size,
                  settings, calibration, source, prep(test_images), test_labels)


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


# ---------------------------------------------------------------- building a candidate
def preprocess(fp32_path: Path, workdir: Path) -> FloatModel:
    """onnxruntime's pre-processing (symbolic shape inference and graph optimisation) into `workdir`."""
    workdir.mkdir(exist_ok=True)
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


def build(inputs: Inputs, recipe: QuantRecipe, float_model: FloatModel) -> Candidate:
    return build_candidate(recipe, float_model, float_model.path.parent, calibration=inputs.calibration,
                           calibration_source=inputs.calibration_source, source=inputs.out.name)


# ---------------------------------------------------------------- judging it, shipping it
def judge(inputs: Inputs, candidate: Candidate, recipe: ChosenRecipe | None = None, threads: int | None = None
          ) -> Judged:
    """Everything that judges a candidate against its fp32 model, raising ValidationError on a failed
    check (the accuracy budget is the caller's): kernels and int8 layer counts, accuracy of both on the
    test set, the reference implementation, then the final file. `threads`: the judging session's."""
    source = inputs.out.name
    structure = checks.check_structure(candidate, source)
    int8 = load_model(candidate.path, threads, contract=inputs.fp32.contract)
    accuracy = checks.measure(inputs.fp32, int8, inputs.test_inputs, inputs.test_labels)
    sample = inputs.test_inputs[:checks.SAMPLE]
    reference = checks.compare_with_reference(candidate.model, sample, int8.predict(sample), source)
    quantization = QuantizationRecord(candidate.settings, candidate.excluded_nodes, ort.__version__,
                                      candidate.calibration_source, accuracy, recipe)
    data = final_bytes(candidate.model, graph.metadata(inputs.fp32_proto), quantization, source)
    return Judged(candidate, int8, quantization, Sizes(inputs.fp32_bytes, len(data)), structure, reference, data)


def final_bytes(model: onnx.ModelProto, fp32_props: dict[str, str], quantization: QuantizationRecord,
                source: str) -> bytes:
    """The int8 model with the fp32 model's metadata, the quantization record and its own test accuracy,
    checked by onnx.checker, serialised."""
    contract = replace(ModelContract.from_metadata(fp32_props, source), quantization=quantization.to_json(),
                       test_accuracy=quantization.validation.int8_accuracy)  # the int8 model's own figure
    props = contract.to_metadata()
    graph.set_metadata(model, {**fp32_props, **props})
    checks.check_model_file(model, source)
    checks.check_metadata(fp32_props, graph.metadata(model), props[PREFIX + "quantization"], source)
    return model.SerializeToString()


def shipped(judged: Judged, inputs: Inputs, steps: Steps, search: dict | None = None) -> Quantized:
    """The stage's result for the candidate it ships, its per-layer report written if asked for."""
    report = inputs.report
    result = Quantized(inputs.out, inputs.model, judged.quantization, judged.size, judged.structure, judged.reference,
                       inputs.max_accuracy_drop, search)
    if report is not None:
        from .layer_report import layer_errors

        steps("measuring per-layer error")
        result = replace(result, report=report, layers=layer_errors(
            judged.candidate, inputs.test_inputs, judged.candidate.path.parent, calibration=inputs.calibration))
        write_json(report, result.to_json(), replace=inputs.force)
    steps.done_all()
    return result


class Steps:
    """Calls `progress(done, total, what)` before each step, and once more when all are done."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, what: str) -> None:
        if self.progress:
            self.progress(self.done, self.total, what)
        self.done += 1

    def done_all(self) -> None:
        if self.progress:
            self.progress(self.total, self.total, "done")
