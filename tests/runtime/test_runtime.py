"""Runtime on hermetic models and synthetic data: session, run, evaluate and their CLI."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from lenet_edge.cli import cli
from lenet_edge.errors import DataError, ModelError
from lenet_edge.mnist import CLASSIC_PREPROCESSING, MODERN_PREPROCESSING
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
    with pytest.raises(ModelError, match=r"eleven\.onnx: output logits has 11 classes and its metadata 10 class "
                                         r"labels \(expected one label per class\)"):
        load_model(band_model(tmp_path / "eleven.onnx", classes=11))


def test_logits_of_each_call_are_its_own(model_path):
    """logits() writes into an output bound once per batch size: each call must still hand back its own array."""
    model = load_model(model_path)
    x = np.ascontiguousarray(MODERN_PREPROCESSING(synthetic_digits(6)[0]))
    first, second, odd = model.logits(x[:3]), model.logits(x[3:]), model.logits(x[:1])
    np.testing.assert_array_equal(first, model.session.run(["logits"], {"image": x[:3]})[0])
    np.testing.assert_array_equal(second, model.session.run(["logits"], {"image": x[3:]})[0])
    assert not np.array_equal(first, second) and odd.shape == (1, 10)
    np.testing.assert_array_equal(odd, first[:1])


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


def test_fail_fast_stops_at_a_bad_input_before_any_output(model_path, digit_files, tmp_path):
    folder, _ = digit_files
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"bad\.npy: malformed \.npy header"):
        classify(model_path, [folder / "digits.npy", tmp_path / "bad.npy"], fail_fast=True)


def test_a_bad_input_gets_an_error_record_in_its_place(model_path, digit_files, tmp_path):
    folder, labels = digit_files
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    Image.new("L", (40, 40), 200).save(tmp_path / "blank.png")
    inputs = [tmp_path / "blank.png", folder / "digits.npy", tmp_path / "bad.npy", folder / "digit.png",
              tmp_path / "missing.png"]
    records = list(classify(model_path, inputs, batch_size=4))
    assert [r["input"] for r in records] == [str(tmp_path / "blank.png")] + \
        [f"{folder / 'digits.npy'}[{i}]" for i in range(10)] + [str(p) for p in inputs[2:]]
    errors = {r["input"]: r["error"] for r in records if "error" in r}
    assert list(errors) == [str(tmp_path / "blank.png"), str(tmp_path / "bad.npy"), str(tmp_path / "missing.png")]
    assert "blank.png: no digit found" in errors[str(tmp_path / "blank.png")]
    assert "bad.npy: malformed .npy header" in errors[str(tmp_path / "bad.npy")]
    assert "missing.png: no such file" in errors[str(tmp_path / "missing.png")]
    assert [int(r["label"]) for r in records[1:11]] == labels[1:11].tolist()


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_write_predictions_formats(fmt):
    records = [{"input": "a.png", "label": "3", "probability": 0.95, "unsure": False},
               {"input": "b, c.npy[0]", "label": "7", "probability": 0.25, "unsure": True},
               {"input": "d.png", "error": "d.png: no digit found"}]
    stream = io.StringIO()
    assert write_predictions(iter(records), fmt, stream) == {"predictions": 2, "unsure": 1, "failed": 1}
    text = stream.getvalue()
    if fmt == "json":
        assert json.loads(text) == records
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [tuple(r.values()) for r in rows] == [("a.png", "3", "0.950000", "false", ""),
                                                     ("b, c.npy[0]", "7", "0.250000", "true", ""),
                                                     ("d.png", "", "", "", "d.png: no digit found")]
    else:
        assert text.splitlines() == ["label  probability  note    input", "    3       0.9500          a.png",
                                     "    7       0.2500  unsure  b, c.npy[0]", "    -            -  error   d.png"]
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
    assert result.exit_code == 0 and result.stdout.splitlines()[0] == "input,label,probability,unsure,error"
    assert len(result.stdout.splitlines()) == 30
    result = runner.invoke(cli, args)
    assert result.exit_code == 0 and result.stdout.splitlines()[0].split() == ["label", "probability", "note", "input"]


def test_run_writes_a_file_and_refuses_to_overwrite(runner, model_path, digit_files):
    folder, _ = digit_files
    out = folder / "predictions.csv"
    args = ["run", str(model_path), str(folder / "digits.npy"), "--format", "csv", "-o", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 11
    assert "predictions.csv: 10 predictions (csv), 0 unsure, 0 failed" in result.stderr
    assert not (folder / "MANIFEST.sha256").exists()  # a user's file: the manifest is for built artefacts
    result = runner.invoke(cli, args)
    assert result.exit_code == 6 and "already exists" in result.stderr
    assert runner.invoke(cli, args + ["--force"]).exit_code == 0


@pytest.mark.parametrize("args,code,message", [
    (["--batch-size", "0"], 2, "error: Invalid value for '--batch-size': 0 is not in the range 1<=x<=65536.\n"),
    (["--batch-size", "-5"], 2, "error: Invalid value for '--batch-size': -5 is not in the range 1<=x<=65536.\n"),
    (["--batch-size", "1000000"], 2, "Invalid value for '--batch-size': 1000000 is not in the range 1<=x<=65536."),
    (["--threads", "0"], 2, "error: Invalid value for '--threads': 0 is not in the range 1<=x<=1024.\n"),
    (["--threads", "abc"], 2, "error: Invalid value for '--threads': 'abc' is not a valid integer range.\n"),
    (["--invert", "maybe"], 2, "Invalid value for '--invert'"),
])
def test_run_refuses_bad_options(runner, model_path, digit_files, args, code, message):
    folder, _ = digit_files
    result = runner.invoke(cli, ["run", str(model_path), str(folder / "digits.npy"), *args])
    assert result.exit_code == code
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr  # a usage error is one line, like every error
    assert result.stdout == ""


def test_run_error_is_one_line_naming_the_file(runner, model_path, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(cli, ["run", str(model_path), str(tmp_path / "notes.txt"), "--fail-fast"])
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "notes.txt" in result.stderr
    result = runner.invoke(cli, ["run", str(tmp_path / "none.onnx"), str(tmp_path / "notes.txt")])
    assert result.exit_code == 4 and "none.onnx: no such model file" in result.stderr


def _number_picture(path):
    """A picture of three hand-drawn digits (1, 0, 7), dark ink on light paper."""
    from tests.pictures import ONE, SEVEN, ZERO, draw

    Image.fromarray(draw(ONE + ZERO + SEVEN)).save(path)
    return path


def test_run_reads_a_picture_as_a_number(runner, model_path, tmp_path):
    picture = _number_picture(tmp_path / "number.png")
    result = runner.invoke(cli, ["run", str(model_path), str(picture), "--format", "json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    digits = record["digits"]
    assert len(digits) == 3 and record["label"] == "".join(d["label"] for d in digits)
    assert [d["box"][0] for d in digits] == sorted(d["box"][0] for d in digits)
    assert record["probability"] == pytest.approx(np.prod([d["probability"] for d in digits]))
    assert record["unsure"] == any(d["unsure"] for d in digits)
    table = runner.invoke(cli, ["run", str(model_path), str(picture)])
    assert table.stdout.splitlines()[1].split()[0] == record["label"]
    rows = list(csv.DictReader(io.StringIO(runner.invoke(cli, ["run", str(model_path), str(picture),
                                                                "--format", "csv"]).stdout)))
    assert [(r["input"], r["label"]) for r in rows] == [(str(picture), record["label"])]


def test_unsure_flag_and_its_count(runner, model_path, tmp_path):
    """Inputs the band model reads as 3 with a chosen probability: blank (0.1), just below the
    threshold, just above it, and sure (~1)."""
    from lenet_edge.runtime.predict import UNSURE_BELOW

    black = -MODERN_PREPROCESSING.mean / MODERN_PREPROCESSING.std  # MNIST's black after normalisation
    targets = [0.1, UNSURE_BELOW - 0.02, UNSURE_BELOW + 0.02, 0.99999]
    x = np.full((len(targets), 1, 32, 32), black, np.float32)
    for i, p in enumerate(targets):  # logit 3 - other logits = log(9 p / (1 - p)), spread over the band's 40 pixels
        x[i, 0, 2 + 9:2 + 11, 6:26] = black + np.log(9 * p / (1 - p)) / 40
    np.save(tmp_path / "x.npy", x)
    result = runner.invoke(cli, ["run", str(model_path), str(tmp_path / "x.npy"), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["probability"] for r in rows] == pytest.approx(targets, abs=1e-4)
    assert [r["label"] for r in rows][1:] == ["3"] * 3
    assert [r["unsure"] for r in rows] == [True, True, False, False]
    assert "4 predictions (json), 2 unsure, 0 failed" in result.stderr


def test_run_keeps_going_past_bad_files(runner, model_path, digit_files, tmp_path):
    folder, labels = digit_files
    Image.new("L", (40, 40), 200).save(tmp_path / "blank.png")
    (tmp_path / "notes.txt").write_text("hello")
    inputs = [str(folder / "digits.npy"), str(tmp_path / "blank.png"), str(folder / "digit.png"),
              str(tmp_path / "notes.txt")]
    result = runner.invoke(cli, ["run", str(model_path), *inputs, "--format", "csv"])
    assert result.exit_code == 3
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["input"] for r in rows] == [f"{inputs[0]}[{i}]" for i in range(10)] + inputs[1:]
    assert [int(r["label"]) for r in rows[:10]] == labels[1:11].tolist() and rows[11]["label"] != ""
    assert "no digit found" in rows[10]["error"] and "not an image" in rows[12]["error"]
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"error: {inputs[1]}: no digit found") and errors[1].startswith(f"error: {inputs[3]}:")
    assert errors[2] == "11 predictions (csv), " + errors[2].split(", ", 1)[1] and errors[2].endswith("2 failed")
    assert errors[3] == "error: 2 of 13 inputs could not be read (expected a readable file holding a digit; " \
                        "each one's error is above)" and len(errors) == 4
    out = tmp_path / "out.json"
    result = runner.invoke(cli, ["run", str(model_path), *inputs, "--format", "json", "-o", str(out)])
    assert result.exit_code == 3 and len(json.loads(out.read_text())) == 13  # the file holds every row
    result = runner.invoke(cli, ["run", str(model_path), *inputs, "--fail-fast"])
    assert result.exit_code == 3 and result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {inputs[1]}: no digit found")


def test_annotate_draws_boxes_and_labels(runner, model_path, digit_files, tmp_path):
    folder, _ = digit_files
    picture = _number_picture(tmp_path / "number.png")
    out = tmp_path / "seen"
    args = ["run", str(model_path), str(picture), str(folder / "digit.png"), str(folder / "digits.npy"),
            "--format", "json", "--annotate", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    number = json.loads(result.stdout)[0]
    assert sorted(p.name for p in out.glob("*.png")) == ["digit.png", "number.png"]  # arrays are not pictures
    drawn = np.asarray(Image.open(out / "number.png").convert("RGB")).astype(int)  # (H, W, 3)
    assert drawn.shape[:2] == (320, 800)  # 160 px high: enlarged 2x to stay legible
    for digit in number["digits"]:
        left, top, right, bottom = (2 * v for v in digit["box"])
        colour = (220, 0, 0) if digit["unsure"] else (0, 160, 0)
        assert (drawn[(top + bottom) // 2, left - 2] == colour).all()  # the box's left edge
        assert (drawn[(top + bottom) // 2, (left + right) // 2 + 1] != colour).any()  # not filled in
    assert np.asarray(Image.open(out / "digit.png")).shape[:2] == (336, 336)  # 168 px enlarged 2x
    again = runner.invoke(cli, args)
    assert again.exit_code == 6 and "number.png: already exists" in again.stderr and again.stdout == ""
    assert runner.invoke(cli, args + ["--force"]).exit_code == 0
    (tmp_path / "other").mkdir()
    _number_picture(tmp_path / "other" / "number.png")
    clash = runner.invoke(cli, ["run", str(model_path), str(picture), str(tmp_path / "other" / "number.png"),
                                "--annotate", str(tmp_path / "clash")])
    assert clash.exit_code == 6 and "would annotate both" in clash.stderr and not (tmp_path / "clash").exists()
    refused = runner.invoke(cli, ["run", str(tmp_path / "none.onnx"), str(picture),
                                  "--annotate", str(tmp_path / "new")])
    assert refused.exit_code == 4 and not (tmp_path / "new").exists()  # a refused run leaves no directory behind


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


def test_evaluate_logits_are_the_models_logits_in_test_set_order(runner, model_path, data_dir, tmp_path):
    logits_path = tmp_path / "logits.npy"
    result = runner.invoke(cli, ["evaluate", str(model_path), "--data-dir", str(data_dir), "--json", "--logits",
                                 str(logits_path), "--batch-size", "7"])
    assert result.exit_code == 0, result.output
    logits = np.load(logits_path, allow_pickle=False)
    images, labels = synthetic_digits(60, seed=2)
    model = load_model(model_path)
    assert logits.shape == (60, 10) and logits.dtype == np.float32
    assert np.array_equal(logits, model.predict(model.contract.preprocessing(images)))  # bit for bit, in order
    assert (logits.argmax(axis=1) == labels).all() and json.loads(result.stdout)["correct"] == 60
    again = ["evaluate", str(model_path), "--data-dir", str(data_dir), "--logits", str(logits_path)]
    result = runner.invoke(cli, again)
    assert result.exit_code == 6 and "logits.npy: already exists" in result.stderr


def test_evaluate_refusals(runner, model_path, tmp_path):
    result = runner.invoke(cli, ["evaluate", str(model_path), "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 3 and "nowhere: not a directory" in result.stderr
    data_dir = write_mnist_dir(tmp_path / "m", train=10, test=10)
    result = runner.invoke(cli, ["evaluate", str(model_path), "--data-dir", str(data_dir), "--batch-size", "0"])
    assert result.exit_code == 2 and "Invalid value for '--batch-size'" in result.stderr


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
