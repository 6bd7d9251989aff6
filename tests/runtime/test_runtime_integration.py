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
from lenet_edge.mnist import load_mnist
from lenet_edge.runtime.evaluate import evaluate
from lenet_edge.runtime.session import load_model
from tests.pictures import number_photo

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


# ----------------------------------------------------------------------------- numbers, batches, unsure


@pytest.fixture(scope="module")
def number_photos(tmp_path_factory, test_set):
    """40 JPEG photos of 2-4 test digits each (digits 1000 onwards), and the numbers they show."""
    images, labels = test_set
    folder = tmp_path_factory.mktemp("numbers")
    rng = np.random.default_rng(1)
    files, numbers, first = [], [], 1000
    for k in range(40):
        n = 2 + k % 3
        files.append(folder / f"number{k}.jpg")
        Image.fromarray(number_photo(images[first:first + n], rng)).save(files[-1], quality=85)
        numbers.append("".join(str(y) for y in labels[first:first + n]))
        first += n
    return files, numbers


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_run_reads_numbers_in_photos(runner, precision, modern_onnx, modern_int8_onnx, number_photos):
    files, numbers = number_photos
    model = modern_onnx if precision == "fp32" else modern_int8_onnx
    result = runner.invoke(cli, ["run", str(model), *map(str, files), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["input"] for r in rows] == list(map(str, files))
    assert [len(r["digits"]) for r in rows] == [len(n) for n in numbers]  # every digit found, none invented
    read = [r["label"] for r in rows]
    right = np.array([a == b for a, b in zip(read, numbers, strict=True)])
    assert right.mean() >= 0.9, list(zip(read, numbers, strict=True))
    unsure = np.array([r["unsure"] for r in rows])
    assert (~right).sum() == 0 or unsure[~right].mean() >= 0.5  # most wrong numbers carry the flag
    for row in rows:
        lefts = [d["box"][0] for d in row["digits"]]
        assert lefts == sorted(lefts) and all(d["box"][3] - d["box"][1] > 28 for d in row["digits"])


def test_touching_test_digits_are_flagged(runner, modern_int8_onnx, test_set, tmp_path):
    """Pairs of test digits pushed together (boxes overlapping by 12 px, 3 of MNIST's): those whose
    ink touches are one component, read as one digit and must be flagged wide and unsure. Pairs
    with a 1 are left out: two narrow digits side by side are no wider than one 0."""
    images, labels = test_set
    rng = np.random.default_rng(2)
    pairs = [i for i in range(2000, 2200, 2) if 1 not in labels[i:i + 2]][:30]
    files = []
    for i in pairs:
        files.append(tmp_path / f"pair{i}.png")
        Image.fromarray(number_photo(images[i:i + 2], rng, overlap=12)).save(files[-1])
    result = runner.invoke(cli, ["run", str(modern_int8_onnx), *map(str, files), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    touching = [r for r in rows if len(r["digits"]) == 1]
    assert len(touching) >= 10, [r["label"] for r in rows]
    flagged = [r for r in touching if r["unsure"] and "wide" in r["digits"][0]["doubts"]]
    assert len(flagged) >= 0.7 * len(touching), [(r["digits"][0]["box"], r["label"]) for r in touching]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_unsure_flag_on_the_test_set(runner, precision, modern_onnx, modern_int8_onnx, mnist_dir, test_set, tmp_path):
    """The flag catches most wrong answers on the official test set and few right ones."""
    model = modern_onnx if precision == "fp32" else modern_int8_onnx
    out = tmp_path / "predictions.csv"
    result = runner.invoke(cli, ["run", str(model), str(mnist_dir / "t10k-images-idx3-ubyte.gz"), "--format", "csv",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    right = np.array([int(r["label"]) == y for r, y in zip(rows, test_set[1], strict=True)])
    unsure = np.array([r["unsure"] == "true" for r in rows])
    assert unsure[~right].mean() >= 0.6 and unsure[right].mean() <= 0.03  # 76 % and 1.9 % when it was chosen
    assert f"10000 predictions (csv), {unsure.sum()} unsure, 0 failed" in result.stderr


def test_a_batch_with_a_blank_photo_keeps_going(runner, modern_int8_onnx, digit_images, number_photos, tmp_path):
    files, labels = digit_images
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (300, 300), (200, 195, 180)).save(blank)
    inputs = [*files["photo"][:5], blank, number_photos[0][0]]
    result = runner.invoke(cli, ["run", str(modern_int8_onnx), *map(str, inputs), "--format", "csv",
                                 "--annotate", str(tmp_path / "seen")])
    assert result.exit_code == 3
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["input"] for r in rows] == list(map(str, inputs))
    assert [int(r["label"]) for r in rows[:5]] == labels[:5].tolist() and rows[6]["label"] == number_photos[1][0]
    assert rows[5]["error"].startswith(f"{blank}: no digit found") and rows[5]["label"] == ""
    assert result.stderr.startswith(f"error: {blank}: no digit found") and "1 failed" in result.stderr
    assert sorted(p.name for p in (tmp_path / "seen").glob("*.png")) == \
        sorted(f"{p.stem}.png" for p in inputs if p != blank)
