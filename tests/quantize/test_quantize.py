"""Quantization stage, hermetic: settings and type choice, calibration checks, the reference
QGemm, error translation, metadata and the accuracy gate; the CLI on a tiny hand-built model
with synthetic MNIST-style data in tmp_path."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lenet_edge import sessions
from lenet_edge.bench.environment import cpu_info
from lenet_edge.cli import cli
from lenet_edge.contract import PREFIX, ModelContract
from lenet_edge.errors import DataError, ModelError, ValidationError
from lenet_edge.graph import load
from lenet_edge.mnist import MODERN_PREPROCESSING, load_mnist
from lenet_edge.onnx_reference import QGemm, QLinearSigmoid
from lenet_edge.quantize import checks, stage
from lenet_edge.quantize.checks import (
    MIN_AGREEMENT,
    accuracy_gate,
    check_max_drop,
    check_metadata,
    compare_with_reference,
)
from lenet_edge.quantize.settings import (
    TARGETS,
    Accuracy,
    QuantizationRecord,
    QuantRecipe,
    QuantSettings,
    cpu_target,
    recommended_types,
)
from lenet_edge.quantize.stage import (
    BatchReader,
    final_bytes,
    model_inputs,
    quantize_model,
    read_calibration_file,
    training_images,
)
from lenet_edge.runtime.session import load_model

from ..idx_files import write_idx, write_mnist_dir
from ..quantize_models import tiny_lenet

VNNI = {"architecture": "x86_64", "flags": ["avx2", "avx512f", "avx512_vnni"]}
NO_VNNI = {"architecture": "x86_64", "flags": ["avx2"]}
ARM = {"architecture": "aarch64", "flags": ["asimd"]}


# --- settings and the choice of types --------------------------------------------------------

@pytest.mark.parametrize("cpu, target, act, weight, reduce_range", [
    (VNNI, "x86-vnni", "uint8", "int8", False),
    (NO_VNNI, "x86", "uint8", "int8", True),
    (ARM, "arm", "int8", "int8", False),
])
def test_types_follow_the_target_cpu(cpu, target, act, weight, reduce_range):
    s = QuantSettings().resolve(cpu)
    assert (s.target, s.activation_type, s.weight_type, s.reduce_range) == (target, act, weight, reduce_range)
    assert s.type_reason.startswith("host CPU: ") and "onnxruntime's CPU guidance" in s.type_reason


def test_named_target_wins_over_host_and_user_overrides_are_recorded():
    s = QuantSettings(target="arm").resolve(VNNI)
    assert (s.activation_type, s.weight_type) == ("int8", "int8") and not s.type_reason.startswith("host")
    s = QuantSettings(weight_type="uint8", reduce_range=True).resolve(VNNI)
    assert (s.activation_type, s.weight_type, s.reduce_range) == ("uint8", "uint8", True)
    assert "weight type, reduce_range set by the user" in s.type_reason
    assert s.resolve(ARM) == s  # resolving twice changes nothing


def test_dynamic_activations_are_uint8_whatever_the_target():
    s = QuantSettings(mode="dynamic").resolve(ARM)
    assert s.activation_type == "uint8" and "dynamic quantization always has uint8 activations" in s.type_reason
    with pytest.raises(DataError, match="dynamic quantization always uses uint8 activations"):
        QuantSettings(mode="dynamic", activation_type="int8")


def test_the_target_comes_from_the_environment_description_of_the_cpu():
    assert cpu_target({"architecture": "x86_64", "flags": ["avx2", "avx_vnni"]}) == "x86-vnni"
    assert cpu_target({"architecture": "x86_64", "flags": []}) == "x86"  # unknown flags: the cautious choice
    assert cpu_target({"architecture": "arm64", "flags": []}) == "arm"
    assert cpu_target(cpu_info()) in TARGETS[1:]  # this machine, as bench reports describe it


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "fast"}, "mode 'fast'"),
    ({"format": "qdq2"}, "format 'qdq2'"),
    ({"method": "mse"}, "method 'mse'"),
    ({"weight_type": "int4"}, "weight_type 'int4'"),
    ({"activation_type": "int8", "weight_type": "uint8"}, "int8 activations with uint8 weights"),
    ({"calibration_count": 0}, "no images to calibrate on"),
    ({"calibration_count": -5}, "no images to calibrate on"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(DataError, match=message):
        QuantSettings(**kwargs)


def test_recommended_types_refuses_an_unknown_target():
    with pytest.raises(DataError, match="unknown target CPU 'riscv'"):
        recommended_types("riscv")


def test_record_of_dynamic_settings_leaves_out_calibration():
    record = QuantSettings(mode="dynamic", exclude_op_types=["Conv"]).resolve(VNNI).to_json()
    assert "method" not in record and "calibration_count" not in record and "format" not in record
    assert record["exclude_op_types"] == ["Conv"]
    json.dumps(record)  # JSON types only: it goes into the model's metadata


# --- calibration images -------------------------------------------------------------------------

def test_calibration_files_are_read_by_the_rules_of_run(tmp_path):
    """Calibration digits come through lenet_edge.runtime.inputs: the same checks and messages as `run`'s inputs."""
    np.save(tmp_path / "ok.npy", np.full((5, 28, 28), 255, np.uint8))
    x = read_calibration_file(tmp_path / "ok.npy", MODERN_PREPROCESSING, 3)
    assert x.shape == (3, 1, 32, 32) and x.dtype == np.float32  # the first 3, as model inputs
    np.testing.assert_allclose(x[0, 0, 16, 16], (1 - 0.1307) / 0.3081, rtol=1e-6)
    assert read_calibration_file(tmp_path / "ok.npy", MODERN_PREPROCESSING, 100).shape == (5, 1, 32, 32)
    with pytest.raises(DataError, match="no such file"):
        read_calibration_file(tmp_path / "none.npy", MODERN_PREPROCESSING, 10)
    bad = {
        "scaled.npy": (np.full((2, 28, 28), 0.5, np.float32), r"float pixel values all in \[0, 0.5\]"),  # [0, 1]
        "nan.npy": (np.full((2, 28, 28), np.nan, np.float32), "NaN or Inf in image 0"),
        "negative.npy": (np.full((2, 28, 28), -1.0, np.float32), r"pixel values -1..-1 \(expected .*\[0, 255\]"),
        "shape.npy": (np.zeros((3, 32, 32), np.uint8), r"shape \(3, 32, 32\) \(expected \(28, 28\) or \(N, 28, 28\)"),
        "empty.npy": (np.zeros((0, 28, 28), np.uint8), "empty array"),
        "objects.npy": (np.array([{"a": 1}], dtype=object), "never unpickled"),
    }
    for name, (array, message) in bad.items():
        np.save(tmp_path / name, array)
        with pytest.raises(DataError, match=message):
            read_calibration_file(tmp_path / name, MODERN_PREPROCESSING, 10)


