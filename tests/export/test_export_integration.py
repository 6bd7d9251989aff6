"""Export of real trained checkpoints (every variant) on the official MNIST test set.

Each variant is exported once through the CLI with --format ort; the tests then check the
written files independently of the exporter's own report: accuracy through onnxruntime
equals PyTorch's on all 10,000 test images, parity at every batch size, onnx.reference
agreement, the ORT-format model, and the contract in the metadata.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx.reference import ReferenceEvaluator

from lenet_edge.cli import cli
from lenet_edge.contract import INPUT_NAME, OUTPUT_NAME
from lenet_edge.export.metadata import read_contract
from lenet_edge.export.validate import PARITY_ATOL, PARITY_BATCH_SIZES, torch_logits
from lenet_edge.fileio import sha256_file
from lenet_edge.mnist import load_mnist
from lenet_edge.runtime.session import load_model
from lenet_edge.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.integration

CHECKPOINT_FIXTURES = {"lenet5-modern": "modern_checkpoint", "lenet5": "classic_checkpoint",
                       "lenet5-tanh": "tanh_checkpoint"}
MIN_ACCURACY = 0.98  # every default recipe reaches it; the training tests hold the exact targets
PARITY_IMAGES = 1000  # per batch size below 1000; the accuracy test covers all 10,000 at 1000
REFERENCE_IMAGES = 32


@pytest.fixture(scope="module")
def test_set(mnist_dir):
    images, labels = load_mnist(mnist_dir, "test")
    assert len(images) == 10_000  # the official test set
    return images, labels


@pytest.fixture(scope="module", params=list(CHECKPOINT_FIXTURES))
def real_export(request, tmp_path_factory, mnist_dir):
    """(variant, checkpoint, model.onnx, CLI output) for a real trained checkpoint."""
    variant = request.param
    checkpoint = request.getfixturevalue(CHECKPOINT_FIXTURES[variant])
    out = tmp_path_factory.mktemp(f"export-{variant}") / f"{variant}.onnx"
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "-o", str(out), "--data-dir", str(mnist_dir),
                                      "--format", "ort"])
    assert result.exit_code == 0, result.output
    return variant, checkpoint, out, result.output


def test_onnxruntime_accuracy_equals_pytorch_on_the_official_test_set(real_export, test_set):
    variant, checkpoint, out, output = real_export
    images, labels = test_set
    model, meta = load_checkpoint(checkpoint)
    torch_accuracy = float((torch_logits(model, model.preprocessing(images), 1000).argmax(1) == labels).mean())
    model = load_model(out)  # the runtime's own path: the contract's preprocessing, then the session
    onnx_accuracy = float((model.predict(model.contract.preprocessing(images)).argmax(1) == labels).mean())

    assert onnx_accuracy == torch_accuracy
    assert onnx_accuracy >= MIN_ACCURACY, onnx_accuracy
    assert abs(onnx_accuracy - meta["test_accuracy"]) <= 1 / 10_000  # what training measured, within one image
    assert read_contract(out).test_accuracy == onnx_accuracy
    assert f"onnxruntime {onnx_accuracy:.2%}, PyTorch {torch_accuracy:.2%}" in output


@pytest.mark.parametrize("batch_size", PARITY_BATCH_SIZES)
def test_parity_with_pytorch_on_real_images(real_export, test_set, batch_size):
    _, checkpoint, out, _ = real_export
    model, _ = load_checkpoint(checkpoint)
    x = model.preprocessing(test_set[0][:PARITY_IMAGES])
    found = load_model(out, threads=1).predict(x, batch_size)
    expected = torch_logits(model, x, batch_size)
    assert np.abs(found - expected).max() <= PARITY_ATOL
    assert np.array_equal(found.argmax(1), expected.argmax(1))


def test_reference_implementation_agrees_on_real_images(real_export, test_set):
    _, checkpoint, out, _ = real_export
    contract = read_contract(out)
    x = contract.preprocessing(test_set[0][-REFERENCE_IMAGES:])  # from the end: not the exporter's sample
    expected = ReferenceEvaluator(str(out)).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    found = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    assert np.abs(expected - found).max() <= PARITY_ATOL
    assert np.array_equal(expected.argmax(1), found.argmax(1))
    assert (expected.argmax(1) == test_set[1][-REFERENCE_IMAGES:]).mean() >= 0.9  # a real model, not noise


def test_ort_format_model_matches_the_onnx_model(real_export, test_set):
    _, _, out, _ = real_export
    onnx_model, ort_model = load_model(out), load_model(out.with_suffix(".ort"))
    assert ort_model.contract == onnx_model.contract
    x = onnx_model.contract.preprocessing(test_set[0][:PARITY_IMAGES])
    expected, found = onnx_model.predict(x), ort_model.predict(x)
    assert np.abs(expected - found).max() <= PARITY_ATOL
    assert np.array_equal(expected.argmax(1), found.argmax(1))
    config = out.with_suffix(".required_operators.config").read_text()
    assert f"# - {out.with_suffix('.ort').name}" in config


def test_metadata_names_the_checkpoint_and_its_preprocessing(real_export):
    variant, checkpoint, out, _ = real_export
    model, meta = load_checkpoint(checkpoint)
    contract = read_contract(out)
    assert contract.variant == variant == meta["variant"]
    assert contract.checkpoint_sha256 == sha256_file(checkpoint)
    assert contract.preprocessing == model.preprocessing
    assert contract.versions["torch"] == meta["versions"]["torch"]
