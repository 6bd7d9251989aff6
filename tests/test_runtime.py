"""Runtime on hermetic models and synthetic data: session, run, evaluate and their CLI."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from lenet_edge.cli import cli
from lenet_edge.data import CLASSIC_PREPROCESSING, MODERN_PREPROCESSING
from lenet_edge.errors import DataError, ModelError
from lenet_edge.runtime.evaluate import evaluate, format_evaluation
from lenet_edge.runtime.predict import classify, write_predictions
from lenet_edge.runtime.session import MAX_BATCH, check_batch_size, load_model, session_options, softmax
from tests.idx_files import synthetic_digits, write_idx, write_mnist_dir
from tests.runtime_models import band_model, random_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def model_path(tmp_path):
    return band_model(tmp_path / "band.onnx")


@pytest.fixture
def data_dir(tmp_path):
    return write_mnist_dir(tmp_path / "mnist", train=20, test=60)


# ----------------------------------------------------------------------------- session


def test_load_model_reads_the_contract(tmp_path):
    model = load_model(band_model(tmp_path / "c.onnx", CLASSIC_PREPROCESSING, variant="lenet5"))
    assert model.contract.variant == "lenet5" and model.contract.preprocessing == CLASSIC_PREPROCESSING


def test_load_model_refusals(tmp_path):
    with pytest.raises(ModelError, match=r"missing\.onnx: no such model file"):
        load_model(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match=r"junk\.onnx: not a loadable ONNX model"):
        load_model(tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match=r"bare\.onnx: no lenet-edge preprocessing contract"):
        load_model(band_model(tmp_path / "bare.onnx", contract=False))
    with pytest.raises(ModelError, match=r"named\.onnx: inputs \['pixels'\]"):
        load_model(band_model(tmp_path / "named.onnx", input_name="pixels"))


def test_wrong_output_shape_is_a_model_error(tmp_path):
    model = load_model(band_model(tmp_path / "eleven.onnx", classes=11))
    with pytest.raises(ModelError, match=r"eleven\.onnx: output logits has shape \(2, 11\) \(expected \(2, 10\)\)"):
        model.predict(np.zeros((2, 1, 32, 32), np.float32))


def test_predict_in_chunks_matches_one_call(model_path):
    model = load_model(model_path)
    x = MODERN_PREPROCESSING(synthetic_digits(25)[0])
    whole = model.predict(x, 25)
    np.testing.assert_allclose(model.predict(x, 4), whole, rtol=1e-6, atol=1e-5)
    assert [len(c) for c in model.predict_chunks(x, 10)] == [10, 10, 5]
    assert model.predict(x[:0]).shape == (0, 10)
    with pytest.raises(DataError, match=r"model input must be float32 \(N, 1, 32, 32\), found float64"):
        model.predict(x.astype(np.float64))


@pytest.mark.parametrize("bad", [0, -1, MAX_BATCH + 1, 2.5, True, "8"])
def test_batch_size_limits(bad):
    with pytest.raises(DataError, match="batch size must be an integer between 1 and 65536"):
        check_batch_size(bad)


@pytest.mark.parametrize("bad", [0, -2, 5000, True])
def test_thread_limits(bad):
    with pytest.raises(DataError, match="threads must be an integer between 1 and 1024"):
        session_options(bad)


def test_softmax_is_stable():
    p = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[0, 0] == pytest.approx(1.0) and p[1, 0] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- run


@pytest.fixture
def digit_files(tmp_path):
    """The synthetic digits 0..9 as a 16-bit PNG (dark on light, large), a .npy and an IDX file."""
    images, labels = synthetic_digits(30, seed=3)
    big = np.kron(255 - images[0], np.ones((6, 6), np.uint8)).astype(np.uint16) * 257  # (168, 168), dark on light
    Image.fromarray(big).save(tmp_path / "digit.png")
    np.save(tmp_path / "digits.npy", images[1:11])
    write_idx(tmp_path / "digits.idx.gz", images[11:30])
    return tmp_path, labels


def test_classify_labels_every_record(model_path, digit_files):
    folder, labels = digit_files
    records = list(classify(model_path, [folder / "digit.png", folder / "digits.npy", folder / "digits.idx.gz"],
                            batch_size=7))
    assert [r["input"] for r in records] == [str(folder / "digit.png")] + \
        [f"{folder / 'digits.npy'}[{i}]" for i in range(10)] + [f"{folder / 'digits.idx.gz'}[{i}]" for i in range(19)]
    found = [int(r["label"]) for r in records]
    # the band model is exact on the arrays; the PNG went through the image rules
    assert found[1:] == labels[1:30].tolist()
    assert all(0.0 < r["probability"] <= 1.0 for r in records)


def test_a_bad_input_fails_before_any_output(model_path, digit_files, tmp_path):
    folder, _ = digit_files
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"bad\.npy: malformed \.npy header"):
        classify(model_path, [folder / "digits.npy", tmp_path / "bad.npy"])


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_write_predictions_formats(fmt):
    records = [{"input": "a.png", "label": "3", "probability": 0.5}, {"input": "b, c.npy[0]", "label": "7",
                                                                       "probability": 0.25}]
    stream = io.StringIO()
    assert write_predictions(iter(records), fmt, stream) == 2
    text = stream.getvalue()
    if fmt == "json":
        assert json.loads(text) == records
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [(r["input"], r["label"], float(r["probability"])) for r in rows] == \
            [("a.png", "3", 0.5), ("b, c.npy[0]", "7", 0.25)]
    else:
        assert text.splitlines() == ["label  probability  input", "    3       0.5000  a.png",
                                     "    7       0.2500  b, c.npy[0]"]
    empty = io.StringIO()
    write_predictions(iter([]), fmt, empty)
    if fmt == "json":
        assert json.loads(empty.getvalue()) == []


def test_run_command_formats(runner, model_path, digit_files):
    folder, labels = digit_files
    args = ["run", str(model_path), str(folder / "digits.npy"), str(folder / "digits.idx.gz")]
    result = runner.invoke(cli, args + ["--format", "json", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [int(r["label"]) for r in rows] == labels[1:30].tolist()
    result = runner.invoke(cli, args + ["--format", "csv"])
    assert result.exit_code == 0 and result.stdout.splitlines()[0] == "input,label,probability"
    assert len(result.stdout.splitlines()) == 30
    result = runner.invoke(cli, args)
    assert result.exit_code == 0 and result.stdout.splitlines()[0].split() == ["label", "probability", "input"]


def test_run_writes_a_file_and_refuses_to_overwrite(runner, model_path, digit_files):
    folder, _ = digit_files
    out = folder / "predictions.csv"
    args = ["run", str(model_path), str(folder / "digits.npy"), "--format", "csv", "-o", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 11
    assert "predictions.csv: 10 predictions (csv)" in result.stderr
    assert not (folder / "MANIFEST.sha256").exists()  # a user's file: the manifest is for built artefacts
    result = runner.invoke(cli, args)
    assert result.exit_code == 6 and "already exists" in result.stderr
    assert runner.invoke(cli, args + ["--force"]).exit_code == 0


@pytest.mark.parametrize("args,code,message", [
    (["--batch-size", "0"], 3, "batch size must be an integer between 1 and 65536 (found 0)"),
    (["--batch-size", "-5"], 3, "batch size must be an integer between 1 and 65536 (found -5)"),
    (["--batch-size", "1000000"], 3, "batch size must be an integer between 1 and 65536 (found 1000000)"),
    (["--threads", "0"], 3, "threads must be an integer between 1 and 1024 (found 0)"),
    (["--invert", "maybe"], 2, "Invalid value for '--invert'"),
])
def test_run_refuses_bad_options(runner, model_path, digit_files, args, code, message):
    folder, _ = digit_files
    result = runner.invoke(cli, ["run", str(model_path), str(folder / "digits.npy"), *args])
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stdout == ""


def test_run_error_is_one_line_naming_the_file(runner, model_path, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(cli, ["run", str(model_path), str(tmp_path / "notes.txt")])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "notes.txt" in result.stderr
    result = runner.invoke(cli, ["run", str(tmp_path / "none.onnx"), str(tmp_path / "notes.txt")])
    assert result.exit_code == 4 and "none.onnx: no such model file" in result.stderr


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_counts(model_path, data_dir):
    result = evaluate(model_path, data_dir, batch_size=7)
    matrix = np.array(result["confusion_matrix"])
    _, labels = synthetic_digits(60, seed=2)
    assert matrix.shape == (10, 10) and matrix.sum() == 60
    assert matrix.sum(axis=1).tolist() == np.bincount(labels, minlength=10).tolist()
    assert result["accuracy"] == 1.0 and result["correct"] == 60 == np.trace(matrix)
    assert [r["images"] for r in result["per_class"]] == matrix.sum(axis=1).tolist()
    assert result["schema"] == "lenet-edge-evaluation" and result["precision"] == "fp32"


def test_evaluate_confusion_rows_are_true_classes(tmp_path, data_dir):
    # a model that shifts every prediction by one class: row k has all its images in column k+1
    from tests.runtime_models import band_weights

    shifted = np.roll(band_weights(MODERN_PREPROCESSING), 1, axis=1)
    result = evaluate(band_model(tmp_path / "shift.onnx", weights=shifted), data_dir)
    matrix = np.array(result["confusion_matrix"])
    assert result["accuracy"] == 0.0
    for k in range(10):
        assert matrix[k, (k + 1) % 10] == matrix[k].sum()
    text = format_evaluation(result)
    assert "accuracy 0.00%" in text and "rows: true class, columns: predicted class" in text


def test_evaluate_command(runner, model_path, data_dir, tmp_path):
    png = tmp_path / "confusion.png"
    result = runner.invoke(cli, ["evaluate", str(model_path), "--data-dir", str(data_dir), "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "accuracy 100.00% (60/60 official test images, 0 errors)" in result.stdout
    assert png.read_bytes().startswith(PNG_MAGIC) and not (tmp_path / "MANIFEST.sha256").exists()
    result = runner.invoke(cli, ["evaluate", str(model_path), "--data-dir", str(data_dir), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["correct"] == 60
    result = runner.invoke(cli, ["evaluate", str(model_path), "--data-dir", str(data_dir), "--png", str(png)])
    assert result.exit_code == 6 and "confusion.png: already exists" in result.stderr


def test_evaluate_refusals(runner, model_path, tmp_path):
    result = runner.invoke(cli, ["evaluate", str(model_path), "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 3 and "nowhere: not a directory" in result.stderr
    data_dir = write_mnist_dir(tmp_path / "m", train=10, test=10)
    result = runner.invoke(cli, ["evaluate", str(model_path), "--data-dir", str(data_dir), "--batch-size", "0"])
    assert result.exit_code == 3 and "batch size" in result.stderr


def test_evaluate_without_matplotlib_skips_the_chart(runner, model_path, data_dir, tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(__import__("sys").modules, name, None)
    png = tmp_path / "c.png"
    result = runner.invoke(cli, ["evaluate", str(model_path), "--data-dir", str(data_dir), "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "chart skipped: matplotlib is not installed" in result.stderr and not png.exists()


def test_random_model_is_deterministic(tmp_path):
    x = MODERN_PREPROCESSING(synthetic_digits(5)[0])
    a = load_model(random_model(tmp_path / "a.onnx", seed=1)).predict(x)
    b = load_model(random_model(tmp_path / "b.onnx", seed=1)).predict(x)
    np.testing.assert_array_equal(a, b)