def test_model_inputs_follow_the_contract():
    x = model_inputs(np.full((2, 28, 28), 255, np.uint8), MODERN_PREPROCESSING, "x")
    assert x.shape == (2, 1, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0, 16, 16], (1 - 0.1307) / 0.3081, rtol=1e-6)
    broken = type(MODERN_PREPROCESSING)(mean=0.0, std=0.0)
    with pytest.raises(DataError, match="gives NaN or Inf inputs"):
        model_inputs(np.ones((1, 28, 28)), broken, "x")


def test_calibration_comes_from_the_training_split(tmp_path):
    data = write_mnist_dir(tmp_path / "mnist", train=40, test=30)
    train, _ = load_mnist(data, "train")
    test, _ = load_mnist(data, "test")
    picked = training_images(data, 25, seed=0)
    train_rows = {im.tobytes() for im in train}
    assert all(im.tobytes() in train_rows for im in picked)
    assert not any(im.tobytes() in {t.tobytes() for t in test} for im in picked)
    assert len({im.tobytes() for im in picked}) == 25  # a subset: no image twice
    np.testing.assert_array_equal(picked, training_images(data, 25, seed=0))  # seeded
    assert not np.array_equal(picked, training_images(data, 25, seed=1))
    with pytest.raises(DataError, match="40 training images, fewer than the 41 asked"):
        training_images(data, 41, seed=0)


