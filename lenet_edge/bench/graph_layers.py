"""Which LeNet-5 layer (C1, S2, C3, S4, C5, F6, OUTPUT) each node of an ONNX model belongs to, read from
the model's bytes without the onnx package (the device side has none), and the rule that maps the nodes
onnxruntime actually runs, after its graph optimisations, back to those layers.

The layer of a node in the model file:
  1. the exporter keeps each node's PyTorch module scopes in its metadata (`pkg.torch.onnx.name_scopes`,
     e.g. ['', 'C3', 'C3.0', 'conv2d_1']): the first scope that names a layer;
  2. else a layer named by a part of the node's name, parts split at '.', '_' and '/', any case: the
     quantizer's `C1.0.weight_DequantizeLinear`, quantize --auto's rewrite `fold.c5.gemm`. A pooling node
     (op *Pool, or a later part starting `pool`: the rewrite's averaging convs and pooled views) named
     after a convolution layer is the subsampling layer after it: the rewrite folds C1 and S2 into one
     group of nodes named fold.c1.*;
  3. else the layer of the node that produces its first input (the quantizer's QuantizeLinear and
     DequantizeLinear pairs, the flattening Reshape between C5 and F6), and for a node fed by the graph's
     input, the layer of the node its output feeds (the input's QuantizeLinear belongs to C1).

onnxruntime names the nodes it runs after the original ones: a fused Conv+Relu in the NCHWc layout after
the Relu's output tensor (`relu_1_nchwc`), a node moved by the layout pass after itself with a token
(`node_conv2d_token_5`), a fused Gemm as `fused node_linear`, a fusion as `node_matmul/MatMulScaleFusion/...`,
a QuantizeLinear moved before a Reshape after its input tensor (`image_q`); the quantizer names its
QuantizeLinear and DequantizeLinear after the tensor they convert. A run node's name is looked up as a node
name, then as a tensor name (the layer of the tensor's producer, or for the graph input its consumer),
first as it is, then with those decorations taken off one by one; then by rule 2 on its own name. A node
that matches nothing (the layout conversions onnxruntime inserts, `Transpose`, `ReorderOutput_token_8`)
falls under its own name.

A quantized model may have lost the scopes (quantizing the classic lenet5 rebuilds its graph through
onnxruntime's optimiser, which keeps the node names but not their metadata): profiled beside an fp32 model
of the same checkpoint, it borrows that model's layers for the names it shares (`LayerMap.borrowing`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..contract import LAYERS
from ..errors import ModelError
from ..runtime.model_file import ORT_FORMAT_ID, Malformed, fields

SCOPES_KEY = "pkg.torch.onnx.name_scopes"
# onnx.proto3 field numbers of what is read here
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INPUT = 1, 11
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP_TYPE, _NODE_METADATA = 1, 2, 3, 4, 9
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_VALUE_INFO_NAME = 1
_LAYER_BY_PART = {layer.lower(): layer for layer in LAYERS}
# what onnxruntime adds to a name, taken off one at a time in this order
_DECORATIONS = (re.compile(r"^fused "), re.compile(r"_token_\d+$"), re.compile(r"_nchwc$"),
                re.compile(r"_(q|dq|QuantizeLinear|DequantizeLinear)$"), re.compile(r"/.*$"))


@dataclass(frozen=True)
class GraphNode:
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    scopes: str  # the exporter's name scopes as written ('' when the node has none)


@dataclass(frozen=True)
class LayerMap:
    """A model's node and tensor names, each with its layer (None: no layer found)."""

    nodes: dict[str, str | None]
    tensors: dict[str, str | None]

    def layer_of(self, run_name: str, op_name: str) -> str:
        """The layer of a node onnxruntime ran (its profile name without `_kernel_time`), or the name itself."""
        name = run_name
        candidates = [name]
        for decoration in _DECORATIONS:
            name = decoration.sub("", name)
            candidates.append(name)
        for candidate in candidates:
            for table in (self.nodes, self.tensors):
                if table.get(candidate):
                    return table[candidate]
        return named_layer(run_name, op_name) or run_name

    def borrowing(self, other: LayerMap) -> LayerMap:
        """This map, with `other`'s layer for each name this one has none for."""
        def merged(mine: dict, theirs: dict) -> dict:
            return {**theirs, **{name: layer for name, layer in mine.items() if layer or name not in theirs}}

        return LayerMap(merged(self.nodes, other.nodes), merged(self.tensors, other.tensors))


