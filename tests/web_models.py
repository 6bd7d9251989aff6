"""A small model quantized by the quantize command, for the hermetic tests of lenet-edge web."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from lenet_edge.cli import cli

from .idx_files import write_mnist_dir
from .quantize_models import tiny_lenet


def tiny_pair(directory: Path) -> tuple[Path, Path]:
    """(int8 model, fp32 model): tiny_lenet quantized on synthetic digits."""
    fp32, data = tiny_lenet(directory / "tiny.onnx"), write_mnist_dir(directory / "mnist", train=200, test=60)
    result = CliRunner().invoke(cli, ["quantize", str(fp32), "--data-dir", str(data), "--calibration-count", "100",
                                      "--max-accuracy-drop", "100"])
    assert result.exit_code == 0, result.output
    return directory / "tiny.int8.onnx", fp32
