"""The README's main job: `lenet-edge pipeline` end to end on the real MNIST files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lenet_edge.bench.timing import bench
from lenet_edge.cli import cli
from lenet_edge.compile.records import PipelineBuild
from lenet_edge.pipeline import report
from lenet_edge.quantize.settings import Accuracy, ChosenRecipe, QuantizationRecord, QuantSettings
from lenet_edge.quantize.stage import Quantized, Sizes
from tests.idx_files import write_mnist_dir
from tests.runtime_models import band_model, random_model

ARTEFACTS = ("lenet5-modern.safetensors", "lenet5-modern.json", "lenet5-modern.curves.png", "model.onnx",
             "model.int8.onnx", "quantize.json", "evaluate.fp32.json", "evaluate.int8.json", "confusion.fp32.png",
             "confusion.int8.png", "bench.json", "bench.md", "bench.png", "report.md", "MANIFEST.sha256")


def test_existing_directory_is_refused_without_force(runner, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    result = runner.invoke(cli, ["pipeline", "--data-dir", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 6, result.output
    assert "already exists" in result.output and "--force" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging directory left behind


def test_missing_data_fails_before_anything_is_written(runner, tmp_path):
    result = runner.invoke(cli, ["pipeline", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 3, result.output
    assert list(tmp_path.iterdir()) == []


def _figures(tmp_path) -> dict:
    """What run_pipeline returns, with known figures; the bench part measured on two tiny models."""
    models = {"fp32": band_model(tmp_path / "fp32.onnx"), "int8": random_model(tmp_path / "int8.onnx")}
    timings = bench(models, [1], [1], data_dir=write_mnist_dir(tmp_path / "mnist", train=10, test=20), runs=4,
                    warmup=1, rounds=2, min_turn_ms=0)
    return {
        "variant": "lenet5-modern",
        "training": {"train_images": 15000, "val_images": 5000, "epoch": 8, "train_seconds": 61.2,
                     "test_accuracy": 0.9912},
        "export": {"opset": 20, "tolerance": 1e-4, "parity": [{"batch_size": 1, "max_abs_diff": 2.4e-6}],
                   "accuracy": {"onnxruntime": 0.9912, "pytorch": 0.9912}},
        "quantize": Quantized(
            Path("model.int8.onnx"), Path("model.onnx"),
            QuantizationRecord(QuantSettings(target="x86-vnni").resolve(), (), "1.22.0", "MNIST train split",
                               Accuracy(10_000, 0.9912, 0.9907, 0.05, 0.9981),
                               ChosenRecipe("standard", (), None, False, ("standard",), "the rule")),
            Sizes(250_823, 81_460), {}, {}, 0.1, search={"why": "fastest within the accuracy gate"},
            layers={"worst_activation": {"sqnr_db": 21.5, "tensor": "c3", "op": "Conv"}}),
        "evaluate": {"fp32": {"accuracy": 0.9912, "images": 10_000, "correct": 9912},
                     "int8": {"accuracy": 0.9907, "images": 10_000, "correct": 9907}},
        "bench": timings,
        "mcu": PipelineBuild(skipped="unicorn is not installed"),
        "web": {"out": tmp_path / "web", "models": ["int8", "fp32"], "selfcheck_images": 512,
                "onnxruntime_web": "1.31.1"},
        "charts": {"curves": "lenet5-modern.curves.png", "confusion.fp32": "confusion.fp32.png",
                   "confusion.int8": None, "bench": "bench.png"},
    }


def test_report_shows_the_figures_and_embeds_the_charts_drawn(tmp_path):
    text = report.render_report(_figures(tmp_path))
    assert text.startswith("# lenet-edge pipeline: lenet5-modern\n")
    assert "- size 250,823 → 81,460 bytes (3.08× smaller)" in text
    assert "![lenet5-modern: loss and accuracy per epoch](lenet5-modern.curves.png)" in text
    assert "![fp32 confusion matrix](confusion.fp32.png)" in text and "confusion.int8.png" not in text  # not drawn
    assert "![p50 latency per call, each batch size on a log axis](bench.png)" in text
    assert "| int8 | 1 | 1 |" in text and "# lenet-edge bench" not in text
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Training", "## Export (`model.onnx`)", "## Quantization (`model.int8.onnx`)",
        "## Evaluation (official test set, onnxruntime)", "## Bench",
        "## On a microcontroller (generated C, emulated Cortex-M)", "## In the browser (onnxruntime-web)"]
    assert "\nnot built: unicorn is not installed\n" in text  # without the toolchain: why, in one line
    assert "`lenet-edge web --serve web`" in text and "512 test digits" in text


def test_report_says_in_one_line_why_the_site_was_not_built(tmp_path):
    figures = {**_figures(tmp_path), "web": {"skipped": "onnxruntime-web runtime files missing; run `npm ci`"}}
    assert report.render_report(figures).endswith(
        "## In the browser (onnxruntime-web)\n\nnot built: onnxruntime-web runtime files missing; run `npm ci`\n")


def test_a_new_section_is_one_function(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "SECTIONS", (*report.SECTIONS, lambda figures: ["## Energy", "- 42 mJ"]))
    assert report.render_report(_figures(tmp_path)).endswith("\n\n## Energy\n- 42 mJ\n")


@pytest.mark.integration
def test_pipeline_end_to_end(runner, tmp_path, mnist_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.txt").write_text("replaced with --force")
    result = runner.invoke(cli, ["pipeline", "--data-dir", str(mnist_dir), "--out", str(out), "--bench-runs", "20",
                                 "--check-images", "200", "--force"])  # compile's 1,000-image checks: its own tests
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert set(ARTEFACTS) <= names, sorted(set(ARTEFACTS) - names)
    assert "stale.txt" not in names  # the whole directory was replaced, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # staging and old copies are gone

    fp32 = json.loads((out / "evaluate.fp32.json").read_text())
    int8 = json.loads((out / "evaluate.int8.json").read_text())
    assert fp32["images"] == int8["images"] == 10_000
    assert fp32["accuracy"] >= 0.99
    assert fp32["accuracy"] - int8["accuracy"] <= 0.002
    assert (out / "model.int8.onnx").stat().st_size * 3 <= (out / "model.onnx").stat().st_size

    bench = json.loads((out / "bench.json").read_text())
    rows = {(r["model"], r["batch_size"], r["threads"]) for r in bench["rows"]}
    assert rows == {(m, b, t) for m in ("fp32", "int8", "pytorch-eager") for b in (1, 64) for t in (1, 2)}

    text = (out / "report.md").read_text()
    for section in ("## Training", "## Export", "## Quantization", "## Evaluation", "## Bench",
                    "## On a microcontroller"):
        assert section in text
    for chart in ("lenet5-modern.curves.png", "confusion.fp32.png", "confusion.int8.png", "bench.png"):
        assert f"]({chart})" in text
    assert f"{fp32['accuracy']:.2%}" in text
    mcu = json.loads((out / "mcu" / "lenet.footprint.json").read_text())  # the int8 model as C, checked
    assert all(c["images"] == 200 and c["argmax_mismatches"] == 0 for c in mcu["checks"])
    assert (out / "mcu" / "lenet.c").is_file() and "| cortex-m4f |" in text
    # lenet5-modern's standard int8 model takes ~2.3x fewer instructions on both cores than --auto's x86 rewrite
    winner = json.loads((out / "quantize.json").read_text())["search"]["winner"]
    compiled = out / "mcu" / "model.int8.onnx" if winner != "standard" else out / "model.int8.onnx"
    assert (out / "mcu" / "model.int8.onnx").is_file() == (winner != "standard")
    assert mcu["model_sha256"] == hashlib.sha256(compiled.read_bytes()).hexdigest()
    assert "(standard recipe) and checked against onnxruntime" in text and "Builds compared" in text
    manifest = (out / "MANIFEST.sha256").read_text()
    for name in ("model.onnx", "model.int8.onnx", "report.md", "bench.json"):
        assert f"  {name}\n" in manifest
    site = json.loads((out / "web" / "site.json").read_text())  # the browser site, labelled as bench.json's rows
    assert [m["label"] for m in site["models"]] == ["int8", "fp32"] and "lenet-edge web --serve web" in text
