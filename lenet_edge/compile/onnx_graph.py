"""Reading an ONNX graph: constants as numpy arrays, attributes, who produces and who consumes a value.

The one place the compiler touches onnx's protobuf classes; every other module sees numpy and names.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


class Graph:
    def __init__(self, model):
        from onnx import numpy_helper

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


def attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def describe(node) -> str:
    """How an error names a node: 'node "conv1" (QLinearConv)'."""
    return f'node "{node.name or node.output[0]}" ({node.op_type})'
