"""The README's main job: `lenet-edge pipeline` end to end on the real MNIST files."""

from __future__ import annotations

import json

import pytest

from lenet_edge.cli import cli

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


@pytest.mark.integration
def test_pipeline_end_to_end(runner, tmp_path, mnist_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.txt").write_text("replaced with --force")
    result = runner.invoke(cli, ["pipeline", "--data-dir", str(mnist_dir), "--out", str(out), "--bench-runs", "20",
                                 "--force"])
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

    report = (out / "report.md").read_text()
    for section in ("## Training", "## Export", "## Quantization", "## Evaluation", "## Bench",
                    "## On a microcontroller"):
        assert section in report
    assert f"{fp32['accuracy']:.2%}" in report
    mcu = json.loads((out / "mcu" / "lenet.footprint.json").read_text())  # the int8 model as C, checked
    assert all(c["images"] == 1000 and c["argmax_mismatches"] == 0 for c in mcu["checks"])
    assert (out / "mcu" / "lenet.c").is_file() and "| cortex-m4f |" in report
    manifest = (out / "MANIFEST.sha256").read_text()
    for name in ("model.onnx", "model.int8.onnx", "report.md", "bench.json"):
        assert f"  {name}\n" in manifest
