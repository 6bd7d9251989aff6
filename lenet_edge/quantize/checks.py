"""Every check of a candidate int8 model, in the order the stage runs them.

1. Kernels and structure: opening the candidate in onnxruntime's CPU provider is the kernel check, and
   its layers are counted in the graph onnxruntime makes of it at the extended optimisation level (a QDQ
   model only says "quantize here"; the optimiser decides what runs as an int8 kernel; the highest level
   adds CPU-specific layout passes, so its counts would differ between machines).
2. Accuracy of both models in onnxruntime through lenet_edge.runtime (what a device runs) on the
   preprocessed official test set; the gate compares in percentage points.
3. The ONNX reference implementation (lenet_edge/onnx_reference.py), independent of onnxruntime's
   kernels and fusions: agreement on a sample says the model means what onnxruntime makes of it.
4. The shipped file: onnx.checker, and every fp32 metadata prop carried over beside the record.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..contract import INPUT_NAME, OUTPUT_NAME, PREFIX
from ..errors import DataError, ModelError, ValidationError, first_line, require
from ..onnx_reference import reference_evaluator
from ..parity import compare_logits
from ..runtime.session import LoadedModel
from ..sessions import optimized_graph
from .settings import Accuracy, QuantSettings

if TYPE_CHECKING:  # stage.py imports this module
    from .stage import Candidate

onnx = require("onnx", "quantize")
import onnxruntime as ort  # noqa: E402

# op types after onnxruntime's optimisation, by kind of layer
INT8_CONV = ("QLinearConv", "ConvInteger")
INT8_FC = ("QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulInteger")
FLOAT_CONV = ("Conv", "FusedConv")
FLOAT_FC = ("Gemm", "FusedGemm", "MatMul", "FusedMatMul")
REPLACED_PROPS = (PREFIX + "test_accuracy", PREFIX + "quantization")  # the int8 model's own values


# ---------------------------------------------------------------- 1. kernels and structure
def optimized_op_counts(path: Path) -> Counter:
    """Op types of the graph onnxruntime's CPU provider runs for a model (extended optimisation)."""
    return Counter(node.op_type for node in optimized_graph(path, path).graph.node)


def kernel_counts(path: Path, settings: QuantSettings) -> Counter:
    """`optimized_op_counts` of a candidate: opening it is the kernel check, a missing kernel one clear line."""
    try:
        return optimized_op_counts(path)
    except ModelError as exc:  # onnxruntime's own error is its cause
        raise missing_kernel_error(path, exc.__cause__ or exc, settings) from exc


def meant_to_quantize(candidate: Candidate) -> dict[str, list[str]]:
    """The fp32 model's convolution and fully connected nodes that the settings quantize."""
    graph = candidate.float_model.proto.graph
    constants = {t.name for t in graph.initializer}
    layers: dict[str, list[str]] = {"conv": [], "fc": []}
    for node in graph.node:
        if node.name in candidate.excluded_nodes:
            continue
        if node.op_type == "Conv":
            layers["conv"].append(node.name)
        elif node.op_type == "Gemm" or node.op_type == "MatMul" and (
                candidate.settings.is_static or node.input[1] in constants):  # dynamic: constant weights only
            layers["fc"].append(node.name)
    return layers


def check_structure(candidate: Candidate, source: str) -> dict:
    """Open the candidate in onnxruntime (its kernels), count int8 and float layers in the optimised graph,
    and fail when a layer meant to be int8 stayed float."""
    counts = kernel_counts(candidate.path, candidate.settings)
    expected = meant_to_quantize(candidate)
    result = {
        "expected_int8": {kind: len(names) for kind, names in expected.items()},
        "int8": {"conv": sum(counts[t] for t in INT8_CONV), "fc": sum(counts[t] for t in INT8_FC)},
        "float": {"conv": sum(counts[t] for t in FLOAT_CONV), "fc": sum(counts[t] for t in FLOAT_FC)},
        "optimized_op_counts": dict(sorted(counts.items())),
    }
    for kind, label in (("conv", "convolutions"), ("fc", "fully connected layers")):
        want, found = result["expected_int8"][kind], result["int8"][kind]
        if found != want:
            raise ValidationError(
                f"{source}: {found} {label} run as int8 kernels after onnxruntime's optimisation "
                f"(expected {want}: {', '.join(expected[kind]) or 'none'}; optimised graph: "
                f"{', '.join(f'{k} x{v}' for k, v in sorted(counts.items()))})")
    return result


def missing_kernel_error(path: Path, exc: BaseException, settings: QuantSettings) -> ValidationError:
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
                           f"as quantized with {settings.to_json()} ({message[:200]}); exclude those nodes "
                           f"(--exclude-op-type/--exclude-node) or choose other types")


