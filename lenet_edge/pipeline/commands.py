"""CLI command of the whole job: `pipeline` (every stage imported inside)."""

from __future__ import annotations

from pathlib import Path

import click

from ..defaults import DEFAULT_CHECK_IMAGES, DEFAULT_RUNS, MAX_CHECK_IMAGES
from ..options import data_dir_option, force_option, variant_option


@click.command()
@data_dir_option
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("runs/pipeline"),
              show_default=True, help="Directory for every artefact (replaced only with --force).")
@variant_option
@click.option("--bench-runs", type=click.IntRange(min=10), default=DEFAULT_RUNS, show_default=True,
              help="Timed runs per model and bench row.")
@click.option("--check-images", type=click.IntRange(1, MAX_CHECK_IMAGES), default=DEFAULT_CHECK_IMAGES,
              show_default=True,
              help="MNIST test images each microcontroller build of the int8 model must reproduce.")
@force_option
def pipeline(data_dir, out, variant, bench_runs, check_images, force) -> None:
    """Train, export, quantize, evaluate and bench, and write report.md: the whole job.

    DIR ends up with the checkpoint and its curves, model.onnx, model.int8.onnx,
    quantize.json, evaluate.{fp32,int8}.json, confusion PNGs, bench.json/.md/.png and
    report.md. Nothing is moved into DIR until every stage has passed.
    """
    from ..errors import require_extra
    from ..mnist_download import resolve_data_dir

    require_extra("all", "torch", "safetensors", "matplotlib", "onnx", "onnxscript")
    from ..progress import ProgressDisplay
    from .run import check_output_directory, run_pipeline

    check_output_directory(out, force)  # before MNIST might be downloaded
    run_pipeline(resolve_data_dir(data_dir), out, variant=variant, force=force, bench_runs=bench_runs,
                 check_images=check_images, step=lambda message: click.echo(message, err=True),
                 progress=ProgressDisplay)
    click.echo((out / "report.md").read_text("utf-8"))
    click.echo(f"artefacts: {out}", err=True)
