"""Small ONNX models for hermetic runtime tests, built node by node with onnx.helper.

`band_model` recognises the synthetic digits of tests/idx_files.py (class k is a bright
bar on rows 3+2k and 4+2k): its logit k sums the preprocessed pixels of that band, so
evaluate and bench have a real, checkable accuracy without any training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenet_edge.contract import INPUT_NAME, OUTPUT_NAME, ModelContract
from lenet_edge.mnist import MODERN_PREPROCESSING, Preprocessing


def band_weights(prep: Preprocessing) -> np.ndarray:
    """(size * size, 10) float32: column k is 1 on the pixels of class k's bar."""
    size, pad = prep.input_size, prep.pad
    w = np.zeros((size, size, 10), dtype=np.float32)
    for k in range(10):
        w[pad + 3 + 2 * k:pad + 5 + 2 * k, pad + 4:pad + 24, k] = 1.0
    return w.reshape(size * size, 10)


def band_model(path: Path, prep: Preprocessing = MODERN_PREPROCESSING, *, variant: str = "lenet5-modern",
               quantization: dict | None = None, contract: bool = True, weights: np.ndarray | None = None,
               input_name: str = INPUT_NAME, classes: int = 10) -> Path:
    """image (N, 1, size, size) -> Flatten -> Gemm -> logits (N, classes), with the lenet-edge contract."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = prep.input_size
    w = band_weights(prep) if weights is None else weights.astype(np.float32)
    w = w[:, :classes] if classes <= 10 else np.pad(w, ((0, 0), (0, classes - 10)))
    graph = helper.make_graph(
        [helper.make_node("Flatten", [input_name], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "B"], [OUTPUT_NAME])],
        "band",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.zeros(classes, np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    if contract:
        props = ModelContract(variant=variant, preprocessing=prep, quantization=quantization).to_metadata()
        helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return Path(path)


def random_model(path: Path, seed: int = 0, **kwargs) -> Path:
    """A band-shaped model with random weights: arbitrary but deterministic predictions."""
    rng = np.random.default_rng(seed)
    prep = kwargs.get("prep", MODERN_PREPROCESSING)
    return band_model(path, weights=rng.normal(size=(prep.input_size ** 2, 10)).astype(np.float32), **kwargs)


def slow_model(path: Path, layers: int = 300) -> Path:
    """Only operators a LeNet has, but `layers` 1024x1024 matrix products in a row, with the lenet-edge
    contract: at a batch of 10,000 digits one call takes minutes on one thread, one node a fraction of a
    second (for interrupts and races)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Flatten", [INPUT_NAME], ["h0"], axis=1)]
    for i in range(layers):
        nodes += [helper.make_node("MatMul", [f"h{i}", "W"], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"])]
    nodes.append(helper.make_node("Gemm", [f"h{layers}", "V", "B"], [OUTPUT_NAME]))
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array((rng.normal(size=(1024, 1024)) / 32).astype(np.float32), "W"),
         numpy_helper.from_array(rng.normal(size=(1024, 10)).astype(np.float32), "V"),
         numpy_helper.from_array(np.zeros(10, np.float32), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    contract = ModelContract(variant="lenet5-modern", preprocessing=MODERN_PREPROCESSING)
    helper.set_model_props(model, contract.to_metadata())
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return Path(path)