def test_batch_reader_feeds_every_input_once():
    x = np.arange(250 * 4, dtype=np.float32).reshape(250, 1, 2, 2)
    reader = BatchReader(x, "image", batch=100)
    batches = [b["image"] for b in reader]
    assert [len(b) for b in batches] == [100, 100, 50] and len(reader) == 3
    np.testing.assert_array_equal(np.concatenate(batches), x)
    assert reader.get_next() is None
    reader.rewind()
    assert len(reader.get_next()["image"]) == 100


# --- the reference QGemm against onnxruntime's ------------------------------------------------

@pytest.mark.parametrize("requantize", [True, False])
def test_reference_qgemm_matches_onnxruntime(requantize):
    """onnx.reference with our QGemm gives onnxruntime's QGemm results (per-column weights, bias)."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    m, k, n = 5, 12, 7
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    # transB = 1: (N, K) as the quantizer writes it. 7-bit weights, as `quantize` writes them for CPUs
    # without VNNI: there onnxruntime adds pairs of u8*s8 products in int16 (AVX2 vpmaddubsw), which
    # full-range weights overflow (seen on an AVX2-only EPYC: differences up to 26), so the test would
    # check the CPU rather than the reference.
    b = rng.integers(-64, 64, (n, k), dtype=np.int8)
    consts = {
        "a_scale": np.float32(0.02), "a_zp": np.uint8(3),
        "B": b, "b_scale": rng.uniform(0.001, 0.01, n).astype(np.float32), "b_zp": np.zeros(n, np.int8),
        "C": rng.integers(-5000, 5000, n).astype(np.int32),
        "y_scale": np.float32(0.05), "y_zp": np.uint8(128),
    }
    inputs = ["A", "a_scale", "a_zp", "B", "b_scale", "b_zp", "C"] + (["y_scale", "y_zp"] if requantize else [])
    out_type = TensorProto.UINT8 if requantize else TensorProto.FLOAT
    node = helper.make_node("QGemm", inputs, ["Y"], domain="com.microsoft", transB=1, alpha=1.0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
                              [helper.make_tensor_value_info("Y", out_type, [m, n])],
                              [numpy_helper.from_array(np.asarray(v), name) for name, v in consts.items()
                               if name in inputs])
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"A": a})[0]
    found = ReferenceEvaluator(model, new_ops=[QGemm]).run(None, {"A": a})[0]
    assert found.dtype == expected.dtype and found.shape == (m, n)
    if requantize:
        assert np.abs(found.astype(int) - expected.astype(int)).max() <= 1  # rounding of exact .5 ties at most
    else:
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-4)


def test_reference_qlinear_sigmoid_matches_onnxruntimes_table():
    """Every uint8 input through com.microsoft QLinearSigmoid: the reference class (dequantize -> sigmoid ->
    quantize) against onnxruntime's 256-entry table; the tanh model's kernel-friendly rewrite runs on it."""
    from onnx.reference import ReferenceEvaluator

    consts = {"x_scale": np.float32(0.06), "x_zp": np.uint8(120), "y_scale": np.float32(1 / 255), "y_zp": np.uint8(0)}
    node = helper.make_node("QLinearSigmoid", ["X", *consts], ["Y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.UINT8, [256])],
                              [helper.make_tensor_value_info("Y", TensorProto.UINT8, [256])],
                              [numpy_helper.from_array(np.asarray(v), name) for name, v in consts.items()])
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=9)
    x = np.arange(256, dtype=np.uint8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"X": x})[0]
    found = ReferenceEvaluator(model, new_ops=[QLinearSigmoid]).run(None, {"X": x})[0]
    assert found.dtype == np.uint8 and expected[0] < 10 and expected[-1] > 245  # the table spans the range
    assert np.abs(found.astype(int) - expected.astype(int)).max() <= 1  # rounding of exact .5 ties at most


# --- onnxruntime errors made readable ----------------------------------------------------------

def test_conv_integer_without_kernel_is_explained():
    exc = ort.capi.onnxruntime_pybind11_state.NotImplemented(
        "[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for ConvInteger(10) "
        "node with name '/C1/C1.0/Conv_quant'")
    error = checks.missing_kernel_error(Path("m.int8.onnx"), exc, QuantSettings(mode="dynamic").resolve(VNNI))
    message = str(error)
    assert isinstance(error, ValidationError) and "\n" not in message
    assert "no ConvInteger kernel for uint8 activations with int8 weights" in message
    assert "use static quantization" in message and "--exclude-op-type Conv" in message


def test_a_real_missing_kernel_is_reported_in_one_line(tmp_path):
    """Tan has no double kernel on onnxruntime's CPU provider: a real NOT_IMPLEMENTED."""
    graph = helper.make_graph([helper.make_node("Tan", ["x"], ["y"], name="tan")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1])])
    path = tmp_path / "tan.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    with pytest.raises(ValidationError, match=r"tan.onnx: onnxruntime .*'s CPU provider has no kernel for Tan") as info:
        checks.kernel_counts(path, QuantSettings().resolve(VNNI))
    assert "\n" not in str(info.value)


