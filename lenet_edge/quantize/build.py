"""Build one candidate int8 model from the pre-processed fp32 model and a recipe.

Everything here is onnxruntime's own tooling: `quant_pre_process` (shape inference and
graph optimisation before quantization), its calibrators writing a calibration cache that
`quantize_static` reads (so a search over formats, types and exclusions calibrates once
per method), and `quantize_dynamic`. Candidates are written into a work directory and keep
their quantization record on the object; only the stage writes metadata, once, into the
model it ships.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import graph
from ..errors import DataError, ModelError, ValidationError, first_line, require
from ..sessions import new_session
from .calibration import METHODS, calibrate
from .recipes import QuantRecipe
from .settings import QuantSettings

onnx = require("onnx", "quantize")
import onnxruntime as ort  # noqa: E402
from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static  # noqa: E402
from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: E402

QUANT_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
QUANT_FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}


@dataclass(frozen=True)
class Candidate:
    recipe: QuantRecipe
    settings: QuantSettings  # the recipe's, resolved: types decided
    path: Path  # the int8 model, without lenet-edge metadata yet
    float_path: Path  # the pre-processed fp32 model it came from (same tensor names)
    excluded_nodes: tuple[str, ...]  # node names kept in float, op-type exclusions expanded
    record: dict  # the quantization record: settings, exclusions, onnxruntime version, calibration source


def preprocess(fp32_path: Path, workdir: Path) -> Path:
    """onnxruntime's pre-processing: symbolic shape inference and graph optimisation."""
    out = workdir / "float.preprocessed.onnx"
    try:
        with quiet():
            quant_pre_process(str(fp32_path), str(out))
    except Exception as exc:  # onnxruntime's shape inference raises untyped errors
        raise ModelError(f"{fp32_path}: onnxruntime's quantization pre-processing failed "
                         f"({first_line(exc)})") from exc
    return out


def build_candidate(recipe: QuantRecipe, float_path: Path, workdir: Path, *, calibration: np.ndarray | None,
                    calibration_source: str | None = None, source: str = "model") -> Candidate:
    """Quantize the pre-processed fp32 model by `recipe` into `workdir/NAME.onnx`.

    `calibration` holds preprocessed training inputs (N, 1, 32, 32) for static mode, from
    `calibration_source`. Candidates in one workdir share calibration per method and count.
    """
    settings = recipe.settings.resolve()
    if settings.is_static and calibration is None:
        raise DataError(f"{source}: static quantization needs calibration inputs (found none)")
    excluded = graph.nodes_to_exclude(graph.load(float_path).graph, settings.exclude_nodes,
                                      settings.exclude_op_types, source)
    out = workdir / f"{recipe.name}.onnx"
    common = {"per_channel": settings.per_channel, "reduce_range": settings.reduce_range,
              "weight_type": QUANT_TYPES[settings.weight_type], "nodes_to_exclude": list(excluded),
              "op_types_to_quantize": list(recipe.op_types) if recipe.op_types else None}
    try:
        with quiet():
            if settings.is_static:
                cache = workdir / f"calibration.{settings.method}.{len(calibration)}.{settings.calibration_seed}.json"
                calibrate(float_path, calibration, settings.method, cache)
                quantize_static(str(float_path), str(out), None, quant_format=QUANT_FORMATS[settings.format],
                                activation_type=QUANT_TYPES[settings.activation_type],
                                calibrate_method=METHODS[settings.method], calibration_cache_path=str(cache), **common)
            else:
                quantize_dynamic(str(float_path), str(out), **common)
    except ValueError as exc:  # onnxruntime refuses a combination of settings
        raise ValidationError(f"{source}: onnxruntime cannot quantize with {settings.to_record()} "
                              f"({first_line(exc)})") from exc
    if recipe.after is not None:
        model = onnx.load(str(out))
        recipe.after(model)
        onnx.save(model, str(out))
    check_kernels(out, settings)
    record = {**settings.to_record(), "excluded_nodes": list(excluded), "onnxruntime": ort.__version__}
    if settings.is_static:
        record["calibration_source"] = calibration_source
    return Candidate(recipe, settings, out, float_path, excluded, record)


def check_kernels(path: Path, settings: QuantSettings) -> None:
    """Open the candidate in onnxruntime's CPU provider; a missing kernel becomes a clear error."""
    try:
        _open(path)
    except Exception as exc:  # onnxruntime's errors are untyped pybind exceptions
        raise missing_kernel_error(path, exc, settings) from exc


def missing_kernel_error(path: Path, exc: Exception, settings: QuantSettings) -> ValidationError:
    """Explain onnxruntime's NOT_IMPLEMENTED in one line: which op, why, and what to do instead."""
    message = first_line(exc, limit=1000)
    if "NOT_IMPLEMENTED" not in message:
        return ValidationError(f"{path.name}: onnxruntime {ort.__version__} cannot load the quantized model "
                               f"({message[:200]})")
    op = message.split("implementation for ", 1)[-1].split("(", 1)[0].strip() or "an operator"
    if op == "ConvInteger":
        return ValidationError(
            f"{path.name}: onnxruntime {ort.__version__}'s CPU provider has no ConvInteger kernel for "
            f"uint8 activations with {settings.weight_type} weights, so dynamic quantization cannot apply to the "
            f"convolutions; use static quantization (the default), --weight-type uint8, or --exclude-op-type Conv "
            f"to quantize only the fully connected layers dynamically")
    return ValidationError(f"{path.name}: onnxruntime {ort.__version__}'s CPU provider has no kernel for {op} "
                           f"as quantized with {settings.to_record()} ({message[:200]}); exclude those nodes "
                           f"(--exclude-op-type/--exclude-node) or choose other types")


def _open(path: Path):
    return new_session(path)  # a seam: a test plants an onnxruntime without a kernel here


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

