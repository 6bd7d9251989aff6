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


def test_pattern_helpers_accept_the_plain_forms_and_refuse_the_others(model):
    g = model.graph
    conv, pool, gemm = (graph.first_node(g, op) for op in ("Conv", "MaxPool", "Gemm"))
    assert graph.single_consumer(g, conv, ("Relu",)).name == "relu"
    assert graph.single_consumer(g, conv, ("Tanh", "Sigmoid")) is None  # read by a Relu only
    g.node.append(helper.make_node("Identity", ["conv_out"], ["spare"], name="spare"))
    assert graph.single_consumer(g, conv, ("Relu",)) is None  # read twice
    assert graph.is_plain_pool(pool) and graph.is_plain_conv(conv) and graph.is_plain_gemm(gemm)
    assert not graph.is_plain_pool(pool, size=3)
    for name, value in (("pads", [0, 0, 1, 1]), ("ceil_mode", 1), ("dilations", [2, 2])):
        bent = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], **{name: value})
        assert not graph.is_plain_pool(bent), name
    for name, value in (("strides", [2, 2]), ("pads", [1, 1, 1, 1]), ("group", 2), ("auto_pad", "SAME_UPPER")):
        assert not graph.is_plain_conv(helper.make_node("Conv", ["x", "w"], ["y"], **{name: value})), name
    for name, value in (("alpha", 2.0), ("beta", 0.5), ("transA", 1)):
        assert not graph.is_plain_gemm(helper.make_node("Gemm", ["a", "b"], ["y"], **{name: value})), name
    assert not graph.is_plain_gemm(conv)


def test_bypass_and_constant_operands(model):
    g = model.graph
    graph.bypass(g, graph.first_node(g, "Relu"))
    assert graph.first_node(g, "MaxPool").input[0] == "conv_out" and graph.first_node(g, "Relu") is None
    mul = helper.make_node("Mul", ["pool_out", "conv.bias"], ["scaled"])
    assert graph.constant_operand(g, mul)[0] == 0 and graph.constant_operand(g, mul)[1].shape == (4,)
    assert graph.constant_operand(g, helper.make_node("Mul", ["pool_out", "flat"], ["y"])) is None  # no constant
    assert graph.constant_operand(g, helper.make_node("Mul", ["conv.bias", "fc.bias"], ["y"])) is None  # two


def test_reshape_peepholes_keep_the_function_and_drop_the_nodes_that_only_cost(tmp_path):
    """Reshape -> NHWC-to-NCHW -> NCHW-to-NHWC -> Reshape is one Reshape; a Reshape to its own shape goes."""
    def shape(name, dims):
        return numpy_helper.from_array(np.array(dims, np.int64), name)

    nodes = [helper.make_node("Reshape", ["x", "s1"], ["a"]),  # (2, 4, 3, 2)
             helper.make_node("Transpose", ["a"], ["b"], perm=[0, 3, 1, 2]),
             helper.make_node("Transpose", ["b"], ["c"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["c", "s2"], ["d"]),  # (2, 24)
             helper.make_node("Reshape", ["d", "s3"], ["y"])]  # (2, 24) again
    model = helper.make_model(helper.make_graph(
        nodes, "views", [helper.make_tensor_value_info("x", 1, [2, 4, 6])],
        [helper.make_tensor_value_info("y", 1, None)],
        [shape("s1", [2, 4, 3, 2]), shape("s2", [2, 24]), shape("s3", [2, 24])]),
        opset_imports=[helper.make_opsetid("", 20)], ir_version=9)
    graph.merge_reshapes(model.graph)
    assert [n.op_type for n in model.graph.node] == ["Reshape", "Reshape"]  # the transposes and one view gone
    graph.drop_identity_reshapes(model)  # the last Reshape writes the graph output: it stays
    assert [n.output[0] for n in model.graph.node] == ["d", "y"]
    model.graph.node[1].output[0] = "z"
    model.graph.node.append(helper.make_node("Relu", ["z"], ["y"]))
    graph.drop_identity_reshapes(model)
    assert [n.op_type for n in model.graph.node] == ["Reshape", "Relu"] and model.graph.node[1].input[0] == "d"