# --- metadata and the gate ------------------------------------------------------------------

def quantization_record(**settings) -> QuantizationRecord:
    """A record of the real type, as the stage makes it."""
    return QuantizationRecord(QuantSettings(**settings).resolve(VNNI), (), ort.__version__, "MNIST train split",
                              Accuracy(100, 0.6, 0.5, 10.0, 0.9))


def test_metadata_is_carried_over_with_the_record(tmp_path):
    model = load(tiny_lenet(tmp_path / "tiny.onnx"))
    fp32 = {p.key: p.value for p in model.metadata_props}
    record = quantization_record()
    shipped = onnx.load_from_string(final_bytes(model, fp32, record, "m"))
    int8 = {p.key: p.value for p in shipped.metadata_props}
    ours = (PREFIX + "quantization", PREFIX + "test_accuracy")
    assert {k: v for k, v in int8.items() if k not in ours} == {k: v for k, v in fp32.items() if k not in ours}
    found = ModelContract.from_metadata(int8).quantization
    assert found == record.to_json() and QuantizationRecord.from_json(found) == record
    assert int8[PREFIX + "test_accuracy"] == "0.5"
    check_metadata(fp32, int8, int8[PREFIX + "quantization"], "m")
    with pytest.raises(ValidationError, match="metadata producer.note is None"):
        check_metadata(fp32, {k: v for k, v in int8.items() if k != "producer.note"}, found, "m")
    other = json.dumps(quantization_record(mode="dynamic").to_json(), sort_keys=True)
    with pytest.raises(ValidationError, match="metadata lenet_edge.quantization"):
        check_metadata(fp32, int8, other, "m")


def test_quantization_record_refuses_a_record_of_another_shape():
    with pytest.raises(ModelError, match=r"quantization record \['mode'\] \(expected the keys"):
        QuantizationRecord.from_json({"mode": "static"})


def test_accuracy_gate():
    measured = Accuracy(test_images=10000, fp32_accuracy=0.99, int8_accuracy=0.9879, accuracy_drop_points=0.21,
                        top1_agreement=0.99)
    with pytest.raises(ValidationError, match=r"0.21 points below fp32 99.00%.*at most 0.2 points.*no model written"):
        accuracy_gate(measured, 0.2, "m.int8.onnx")
    accuracy_gate(measured, 0.21, "m.int8.onnx")
    accuracy_gate(replace(measured, accuracy_drop_points=-0.3), 0.0, "m")  # a gain always passes
    for bad in (-0.1, float("nan"), float("inf"), "1"):
        with pytest.raises(DataError, match="maximum accuracy drop"):
            check_max_drop(bad)


def test_reference_disagreement_is_refused(tmp_path):
    """The int8 model's logits from onnxruntime against the reference implementation's: a planted
    disagreement on 2 of 100 images (98% < MIN_AGREEMENT) is refused, the real logits pass."""
    model = load(tiny_lenet(tmp_path / "tiny.onnx"))
    x = np.random.default_rng(0).normal(size=(100, 1, 32, 32)).astype(np.float32)
    logits = load_model(tmp_path / "tiny.onnx").predict(x)  # (100, 10): the model's own, as onnxruntime runs it
    assert compare_with_reference(model, x, logits, "m")["top1_agreement"] == 1.0
    planted = logits.copy()
    planted[:2] = np.roll(planted[:2], 1, axis=1)  # another argmax on 2 images
    assert MIN_AGREEMENT > 0.98
    with pytest.raises(ValidationError, match=r"agrees with onnxruntime on 98.0% of 100 images \(expected at least"):
        compare_with_reference(model, x, planted, "m")


