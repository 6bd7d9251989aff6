"""Export stage, hermetic: random-weight checkpoints, synthetic MNIST-style data in tmp_path.

What the exported graph is (names, dynamic batch, clean ops, the classic layers), what
export validates and refuses, and what travels in the metadata.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from lenet_edge.cli import cli
from lenet_edge.contract import INPUT_NAME, OUTPUT_NAME, ModelContract
from lenet_edge.errors import ModelError, OutputError, ValidationError
from lenet_edge.export import exporter
from lenet_edge.export.exporter import DEFAULT_OPSET, export_checkpoint
from lenet_edge.export.metadata import read_contract
from lenet_edge.export.tracing import to_onnx
from lenet_edge.export.validate import PARITY_ATOL, PARITY_BATCH_SIZES, torch_logits
from lenet_edge.fileio import sha256_file
from lenet_edge.graph import op_counts
from lenet_edge.train.checkpoint import meta_path, save_checkpoint
from lenet_edge.train.models import build_model

from ..idx_files import write_mnist_dir

VARIANTS = ("lenet5-modern", "lenet5", "lenet5-tanh")
# LeCun et al. 1998, Table I, as printed: row i is S2 map i, column j is C3 map j, X a connection.
PAPER_TABLE_I = (
    "X   XXX  XXXX XX",
    "XX   XXX  XXXX X",
    "XXX   XXX  X XXX",
    " XXX  XXXX  X XX",
    "  XXX  XXXX XX X",
    "   XXX  XXXX XXX",
)
TEST_IMAGES = 150  # synthetic test split: enough for every parity batch size, quick at batch size 1


def random_checkpoint(directory: Path, variant: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path = directory / f"{variant}.safetensors"
    save_checkpoint(path, build_model(variant), {"test_accuracy": None})
    return path


def random_inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 32, 32)).astype(np.float32)


def initializers(proto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_mnist_dir(tmp_path_factory.mktemp("mnist"), train=10, test=TEST_IMAGES)


@pytest.fixture(scope="module")
def graphs() -> dict:
    """variant -> (random-weight model, its ONNX ModelProto), exported once for the graph tests."""
    torch.manual_seed(3)
    models = {v: build_model(v).eval() for v in VARIANTS}
    return {v: (m, to_onnx(m, DEFAULT_OPSET)) for v, m in models.items()}


@pytest.fixture(scope="module", params=VARIANTS)
def exported(request, tmp_path_factory, data_dir):
    """(variant, checkpoint, model.onnx, report) of one export with --format ort, per variant."""
    directory = tmp_path_factory.mktemp(request.param)
    checkpoint = random_checkpoint(directory, request.param)
    out = directory / "model.onnx"
    report = export_checkpoint(checkpoint, out, data_dir=data_dir, ort_format=True)
    return request.param, checkpoint, out, report


# --- the graph ------------------------------------------------------------------------------


def test_graph_has_named_io_and_a_dynamic_batch(exported):
    _, _, out, _ = exported
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.output] == [OUTPUT_NAME]

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert dims(graph.input[0]) == ["batch", 1, 32, 32]
    assert dims(graph.output[0]) == ["batch", 10]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_default_opset_is_the_one_written(exported):
    proto = onnx.load(str(exported[2]))
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", DEFAULT_OPSET)}


def test_full_checker_passes_on_the_written_file(exported):
    onnx.checker.check_model(onnx.load(str(exported[2])), full_check=True)


@pytest.mark.parametrize("batch_size", PARITY_BATCH_SIZES)
def test_written_model_matches_pytorch_at_each_batch_size(exported, batch_size):
    variant, checkpoint, out, _ = exported
    from lenet_edge.train.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    x = random_inputs(batch_size, seed=batch_size)
    found = session(out).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    expected = torch_logits(model, x, batch_size)
    assert found.shape == (batch_size, 10)
    assert np.abs(found - expected).max() <= PARITY_ATOL
    assert (found.argmax(1) == expected.argmax(1)).all()


def test_modern_graph_is_only_conv_relu_maxpool_gemm(graphs):
    _, proto = graphs["lenet5-modern"]
    # Reshape is the flatten between C5 (B, 120, 1, 1) and F6 (B, 120).
    assert op_counts(proto.graph) == {"Relu": 4, "Conv": 3, "MaxPool": 2, "Gemm": 2, "Reshape": 1}


def test_tanh_graph_is_only_conv_tanh_averagepool_gemm(graphs):
    _, proto = graphs["lenet5-tanh"]
    assert op_counts(proto.graph) == {"Tanh": 4, "Conv": 3, "AveragePool": 2, "Gemm": 2, "Reshape": 1}
    pools = [n for n in proto.graph.node if n.op_type == "AveragePool"]
    for pool in pools:  # 2x2 windows, stride 2, no padding: S2 and S4 halve the maps exactly
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in pool.attribute}
        assert attrs["kernel_shape"] == [2, 2] and attrs["strides"] == [2, 2]
        assert attrs.get("pads", [0, 0, 0, 0]) == [0, 0, 0, 0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_graph_is_constant_folded(graphs, variant):
    """No node computes from constants alone: those results belong in initializers."""
    _, proto = graphs[variant]
    constants = {t.name for t in proto.graph.initializer}
    assert not [n.op_type for n in proto.graph.node if n.op_type == "Constant"]
    for node in proto.graph.node:
        assert not all(name in constants for name in node.input if name), f"{node.op_type} {node.name} not folded"
    training_only = {"Dropout", "BatchNormalization", "RandomUniform", "RandomNormal"}
    assert not training_only & set(op_counts(proto.graph))


def test_graph_carries_no_source_paths_or_stack_traces(graphs):
    _, proto = graphs["lenet5"]
    data = proto.SerializeToString()
    assert b"stack_trace" not in data and b".py" not in data
    assert not proto.graph.metadata_props  # torch.export's program signature is PyTorch's business
    scopes = [p.value for n in proto.graph.node for p in n.metadata_props]
    assert any("C3" in s for s in scopes)  # the layer names stay, for per-layer reports


def test_classic_graph_keeps_sparse_c3_subsampling_and_rbf(graphs):
    model, proto = graphs["lenet5"]
    weights = initializers(proto)

    # C3: one dense (16, 6, 5, 5) kernel, zero exactly where the 1998 table has no connection.
    (kernel,) = [w for w in weights.values() if w.shape == (16, 6, 5, 5)]
    connected = np.array([[mark == "X" for mark in row] for row in PAPER_TABLE_I]).T  # (16 C3 maps, 6 S2 maps)
    assert (kernel[~connected] == 0).all()
    assert np.array_equal(kernel, model.C3.kernel().detach().numpy())
    assert (kernel[connected] != 0).sum() == 1500

    # S2, S4: trainable coefficient and bias per map, as (C, 1, 1) initializers.
    values = [w.ravel() for w in weights.values()]
    for p in (model.S2.weight, model.S2.bias, model.S4.weight, model.S4.bias):
        p = p.detach().numpy()
        assert any(v.shape == p.shape and np.array_equal(v, p) for v in values)

    # RBF output: the (10, 84) prototypes, transposed for the MatMul.
    prototypes = model.OUTPUT.weight.detach().numpy()
    assert any(w.shape == (84, 10) and np.allclose(w, prototypes.T) for w in weights.values())


# --- validation at export --------------------------------------------------------------------


def test_report_records_parity_accuracy_and_files(exported):
    variant, checkpoint, out, report = exported
    assert [r["batch_size"] for r in report["parity"]] == list(PARITY_BATCH_SIZES)
    assert all(r["argmax_mismatches"] == 0 for r in report["parity"])
    assert 0 <= report["max_abs_diff"] <= PARITY_ATOL
    assert report["test_images"] == TEST_IMAGES and report["parity"][-1]["images"] == TEST_IMAGES
    assert report["accuracy"]["onnxruntime"] == report["accuracy"]["pytorch"]
    assert report["variant"] == variant and report["opset"] == DEFAULT_OPSET
    assert report["written"] == [str(out), str(out.with_suffix(".ort")),
                                 str(out.with_suffix(".required_operators.config"))]
    assert all(Path(p).is_file() for p in report["written"])
    assert report["reference"]["argmax_mismatches"] == 0


def test_reference_implementation_agrees_with_onnxruntime(exported):
    _, _, out, _ = exported
    x = random_inputs(8, seed=5)
    expected = ReferenceEvaluator(str(out)).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    found = session(out).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    assert np.abs(expected - found).max() <= PARITY_ATOL
    assert (expected.argmax(1) == found.argmax(1)).all()


def _tampered(mutate):
    """A to_onnx that exports correctly and then applies `mutate` to the ModelProto."""
    real = to_onnx

    def export(model, opset, input_size=32):
        proto = real(model, opset, input_size)
        mutate(proto)
        return proto

    return export


def _shift_output_bias(proto, delta: float = 1e-3) -> None:
    """Add delta to the last layer's bias: the logits move by exactly delta."""
    last_gemm = [n for n in proto.graph.node if n.op_type == "Gemm"][-1]
    bias = next(t for t in proto.graph.initializer if t.name == last_gemm.input[2])
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(delta), bias.name))


