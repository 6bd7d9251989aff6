"""CLI command of the export stage: `export` (torch and onnx imported inside)."""

from __future__ import annotations

from pathlib import Path

import click

from ..options import data_dir_option, force_option
from .opsets import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET  # pure Python, light


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="ONNX model to write [default: CHECKPOINT with the suffix .onnx].")
@data_dir_option
@click.option("--opset", type=click.IntRange(MIN_OPSET, MAX_OPSET), default=DEFAULT_OPSET, show_default=True,
              help="ONNX opset of the default domain.")
@click.option("--format", "formats", type=click.Choice(["onnx", "ort"]), multiple=True, default=("onnx",),
              show_default=True,
              help="'ort' also writes OUT.ort and OUT.required_operators.config for minimal onnxruntime builds.")
@force_option
def export(checkpoint: Path, out: Path | None, data_dir: Path | None, opset: int, formats: tuple[str, ...],
           force: bool) -> None:
    """Export a checkpoint to ONNX, validated against PyTorch on the MNIST test images.

    Nothing is written unless onnx.checker passes and the logits match PyTorch's within
    1e-4 with identical argmax at batch sizes 1, 2, 7, 64 and 1000.
    """
    from ..errors import require_extra
    from ..mnist_download import resolve_data_dir

    require_extra("export", "torch", "safetensors", "onnx", "onnxscript")
    from .exporter import export_checkpoint

    out = out or checkpoint.with_suffix(".onnx")
    report = export_checkpoint(checkpoint, out, data_dir=resolve_data_dir(data_dir), opset=opset,
                               force=force, ort_format="ort" in formats)
    for line in summary_lines(report):
        click.echo(line)


def summary_lines(report: dict) -> list[str]:
    """What the user needs to trust the model: graph, parity, accuracy, files."""
    ops = ", ".join(f"{op} x{n}" for op, n in report["op_types"].items())
    sizes = report["sizes"]
    acc = report["accuracy"]
    lines = [
        f"{report['written'][0]}: {report['variant']}, opset {report['opset']}, "
        f"{sizes[report['written'][0]] / 1024:.0f} KiB; ops {ops}",
        f"parity vs PyTorch: max abs logit difference {report['max_abs_diff']:.2g} "
        f"(tolerance {report['tolerance']:g}), argmax identical at batch sizes "
        + ", ".join(str(r["batch_size"]) for r in report["parity"]),
        f"accuracy on {report['test_images']} test images: onnxruntime {acc['onnxruntime']:.2%}, "
        f"PyTorch {acc['pytorch']:.2%}",
        f"onnx.reference agrees with onnxruntime on {report['reference']['images']} images "
        f"(max abs difference {report['reference']['max_abs_diff']:.2g})",
    ]
    if report["ort_format"] is not None:
        ort_path, config_path = report["written"][1:]
        lines.append(f"{ort_path}: ORT format, {sizes[ort_path] / 1024:.0f} KiB, matches the .onnx model on "
                     f"{report['ort_format']['images']} images (max abs difference "
                     f"{report['ort_format']['max_abs_diff']:.2g}); operators for a minimal build: {config_path}")
    return lines
