"""The runtime's model loader refuses external data and oversized files before onnxruntime runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lenet_edge.errors import ModelError
from lenet_edge.runtime.model_file import MAX_MODEL_BYTES, read_model_bytes
from lenet_edge.runtime.session import load_model
from tests.runtime_models import band_model


@pytest.fixture
def band(tmp_path):
    return band_model(tmp_path / "band.onnx")


def _external(tensor: onnx.TensorProto, location: str | None) -> onnx.TensorProto:
    tensor.data_location = TensorProto.EXTERNAL
    if location is not None:
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", location
    tensor.ClearField("raw_data")
    return tensor


def test_a_model_saved_with_external_data_is_refused_naming_tensor_and_file(band, tmp_path):
    model = onnx.load(str(band))
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").is_file()  # onnxruntime alone would load it; lenet-edge refuses
    with pytest.raises(ModelError, match=r"ext\.onnx: tensor '[WB]' refers to external data file 'weights\.bin' "
                                         r"\(refused: .*expected no external data\)"):
        load_model(tmp_path / "ext.onnx")


@pytest.mark.parametrize("location", ["/etc/passwd", "../../secrets.bin", None])
def test_external_data_hidden_in_a_subgraph_constant_is_refused(band, tmp_path, location):
    model = onnx.load(str(band))
    constant = _external(numpy_helper.from_array(np.ones(3, np.float32), "hidden"), location)
    branch = helper.make_graph([helper.make_node("Constant", [], ["y"], value=constant)], "branch", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model.graph.node.append(helper.make_node("If", ["flag"], ["z"], then_branch=branch, else_branch=branch))
    path = tmp_path / "nested.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=r"nested\.onnx: tensor 'hidden' refers to external data"):
        read_model_bytes(path)


def test_external_sparse_initializer_and_function_attribute_are_found(band, tmp_path):
    values = _external(numpy_helper.from_array(np.ones(2, np.float32), "values"), "v.bin")
    indices = numpy_helper.from_array(np.array([0, 3], np.int64), "indices")
    model = onnx.load(str(band))
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [5]))
    (tmp_path / "sparse.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=r"tensor 'values' refers to external data file 'v\.bin'"):
        read_model_bytes(tmp_path / "sparse.onnx")

    model = onnx.load(str(band))
    default = helper.make_attribute("t", _external(numpy_helper.from_array(np.ones(1, np.float32), "d"), "d.bin"))
    function = helper.make_function("custom", "f", ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
                                    [helper.make_opsetid("", 17)], attributes=[])
    function.attribute_proto.append(default)
    model.functions.append(function)
    (tmp_path / "function.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=r"tensor 'd' refers to external data file 'd\.bin'"):
        read_model_bytes(tmp_path / "function.onnx")


def test_a_model_above_the_cap_is_refused_unread(band, tmp_path):
    model = onnx.load(str(band))
    helper.set_model_props(model, {"padding": "x" * (MAX_MODEL_BYTES + 1)})  # a valid model, just too large
    path = tmp_path / "huge.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=rf"huge\.onnx: {path.stat().st_size} bytes "
                                         rf"\(expected a model of at most {MAX_MODEL_BYTES} bytes\)"):
        load_model(path)


@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b"\x08", "malformed protobuf: bad varint"),
    (b"\x3a\x7f", "malformed protobuf: field 7 of 127 bytes"),
    (b"\x0b\x0c", "malformed protobuf: wire type 3"),
    (b"\x00\x01", "malformed protobuf: field number 0"),
])
def test_malformed_bytes_are_model_errors(tmp_path, data, message):
    (tmp_path / "bad.onnx").write_bytes(data)
    with pytest.raises(ModelError, match=rf"bad\.onnx: .*{message}"):
        load_model(tmp_path / "bad.onnx")


def test_the_model_loaded_is_the_bytes_that_were_checked(band, tmp_path, monkeypatch):
    """onnxruntime gets the checked bytes, not the path: a file swapped after the check cannot get in."""
    import onnxruntime as ort

    seen = []
    real = ort.InferenceSession

    def spy(model, *args, **kwargs):
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    load_model(band)
    assert seen == [band.read_bytes()]


def test_an_ort_format_model_still_loads(band, tmp_path):
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    convert_onnx_models_to_ort(band, output_dir=tmp_path / "ort", optimization_styles=[OptimizationStyle.Fixed])
    ort_file = tmp_path / "ort" / "band.ort"
    assert ort_file.read_bytes()[4:8] == b"ORTM"
    x = np.random.default_rng(0).normal(size=(3, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(load_model(ort_file).predict(x), load_model(band).predict(x), atol=1e-5)