def _break_graph(proto) -> None:
    proto.graph.node[1].input[0] = "no_such_tensor"


def test_parity_failure_writes_nothing_and_names_the_difference(tmp_path, data_dir, monkeypatch, runner):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    before = sorted(tmp_path.iterdir())
    monkeypatch.setattr(exporter, "to_onnx", _tampered(_shift_output_bias))
    out = tmp_path / "model.onnx"
    with pytest.raises(ValidationError, match=r"max abs logit difference 0\.001 \(tolerance 0\.0001\)"):
        export_checkpoint(checkpoint, out, data_dir=data_dir, ort_format=True)
    result = runner.invoke(cli, ["export", str(checkpoint), "-o", str(out), "--data-dir", str(data_dir)])
    assert result.exit_code == ValidationError.exit_code
    assert "differs from PyTorch at batch size 1: max abs logit difference 0.001" in result.output
    assert sorted(tmp_path.iterdir()) == before


def _disagreeing_copy(path: Path) -> Path:
    """A copy of the model at `path` whose logits are all 1e-3 higher: a model built to disagree."""
    proto = onnx.load(str(path))
    _shift_output_bias(proto)
    copy = path.parent / "disagreeing" / path.name
    copy.parent.mkdir()
    onnx.save_model(proto, str(copy))
    return copy