def test_quantize_refuses_a_model_that_loses_more_than_the_budget(tmp_path):
    """A model built to lose accuracy in int8 (near-tied logits), test labels its own fp32 predictions:
    ~14 points lost, so a budget of 5 refuses it and writes no model; a budget of 100 lets it pass."""
    model = tiny_lenet(tmp_path / "tiny.onnx", near_tie=True)
    data = write_mnist_dir(tmp_path / "mnist", train=200, test=100)
    fp32 = load_model(model)
    predicted = fp32.predict(fp32.contract.preprocessing(load_mnist(data, "test")[0])).argmax(1)  # (100,)
    write_idx(data / "t10k-labels-idx1-ubyte.gz", predicted.astype(np.uint8))
    settings = QuantSettings(calibration_count=100)
    out, report = tmp_path / "tiny.int8.onnx", tmp_path / "layers.json"
    with pytest.raises(ValidationError, match=r"int8 accuracy .* points below fp32 100.00%.*at most 5 points"):
        quantize_model(model, out, data_dir=data, settings=settings, max_accuracy_drop=5, report=report)
    assert not out.exists() and report.is_file()  # the report is there to say why
    result = quantize_model(model, out, data_dir=data, settings=settings, max_accuracy_drop=100, force=True)
    assert result.quantization.validation.accuracy_drop_points > 5 and out.is_file()


# --- the command on a tiny model ----------------------------------------------------------------

@pytest.fixture
def tiny(tmp_path):
    """(model.onnx, data dir): a hand-built fp32 model with a contract and synthetic MNIST files."""
    return tiny_lenet(tmp_path / "tiny.onnx"), write_mnist_dir(tmp_path / "mnist", train=200, test=100)


def run(runner, tiny, *args):
    model, data = tiny
    return runner.invoke(cli, ["quantize", str(model), "--data-dir", str(data), "--calibration-count", "100",
                               "--max-accuracy-drop", "100", *args])


def test_quantize_tiny_model_end_to_end(runner, tiny, tmp_path):
    model, _ = tiny
    report = tmp_path / "layers.json"
    result = run(runner, tiny, "--report", str(report))
    assert result.exit_code == 0, result.output
    out = tmp_path / "tiny.int8.onnx"  # the default output name
    assert "int8 kernels after onnxruntime's optimisation: 1/1 convolutions, 1/1 fully connected" in result.stdout
    assert "SQNR fp32 vs int8" in result.stdout
    assert "quantize: 0/2 quantizing (static, qdq, minmax) and validating on 100 test images" in result.stderr
    assert re.search(r"size: [\d,]+ -> [\d,]+ bytes \(\d\.\d\d× smaller\)", result.stdout)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["producer.note"] == "kept as it is"
    record = json.loads(props[PREFIX + "quantization"])
    assert record["calibration_count"] == 100 and record["calibration_source"] == "MNIST train split"
    assert record["validation"]["test_images"] == 100
    assert float(props[PREFIX + "test_accuracy"]) == record["validation"]["int8_accuracy"]
    layers = json.loads(report.read_text())["layers"]
    assert [r["tensor"] for r in layers["activations"]][:2] == ["image", "relu_out"]
    assert {w["weight"] for w in layers["weights"]} == {"conv.weight", "conv.bias", "fc.weight", "fc.bias"}
    ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    assert ops["QuantizeLinear"] >= 1 and ops["DequantizeLinear"] >= 3
    # the same again: refused without --force, replaced with it
    before = out.read_bytes()
    again = run(runner, tiny)
    assert again.exit_code == 6 and "already exists" in again.stderr and out.read_bytes() == before
    assert run(runner, tiny, "--force").exit_code == 0
    assert model.is_file()


