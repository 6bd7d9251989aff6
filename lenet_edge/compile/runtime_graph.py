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

from ..errors import ModelError, first_line
from ..scratch import scratch_directory


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
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with scratch_directory("compile") as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        try:
            ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{source}: onnxruntime cannot load it ({first_line(exc)})") from exc
        return onnx.load(options.optimized_model_filepath)


def value_shapes(model, input_name: str, example: np.ndarray) -> dict[str, Value]:
    """Dtype and shape of every value, measured by running the optimised graph once on `example`.

    The contrib operators onnxruntime fuses into (QGemm, ...) have no onnx shape inference;
    one real run gives exact shapes for any operator onnxruntime can execute.
    """
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {v.name for v in probe.graph.output}
    initializers = {t.name for t in probe.graph.initializer}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in known and name not in initializers:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, {input_name: example})
    values = {name: Value(np.dtype(r.dtype), tuple(r.shape)) for name, r in zip(names, results, strict=True)}
    values[input_name] = Value(np.dtype(example.dtype), tuple(example.shape))
    return values