def test_reference_disagreement_writes_nothing_and_names_the_difference(tmp_path, data_dir, monkeypatch):
    """onnx.reference is handed a model that disagrees with the one onnxruntime runs: export must refuse."""
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    before = sorted(tmp_path.iterdir())
    real = exporter.check_reference
    monkeypatch.setattr(exporter, "check_reference", lambda path, *args: real(_disagreeing_copy(path), *args))
    with pytest.raises(ValidationError, match=r"model.onnx: onnx.reference and onnxruntime disagree: "
                                              r"max abs logit difference 0\.001 \(tolerance 0\.0001\)"):
        export_checkpoint(checkpoint, tmp_path / "model.onnx", data_dir=data_dir)
    assert sorted(tmp_path.iterdir()) == before


def test_ort_model_that_differs_from_the_onnx_model_writes_nothing(tmp_path, data_dir, monkeypatch):
    """The .ort file is converted from a model built to disagree: export must refuse, and write neither file."""
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    before = sorted(tmp_path.iterdir())
    real = exporter.convert_to_ort
    monkeypatch.setattr(exporter, "convert_to_ort", lambda path, *args: real(_disagreeing_copy(path), *args))
    with pytest.raises(ValidationError, match=r"model.ort: the ORT-format model differs from the .onnx model: "
                                              r"max abs logit difference 0\.001 \(tolerance 0\.0001\)"):
        export_checkpoint(checkpoint, tmp_path / "model.onnx", data_dir=data_dir, ort_format=True)
    assert sorted(tmp_path.iterdir()) == before


