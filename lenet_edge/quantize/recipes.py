"""The candidates `quantize --auto` tries: each a named recipe = settings (+ the graph rewrite), and how to build it.

Order is preference: when candidates tie on speed, the earlier one wins (the standard recipe
needs no rewrite; among rewrites QDQ per-tensor before per-channel, QDQ before QOperator,
whose com.microsoft operators only onnxruntime runs natively).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..contract import PREFIX
from ..errors import ValidationError, require
from .build import (
    QUANT_FORMATS,
    QUANT_TYPES,
    Candidate,
    build_candidate,
    check_kernels,
    quantized_metadata,
    quiet,
    read_metadata,
    set_metadata,
)
from .calibration import METHODS, calibrate
from .rewrite import LEAN_OP_TYPES, REWRITES, float_logits
from .settings import QuantSettings

onnx = require("onnx", "quantize")

STANDARD = "standard"


@dataclass(frozen=True)
class Recipe:
    name: str
    settings: QuantSettings
    rewrite: bool  # quantize the kernel-friendly rewrite of the fp32 graph (rewrite.py), not the graph itself
    what: str  # what this candidate tests, one line

    def to_record(self) -> dict:
        """What goes into the int8 model's metadata besides the settings (compact: it counts in the size)."""
        if not self.rewrite:
            return {"name": self.name, "graph_rewrite": [], "op_types_to_quantize": "all", "float_logits": False}
        return {"name": self.name, "graph_rewrite": list(REWRITES), "op_types_to_quantize": list(LEAN_OP_TYPES),
                "float_logits": True}


def candidate_recipes(base: QuantSettings, first_conv: str | None) -> list[Recipe]:
    """The search's candidates, built on `base` (the user's target and calibration); `first_conv` is
    C1's node name in the pre-processed fp32 graph (None: no such candidate)."""
    per_tensor = replace(base, per_channel=False)
    recipes = [Recipe(STANDARD, base, False, "the stage's default: QDQ, per-channel weights, MinMax")]
    if first_conv is not None:
        recipes.append(Recipe("standard+c1-float", replace(base, exclude_nodes=(first_conv,)), False,
                              "C1 (one input channel, a slow int8 conv) kept in float"))
    recipes += [
        Recipe("kernel-friendly", per_tensor, True,
               "exact rewrite (C1+pool as a 4->64-channel conv, C3 over column pairs, C5 as Gemm), "
               "QDQ per-tensor weights, float logits"),
        Recipe("kernel-friendly+per-channel", base, True, "the rewrite with per-channel weights"),
        Recipe("kernel-friendly+qoperator", replace(per_tensor, format="qoperator"), True,
               "the rewrite in QOperator format"),
    ]
    return recipes


def first_conv_name(float_path: Path) -> str | None:
    """The first Conv node of a graph (C1), or None."""
    graph = onnx.load(str(float_path), load_external_data=False).graph
    return next((n.name for n in graph.node if n.op_type == "Conv"), None)


def build_recipe(recipe: Recipe, float_path: Path, workdir: Path, *, calibration: np.ndarray,
                 metadata: dict[str, str], calibration_source: str, source: str) -> Candidate:
    """The recipe's int8 model in `workdir` from the pre-processed fp32 graph it applies to
    (the rewritten one for rewrite recipes), the recipe recorded in its metadata."""
    if not recipe.rewrite:
        candidate = build_candidate(float_path, recipe.settings, workdir, calibration=calibration,
                                    metadata=metadata, calibration_source=calibration_source, name=recipe.name,
                                    source=source)
        props = read_metadata(candidate.path)
        record = {**json.loads(props[PREFIX + "quantization"]), "recipe": recipe.to_record()}
        set_metadata(candidate.path, quantized_metadata(props, record, source))
        return candidate
    return _build_lean(recipe, float_path, workdir, calibration=calibration, metadata=metadata,
                       calibration_source=calibration_source, source=source)


def _build_lean(recipe: Recipe, float_path: Path, workdir: Path, *, calibration: np.ndarray,
                metadata: dict[str, str], calibration_source: str, source: str) -> Candidate:
    """quantize_static on the rewritten graph, quantizing only LEAN_OP_TYPES, then logits left in float
    and no shape annotations: a lean file (the size gate is 3x smaller than fp32).
    The calibration cache is named as build.build_candidate names it, so both share one per workdir."""
    import onnxruntime as ort
    from onnxruntime.quantization import quantize_static

    settings = recipe.settings.resolve()
    out = workdir / f"{recipe.name}.onnx"
    cache = workdir / f"calibration.{settings.method}.{len(calibration)}.{settings.calibration_seed}.json"
    calibrate(float_path, calibration, settings.method, cache)
    try:
        with quiet():
            quantize_static(str(float_path), str(out), None, quant_format=QUANT_FORMATS[settings.format],
                            op_types_to_quantize=list(LEAN_OP_TYPES), per_channel=settings.per_channel,
                            reduce_range=settings.reduce_range, activation_type=QUANT_TYPES[settings.activation_type],
                            weight_type=QUANT_TYPES[settings.weight_type], calibrate_method=METHODS[settings.method],
                            calibration_cache_path=str(cache))
    except ValueError as exc:  # onnxruntime refuses a combination of settings
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValidationError(f"{source}: onnxruntime cannot quantize the rewritten graph with "
                              f"{settings.to_record()} ({first})") from exc
    model = onnx.load(str(out))
    float_logits(model)
    del model.graph.value_info[:]  # shape annotations from pre-processing: onnxruntime infers them again
    onnx.save(model, str(out))
    record = {**settings.to_record(), "excluded_nodes": [], "onnxruntime": ort.__version__,
              "calibration_source": calibration_source, "recipe": recipe.to_record()}
    set_metadata(out, quantized_metadata(metadata, record, source))
    check_kernels(out, settings)
    return Candidate(settings, out, float_path, ())