@pytest.mark.parametrize("images, message", [
    (np.zeros((0, 28, 28), np.uint8), "empty array"),
    (np.full((4, 28, 28), np.nan, np.float32), "NaN or Inf in image 0"),
    (np.zeros((4, 1, 28, 28), np.uint8), r"shape \(4, 1, 28, 28\) \(expected \(28, 28\) or \(N, 28, 28\)"),
])
def test_bad_calibration_fails_before_quantizing(runner, tiny, tmp_path, images, message):
    path = tmp_path / "calib.npy"
    np.save(path, images)
    result = run(runner, tiny, "--calibration-images", str(path))
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert re.search(message, result.stderr)
    assert "quantizing" not in result.stderr and not (tmp_path / "tiny.int8.onnx").exists()


def test_zero_calibration_count_is_no_images(runner, tiny, tmp_path):
    result = runner.invoke(cli, ["quantize", str(tiny[0]), "--data-dir", str(tiny[1]), "--calibration-count", "0"])
    assert result.exit_code == 3 and "no images to calibrate on" in result.stderr


def test_unknown_exclusions_name_what_exists(runner, tiny):
    result = run(runner, tiny, "--exclude-node", "conv7")
    assert result.exit_code == 4 and "no node named 'conv7' to exclude (its Conv/Gemm/MatMul nodes are: conv, fc)" \
        in result.stderr
    result = run(runner, tiny, "--exclude-op-type", "LSTM")
    assert result.exit_code == 4 and "no node of op type 'LSTM'" in result.stderr and "Conv, Flatten" in result.stderr


def test_exclusion_keeps_the_layer_float(runner, tiny, tmp_path):
    result = run(runner, tiny, "--exclude-op-type", "Gemm")
    assert result.exit_code == 0, result.output
    assert "1/1 convolutions, 0/0 fully connected" in result.stdout and "kept in float: fc" in result.stdout
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "tiny.int8.onnx")).graph.node)
    assert ops["Gemm"] == 1 and ops["Conv"] == 1  # QDQ: the Conv is quantized by its DQ/Q neighbours


def test_static_only_options_are_refused_for_dynamic(runner, tiny):
    result = runner.invoke(cli, ["quantize", str(tiny[0]), "--mode", "dynamic", "--method", "entropy"])
    assert result.exit_code == 2 and "--method only apply to --mode static" in result.output


def test_dynamic_without_conv_integer_kernel_writes_nothing(runner, tiny, tmp_path, monkeypatch):
    """An onnxruntime whose CPU provider lacks ConvInteger: one clear line, exit 5, no model."""
    real = sessions.new_session

    def no_conv_integer(model, options=None):
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
        if any(n.op_type == "ConvInteger" for n in proto.graph.node):
            raise ort.capi.onnxruntime_pybind11_state.NotImplemented(
                "[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for ConvInteger(10) "
                "node with name 'conv_quant'")
        return real(model, options)

    monkeypatch.setattr(sessions, "new_session", no_conv_integer)
    model, data = tiny
    result = runner.invoke(cli, ["quantize", str(model), "--data-dir", str(data), "--mode", "dynamic"])
    assert result.exit_code == 5, result.output
    assert "no ConvInteger kernel" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "tiny.int8.onnx").exists()
    # quantizing only the fully connected layer dynamically is the way out it names
    result = runner.invoke(cli, ["quantize", str(model), "--data-dir", str(data), "--mode", "dynamic",
                                 "--exclude-op-type", "Conv", "--max-accuracy-drop", "100"])
    assert result.exit_code == 0, result.output
    assert "0/0 convolutions, 1/1 fully connected" in result.stdout


def test_refuses_models_it_should_not_quantize(runner, tiny, tmp_path):
    model, data = tiny
    bare = tiny_lenet(tmp_path / "bare.onnx", contract=False)
    result = runner.invoke(cli, ["quantize", str(bare), "--data-dir", str(data)])
    assert result.exit_code == 4 and "no lenet-edge preprocessing contract" in result.stderr
    result = run(runner, tiny, "-o", str(model))
    assert result.exit_code == 3 and "is the fp32 model itself" in result.stderr
    assert run(runner, tiny).exit_code == 0
    result = runner.invoke(cli, ["quantize", str(tmp_path / "tiny.int8.onnx"), "--data-dir", str(data)])
    assert result.exit_code == 4 and "already quantized" in result.stderr


