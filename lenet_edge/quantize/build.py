"""Build one candidate int8 model from the pre-processed fp32 model and a `QuantSettings`.

Everything here is onnxruntime's own tooling: `quant_pre_process` (shape inference and
graph optimisation before quantization), its calibrators writing a calibration cache that
`quantize_static` reads (so a search over formats, types and exclusions calibrates once
per method), and `quantize_dynamic`. Candidates are written into a work directory; only
the stage moves a validated one to the user's output path.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..contract import ModelContract
from ..errors import DataError, ModelError, ValidationError, require
from .calibration import METHODS, calibrate
from .settings import QuantSettings

onnx = require("onnx", "quantize")
import onnxruntime as ort  # noqa: E402
from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static  # noqa: E402
from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: E402

QUANT_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
QUANT_FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
QUANTIZABLE = ("Conv", "Gemm", "MatMul")  # the layers whose int8 kernels make the speed and the size


@dataclass(frozen=True)
class Candidate:
    settings: QuantSettings  # resolved: types decided
    path: Path  # the int8 model
    float_path: Path  # the pre-processed fp32 model it came from (same tensor names)
    excluded_nodes: tuple[str, ...]  # node names kept in float, op-type exclusions expanded


def preprocess(fp32_path: Path, workdir: Path) -> Path:
    """onnxruntime's pre-processing: symbolic shape inference and graph optimisation."""
    out = workdir / "float.preprocessed.onnx"
    try:
        with quiet():
            quant_pre_process(str(fp32_path), str(out))
    except Exception as exc:  # onnxruntime's shape inference raises untyped errors
        raise ModelError(f"{fp32_path}: onnxruntime's quantization pre-processing failed "
                         f"({_first_line(exc)})") from exc
    return out


def excluded_node_names(float_path: Path, settings: QuantSettings, source: str) -> tuple[str, ...]:
    """The node names to keep in float: named ones (checked) plus every node of an excluded op type."""
    nodes = onnx.load(str(float_path), load_external_data=False).graph.node
    names = [n.name for n in nodes]
    for name in settings.exclude_nodes:
        if name not in names:
            layers = [n.name for n in nodes if n.op_type in QUANTIZABLE]
            raise ModelError(f"{source}: no node named {name!r} to exclude "
                             f"(its Conv/Gemm/MatMul nodes are: {', '.join(layers)})")
    op_types = {n.op_type for n in nodes}
    for op_type in settings.exclude_op_types:
        if op_type not in op_types:
            raise ModelError(f"{source}: no node of op type {op_type!r} to exclude "
                             f"(its op types are: {', '.join(sorted(op_types))})")
    by_type = [n.name for n in nodes if n.op_type in settings.exclude_op_types]
    return tuple(dict.fromkeys([*settings.exclude_nodes, *by_type]))


def build_candidate(float_path: Path, settings: QuantSettings, workdir: Path, *, calibration: np.ndarray | None,
                    metadata: dict[str, str], calibration_source: str | None = None, name: str = "candidate",
                    source: str = "model") -> Candidate:
    """Quantize the pre-processed fp32 model with `settings` into `workdir/NAME.onnx`.

    `calibration` holds preprocessed training inputs (N, 1, 32, 32) for static mode, from
    `calibration_source`; `metadata` is the fp32 model's metadata_props, carried over with
    the settings added. Candidates in one workdir share calibration per method and count.
    """
    settings = settings.resolve()
    if settings.is_static and calibration is None:
        raise DataError(f"{source}: static quantization needs calibration inputs (found none)")
    excluded = excluded_node_names(float_path, settings, source)
    out = workdir / f"{name}.onnx"
    weight_type = QUANT_TYPES[settings.weight_type]
    try:
        with quiet():
            if settings.is_static:
                cache = workdir / f"calibration.{settings.method}.{len(calibration)}.{settings.calibration_seed}.json"
                calibrate(float_path, calibration, settings.method, cache)
                quantize_static(str(float_path), str(out), None,
                                quant_format=QUANT_FORMATS[settings.format], per_channel=settings.per_channel,
                                reduce_range=settings.reduce_range,
                                activation_type=QUANT_TYPES[settings.activation_type], weight_type=weight_type,
                                nodes_to_exclude=list(excluded), calibrate_method=METHODS[settings.method],
                                calibration_cache_path=str(cache))
            else:
                quantize_dynamic(str(float_path), str(out), per_channel=settings.per_channel,
                                 reduce_range=settings.reduce_range, weight_type=weight_type,
                                 nodes_to_exclude=list(excluded))
    except ValueError as exc:  # onnxruntime refuses a combination of settings
        raise ValidationError(f"{source}: onnxruntime cannot quantize with {settings.to_record()} "
                              f"({_first_line(exc)})") from exc
    record = {**settings.to_record(), "excluded_nodes": list(excluded), "onnxruntime": ort.__version__}
    if settings.is_static:
        record["calibration_source"] = calibration_source
    set_metadata(out, quantized_metadata(metadata, record, source))
    check_kernels(out, settings)
    return Candidate(settings, out, float_path, excluded)


def quantized_metadata(fp32_props: dict[str, str], record: dict, source: str) -> dict[str, str]:
    """The fp32 model's metadata_props, unchanged, plus the quantization record in its contract."""
    contract = ModelContract.from_metadata(fp32_props, source)
    contract_props = replace(contract, quantization=record).to_metadata()
    return {**fp32_props, **contract_props}


def set_metadata(path: Path, props: dict[str, str]) -> None:
    """Replace a model's metadata_props: the ones onnxruntime's tools added stay, ours win."""
    model = onnx.load(str(path))
    merged = {p.key: p.value for p in model.metadata_props} | props
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, merged)
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def check_kernels(path: Path, settings: QuantSettings) -> None:
    """Open the candidate in onnxruntime's CPU provider; a missing kernel becomes a clear error."""
    try:
        _cpu_session(path)
    except Exception as exc:  # onnxruntime's errors are untyped pybind exceptions
        raise missing_kernel_error(path, exc, settings) from exc


def missing_kernel_error(path: Path, exc: Exception, settings: QuantSettings) -> ValidationError:
    """Explain onnxruntime's NOT_IMPLEMENTED in one line: which op, why, and what to do instead."""
    message = _first_line(exc)
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


def _cpu_session(path: Path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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

