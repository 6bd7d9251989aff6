"""Which of the model's layers (C1, S2, C3, S4, C5, F6, output) each node of onnxruntime's graph computes.

The exporter records each node's module scope (`pkg.torch.onnx.name_scopes`, e.g. ['', 'C1', 'C1.0',
'conv2d']) and quantize keeps it on the compute nodes; onnxruntime's optimiser drops node metadata but
keeps the names of the nodes it fuses into (node_conv2d stays node_conv2d as a QLinearConv). A node the
stored model does not place (a Q/DQ pair onnxruntime made, a rewrite's transpose) computes for the layer
of the node that produced its input, so each layer's requantisation and layout glue count with it. A
model without scopes (built by hand, not by lenet-edge export) has its nodes' own names instead.
"""

from __future__ import annotations

import ast

from ..graph import GraphIndex

SCOPES = "pkg.torch.onnx.name_scopes"
MODEL_LAYERS = ("C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT")  # lenet_edge.train.models.LAYERS (no torch here)
INPUT_LAYER = "input"  # the pixels' table and the first QuantizeLinear


def display_name(layer: str) -> str:
    return "output" if layer == "OUTPUT" else layer


def stored_layers(stored) -> dict[str, str]:
    """Node name -> layer, from the stored model's scopes (an onnx.ModelProto)."""
    found = {}
    for node in stored.graph.node:
        for prop in node.metadata_props:
            if prop.key != SCOPES:
                continue
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                continue
            layer = next((s for s in scopes if s in MODEL_LAYERS), None)
            if layer:
                found[node.name] = layer
    return found


def node_layers(graph: GraphIndex, stored) -> dict[str, str]:
    """Node name -> display layer for every node of onnxruntime's graph `graph`, in graph order."""
    known = stored_layers(stored)
    if not known:
        return {node.name: node.name for node in graph.nodes}
    producer_layer: dict[str, str] = {name: INPUT_LAYER for name in graph.inputs}
    layers = {}
    for node in graph.nodes:
        inherited = next((producer_layer[name] for name in node.input if name in producer_layer), INPUT_LAYER)
        layer = display_name(known[node.name]) if node.name in known else inherited
        layers[node.name] = layer
        for name in node.output:
            producer_layer[name] = layer
    return layers


def kernel_layer(node_names: list[str], layers: dict[str, str]) -> str:
    """The layers one generated function computes, in order: C1+S2 for a convolution with its pool fused in."""
    return "+".join(dict.fromkeys(layers[name] for name in node_names))