def test_tighter_tolerance_is_honoured(tmp_path, data_dir, monkeypatch):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    monkeypatch.setattr(exporter, "to_onnx", _tampered(lambda p: _shift_output_bias(p, 1e-5)))
    with pytest.raises(ValidationError, match="tolerance 1e-06"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", data_dir=data_dir, atol=1e-6)
    with pytest.raises(ValidationError, match="looser than"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", data_dir=data_dir, atol=1e-3)
    assert not (tmp_path / "m.onnx").exists()


def test_checker_failure_writes_nothing(tmp_path, data_dir, monkeypatch, runner):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    monkeypatch.setattr(exporter, "to_onnx", _tampered(_break_graph))
    out = tmp_path / "model.onnx"
    result = runner.invoke(cli, ["export", str(checkpoint), "-o", str(out), "--data-dir", str(data_dir)])
    assert result.exit_code == ValidationError.exit_code
    assert "onnx.checker rejects the exported model" in result.output
    assert "no_such_tensor" in result.output
    assert not out.exists() and not list(tmp_path.glob(".model.onnx*"))


def test_checkpoint_that_does_not_match_its_variant(tmp_path, data_dir, runner):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    meta = json.loads(meta_path(checkpoint).read_text())
    meta["variant"] = "lenet5"  # modern tensors, classic label
    meta_path(checkpoint).write_text(json.dumps(meta))
    out = tmp_path / "model.onnx"
    result = runner.invoke(cli, ["export", str(checkpoint), "-o", str(out), "--data-dir", str(data_dir)])
    assert result.exit_code == ModelError.exit_code
    assert "do not match variant lenet5" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_checkpoint_whose_json_preprocessing_is_not_its_variants(tmp_path, data_dir):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    meta = json.loads(meta_path(checkpoint).read_text())
    meta["preprocessing"]["mean"] = 0.5
    meta_path(checkpoint).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="differs from lenet5-modern's"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", data_dir=data_dir)


def test_existing_output_is_refused_without_force(tmp_path, data_dir, runner):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")
    args = ["export", str(checkpoint), "-o", str(out), "--data-dir", str(data_dir)]
    result = runner.invoke(cli, args)
    assert result.exit_code == OutputError.exit_code
    assert "already exists" in result.output and "--force" in result.output
    assert out.read_bytes() == b"previous"

    result = runner.invoke(cli, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert onnx.load(str(out)).graph.output[0].name == OUTPUT_NAME


def test_existing_ort_output_is_refused_before_anything_is_written(tmp_path, data_dir):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    (tmp_path / "model.ort").write_bytes(b"previous")
    with pytest.raises(OutputError, match="model.ort: already exists"):
        export_checkpoint(checkpoint, tmp_path / "model.onnx", data_dir=data_dir, ort_format=True)
    assert not (tmp_path / "model.onnx").exists()


def test_ort_format_needs_an_onnx_name(tmp_path, data_dir):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    with pytest.raises(OutputError, match="ending in .onnx"):
        export_checkpoint(checkpoint, tmp_path / "model.bin", data_dir=data_dir, ort_format=True)


def test_missing_checkpoint_is_a_model_error(tmp_path, data_dir, runner):
    result = runner.invoke(cli, ["export", str(tmp_path / "none.safetensors"), "--data-dir", str(data_dir)])
    assert result.exit_code == ModelError.exit_code
    assert "no such checkpoint" in result.output


# --- metadata ----------------------------------------------------------------------------------


def test_metadata_carries_the_contract(exported):
    variant, checkpoint, out, report = exported
    contract = read_contract(out)
    assert contract.variant == variant
    assert contract.preprocessing == build_model(variant).preprocessing
    assert contract.preprocessing.input_size == 32 and contract.preprocessing.pad == 2
    assert contract.preprocessing.polarity == "light-on-dark"
    assert contract.class_labels == tuple(str(d) for d in range(10))
    assert contract.checkpoint_sha256 == sha256_file(checkpoint)
    assert contract.test_accuracy == report["accuracy"]["onnxruntime"]
    for library in ("torch", "numpy", "onnx", "onnxruntime", "onnxscript", "lenet-edge"):
        assert contract.versions[library], library
    assert contract.versions["onnxruntime"] == ort.__version__


def test_device_reads_the_contract_with_onnxruntime_alone(exported):
    """What a device does: onnxruntime's metadata map -> ModelContract -> preprocess -> run."""
    variant, _, out, _ = exported
    from lenet_edge.runtime.session import load_model

    sess = session(out)
    contract = ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map, str(out))
    assert contract == read_contract(out)
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    logits = sess.run([OUTPUT_NAME], {INPUT_NAME: contract.preprocessing(images)})[0]
    assert logits.shape == (3, 10)
    assert load_model(out).contract == contract


def test_model_without_contract_is_refused_by_read_contract(graphs, tmp_path):
    _, proto = graphs["lenet5-modern"]
    path = tmp_path / "bare.onnx"
    onnx.save_model(proto, str(path))
    with pytest.raises(ModelError, match="no lenet-edge preprocessing contract"):
        read_contract(path)


# --- ORT format --------------------------------------------------------------------------------


def test_ort_format_model_loads_and_matches(exported):
    _, _, out, _ = exported
    ort_path = out.with_suffix(".ort")
    assert ort_path.read_bytes()[4:8] == b"ORTM"  # the ORT flatbuffer's file identifier
    x = random_inputs(64, seed=9)
    expected = session(out).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    ort_session = session(ort_path)
    found = ort_session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    assert np.abs(expected - found).max() <= PARITY_ATOL
    assert ModelContract.from_metadata(ort_session.get_modelmeta().custom_metadata_map) == read_contract(out)


def test_required_operators_config_lists_the_ort_models_ops(exported):
    _, _, out, _ = exported
    config = out.with_suffix(".required_operators.config").read_text()
    assert "# - model.ort" in config and "/tmp" not in config
    entries = [line.split(";") for line in config.splitlines() if line and not line.startswith("#")]
    assert entries and all(len(e) == 3 and e[1].isdigit() for e in entries)
    ops = {op for _, _, names in entries for op in names.split(",")}
    assert "MaxPool" in ops or "AveragePool" in ops
    assert ops & {"Conv", "FusedConv"}


# --- opset ---------------------------------------------------------------------------------------


def test_opset_outside_the_range_is_a_usage_error(tmp_path, data_dir, runner):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    result = runner.invoke(cli, ["export", str(checkpoint), "--opset", "17", "--data-dir", str(data_dir)])
    assert result.exit_code == 2
    assert "17 is not in the range 18<=x<=23" in result.output
    with pytest.raises(ModelError, match="opset 24 is not supported"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", data_dir=data_dir, opset=24)


def test_a_chosen_opset_is_honoured(tmp_path, data_dir, runner):
    checkpoint = random_checkpoint(tmp_path, "lenet5")
    out = tmp_path / "m.onnx"
    result = runner.invoke(cli, ["export", str(checkpoint), "-o", str(out), "--opset", "23",
                                 "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "opset 23" in result.output
    assert [(o.domain, o.version) for o in onnx.load(str(out)).opset_import] == [("", 23)]


def test_int8_model_of_the_default_opset_runs_in_the_reference_implementation(exported, tmp_path):
    """The default opset must also suit the int8 model that quantize_static builds from it."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    _, _, out, _ = exported
    calibration = random_inputs(32, seed=11)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{INPUT_NAME: calibration[i:i + 8]} for i in range(0, 32, 8)])

        def get_next(self):
            return next(self.batches, None)

    int8 = tmp_path / "model.int8.onnx"
    # 7-bit weights (reduce_range): on x86 without VNNI onnxruntime's int8 kernels add pairs of
    # products in int16, which full-range weights overflow. Measured on an AVX2 CPU with random
    # weights: lenet5-tanh's logits (max 0.15) moved by 0.02 with 8-bit weights, by 0 with 7-bit.
    quantize_static(str(out), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, reduce_range=True)
    assert "QuantizeLinear" in op_counts(onnx.load(str(int8)).graph)
    x = random_inputs(4, seed=12)
    expected = ReferenceEvaluator(str(int8)).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    found = session(int8).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    # onnxruntime's int8 kernels round differently from the spec's float emulation: allow
    # one quantization step of the logits, and require the same predictions.
    assert (expected.argmax(1) == found.argmax(1)).all()
    assert np.abs(expected - found).max() <= 0.05 * np.abs(expected).max()


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_prints_the_figures_and_defaults_the_output_beside_the_checkpoint(tmp_path, data_dir, runner):
    checkpoint = random_checkpoint(tmp_path, "lenet5-modern")
    result = runner.invoke(cli, ["export", str(checkpoint), "--data-dir", str(data_dir), "--format", "ort"])
    assert result.exit_code == 0, result.output
    out = checkpoint.with_suffix(".onnx")
    assert out.is_file() and out.with_suffix(".ort").is_file()
    assert f"{out}: lenet5-modern, opset {DEFAULT_OPSET}" in result.output
    assert "argmax identical at batch sizes 1, 2, 7, 64, 1000" in result.output
    assert "max abs logit difference" in result.output and f"on {TEST_IMAGES} test images" in result.output
    assert "required_operators.config" in result.output


def test_importing_the_command_line_stays_light():
    """`lenet-edge --help` imports every command module directly: none may pull in numpy or anything heavier."""
    code = ("import sys, lenet_edge.cli; "
            "print(sorted(m for m in ('numpy', 'torch', 'onnx', 'onnxruntime', 'onnxscript', 'PIL') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
