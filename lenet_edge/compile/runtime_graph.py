"""The graph onnxruntime actually executes for an int8 model, and every value's shape in it.

The generated C reproduces onnxruntime's arithmetic, so it is compiled from the graph onnxruntime
runs after its graph optimisations (QDQ groups fused into QLinearConv, QGemm, uint8 MaxPool, ...),
not from the QDQ file as stored. ORT_ENABLE_EXTENDED is the last level whose saved graph holds only
portable operators; ALL adds layout rewrites that compute the same numbers (checked: the C built
from the EXTENDED graph is bit-identical to sessions at the default level, ALL).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sessions import open_session, optimized_graph, session_options


@dataclass(frozen=True)
class Value:
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def optimized_model(model_bytes: bytes, source: Path):
    """The model as onnxruntime optimises it for the CPU (an onnx.ModelProto)."""
    return optimized_graph(model_bytes, source, "extended")


def value_shapes(model, input_name: str, example: np.ndarray) -> dict[str, Value]:
    """Dtype and shape of every value, measured by running the optimised graph once on `example`.

    The contrib operators onnxruntime fuses into (QGemm, ...) have no onnx shape inference;
    one real run gives exact shapes for any operator onnxruntime can execute.
    """
    values = {name: Value(np.dtype(r.dtype), tuple(r.shape)) for name, r in value_arrays(model, input_name,
                                                                                          example).items()}
    values[input_name] = Value(np.dtype(example.dtype), tuple(example.shape))
    return values


def probe_model(model):
    """The optimised graph with every value a node computes as a graph output (an onnx.ModelProto)."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {v.name for v in probe.graph.output}
    initializers = {t.name for t in probe.graph.initializer}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in known and name not in initializers:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    return probe


def value_arrays(model, input_name: str, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every value of the optimised graph `model` computed by onnxruntime for `inputs`, each as it runs in
    the graph (optimisations off: the graph is already the optimised one)."""
    session = open_session(probe_model(model).SerializeToString(), "the optimised graph",
                           session_options(optimization="none"))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {input_name: inputs}), strict=True))