def named_layer(name: str, op_type: str) -> str | None:
    """Rule 2 of the module docstring: the layer a node's name names, or None."""
    parts = [p.lower() for p in re.split(r"[._/ ]", name) if p]
    for i, part in enumerate(parts):
        layer = _LAYER_BY_PART.get(part)
        if layer is None:
            continue
        pooling = op_type.endswith("Pool") or any(p.startswith("pool") for p in parts[i + 1:])
        after = LAYERS.index(layer) + 1
        if pooling and layer.startswith("C") and after < len(LAYERS) and LAYERS[after].startswith("S"):
            return LAYERS[after]
        return layer
    return None


def scoped_layer(scopes: str) -> str | None:
    """Rule 1: the first layer among the exporter's scopes "['', 'C3', 'C3.0', 'conv2d_1']"."""
    for scope in re.findall(r"'([^']*)'", scopes):
        if scope in LAYERS:
            return scope
    return None


def layer_map(data: bytes, source: str) -> LayerMap:
    """The layers of the nodes and tensors of an ONNX model's bytes, by rules 1-3."""
    if data[4:8] == ORT_FORMAT_ID:
        raise ModelError(f"{source}: an ORT-format model (expected an .onnx model: its graph names the layers "
                         f"of its nodes)")
    try:
        nodes, graph_inputs = read_nodes(data)
    except Malformed as exc:
        raise ModelError(f"{source}: not a loadable ONNX model (malformed protobuf: {exc})") from None
    layers: dict[str, str | None] = {n.name: scoped_layer(n.scopes) or named_layer(n.name, n.op_type) for n in nodes}
    producers = {out: n for n in nodes for out in n.outputs}
    for n in nodes:  # rule 3, forward: from the producer of the first input (graph order is topological)
        if layers[n.name] is None and n.inputs and n.inputs[0] in producers:
            layers[n.name] = layers[producers[n.inputs[0]].name]
    for n in reversed(nodes):  # rule 3, backward: a node fed by the graph input takes its consumer's layer
        if layers[n.name] is None:
            fed = [c for c in nodes if set(c.inputs) & set(n.outputs) and layers[c.name]]
            layers[n.name] = layers[fed[0].name] if fed else None
    tensors = {out: layers[n.name] for n in nodes for out in n.outputs}
    for name in graph_inputs:
        fed = [n for n in nodes if name in n.inputs and layers[n.name]]
        tensors[name] = layers[fed[0].name] if fed else None
    return LayerMap(layers, tensors)


def read_nodes(data: bytes) -> tuple[list[GraphNode], list[str]]:
    """The main graph's nodes in file order and its input names, from an ONNX model's wire format."""
    graph = next((v for f, w, v in fields(data, 0, len(data)) if f == _MODEL_GRAPH and w == 2), None)
    if graph is None:
        raise Malformed("no graph")
    nodes, inputs = [], []
    for field, wire, span in fields(data, *graph):
        if wire != 2:
            continue
        if field == _GRAPH_NODE:
            nodes.append(_node(data, span))
        elif field == _GRAPH_INPUT:
            inputs += [_text(data, v) for f, w, v in fields(data, *span) if f == _VALUE_INFO_NAME and w == 2]
    return nodes, inputs


def _node(data: bytes, span: tuple[int, int]) -> GraphNode:
    values: dict[int, list[str]] = {_NODE_INPUT: [], _NODE_OUTPUT: [], _NODE_NAME: [], _NODE_OP_TYPE: []}
    scopes = ""
    for field, wire, value in fields(data, *span):
        if wire != 2:
            continue
        if field in values:
            values[field].append(_text(data, value))
        elif field == _NODE_METADATA:
            entry = {f: _text(data, v) for f, w, v in fields(data, *value) if w == 2}
            if entry.get(_ENTRY_KEY) == SCOPES_KEY:
                scopes = entry.get(_ENTRY_VALUE, "")
    name = values[_NODE_NAME][0] if values[_NODE_NAME] else ""
    op_type = values[_NODE_OP_TYPE][0] if values[_NODE_OP_TYPE] else ""
    return GraphNode(name, op_type, tuple(values[_NODE_INPUT]), tuple(values[_NODE_OUTPUT]), scopes)


def _text(data: bytes, span: tuple[int, int]) -> str:
    return data[span[0]:span[1]].decode("utf-8", errors="replace")
