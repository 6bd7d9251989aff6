"""The generic ONNX graph helpers, on a small hand-built model."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from lenet_edge import graph
from lenet_edge.errors import ModelError

from .quantize_models import tiny_lenet


@pytest.fixture
def model(tmp_path):
    return graph.load(tiny_lenet(tmp_path / "tiny.onnx"))


def test_lookups_follow_the_wiring(model):
    g = model.graph
    assert graph.producer(g, "relu_out").name == "relu" and graph.producer(g, "image") is None
    assert [n.name for n in graph.consumers(g, "conv_out")] == ["relu"]
    assert graph.first_node(g, "Conv").name == "conv" and graph.first_node(g, "LSTM") is None
    assert graph.op_counts(g) == {"Conv": 1, "Relu": 1, "MaxPool": 1, "Flatten": 1, "Gemm": 1}
    assert graph.attribute(graph.first_node(g, "MaxPool"), "kernel_shape") == [2, 2]
    assert graph.attribute(graph.first_node(g, "MaxPool"), "pads", "none") == "none"
    assert graph.static_shape(model, "pool_out") == [None, 4, 14, 14]
    assert graph.static_shape(model, "no such tensor") is None
    assert graph.metadata(model)["producer.note"] == "kept as it is"


def test_initializers_are_read_replaced_and_dropped_when_unused(model):
    g = model.graph
    assert graph.initializer_array(g, "conv.weight").shape == (4, 1, 5, 5)
    with pytest.raises(ModelError, match="'relu_out' is not an initializer"):
        graph.initializer_array(g, "relu_out")
    assert graph.is_private_initializer(g, "fc.bias") and not graph.is_private_initializer(g, "relu_out")
    graph.set_initializer(g, "fc.bias", np.ones(10))
    assert graph.initializer_array(g, "fc.bias").tolist() == [1.0] * 10
    graph.add_initializer(g, "spare", np.zeros(3, np.float32))
    graph.drop_unused_initializers(g)
    assert graph.initializer(g, "spare") is None and graph.initializer(g, "fc.bias") is not None


def test_nodes_are_replaced_in_place_and_attributes_set(model):
    g = model.graph
    relu = graph.first_node(g, "Relu")
    clip = helper.make_node("Clip", ["conv_out"], ["relu_out"], name="clip")
    graph.replace_nodes(g, [relu], [clip])
    assert [n.op_type for n in g.node] == ["Conv", "Clip", "MaxPool", "Flatten", "Gemm"]
    pool = graph.first_node(g, "MaxPool")
    graph.set_ints(pool, "strides", [1, 1])
    graph.set_ints(pool, "pads", [0, 0, 1, 1])
    assert graph.attribute(pool, "strides") == [1, 1] and graph.attribute(pool, "pads") == [0, 0, 1, 1]
    graph.set_metadata(model, {"lenet_edge.test_accuracy": "0.5"})
    assert graph.metadata(model)["lenet_edge.test_accuracy"] == "0.5"
    assert graph.metadata(model)["producer.note"] == "kept as it is"


def test_exclusions_expand_op_types_and_refuse_unknown_names(model):
    g = model.graph
    assert graph.nodes_to_exclude(g, (), ("Conv",), "m") == ("conv",)
    assert graph.nodes_to_exclude(g, ("fc",), ("Gemm",), "m") == ("fc",)
    with pytest.raises(ModelError, match=r"no node named 'x' to exclude \(its Conv/Gemm/MatMul nodes are: conv, fc\)"):
        graph.nodes_to_exclude(g, ("x",), (), "m")
    with pytest.raises(ModelError, match="no node of op type 'LSTM'.*Conv, Flatten, Gemm, MaxPool, Relu"):
        graph.nodes_to_exclude(g, (), ("LSTM",), "m")


def test_static_shape_ignores_stale_annotations(model):
    g = model.graph
    g.value_info.append(helper.make_tensor_value_info("pool_out", 1, [7, 7]))  # wrong, as after a rewrite
    assert graph.static_shape(model, "pool_out") == [None, 4, 14, 14]
    assert numpy_helper.to_array(graph.initializer(g, "conv.bias")).shape == (4,)
