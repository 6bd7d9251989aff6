"""The runtime on the real MNIST test set with the trained, exported and quantized models."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lenet_edge.cli import cli
from lenet_edge.data import load_mnist
from lenet_edge.runtime.evaluate import evaluate
from lenet_edge.runtime.session import load_model

pytestmark = pytest.mark.integration
DIGITS = 150  # real test digits turned into image files


@pytest.fixture(scope="module")
def test_set(mnist_dir):
    return load_mnist(mnist_dir, "test")


@pytest.fixture(scope="module")
def digit_images(tmp_path_factory, test_set):
    """The first DIGITS test digits as three kinds of image file, the way users hold digits:
    scan = the 28x28 digit as a PNG; photo = dark ink on uneven, noisy paper, 9x larger and
    off-centre in a 380x420 RGB JPEG; sticker = black ink on a transparent RGBA canvas."""
    images, labels = test_set
    folder = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    files: dict[str, list[Path]] = {"scan": [], "photo": [], "sticker": []}
    for i in range(DIGITS):
        files["scan"].append(folder / f"scan{i}.png")
        Image.fromarray(images[i]).save(files["scan"][-1])
        ink = np.asarray(Image.fromarray(images[i]).resize((252, 252), Image.Resampling.BICUBIC), np.float32) / 255
        canvas = np.zeros((420, 380), np.float32)
        r, c = rng.integers(0, 420 - 252), rng.integers(0, 380 - 252)
        canvas[r:r + 252, c:c + 252] = ink
        paper = 205 + np.linspace(-20, 20, 380)[None, :] + rng.normal(0, 5, (420, 380))
        grey = paper * (1 - canvas) + 35 * canvas
        rgb = np.stack([grey, grey * 0.97, grey * 0.9], axis=-1).clip(0, 255).astype(np.uint8)
        files["photo"].append(folder / f"photo{i}.jpg")
        Image.fromarray(rgb).save(files["photo"][-1], quality=85)
        rgba = np.zeros((28, 28, 4), np.uint8)
        rgba[..., 3] = images[i]  # alpha carries the ink; the colour is black everywhere
        files["sticker"].append(folder / f"sticker{i}.png")
        Image.fromarray(rgba, "RGBA").save(files["sticker"][-1])
    return files, labels[:DIGITS]


def test_evaluate_fp32(modern_onnx, mnist_dir, tmp_path):
    result = evaluate(modern_onnx, mnist_dir, batch_size=777)
    assert result["images"] == 10_000 and np.array(result["confusion_matrix"]).sum() == 10_000
    assert result["accuracy"] >= 0.985
    assert result["accuracy"] == pytest.approx(result["exported_accuracy"], abs=2e-4)
    assert min(r["accuracy"] for r in result["per_class"]) >= 0.96
    assert result["precision"] == "fp32" and result["variant"] == "lenet5-modern"


def test_evaluate_int8(modern_onnx, modern_int8_onnx, mnist_dir, runner, tmp_path):
    png = tmp_path / "int8.png"
    result = runner.invoke(cli, ["evaluate", str(modern_int8_onnx), "--data-dir", str(mnist_dir), "--json",
                                 "--png", str(png)])
    assert result.exit_code == 0, result.output
    int8 = json.loads(result.stdout)
    fp32 = evaluate(modern_onnx, mnist_dir)
    assert int8["precision"] == "int8"
    assert int8["accuracy"] >= fp32["accuracy"] - 0.01
    assert png.stat().st_size > 10_000


def test_run_on_image_files(runner, modern_onnx, digit_images):
    files, labels = digit_images
    for kind, minimum in (("scan", 0.97), ("photo", 0.95), ("sticker", 0.97)):
        result = runner.invoke(cli, ["run", str(modern_onnx), *map(str, files[kind]), "--format", "csv",
                                     "--batch-size", "64"])
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [r["input"] for r in rows] == [str(p) for p in files[kind]]
        accuracy = np.mean([int(r["label"]) == label for r, label in zip(rows, labels, strict=True)])
        assert accuracy >= minimum, f"{kind}: {accuracy:.2%}"


def test_wrong_polarity_is_refused_not_guessed(runner, modern_onnx, digit_images):
    files, _ = digit_images
    result = runner.invoke(cli, ["run", str(modern_onnx), str(files["photo"][0]), "--invert", "no"])
    assert result.exit_code == 3
    assert "photo0.jpg: no digit found" in result.stderr and "check --invert" in result.stderr


def test_run_on_the_idx_test_set_agrees_with_evaluate(runner, modern_onnx, mnist_dir, test_set, tmp_path):
    out = tmp_path / "predictions.csv"
    idx = mnist_dir / "t10k-images-idx3-ubyte.gz"
    result = runner.invoke(cli, ["run", str(modern_onnx), str(idx), "--format", "csv", "--batch-size", "512",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10_000 and rows[9999]["input"] == f"{idx}[9999]"
    accuracy = np.mean([int(r["label"]) == label for r, label in zip(rows, test_set[1], strict=True)])
    assert accuracy == pytest.approx(evaluate(modern_onnx, mnist_dir)["accuracy"], abs=2e-4)


def test_prepared_npy_matches_raw_pixels(runner, modern_onnx, test_set, tmp_path):
    images = test_set[0][:300]
    prep = load_model(modern_onnx).contract.preprocessing
    np.save(tmp_path / "raw.npy", images)
    np.save(tmp_path / "prepared.npy", prep(images))
    outputs = []
    for name in ("raw.npy", "prepared.npy"):
        result = runner.invoke(cli, ["run", str(modern_onnx), str(tmp_path / name), "--format", "json"])
        assert result.exit_code == 0, result.output
        outputs.append([(r["label"], round(r["probability"], 5)) for r in json.loads(result.stdout)])
    assert outputs[0] == outputs[1]


def test_bench_fp32_int8_and_pytorch(runner, modern_onnx, modern_int8_onnx, modern_checkpoint, mnist_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(cli, ["bench", str(modern_onnx), str(modern_int8_onnx), "--label", "fp32", "--label",
                                 "int8", "--checkpoint", str(modern_checkpoint), "--data-dir", str(mnist_dir),
                                 "--batch-sizes", "8", "--threads", "1", "--runs", "6", "--rounds", "2",
                                 "--warmup", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [(r["model"], r["batch_size"], r["threads"]) for r in report["rows"]] == \
        [("fp32", 8, 1), ("int8", 8, 1), ("pytorch-eager", 8, 1)]
    for row in report["rows"]:
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    models = {m["label"]: m for m in report["models"]}
    assert models["int8"]["precision"] == "int8" and models["fp32"]["precision"] == "fp32"
    assert models["int8"]["bytes"] < models["fp32"]["bytes"] / 2
    assert all(m["check"]["images"] == 1000 and m["check"]["accuracy"] >= 0.97 for m in models.values())
    assert report["environment"]["versions"]["torch"]
    markdown = (tmp_path / "bench.md").read_text()
    assert "| fp32 | 8 | 1 |" in markdown and "1.00 (baseline)" in markdown and "| pytorch-eager | 8 | 1 |" in markdown
    assert (tmp_path / "bench.png").stat().st_size > 10_000
