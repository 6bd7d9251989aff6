"""Generic helpers over one ONNX graph: find, rewire and count nodes and initializers.

Nothing here knows LeNet-5: the stages that read or rewrite graphs (export's op counts, the
quantization stage's rewrites and checks, a compiler walking an int8 graph) share these.
Graphs are edited in place; `graph` is an onnx.GraphProto, `model` an onnx.ModelProto.
Needs onnx (a host-side extra): lenet_edge.runtime never imports this module.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .errors import ModelError, require

onnx = require("onnx", "quantize")
from onnx import helper, numpy_helper, shape_inference  # noqa: E402


def load(path: Path) -> onnx.ModelProto:
    """A model file's graph and metadata (external weights, if any, are not read)."""
    return onnx.load(str(path), load_external_data=False)


# ---------------------------------------------------------------- nodes
def producer(graph, name: str):
    """The node that outputs tensor `name`, or None (a graph input or an initializer)."""
    return next((n for n in graph.node if name in n.output), None)


def consumers(graph, name: str) -> list:
    """The nodes that read tensor `name`, in graph order."""
    return [n for n in graph.node if name in n.input]


def first_node(graph, op_type: str):
    """The first node of `op_type` in graph order (e.g. a network's first Conv), or None."""
    return next((n for n in graph.node if n.op_type == op_type), None)


def op_counts(graph) -> dict[str, int]:
    """How many nodes of each op type the graph holds, most frequent first."""
    return dict(Counter(node.op_type for node in graph.node).most_common())


def nodes_to_exclude(graph, names: tuple[str, ...], op_types: tuple[str, ...], source: str,
                     layer_types: tuple[str, ...] = ("Conv", "Gemm", "MatMul")) -> tuple[str, ...]:
    """The node names `names` (each checked to exist) plus every node of an op type in `op_types`;
    an unknown name or op type is a ModelError listing what the graph has (its `layer_types` nodes)."""
    all_names = [n.name for n in graph.node]
    for name in names:
        if name not in all_names:
            layers = [n.name for n in graph.node if n.op_type in layer_types]
            raise ModelError(f"{source}: no node named {name!r} to exclude "
                             f"(its {'/'.join(layer_types)} nodes are: {', '.join(layers)})")
    present = {n.op_type for n in graph.node}
    for op_type in op_types:
        if op_type not in present:
            raise ModelError(f"{source}: no node of op type {op_type!r} to exclude "
                             f"(its op types are: {', '.join(sorted(present))})")
    by_type = [n.name for n in graph.node if n.op_type in op_types]
    return tuple(dict.fromkeys([*names, *by_type]))


def attributes(node) -> dict:
    """All of a node's attributes by name."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def describe(node) -> str:
    """How an error names a node: 'node "conv1" (QLinearConv)'."""
    return f'node "{node.name or node.output[0]}" ({node.op_type})'


def attribute(node, name: str, default=None):
    """A node attribute's value (lists as lists), or `default` when the node does not set it."""
    found = next((a for a in node.attribute if a.name == name), None)
    value = helper.get_attribute_value(found) if found is not None else default
    return list(value) if isinstance(value, (list, tuple)) else value


def set_ints(node, name: str, values: list[int]) -> None:
    """Set (or add) an integer-list attribute."""
    for a in node.attribute:
        if a.name == name:
            del a.ints[:]
            a.ints.extend(values)
            return
    node.attribute.append(helper.make_attribute(name, values))


def single_consumer(graph, node, op_types: tuple[str, ...]):
    """The one node that reads `node`'s first output, if it is one of `op_types`; else None."""
    users = consumers(graph, node.output[0])
    return users[0] if len(users) == 1 and users[0].op_type in op_types else None


def is_plain_pool(node, size: int = 2) -> bool:
    """A `size`x`size` window of stride `size`: no padding, dilation or ceil mode, one output."""
    return (attribute(node, "kernel_shape") == [size, size] and attribute(node, "strides") == [size, size]
            and not any(attribute(node, "pads", [])) and not attribute(node, "ceil_mode", 0)
            and all(d == 1 for d in attribute(node, "dilations", [1, 1])) and len(node.output) == 1)


def is_plain_gemm(node) -> bool:
    """A Gemm that is A B' + C or A B + C: alpha and beta 1, A not transposed."""
    return (node.op_type == "Gemm" and attribute(node, "alpha", 1.0) == 1.0 and attribute(node, "beta", 1.0) == 1.0
            and not attribute(node, "transA", 0))


