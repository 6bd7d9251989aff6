"""Quantization recipes: what a candidate int8 model is made of, and the candidates `--auto` tries.

A recipe is settings plus three choices the builder (build.py) follows: quantize the fp32
graph or its kernel-friendly rewrite (rewrite.py), which op types to quantize, and a step
applied to the int8 graph afterwards. A plain `quantize` is one recipe built from the user's
settings. Order of `candidate_recipes` is preference: when candidates tie on speed the
earlier one wins (the standard recipe needs no rewrite; among the kernel-friendly ones QDQ
per-tensor before per-channel, QDQ before QOperator, whose com.microsoft operators only
onnxruntime runs natively).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..errors import require
from ..graph import consumers, drop_unused_initializers, producer
from .settings import QuantSettings

onnx = require("onnx", "quantize")

STANDARD = "standard"
# The kernel-friendly recipes quantize these only: onnxruntime's QDQ propagation still runs the
# Reshape/Transpose/Flatten in between on uint8, and the file holds no Q/DQ pairs for them.
KERNEL_FRIENDLY_OP_TYPES = ("Conv", "Gemm", "Relu", "Sigmoid", "MaxPool")


def float_logits(model: onnx.ModelProto) -> bool:
    """Graph output DQ(Q(Gemm)) -> Gemm: the logits are not rounded to 8 bits, and onnxruntime fuses
    the last layer into one QGemm with float output (one node less). Returns whether it applied."""
    g = model.graph
    applied = False
    for output in g.output:
        dq = producer(g, output.name)
        q = producer(g, dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        src = producer(g, q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        if src is None or src.op_type != "Gemm" or len(consumers(g, q.input[0])) != 1:
            continue
        src.output[list(src.output).index(q.input[0])] = output.name
        g.node.remove(q)
        g.node.remove(dq)
        applied = True
    drop_unused_initializers(g)
    return applied


def lean_file(model: onnx.ModelProto) -> None:
    """The kernel-friendly recipes' step after quantization: float logits and no shape annotations
    (onnxruntime infers them again), so the file stays >= 3x smaller than fp32."""
    float_logits(model)
    del model.graph.value_info[:]


@dataclass(frozen=True)
class QuantRecipe:
    name: str
    settings: QuantSettings
    kernel_friendly: bool = False  # quantize the kernel-friendly rewrite of the fp32 graph, not the graph itself
    what: str = ""  # what this candidate tests, one line
    op_types: tuple[str, ...] | None = None  # op types to quantize; None: every type onnxruntime quantizes
    after: Callable[[onnx.ModelProto], object] | None = None  # applied to the int8 graph, in place

    def to_record(self, rewrites: list[str] = ()) -> dict:
        """What goes into the int8 model's metadata besides the settings (compact: it counts in the size);
        `rewrites`: the ids of the kernel-friendly rewrites applied to the fp32 graph, for such a recipe."""
        return {"name": self.name, "graph_rewrite": list(rewrites) if self.kernel_friendly else [],
                "op_types_to_quantize": list(self.op_types) if self.op_types else "all",
                "float_logits": self.after is lean_file}


def candidate_recipes(base: QuantSettings, first_conv: str | None) -> list[QuantRecipe]:
    """The search's candidates, built on `base` (the user's target and calibration); `first_conv` is
    C1's node name in the pre-processed fp32 graph (None: no such candidate)."""
    per_tensor = replace(base, per_channel=False)
    recipes = [QuantRecipe(STANDARD, base, what="the stage's default: QDQ, per-channel weights, MinMax")]
    if first_conv is not None:
        recipes.append(QuantRecipe("standard+c1-float", replace(base, exclude_nodes=(first_conv,)),
                                   what="C1 (one input channel, a slow int8 conv) kept in float"))
    friendly = {"kernel_friendly": True, "op_types": KERNEL_FRIENDLY_OP_TYPES, "after": lean_file}
    return recipes + [
        QuantRecipe("kernel-friendly", per_tensor, **friendly,
                    what="exact rewrite (C1+pool as a 4->64-channel conv, C3 over column pairs, C5 as Gemm), "
                         "QDQ per-tensor weights, float logits"),
        QuantRecipe("kernel-friendly+per-channel", base, **friendly, what="the rewrite with per-channel weights"),
        QuantRecipe("kernel-friendly+qoperator", replace(per_tensor, format="qoperator"), **friendly,
                    what="the rewrite in QOperator format"),
    ]
