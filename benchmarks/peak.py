"""The work a LeNet-5 inference does, for the benchmarks' "achieved GFLOP/s (% of peak)" figures
(headline.py, peers.py); the peak itself is lenet_edge.bench.peak's, the one the per-layer report uses.

Work: the multiply-accumulates of an fp32 (or QDQ) ONNX model's Conv and Gemm layers for one
image; pooling and activations are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenet_edge.bench.peak import cpu_peak  # noqa: F401  (re-exported: the benchmarks import it from here)


def count_macs(path: Path) -> int | None:
    """Multiply-accumulates of one image through the Conv/Gemm layers of an fp32 or QDQ model
    (weights read through DequantizeLinear); None for operators it cannot size (QOperator models)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*g.value_info, *g.input, *g.output)}
    constants = {t.name: numpy_helper.to_array(t).shape for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}

    def weight_shape(name):  # through DequantizeLinear to the constant, else the inferred shape
        while name not in constants and name in producers and producers[name].op_type == "DequantizeLinear":
            name = producers[name].input[0]
        shape = constants.get(name) or shapes.get(name)
        return tuple(shape) if shape and all(shape) else None

    total = 0
    for node in g.node:
        if node.op_type == "Conv":
            w, out = weight_shape(node.input[1]), shapes.get(node.output[0])
            if w is None or not out:
                return None
            total += int(np.prod(out[1:])) * int(np.prod(w[1:]))  # output elements x (Cin/group x kH x kW)
        elif node.op_type in ("Gemm", "MatMul"):
            w = weight_shape(node.input[1])
            if w is None or len(w) != 2:
                return None
            total += int(np.prod(w))  # one row: K x N
        elif node.op_type in ("QLinearConv", "QGemm", "ConvInteger", "MatMulInteger", "QLinearMatMul"):
            return None
    return total


def format_peak(value: float | None) -> str:
    """A peak in G(FL)OP/s for the printed tables; "unknown" where the CPU does not tell."""
    return "unknown" if value is None else f"{value:.0f}"
