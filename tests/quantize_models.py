"""Small hand-built fp32 ONNX models with a lenet-edge contract, for hermetic quantization tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lenet_edge.contract import INPUT_NAME, OUTPUT_NAME, ModelContract
from lenet_edge.mnist import MODERN_PREPROCESSING


def tiny_lenet(path: Path, seed: int = 0, opset: int = 20, contract: bool = True, bias_add: bool = False,
               near_tie: bool = False) -> Path:
    """image (N, 1, 32, 32) -> conv 5x5 (4 maps) -> relu -> maxpool 2 -> flatten -> gemm -> logits (N, 10).

    bias_add puts an Add of a constant (4, 1, 1) after the relu, as the classic LeNet-5's
    subsampling layers have: its constant is quantized like an activation, to uint8.
    near_tie makes a model built to lose accuracy in int8: every class has bias 1 and tiny fc
    weights, so the logits differ by ~1e-3 while int8's step over their range [0, ~1] is ~4e-3.
    """
    rng = np.random.default_rng(seed)
    weights = {
        "conv.weight": rng.normal(0, 0.2, (4, 1, 5, 5)),
        "conv.bias": rng.normal(0, 0.1, (4,)),
        "fc.weight": rng.normal(0, 0.05, (10, 4 * 14 * 14)),
        "fc.bias": rng.normal(0, 0.1, (10,)),
    }
    if near_tie:
        weights["fc.weight"] *= 0.01
        weights["fc.bias"] = np.ones(10)
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "conv.weight", "conv.bias"], ["conv_out"], name="conv"),  # (N, 4, 28, 28)
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node("MaxPool", ["relu_out"], ["pool_out"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    if bias_add:
        weights["map.bias"] = np.array([-0.3, -0.1, 0.1, 0.3]).reshape(4, 1, 1)
        nodes[1] = helper.make_node("Relu", ["conv_out"], ["relu_pre"], name="relu")
        nodes.insert(2, helper.make_node("Add", ["relu_pre", "map.bias"], ["relu_out"], name="bias_add"))
    nodes += [
        helper.make_node("Flatten", ["pool_out"], ["flat"], name="flatten"),  # (N, 784)
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], [OUTPUT_NAME], name="fc", transB=1),  # (N, 10)
    ]
    graph = helper.make_graph(
        nodes, "tiny_lenet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    if contract:
        props = ModelContract("lenet5-modern", MODERN_PREPROCESSING, test_accuracy=0.1).to_metadata()
        helper.set_model_props(model, {**props, "producer.note": "kept as it is"})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path