# ---------------------------------------------------------------- 2. accuracy
def measure(fp32: LoadedModel, int8: LoadedModel, inputs: np.ndarray, labels: np.ndarray) -> Accuracy:
    """Accuracy of both models, the drop in points and their top-1 agreement on `inputs` (N, 1, 32, 32)."""
    if fp32.contract.preprocessing != int8.contract.preprocessing:
        raise ValidationError(f"{int8.path}: preprocessing {int8.contract.preprocessing} differs from the fp32 "
                              f"model's {fp32.contract.preprocessing} (expected the contract carried over)")
    fp32_top1 = fp32.predict(inputs).argmax(1)  # (N,)
    int8_top1 = int8.predict(inputs).argmax(1)  # (N,)
    fp32_acc, int8_acc = float((fp32_top1 == labels).mean()), float((int8_top1 == labels).mean())
    return Accuracy(len(labels), fp32_acc, int8_acc, round((fp32_acc - int8_acc) * 100, 4),
                    float((fp32_top1 == int8_top1).mean()))


def check_max_drop(max_accuracy_drop: float) -> float:
    if not isinstance(max_accuracy_drop, (int, float)) or not math.isfinite(max_accuracy_drop) or max_accuracy_drop < 0:
        raise DataError(f"maximum accuracy drop {max_accuracy_drop!r} (expected a finite number of points >= 0)")
    return float(max_accuracy_drop)


def accuracy_gate(measured: Accuracy, max_accuracy_drop: float, source: str, report: Path | None = None) -> None:
    """Refuse an int8 model that loses more than `max_accuracy_drop` points of test accuracy."""
    drop = measured.accuracy_drop_points
    if drop > max_accuracy_drop:
        raise ValidationError(
            f"{source}: int8 accuracy {measured.int8_accuracy:.2%} is {drop:.2f} points below fp32 "
            f"{measured.fp32_accuracy:.2%} on {measured.test_images} test images (expected a drop of at "
            f"most {max_accuracy_drop:g} points, --max-accuracy-drop); no model written"
            + (f"; per-layer errors in {report}" if report is not None else ""))


# ---------------------------------------------------------------- 3. the ONNX reference implementation
SAMPLE = 128  # images: the reference MaxPool loops in Python, ~1 s for this many
MIN_AGREEMENT = 0.99  # top-1; int8 rounding may tip an exact near-tie, nothing more


def compare_with_reference(model: onnx.ModelProto, inputs: np.ndarray, ort_logits: np.ndarray, source: str) -> dict:
    """Top-1 agreement and max |difference| of logits, reference vs onnxruntime's `ort_logits` (N, 10), on
    `inputs` (N, 1, 32, 32); ValidationError below MIN_AGREEMENT."""
    try:
        ref_logits = reference_evaluator(model).run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]  # (N, 10)
    except Exception as exc:  # the reference implementation raises untyped errors for what it lacks
        raise ValidationError(f"{source}: the ONNX reference implementation cannot run the int8 model "
                              f"({first_line(exc)})") from exc
    found = compare_logits(ref_logits, ort_logits)
    agreement = 1 - found.argmax_mismatches / found.images
    if agreement < MIN_AGREEMENT:
        raise ValidationError(f"{source}: the ONNX reference implementation agrees with onnxruntime on "
                              f"{agreement:.1%} of {found.images} images (expected at least {MIN_AGREEMENT:.0%}; "
                              f"max logit difference {found.max_abs_diff:.3g})")
    return {"images": found.images, "top1_agreement": agreement, "max_abs_logit_diff": found.max_abs_diff}


# ---------------------------------------------------------------- 4. the shipped file
def check_model_file(model: onnx.ModelProto, source: str, refused: str = "onnx.checker refuses the int8 model") -> None:
    """onnx.checker with shape inference (full_check); ValidationError "{source}: {refused} (why)"."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ValidationError(f"{source}: {refused} ({first_line(exc)})") from exc


def check_metadata(fp32_props: dict[str, str], int8_props: dict[str, str], quantization: str, source: str) -> None:
    """Every fp32 metadata prop is carried over unchanged, and the quantization record (as JSON text) is there."""
    for key, value in fp32_props.items():
        if key in REPLACED_PROPS:
            continue
        if int8_props.get(key) != value:
            raise ValidationError(f"{source}: metadata {key} is {int8_props.get(key)!r} "
                                  f"(expected {value!r}, carried over from the fp32 model)")
    found = int8_props.get(PREFIX + "quantization")
    if found != quantization:
        raise ValidationError(f"{source}: metadata {PREFIX}quantization is {found!r} (expected {quantization!r})")