def is_plain_conv(node) -> bool:
    """Stride 1, no padding or dilation, one group."""
    auto_pad = attribute(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    return (attribute(node, "group", 1) == 1 and all(s == 1 for s in attribute(node, "strides", [1, 1]))
            and all(d == 1 for d in attribute(node, "dilations", [1, 1])) and not any(attribute(node, "pads", []))
            and auto_pad in ("NOTSET", "VALID"))


def bypass(graph, node, source: str | None = None) -> None:
    """Remove `node`; its readers read `source` (default: its first input) instead of its first output."""
    source = node.input[0] if source is None else source
    for user in consumers(graph, node.output[0]):
        user.input[:] = [source if name == node.output[0] else name for name in user.input]
    graph.node.remove(node)


def replace_nodes(graph, old: list, new: list) -> None:
    """Remove `old` and put `new` where the first of them stood (graph order stays topological)."""
    nodes = list(graph.node)
    at = min(nodes.index(n) for n in old)
    kept = [n for n in nodes if n not in old]
    kept[at:at] = new
    del graph.node[:]
    graph.node.extend(kept)


# ---------------------------------------------------------------- peepholes
def merge_reshapes(graph) -> None:
    """Reshape -> Transpose to NCHW -> Transpose to NHWC -> Reshape is one Reshape: the transposes cancel
    and two views of the same memory are one view."""
    for second in [n for n in graph.node if n.op_type == "Reshape"]:
        to_nhwc = producer(graph, second.input[0])
        to_nchw = producer(graph, to_nhwc.input[0]) if is_transpose(to_nhwc, [0, 2, 3, 1]) else None
        first = producer(graph, to_nchw.input[0]) if is_transpose(to_nchw, [0, 3, 1, 2]) else None
        chain = (first, to_nchw, to_nhwc)
        if first is None or first.op_type != "Reshape" or any(len(consumers(graph, n.output[0])) != 1 for n in chain):
            continue
        second.input[0] = first.input[0]
        for n in chain:
            graph.node.remove(n)


def drop_identity_reshapes(model) -> None:
    """A Reshape whose input already has its shape is a node that only costs: its readers take its input."""
    for node in [n for n in model.graph.node if n.op_type == "Reshape"]:
        shape_in, shape_out = static_shape(model, node.input[0]), static_shape(model, node.output[0])
        if shape_in is None or shape_in != shape_out or any(o.name == node.output[0] for o in model.graph.output):
            continue
        bypass(model.graph, node)


def is_transpose(node, perm: list[int]) -> bool:
    return node is not None and node.op_type == "Transpose" and attribute(node, "perm") == perm


# ---------------------------------------------------------------- initializers
def initializer(graph, name: str):
    """The initializer called `name`, or None."""
    return next((t for t in graph.initializer if t.name == name), None)


def initializer_array(graph, name: str) -> np.ndarray:
    """An initializer's value; ModelError when `name` is not a constant of the graph."""
    tensor = initializer(graph, name)
    if tensor is None:
        raise ModelError(f"graph {graph.name}: {name!r} is not an initializer (expected a constant tensor)")
    return numpy_helper.to_array(tensor)


def set_initializer(graph, name: str, value: np.ndarray) -> None:
    """Replace an existing float initializer's value (and shape)."""
    initializer(graph, name).CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))


def add_initializer(graph, name: str, value: np.ndarray) -> str:
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def constant_operand(graph, node) -> tuple[int, np.ndarray] | None:
    """(index of the other input, its value) for a Mul/Add of one tensor and one float constant."""
    for i in (0, 1):
        other = node.input[1 - i]
        if initializer(graph, other) is not None and initializer(graph, node.input[i]) is None:
            value = initializer_array(graph, other)
            return (i, value) if value.dtype == np.float32 else None
    return None


def is_private_initializer(graph, name: str) -> bool:
    """A constant read by exactly one node: it can be rewritten without changing any other node."""
    return initializer(graph, name) is not None and len(consumers(graph, name)) == 1


def drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)


# ---------------------------------------------------------------- shapes and metadata
def static_shape(model, name: str) -> list | None:
    """Tensor `name`'s inferred shape, None for a symbolic dimension (the batch); None when the shape
    is unknown. Stale annotations are dropped first: after an edit they would contradict the graph."""
    del model.graph.value_info[:]
    graph = shape_inference.infer_shapes(model).graph
    for v in (*graph.value_info, *graph.input, *graph.output):
        if v.name == name and v.type.tensor_type.HasField("shape"):
            return [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    return None


def metadata(model) -> dict[str, str]:
    """The model's metadata_props as a dict: the one reader of an ONNX file's metadata on the host (a device,
    without onnx, reads the same keys through onnxruntime's custom_metadata_map)."""
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model, props: dict[str, str]) -> None:
    """The one writer: merge `props` into the model's metadata_props. Given keys win and the others stay,
    so what onnxruntime's tools recorded (onnx.quant.pre_process, onnx.infer) travels with the model."""
    merged = metadata(model) | props
    del model.metadata_props[:]
    helper.set_model_props(model, merged)


# ---------------------------------------------------------------- a read-only index, for walking a graph
class GraphIndex:
    """A graph's nodes in order, its constants (initializers and Constant nodes) as numpy arrays, and who
    produces and who consumes each value: what a compiler walking the graph looks up at every node."""

    def __init__(self, model):
        graph = model.graph
        self.nodes = list(graph.node)
        self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.inputs = [v.name for v in graph.input if v.name not in self.constants]
        self.outputs = [v.name for v in graph.output]
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for node in self.nodes:
            for name in node.input:
                if name:
                    self.consumers[name].append(node)

    def constant(self, node, index: int) -> np.ndarray | None:
        """The constant value of the node's `index`-th input, None if the input is absent or computed."""
        if index >= len(node.input) or not node.input[index]:
            return None
        return self.constants.get(node.input[index])

    def is_constant(self, name: str) -> bool:
        return name in self.constants
