"""`lenet-edge train`: tiny hermetic runs on synthetic IDX files (reproducibility, resume,
output refusal, bad options, error lines), and the real default recipes on real MNIST."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lenet_edge.cli import cli
from lenet_edge.fileio import sha256_file
from lenet_edge.mnist import read_idx
from lenet_edge.mnist_download import MD5
from lenet_edge.train.checkpoint import load_checkpoint, meta_path, resume_path
from lenet_edge.train.models import build_model
from tests.cli_output import one_error_line
from tests.idx_files import write_mnist_dir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
# 200 synthetic training images, 50 held out, batches of 15: 10 steps per epoch.
# One thread: a seed promises identical weights for the same data, recipe and thread count.
TINY = ["--epochs", "1", "--val-count", "50", "--batch-size", "15", "--threads", "1"]


def _meta(weights: Path) -> dict:
    return json.loads(meta_path(weights).read_text())


def _assert_history(history: list[dict], epochs: int) -> None:
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    for h in history:
        assert set(h) >= HISTORY_KEYS
        assert all(math.isfinite(h[k]) for k in HISTORY_KEYS)
        assert 0 <= h["train_accuracy"] <= 1 and 0 <= h["val_accuracy"] <= 1
        assert h["train_loss"] > 0 and h["val_loss"] > 0


def _assert_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200


# --- tiny hermetic runs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_mnist_dir(tmp_path_factory.mktemp("tiny") / "mnist", train=200, test=100)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_data) -> Path:
    """One epoch of lenet5-modern (with distortions) on the synthetic digits, seed 0."""
    out = tmp_path_factory.mktemp("run") / "tiny.safetensors"
    result = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), *TINY])
    assert result.exit_code == 0, result.stderr
    return out


def _invoke(args: list[str]):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, args)


def _copy_run(src: Path, dst_dir: Path) -> Path:
    for path in (src, meta_path(src), resume_path(src)):
        shutil.copy(path, dst_dir / path.name)
    return dst_dir / src.name


def test_a_tiny_run_writes_checkpoint_curves_and_summary_line(tiny_run, tiny_data):
    meta = _meta(tiny_run)
    assert meta["variant"] == "lenet5-modern" and meta["epoch"] == 1
    assert meta["recipe"]["epochs"] == 1 and meta["recipe"]["batch_size"] == 15 and meta["recipe"]["seed"] == 0
    assert (meta["train_images"], meta["val_images"]) == (150, 50)
    assert meta["weights_sha256"] == sha256_file(tiny_run)
    assert meta["data_dir_sha256"] == {p.name: sha256_file(p) for p in tiny_data.iterdir()}
    assert 0 <= meta["test_accuracy"] <= 1
    _assert_history(meta["history"], 1)
    _assert_png(tiny_run.with_suffix(".curves.png"))
    assert resume_path(tiny_run).is_file()
    model, _ = load_checkpoint(tiny_run)
    assert model.variant == "lenet5-modern"
    assert sorted(p.name for p in tiny_run.parent.iterdir()) == sorted(
        ["tiny.safetensors", "tiny.json", "tiny.resume.safetensors", "tiny.curves.png", "MANIFEST.sha256"])


def test_same_seed_gives_identical_weights_and_default_output_goes_to_runs(tiny_data, tmp_path):
    """Two runs of the command, each in its own process as a user runs it, cwd = tmp_path (the
    default --out is relative: runs/VARIANT.safetensors), then again into another directory."""
    command = [str(Path(sys.executable).with_name("lenet-edge")), "train", "--data-dir", str(tiny_data), *TINY]
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    for cwd in (first_dir, second_dir):
        cwd.mkdir()
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "runs/lenet5-modern.safetensors" in result.stdout and "test accuracy" in result.stdout
        assert "(target 99.0%: MISSED" in result.stdout  # a few hundred images do not reach the target
    first, second = (d / "runs" / "lenet5-modern.safetensors" for d in (first_dir, second_dir))
    assert sha256_file(first) == sha256_file(second)
    for a, b in zip(_meta(first)["history"], _meta(second)["history"], strict=True):
        assert {k: a[k] for k in HISTORY_KEYS} == {k: b[k] for k in HISTORY_KEYS}
    assert _meta(first)["test_accuracy"] == _meta(second)["test_accuracy"]


def test_existing_output_is_refused_without_force_and_replaced_with_it(tiny_run, tiny_data, tmp_path):
    out = _copy_run(tiny_run, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    args = ["train", "--data-dir", str(tiny_data), "-o", str(out), *TINY, "--seed", "1"]

    refused = _invoke(args)
    assert refused.exit_code == 6
    assert one_error_line(refused.stderr) == (f"error: {out}: already exists (expected a new path); "
                                              "pass --force to replace it")
    assert refused.stdout == ""
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    replaced = _invoke([*args, "--force"])
    assert replaced.exit_code == 0, replaced.stderr
    assert sha256_file(out) != sha256_file(tiny_run)  # another seed: other weights
    assert _meta(out)["recipe"]["seed"] == 1
    assert load_checkpoint(out)[1]["weights_sha256"] == sha256_file(out)


def test_resume_continues_to_more_epochs(tiny_run, tiny_data, tmp_path):
    out = _copy_run(tiny_run, tmp_path)
    result = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), *TINY[2:], "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.stderr
    first, resumed = _meta(tiny_run), _meta(out)
    assert resumed["epoch"] == 2 and resumed["recipe"]["epochs"] == 2
    _assert_history(resumed["history"], 2)
    assert resumed["history"][0] == first["history"][0]  # the first epoch is carried over, not redone
    assert sha256_file(out) != sha256_file(tiny_run)
    before, _ = load_checkpoint(tiny_run)
    after, _ = load_checkpoint(out)
    assert not torch.equal(before.C1[0].weight, after.C1[0].weight)
    _assert_png(out.with_suffix(".curves.png"))

    backwards = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), *TINY, "--resume"])
    assert backwards.exit_code == 3 and "already trained for 2 epochs" in one_error_line(backwards.stderr)
    assert _meta(out) == resumed


def test_resume_without_a_checkpoint_is_a_data_error(tiny_data, tmp_path):
    out = tmp_path / "none.safetensors"
    result = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), *TINY, "--resume"])
    assert result.exit_code == 3
    assert one_error_line(result.stderr) == (f"error: {out}: no checkpoint to resume "
                                             "(expected the --out of an earlier run)")


def test_resume_of_another_variant_is_a_model_error(tiny_run, tiny_data, tmp_path):
    out = _copy_run(tiny_run, tmp_path)
    result = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), "--variant", "lenet5",
                      *TINY[2:], "--epochs", "2", "--resume"])
    assert result.exit_code == 4
    assert "lenet5-modern checkpoint cannot resume a lenet5 run" in one_error_line(result.stderr)
    assert _meta(out) == _meta(tiny_run)


def test_resume_to_no_more_epochs_than_done_is_a_data_error(tiny_run, tiny_data, tmp_path):
    out = _copy_run(tiny_run, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), *TINY[2:], "--epochs", "1",
                      "--resume"])
    assert result.exit_code == 3, result.stderr
    assert one_error_line(result.stderr) == (f"error: {out}: already trained for 1 epochs "
                                   "(expected --epochs above 1 to resume)")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_run_of_five_steps_trains(tiny_data, tmp_path):
    out = tmp_path / "few.safetensors"
    result = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), "--epochs", "1",
                      "--val-count", "50", "--batch-size", "30"])  # 150 images: 5 steps
    assert result.exit_code == 0, result.stderr
    assert _meta(out)["epoch"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "error: Invalid value for '--epochs': 0 is not in the range 1<=x<=10000."),
        (["--batch-size", "0"], "error: Invalid value for '--batch-size': 0 is not in the range 1<=x<=65536."),
        (["--lr", "0"], "error: Invalid value for '--lr': 0.0 is not in the range x>0."),
        (["--lr", "nan"], "error: Invalid value for '--lr': nan is not a finite number."),
        (["--lr", "inf"], "error: Invalid value for '--lr': inf is not a finite number."),
        (["--val-count", "-1"], "error: Invalid value for '--val-count': -1 is not in the range x>=0."),
        (["--threads", "0"], "error: Invalid value for '--threads': 0 is not in the range 1<=x<=1024."),
        (["--seed", "-1"], "error: Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295."),
        (["--seed", "99999999999999999999999"],
         "error: Invalid value for '--seed': 99999999999999999999999 is not in the range 0<=x<=4294967295."),
        (["--momentum", "-1"], "error: Invalid value for '--momentum': -1.0 is not in the range 0.0<x<1.0."),
        (["--momentum", "nan"], "error: Invalid value for '--momentum': nan is not a finite number."),
        (["--weight-decay", "-1"], "error: Invalid value for '--weight-decay': -1.0 is not in the range x>=0."),
    ],
    ids=["epochs", "batch-size", "lr-zero", "lr-nan", "lr-inf", "val-negative", "threads", "seed-negative",
         "seed-huge", "momentum-negative", "momentum-nan", "weight-decay-negative"],
)
def test_bad_values_are_usage_errors_with_one_line_before_anything_starts(tiny_data, tmp_path, args, message):
    out = tmp_path / "m.safetensors"
    result = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), *TINY, *args])
    assert result.exit_code == 2, result.stderr
    assert result.stderr == message + "\n"  # nothing announced before: training never started
    assert not out.exists() and not meta_path(out).exists()


def test_a_validation_split_of_every_image_is_a_data_error(tiny_data, tmp_path):
    out = tmp_path / "m.safetensors"
    result = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), *TINY, "--val-count", "200"])
    assert result.exit_code == 3, result.stderr
    assert one_error_line(result.stderr) == "error: val_count 200 leaves no training images (found 200)"
    assert not out.exists() and not meta_path(out).exists()


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--epochs", "many"], "'many' is not a valid integer"),
        (["--variant", "lenet6"], "lenet6"),
        (["--lr", "fast"], "'fast' is not a valid float"),
        (["--learning-rate", "0.1"], "--learning-rate"),
        (["extra-argument"], "unexpected extra argument"),
    ],
)
def test_click_usage_errors_exit_2(tiny_data, tmp_path, args, mentions):
    out = tmp_path / "m.safetensors"
    result = _invoke(["train", "--data-dir", str(tiny_data), "-o", str(out), *args])
    assert result.exit_code == 2
    assert mentions in result.stderr
    assert not out.exists()


def test_data_dir_that_is_a_file_is_a_usage_error(tiny_data, tmp_path):
    result = _invoke(["train", "--data-dir", str(next(tiny_data.iterdir())), "-o", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 2 and "is a file" in result.stderr


def test_missing_or_broken_data_is_a_data_error(tiny_data, tmp_path):
    out = tmp_path / "m.safetensors"
    missing = _invoke(["train", "--data-dir", str(tmp_path / "nowhere"), "-o", str(out), *TINY])
    assert missing.exit_code == 3
    assert one_error_line(missing.stderr) == f"error: {tmp_path / 'nowhere'}: not a directory " \
                                   "(expected a directory of MNIST IDX files)"
    broken = shutil.copytree(tiny_data, tmp_path / "broken")
    labels = broken / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-20])
    result = _invoke(["train", "--data-dir", str(broken), "-o", str(out), *TINY])
    assert result.exit_code == 3
    assert "train-labels-idx1-ubyte.gz" in one_error_line(result.stderr) and "gzip" in one_error_line(result.stderr)
    assert not out.exists()


def test_debug_shows_the_traceback_instead(tiny_data, tmp_path):
    result = _invoke(["--debug", "train", "--data-dir", str(tmp_path / "nowhere"), "-o", str(tmp_path / "m.st")])
    assert result.exit_code == 1  # the exception propagates out of the CLI
    assert type(result.exception).__name__ == "DataError"


# --- the default recipes on real MNIST ----------------------------------------------------------


def _independent_test_accuracy(weights: Path, mnist_dir: Path) -> tuple[float, int]:
    """Accuracy on the official test set, computed here from the raw IDX files (not through
    load_mnist or the trainer), with the preprocessing the checkpoint records."""
    from lenet_edge.mnist import Preprocessing

    image_file, label_file = mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz"
    for path in (image_file, label_file):  # byte-identical to the published official files
        assert hashlib.md5(path.read_bytes()).hexdigest() == MD5[path.name]
    images, labels = read_idx(image_file), read_idx(label_file).astype(np.int64)
    model, meta = load_checkpoint(weights)
    prep = Preprocessing.from_dict(meta["preprocessing"])
    assert prep == build_model(meta["variant"]).preprocessing
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), 500):
            logits = model(torch.from_numpy(prep(images[i:i + 500])))  # (500, 10)
            correct += int((logits.argmax(1).numpy() == labels[i:i + 500]).sum())
    return correct / len(images), len(images)


def _check_trained(weights: Path, mnist_dir: Path, variant: str, target: float, epochs: int) -> None:
    meta = _meta(weights)
    assert meta["variant"] == variant and meta["epoch"] == epochs == meta["recipe"]["epochs"]
    assert (meta["train_images"], meta["val_images"]) == (19_000, 1_000)
    assert meta["data_dir_sha256"] == {p.name: sha256_file(p) for p in mnist_dir.glob("*.gz")}
    assert meta["test_accuracy"] >= target, meta["test_accuracy"]

    accuracy, count = _independent_test_accuracy(weights, mnist_dir)
    assert count == 10_000
    assert accuracy >= target, accuracy
    assert abs(accuracy - meta["test_accuracy"]) <= 1 / 10_000  # at most one image apart

    history = meta["history"]
    _assert_history(history, epochs)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] >= target - 0.01
    curves = weights.with_suffix(".curves.png")
    _assert_png(curves)


@pytest.mark.integration
def test_lenet5_modern_default_recipe_reaches_99_percent(modern_checkpoint, mnist_dir):
    _check_trained(modern_checkpoint, mnist_dir, "lenet5-modern", 0.990, _meta(modern_checkpoint)["recipe"]["epochs"])


@pytest.mark.integration
def test_lenet5_default_recipe_reaches_98_8_percent(classic_checkpoint, mnist_dir):
    _check_trained(classic_checkpoint, mnist_dir, "lenet5", 0.988, _meta(classic_checkpoint)["recipe"]["epochs"])


@pytest.mark.integration
def test_lenet5_tanh_default_recipe_reaches_99_percent(tanh_checkpoint, mnist_dir):
    _check_trained(tanh_checkpoint, mnist_dir, "lenet5-tanh", 0.990, _meta(tanh_checkpoint)["recipe"]["epochs"])


@pytest.mark.integration
def test_default_recipes_are_what_the_checkpoints_record(modern_checkpoint, classic_checkpoint, tanh_checkpoint):
    from dataclasses import asdict

    from lenet_edge.train.recipes import default_recipe

    for weights in (modern_checkpoint, classic_checkpoint, tanh_checkpoint):
        meta = _meta(weights)
        assert meta["recipe"] == asdict(default_recipe(meta["variant"]))


def test_curves_without_matplotlib_are_a_dependency_error(tmp_path, monkeypatch):
    from lenet_edge.errors import DependencyError
    from lenet_edge.train.curves import plot_curves

    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "train_accuracy": 0.5, "val_accuracy": 0.4}]
    plot_curves(history, tmp_path / "c.png", "tiny")
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DependencyError, match=r"matplotlib is not installed; install it with pip install"):
        plot_curves(history, tmp_path / "d.png", "tiny")
    assert not (tmp_path / "d.png").exists()
