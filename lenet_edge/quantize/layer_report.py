"""Per-layer quantization error: where between input and logits the int8 model loses accuracy.

onnxruntime's `qdq_loss_debug` runs the fp32 and the QDQ model on the same images and pairs each
quantized activation with its fp32 twin: SQNR = 20 log10(||fp32|| / ||fp32 - int8||) in dB, the error
accumulated up to that tensor, and the same for weights. A QOperator model is measured on the QDQ model
of the same settings and ranges; a dynamic one on the tensors both models share. Why these and not
qdq_loss_debug's other figure: docs/quantize.md, "Per-layer error".
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import graph
from ..contract import INPUT_NAME
from ..errors import require
from .stage import BatchReader, Candidate, build_candidate, quiet

require("onnx", "quantize")
from onnxruntime.quantization import qdq_loss_debug as qdq  # noqa: E402

QUANTIZED_SUFFIX = "_quantized"  # onnxruntime's name for a quantized constant: the float one's + this

SAMPLE = 500  # test images run through both models
METRIC = "SQNR dB = 20 log10(||fp32|| / ||fp32 - int8||), onnxruntime.quantization.qdq_loss_debug"


def layer_errors(candidate: Candidate, inputs: np.ndarray, workdir: Path, *,
                 calibration: np.ndarray | None = None) -> dict:
    """Per-tensor SQNR of the candidate against its fp32 model on `inputs` (N, 1, 32, 32)."""
    inputs = inputs[:SAMPLE]
    measured, note = candidate, "the int8 model itself"
    if candidate.settings.is_static and candidate.settings.format == "qoperator":
        twin = replace(candidate.recipe, name="qdq-twin", settings=replace(candidate.settings, format="qdq"))
        measured = build_candidate(twin, candidate.float_model, workdir, calibration=calibration)  # same ranges:
        # the calibration cache is shared
        note = "the QDQ model of the same settings and calibration ranges (QOperator models hold no QDQ pairs)"
    with tempfile.TemporaryDirectory(prefix="lenet-edge-debug-", dir=workdir) as tmp:
        float_acts = _activations(candidate.float_model.path, inputs, Path(tmp) / "float.onnx")
        int8_acts = _activations(measured.path, inputs, Path(tmp) / "int8.onnx")
    order, producers = _graph_positions(candidate.float_model.proto)
    if candidate.settings.is_static:
        matched = qdq.create_activation_matching(int8_acts, float_acts)
        errors = qdq.compute_activation_error({name: m for name, m in matched.items() if "float" in m}, _sqnr)
        rows = [{"tensor": name, "op": producers.get(name, "input"), "sqnr_db": _db(e["xmodel_err"])}
                for name, e in errors.items()]
        weights = qdq.compute_weight_error(_weight_matching(candidate.float_model.proto, measured.model), _sqnr)
    else:
        shared = [name for name in float_acts if name in int8_acts and name != INPUT_NAME]
        rows = [{"tensor": name, "op": producers.get(name, "input"), "sqnr_db": _db(
            _sqnr(float_acts[name], int8_acts[name]))} for name in shared]
        weights = {}
    rows.sort(key=lambda r: order.get(r["tensor"], len(order)))
    weight_rows = sorted(({"weight": name, "sqnr_db": _db(v)} for name, v in weights.items()),
                         key=lambda r: order.get(r["weight"], len(order)))
    return {"metric": METRIC, "images": len(inputs), "split": "test", "measured_on": note,
            "activations": rows, "weights": weight_rows,
            "worst_activation": _worst(rows), "worst_weight": _worst(weight_rows)}


def _worst(rows: list[dict]) -> dict | None:
    scored = [r for r in rows if r["sqnr_db"] is not None]
    return min(scored, key=lambda r: r["sqnr_db"]) if scored else None


def _weight_matching(float_model, int8_model) -> dict:
    """{weight: {"float", "dequantized"}} for every constant a DequantizeLinear reads, dequantized in
    float: (q - zero_point) * scale, per channel along the node's axis. (onnxruntime's
    create_weight_matching subtracts in the quantized dtype, which wraps around for uint8
    constants, 60 - 123 = 193, and turns an accurate quantization into a negative SQNR.)"""
    fp32, int8 = float_model.graph, int8_model.graph
    matched = {}
    for node in (n for n in int8.node if n.op_type == "DequantizeLinear"):
        name = node.input[0].removesuffix(QUANTIZED_SUFFIX)
        if graph.initializer(int8, node.input[0]) is None or graph.initializer(fp32, name) is None:
            continue  # an activation, or a constant the fp32 graph does not hold
        q = graph.initializer_array(int8, node.input[0]).astype(np.float32)
        scale = graph.initializer_array(int8, node.input[1]).astype(np.float32)
        zero = (graph.initializer_array(int8, node.input[2]).astype(np.float32) if len(node.input) > 2
                else np.zeros_like(scale))
        if scale.size > 1:  # per channel: broadcast along the axis
            shape = [1] * q.ndim
            shape[graph.attribute(node, "axis", 1)] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        matched[name] = {"float": graph.initializer_array(fp32, name), "dequantized": (q - zero) * scale}
    return matched


def _activations(model: Path, inputs: np.ndarray, augmented: Path) -> dict[str, list[np.ndarray]]:
    with quiet():
        qdq.modify_model_output_intermediate_tensors(str(model), str(augmented))
        return qdq.collect_activations(str(augmented), BatchReader(inputs, INPUT_NAME))


def _graph_positions(float_model) -> tuple[dict[str, int], dict[str, str]]:
    """Tensor name -> position of its first use in the fp32 graph, and -> the op type producing it."""
    order: dict[str, int] = {}
    producers: dict[str, str] = {}
    for i, node in enumerate(float_model.graph.node):
        for name in node.input:
            order.setdefault(name, 2 * i)  # a node's inputs before its outputs
        for name in node.output:
            order.setdefault(name, 2 * i + 1)
        producers.update((name, node.op_type) for name in node.output)
    return order, producers


def _sqnr(fp32, int8) -> float:
    """onnxruntime's SQNR, also for the 0-d weights (scalar Mul/Add constants) it trips over;
    NaN (shown as '-') for an all-zero tensor such as a zero bias, where SQNR is undefined."""
    fp32 = [np.atleast_1d(a) for a in (fp32 if isinstance(fp32, list) else [fp32])]
    int8 = [np.atleast_1d(a) for a in (int8 if isinstance(int8, list) else [int8])]
    if not any(np.any(a) for a in fp32):
        return math.nan
    return qdq.compute_signal_to_quantization_noice_ratio(fp32, int8)


def _db(value) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 2)


def format_table(report: dict) -> str:
    """The per-layer report as a fixed-width table, worst activation marked."""
    worst = report.get("worst_activation") or {}
    width = max([len(r["tensor"]) for r in report["activations"]] + [len(w["weight"]) for w in report["weights"]]
                + [len("activation")])
    lines = [f"per-layer error on {report['images']} {report['split']} images, measured on {report['measured_on']}",
             f"{'activation':<{width}}  {'op':<10}  {'SQNR fp32 vs int8':>17}"]
    for r in report["activations"]:
        mark = "  <- worst" if r["tensor"] == worst.get("tensor") else ""
        lines.append(f"{r['tensor']:<{width}}  {r['op']:<10}  {_fmt(r['sqnr_db']):>17}{mark}")
    if report["weights"]:
        worst_weight = report.get("worst_weight") or {}
        lines.append(f"{'weight':<{width}}  {'':<10}  {'SQNR fp32 vs int8':>17}")
        lines += [f"{w['weight']:<{width}}  {'':<10}  {_fmt(w['sqnr_db']):>17}"
                  f"{'  <- worst' if w['weight'] == worst_weight.get('weight') else ''}" for w in report["weights"]]
    lines.append("SQNR in dB: higher is better, about 6 dB per bit; below ~20 dB a layer deserves a look")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} dB"
