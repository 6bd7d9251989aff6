"""Structural checks of an int8 model: what onnxruntime really runs, and what metadata travels.

A QDQ model only says "quantize here"; whether a layer runs as an int8 kernel is decided
by onnxruntime's graph optimiser when it fuses DequantizeLinear -> Conv -> QuantizeLinear
into QLinearConv. So the layers are counted in the graph onnxruntime produces at its
extended optimisation level (the hardware-specific layout passes of the highest level
are left out, so the counts mean the same on every machine).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..contract import PREFIX
from ..errors import ValidationError, require
from ..graph import load
from ..scratch import scratch_directory
from .build import Candidate

require("onnx", "quantize")
import onnxruntime as ort  # noqa: E402

# op types after onnxruntime's optimisation, by kind of layer
INT8_CONV = ("QLinearConv", "ConvInteger")
INT8_FC = ("QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulInteger")
FLOAT_CONV = ("Conv", "FusedConv")
FLOAT_FC = ("Gemm", "FusedGemm", "MatMul", "FusedMatMul")
REPLACED_PROPS = (PREFIX + "test_accuracy", PREFIX + "quantization")  # the int8 model's own values


def optimized_op_counts(path: Path) -> Counter:
    """Op types of the graph onnxruntime's CPU provider runs for a model (extended optimisation)."""
    with scratch_directory("opt") as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        graph = load(opts.optimized_model_filepath).graph
    return Counter(node.op_type for node in graph.node)


def meant_to_quantize(candidate: Candidate) -> dict[str, list[str]]:
    """The fp32 model's convolution and fully connected nodes that the settings quantize."""
    graph = load(candidate.float_path).graph
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
    """Count int8 and float layers in the optimised graph; fail when a meant layer stayed float."""
    expected = meant_to_quantize(candidate)
    counts = optimized_op_counts(candidate.path)
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


def check_metadata(fp32_props: dict[str, str], int8_props: dict[str, str], record: dict, source: str) -> None:
    """Every fp32 metadata prop is carried over unchanged, and the quantization record is there."""
    for key, value in fp32_props.items():
        if key in REPLACED_PROPS:
            continue
        if int8_props.get(key) != value:
            raise ValidationError(f"{source}: metadata {key} is {int8_props.get(key)!r} "
                                  f"(expected {value!r}, carried over from the fp32 model)")
    found = int8_props.get(PREFIX + "quantization")
    if found is None or json.loads(found) != record:  # e.g. a record that is not plain JSON types
        raise ValidationError(f"{source}: metadata {PREFIX}quantization is {found!r} (expected {record!r})")
