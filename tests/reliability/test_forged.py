"""Forged or broken metadata, reports and checkpoints, and a user's mistakes: each is one error line with its
kind's exit code, never an internal error (exit 1), never trusted, and never a NaN called sure.

Random-weight models and synthetic digits only (tests/runtime_models.py, tests/idx_files.py): no training
beyond a few steps on 200 synthetic images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from lenet_edge.cli import cli
from lenet_edge.contract import PREFIX
from lenet_edge.fileio import sha256_file
from lenet_edge.mnist import MODERN_PREPROCESSING
from lenet_edge.train.checkpoint import meta_path, resume_path
from tests.cli_output import one_error_line
from tests.idx_files import synthetic_digits, write_mnist_dir
from tests.runtime_models import band_model

USAGE, DATA, MODEL, VALIDATION, DEPENDENCY = 2, 3, 4, 5, 7
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def digits(tmp_path) -> Path:
    np.save(tmp_path / "digits.npy", synthetic_digits(4)[0])
    return tmp_path / "digits.npy"


def forged(path: Path, **props: str) -> Path:
    """A band model whose lenet-edge metadata entries are replaced by these raw strings (None: removed)."""
    model = onnx.load(str(band_model(path)))
    entries = {p.key: p.value for p in model.metadata_props}
    for key, value in props.items():
        entries.pop(PREFIX + key, None)
        if value is not None:
            entries[PREFIX + key] = value
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, entries)
    path.write_bytes(model.SerializeToString())
    return path


def preprocessing(**changes) -> str:
    record = {**MODERN_PREPROCESSING.to_dict(), **changes}
    return json.dumps({k: v for k, v in record.items() if v is not None})


# ----------------------------------------------------------------------------- the model's contract


@pytest.mark.parametrize("props, says", [
    ({"preprocessing": preprocessing(std=0)}, "std 0 (expected finite numbers, std above 0)"),
    ({"preprocessing": preprocessing(std=-0.3)}, "(expected finite numbers, std above 0)"),
    ({"preprocessing": preprocessing(mean=float("nan"))}, "mean nan and std 0.3081 (expected finite numbers"),
    ({"preprocessing": preprocessing(std=float("inf"))}, "(expected finite numbers, std above 0)"),
    ({"preprocessing": preprocessing(pad=16)}, "input_size 32 and pad 16 (expected integers that leave MNIST's 28x28"),
    ({"preprocessing": preprocessing(pad=-2)}, "input_size 32 and pad -2 (expected integers"),
    ({"preprocessing": preprocessing(pad=2.5)}, "input_size 32 and pad 2.5 (expected integers"),
    ({"preprocessing": preprocessing(pad=None)}, "preprocessing record without pad (expected mean, std"),
    ({"preprocessing": preprocessing(polarity="sideways")}, "polarity 'sideways' (expected one of light-on-dark"),
    ({"preprocessing": "[" * 100_000}, "nested too deeply"),
    ({"class_labels": json.dumps([str(d) for d in range(9)] + ["\x1b]0;pwned\x07"])}, "class label '\\x1b]0;pwned"),
    ({"class_labels": json.dumps(["\x1b[2J"] + [str(d) for d in range(1, 10)])}, "no control characters"),
    ({"class_labels": json.dumps(["\u202e9"] + [str(d) for d in range(1, 10)])}, "no control characters"),
    ({"class_labels": json.dumps(["0"] * 10)}, "repeat (expected distinct labels)"),
    ({"class_labels": json.dumps([str(d) for d in range(9)])}, "10 classes and its metadata 9 class labels"),
    ({"class_labels": json.dumps({"0": "zero"})}, "(expected a non-empty JSON list of strings)"),
    ({"variant": "lenet\x1b[31m"}, "variant 'lenet\\x1b[31m' in its metadata"),
    ({"versions": "[1, 2]"}, "versions or quantization that are not JSON objects"),
    ({"test_accuracy": "nan"}, "test accuracy nan in its metadata (expected 0 to 1)"),
], ids=["std-0", "std-negative", "mean-nan", "std-inf", "pad-16", "pad-negative", "pad-float", "pad-missing",
        "polarity", "nested", "label-osc-title", "label-clear-screen", "label-bidi", "labels-repeat",
        "labels-9-for-10", "labels-object", "variant-escape", "versions-list", "accuracy-nan"])
def test_forged_metadata_is_a_model_error_naming_the_file(tmp_path, digits, props, says):
    model = forged(tmp_path / "forged.onnx", **props)
    result = CliRunner().invoke(cli, ["run", str(model), str(digits)])
    assert result.exit_code == MODEL, result.stderr
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {model}: ") and says in line, line
    assert result.stdout == ""


def test_a_probability_that_is_not_a_number_is_never_sure(tmp_path, digits):
    weights = np.full((32 * 32, 10), np.nan, np.float32)  # NaN logits, as std = 0 used to give
    model = band_model(tmp_path / "nan.onnx", weights=weights)
    result = CliRunner().invoke(cli, ["run", str(model), str(digits), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert [r["unsure"] for r in records] == [True] * 4 and [r["probability"] for r in records] == [None] * 4
    assert result.stderr == "4 predictions (json), 4 unsure, 0 failed\n"  # no numpy warning
    table = CliRunner().invoke(cli, ["run", str(model), str(digits)])
    assert all(line.split()[2] == "unsure" for line in table.stdout.splitlines()[1:]), table.stdout


# ----------------------------------------------------------------------------- bench reports from elsewhere


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("bench")
    model = band_model(tmp / "band.onnx")
    np.save(tmp / "digits.npy", synthetic_digits(8)[0])
    result = CliRunner().invoke(cli, ["bench", str(model), "--inputs", str(tmp / "digits.npy"), "--batch-sizes", "1",
                                      "--threads", "1", "--runs", "4", "--rounds", "2", "--warmup", "0",
                                      "--min-turn-ms", "0", "-o", str(tmp / "bench.json")])
    assert result.exit_code == 0, result.stderr
    return json.loads((tmp / "bench.json").read_text())


def _changed(report: dict, path: str, value) -> dict:
    changed = json.loads(json.dumps(report))
    *parents, key = path.split(".")
    target = changed
    for parent in parents:
        target = target[parent]
    target[key] = value
    return changed


@pytest.mark.parametrize("field, value", [
    ("environment.cpu", "AMD EPYC"), ("environment.cpu.model", 5), ("environment.cpu.logical_cores", "two"),
    ("environment.versions", "1.32"), ("environment.versions.onnxruntime", 1.32), ("environment.device", ["pi"]),
    ("settings", [200, 20]), ("settings.runs", "many"), ("settings.min_turn_ms", "fifty"), ("created", 2026),
])
def test_compare_checks_every_field_it_reads(tmp_path, report, field, value):
    (tmp_path / "a.json").write_text(json.dumps(report))
    (tmp_path / "b.json").write_text(json.dumps(_changed(report, field, value)))
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert result.exit_code == DATA, result.stderr
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {tmp_path / 'b.json'}: {field} is {type(value).__name__} (expected "), line


@pytest.mark.parametrize("field", ["environment.cpu.model", "environment.device", "created"])
def test_compare_refuses_report_text_that_would_reach_the_terminal_raw(tmp_path, report, field):
    (tmp_path / "a.json").write_text(json.dumps(report))
    (tmp_path / "b.json").write_text(json.dumps(_changed(report, field, "EPYC\x1b]0;pwned\x07")))
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert result.exit_code == DATA
    assert f"{field} 'EPYC\\x1b]0;pwned\\x07' holds control characters" in one_error_line(result.stderr)
    assert "\x1b" not in result.stdout + result.stderr


def test_a_report_or_checkpoint_json_nested_100000_deep_is_refused(tmp_path, report):
    (tmp_path / "a.json").write_text(json.dumps(report))
    (tmp_path / "deep.json").write_text("[" * 100_000)
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.json"), str(tmp_path / "deep.json")])
    assert result.exit_code == DATA
    assert "deep.json: nested too deeply to read" in one_error_line(result.stderr)
    (tmp_path / "ckpt.safetensors").write_bytes(b"weights")
    (tmp_path / "ckpt.json").write_text("[" * 100_000)
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "ckpt.safetensors"), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == MODEL
    assert "ckpt.json: nested too deeply to read" in one_error_line(result.stderr)


# ----------------------------------------------------------------------------- the device install


@pytest.mark.parametrize("args, missing, extra", [
    (["summary"], "torch", "train"),
    (["train", "-o", "m.safetensors"], "torch", "train"),
    (["export", "m.safetensors"], "torch", "export"),
    (["export", "m.safetensors"], "onnx", "export"),
    (["pipeline", "--out", "run"], "torch", "all"),
    (["compile", "m.int8.onnx", "-o", "mcu"], "unicorn", "mcu"),
])
def test_a_missing_extra_is_named_before_anything_starts(tmp_path, monkeypatch, args, missing, extra):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, missing, None)  # what an import sees where the package is not installed
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == DEPENDENCY, result.stderr
    assert one_error_line(result.stderr) == (f"error: {missing} is not installed (needed here); install it with "
                                      f"pip install 'lenet-edge[{extra}]'")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_mnist_dir(tmp_path_factory.mktemp("tiny") / "mnist", train=200, test=50)


STEPS = ["--val-count", "50", "--batch-size", "30", "--threads", "1", "--no-augment"]  # 5 steps an epoch


def test_a_loss_that_is_not_finite_stops_training_and_keeps_the_last_good_checkpoint(tiny, tmp_path):
    out = tmp_path / "m.safetensors"
    diverged = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny), "-o", str(out), "--epochs", "1", *STEPS,
                                        "--lr", "1e30"])
    assert diverged.exit_code == VALIDATION, diverged.stderr
    assert "training loss became nan at epoch 1" in one_error_line(diverged.stderr)
    assert "nothing was written" in one_error_line(diverged.stderr) and list(tmp_path.iterdir()) == []

    good = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny), "-o", str(out), "--epochs", "1", *STEPS])
    assert good.exit_code == 0, good.stderr
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    resumed = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny), "-o", str(out), "--epochs", "2", *STEPS,
                                       "--lr", "1e30", "--resume"])
    assert resumed.exit_code == VALIDATION, resumed.stderr
    line = one_error_line(resumed.stderr)
    assert line.startswith("error: training loss became nan at epoch 2, step ") and line.endswith(
        f"(expected a finite loss; try a lower --lr or --momentum); the checkpoint of epoch 1 at {out} is kept")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == kept
    assert json.loads(meta_path(out).read_text())["weights_sha256"] == sha256_file(out)
    assert resume_path(out).is_file()


@pytest.mark.parametrize("field, value, says", [
    ("recipe", [], "recipe is list (expected an object)"),
    ("history", {"epoch": 1}, "history is dict (expected a list of epochs)"),
    ("history", [{"epoch": 1}], "history[0] is {'epoch': 1} (expected an epoch record"),
    ("versions", "2.13", "versions is str (expected an object)"),
    ("test_accuracy", "99 %", "test_accuracy is str (expected a number)"),
])
def test_a_forged_checkpoint_json_is_a_model_error_for_resume_and_export(tiny, tmp_path, field, value, says):
    out = tmp_path / "m.safetensors"
    assert CliRunner().invoke(cli, ["train", "--data-dir", str(tiny), "-o", str(out), "--epochs", "1",
                                    *STEPS]).exit_code == 0
    meta = json.loads(meta_path(out).read_text())
    meta_path(out).write_text(json.dumps({**meta, field: value}))  # weights_sha256 still matches
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for args in (["train", "--data-dir", str(tiny), "-o", str(out), "--epochs", "2", *STEPS, "--resume"],
                 ["export", str(out), "-o", str(tmp_path / "m.onnx"), "--data-dir", str(tiny)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == MODEL, result.stderr
        line = one_error_line(result.stderr)
        assert line == f"error: {meta_path(out)}: {says}" or says in line
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_no_validation_split_writes_null_not_nan(tiny, tmp_path):
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny), "-o", str(out), "--epochs", "1",
                                      *STEPS[2:], "--val-count", "0"])
    assert result.exit_code == 0, result.stderr
    meta = json.loads(meta_path(out).read_text(), parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert meta["history"][0]["val_loss"] is None and meta["history"][0]["val_accuracy"] is None
    assert meta["val_images"] == 0 and out.with_suffix(".curves.png").is_file()


# ----------------------------------------------------------------------------- usage errors and pipes


@pytest.mark.parametrize("args, message", [
    (["run", "m.onnx", "d.npy", "--frob"], "No such option '--frob'. Did you mean '--force'?"),
    (["bench", "m.onnx", "--threads", "abc"], "Invalid value for '--threads': 'abc' is not a valid integer range."),
    (["quantize", "m.onnx", "--max-accuracy-drop", "nan"],
     "Invalid value for '--max-accuracy-drop': nan is not a finite number."),
    (["export", "c.safetensors", "--opset", "99"], "Invalid value for '--opset': 99 is not in the range 18<=x<=23."),
    (["pipeline", "--bench-runs", "1"], "Invalid value for '--bench-runs': 1 is not in the range x>=10."),
    (["compare"], "Missing argument 'REPORTS...'."),
    (["frobnicate"], "No such command 'frobnicate'."),
])
def test_every_usage_error_is_one_line_in_clicks_words(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == USAGE
    assert result.stderr == f"error: {message}\n" and result.stdout == ""


@pytest.mark.parametrize("args", [["summary"], ["--help"], ["run", "--help"], ["compare", "a.json", "b.json"],
                                  ["run", "band.onnx", "digits.npy"]])
def test_a_reader_that_stops_early_is_not_an_error_for_any_command(tmp_path, report, args):
    band_model(tmp_path / "band.onnx")
    np.save(tmp_path / "digits.npy", synthetic_digits(4)[0])
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(report))
    reader, writer = os.pipe()
    os.close(reader)  # `| true`: every write to stdout fails with EPIPE
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        result = subprocess.run([sys.executable, "-m", "lenet_edge", *args], stdout=writer, stderr=subprocess.PIPE,
                                text=True, timeout=300, cwd=tmp_path, env=env)
    finally:
        os.close(writer)
    assert result.returncode == 0, result.stderr
    assert "Error" not in result.stderr and "error:" not in result.stderr, result.stderr