def test_missing_model_and_data(runner, tiny, tmp_path):
    result = runner.invoke(cli, ["quantize", str(tmp_path / "nope.onnx"), "--data-dir", str(tiny[1])])
    assert result.exit_code == 4 and "no such model file" in result.stderr
    result = runner.invoke(cli, ["quantize", str(tiny[0]), "--data-dir", str(tmp_path / "no-mnist")])
    assert result.exit_code == 3 and "not a directory" in result.stderr


def test_settings_error_when_calibration_inputs_are_missing(tmp_path):
    with pytest.raises(DataError, match="static quantization needs calibration inputs"):
        stage.build_candidate(QuantRecipe("x", QuantSettings().resolve(VNNI)),
                              stage.FloatModel(tmp_path / "x.onnx", onnx.ModelProto()), tmp_path, calibration=None)


def test_weight_sqnr_of_uint8_constants_is_measured_correctly(tmp_path):
    """A constant added after a ReLU is quantized to uint8; onnxruntime's weight matching alone
    would wrap (q - zero_point) around in uint8 and report a negative SQNR."""
    from lenet_edge.quantize.layer_report import layer_errors
    from lenet_edge.quantize.stage import preprocess

    model = tiny_lenet(tmp_path / "tiny.onnx", bias_add=True)
    data = write_mnist_dir(tmp_path / "mnist", train=100, test=50)
    x = model_inputs(load_mnist(data, "train")[0], MODERN_PREPROCESSING, "train")
    float_model = preprocess(model, tmp_path)
    candidate = stage.build_candidate(QuantRecipe("x", QuantSettings(calibration_count=100).resolve(VNNI)),
                                      float_model, tmp_path, calibration=x)
    quantized = {t.name: t.data_type for t in onnx.load(str(candidate.path)).graph.initializer}
    assert quantized["map.bias_quantized"] == TensorProto.UINT8
    report = layer_errors(candidate, x[:50], tmp_path)
    weights = {w["weight"]: w["sqnr_db"] for w in report["weights"]}
    assert weights["map.bias"] > 30  # 4 values spread over 256 levels: ~45 dB; the wrapped figure is negative
    assert report["worst_weight"]["sqnr_db"] == min(weights.values())
    assert all(r["sqnr_db"] is None or r["sqnr_db"] > 0 for r in report["activations"])


def test_structure_check_catches_a_layer_left_in_float(tmp_path):
    """DequantizeLinear inputs but no QuantizeLinear after: onnxruntime cannot fuse a QLinearConv,
    the convolution runs in float, and the check says so."""
    rng = np.random.default_rng(0)
    conv_w = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    opsets = [helper.make_opsetid("", 20)]
    float_graph = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["y"], name="conv")], "f", [image], [y],
                                    [numpy_helper.from_array(conv_w, "w")])
    float_path = tmp_path / "float.onnx"
    onnx.save(helper.make_model(float_graph, opset_imports=opsets, ir_version=9), str(float_path))
    consts = [numpy_helper.from_array(np.round(conv_w / 0.02).astype(np.int8), "w_q"),
              numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.uint8(128), "zp"),
              numpy_helper.from_array(np.int8(0), "wzp")]
    nodes = [helper.make_node("QuantizeLinear", ["image", "s", "zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w_q", "s", "wzp"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv")]
    int8_path = tmp_path / "int8.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "q", [image], [y], consts), opset_imports=opsets,
                                ir_version=9), str(int8_path))
    settings = QuantSettings().resolve(VNNI)
    candidate = stage.Candidate(QuantRecipe("x", settings), settings, int8_path, load(int8_path),
                                stage.FloatModel(float_path, load(float_path)), (), None)
    with pytest.raises(ValidationError, match=r"0 convolutions run as int8 kernels .*\(expected 1: conv;"):
        checks.check_structure(candidate, "int8.onnx")
