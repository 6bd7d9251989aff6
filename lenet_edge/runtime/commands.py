"""CLI commands of the device side: run and evaluate.

They import numpy, onnxruntime and pillow only (torch only for bench --checkpoint), and
only inside the command bodies, so `lenet-edge --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..defaults import (  # pure Python, light
    INVERT_CHOICES,
    PREDICTION_FORMATS,
)
from ..manifest import verify_models
from ..options import (
    batch_size_option,
    data_dir_option,
    force_option,
    threads_option,
    verify_option,
)


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--invert", type=click.Choice(INVERT_CHOICES), default="auto", show_default=True,
              help="Invert images to MNIST's light-on-dark: auto = when the border is lighter than the centre.")
@click.option("--format", "fmt", type=click.Choice(PREDICTION_FORMATS), default="table", show_default=True)
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the predictions to this file instead of stdout.")
@click.option("--annotate", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="Also write each picture with its digits' boxes and labels drawn on it, as DIR/NAME.png.")
@click.option("--fail-fast", is_flag=True,
              help="Stop at the first file that cannot be read, before any output [default: give it an error row "
                   "and go on; exit 3 at the end].")
@batch_size_option
@threads_option
@verify_option
@force_option
def run(model, inputs, invert, fmt, out, annotate, fail_fast, batch_size, threads, verify, force) -> None:
    """Classify digits in image files, .npy arrays and IDX files with an ONNX model.

    Prints label and probability (softmax) per input, and `unsure` below a
    probability of 0.95; a file of N images gives rows FILE[0] .. FILE[N-1]. The kind of
    each file is told by its content. A file that cannot be read gets an error row
    (and its error on stderr), the others are still classified, and the exit code
    is 3 at the end; --fail-fast stops at the first instead.

    \b
    Images (PNG, JPEG, BMP, GIF, TIFF, WebP) of any size and mode become MNIST digits:
      1. 8-bit grey (luma); 16-bit scaled to 8; alpha composited on a background
         that contrasts with the ink; float images refused
      2. --invert auto inverts when the border is lighter than the centre
      3. the border's grey (median + 3 robust std) becomes black, the
         brightest pixel white
      4. crop to the digit's bounding box
      5. scale the longer side to 20 px, keeping the aspect ratio
      6. centre by centre of mass in a 28x28 field
    then the model's own metadata pads and normalises it.

    \b
    A picture of several digits is read left to right as a number: separate
    ink components are digits, pieces stacked above each other one digit;
    each digit goes through steps 4-6. A digit wider than 1.3x its height
    (probably touching digits) or with little ink (probably a stray mark)
    makes the number unsure. JSON gives each digit's box, label, probability.

    \b
    Arrays (.npy, never unpickled) and IDX files hold MNIST-style digits:
    (28, 28) or (N, 28, 28), values in [0, 255]; or a .npy (N, 1, 32, 32)
    float32 already preprocessed for the model.
    """
    from ..errors import DataError
    from ..fileio import atomic_path, check_writable
    from .annotate import annotation_targets
    from .predict import classify, write_predictions

    if out is not None:
        check_writable(out, force)
    targets = annotation_targets(list(inputs), annotate, force) if annotate is not None else {}
    if verify:
        verify_models([model])
    records = _reported(classify(model, inputs, invert=invert, batch_size=batch_size, threads=threads,
                                 fail_fast=fail_fast), targets, force)
    if out is None:
        counts = write_predictions(records, fmt, sys.stdout)  # a reader that stops early: cli.py
        sys.stdout.flush()
    else:
        with atomic_path(out, record=False, replace=force) as tmp, \
                open(tmp, "w", encoding="utf-8", newline="") as stream:
            counts = write_predictions(records, fmt, stream)
    where = f"{out}: " if out is not None else ""
    click.echo(f"{where}{counts['predictions']} predictions ({fmt}), {counts['unsure']} unsure, "
               f"{counts['failed']} failed", err=True)
    if counts["failed"]:
        raise DataError(f"{counts['failed']} of {counts['predictions'] + counts['failed']} inputs could not be read "
                        f"(expected a readable file holding a digit; each one's error is above)")


def _reported(records, annotation_targets: dict, force: bool):
    """The records, passed on once each failed file's error is on stderr and each picture's
    annotation (if asked for) is written."""
    from .annotate import write_annotation

    for record in records:
        if "error" in record:
            click.echo(f"error: {record['error']}", err=True)
        elif "digits" in record and record["input"] in annotation_targets:
            write_annotation(record, annotation_targets[record["input"]], replace=force)
        yield record


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of text.")
@click.option("--png", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also draw the confusion matrix into this PNG (needs matplotlib).")
@click.option("--logits", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the logits (10000, 10) float32 to this .npy, to compare devices bit for bit.")
@batch_size_option
@threads_option
@verify_option
@force_option
def evaluate(model, data_dir, as_json, png, logits, batch_size, threads, verify, force) -> None:
    """Accuracy, per-class accuracy and confusion matrix on the official MNIST test set."""
    import json

    from ..charts import SKIPPED, plot_confusion
    from ..fileio import check_writable, write_npy
    from ..mnist_download import resolve_data_dir
    from ..progress import ProgressDisplay
    from .evaluate import evaluate_with_logits, format_evaluation

    for path in (png, logits):
        if path is not None:
            check_writable(path, force)
    if verify:
        verify_models([model])
    with ProgressDisplay("evaluate") as progress:
        result, test_logits = evaluate_with_logits(model, resolve_data_dir(data_dir), batch_size=batch_size,
                                                   threads=threads, progress=progress)
    if logits is not None:
        write_npy(logits, test_logits, record=False, replace=force)  # the user's file: no manifest beside it
    click.echo(json.dumps(result, indent=2) if as_json else format_evaluation(result))
    if png is not None:
        drawn = plot_confusion(result, png, record=False, replace=force)  # the user's file: no manifest beside it
        click.echo(f"confusion matrix: {png}" if drawn else f"chart skipped: {SKIPPED}", err=True)
