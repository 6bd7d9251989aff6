"""CLI commands of the device side: run, evaluate, bench and compare.

They import numpy, onnxruntime and pillow only (torch only for bench --checkpoint), and
only inside the command bodies, so `lenet-edge --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..defaults import (  # pure Python, light
    BENCH_BATCH_SIZES,
    INVERT_CHOICES,
    PREDICTION_FORMATS,
)
from ..options import (
    batch_size_option,
    data_dir_option,
    force_option,
    threads_option,
    timing_options,
    usable_cores,
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
    _verify([model], verify)
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

    from ..datasource import resolve_data_dir
    from ..fileio import check_writable, write_npy
    from ..progress import ProgressDisplay
    from .evaluate import evaluate_with_logits, format_evaluation
    from .plots import SKIPPED, plot_confusion

    for path in (png, logits):
        if path is not None:
            check_writable(path, force)
    _verify([model], verify)
    with ProgressDisplay("evaluate") as progress:
        result, test_logits = evaluate_with_logits(model, resolve_data_dir(data_dir), batch_size=batch_size,
                                                   threads=threads, progress=progress)
    if logits is not None:
        write_npy(logits, test_logits, record=False, replace=force)  # the user's file: no manifest beside it
    click.echo(json.dumps(result, indent=2) if as_json else format_evaluation(result))
    if png is not None:
        drawn = plot_confusion(result, png, record=False, replace=force)  # the user's file: no manifest beside it
        click.echo(f"confusion matrix: {png}" if drawn else f"chart skipped: {SKIPPED}", err=True)


def _verify(models, verify: bool) -> None:
    """--verify: each model file must match its entry in the MANIFEST.sha256 beside it."""
    if verify:
        from ..manifest import verify as verify_model

        for model in models:
            verify_model(model)


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also time this checkpoint in PyTorch eager mode (needs torch).")
@timing_options(BENCH_BATCH_SIZES, "time")
@click.option("--baseline", default=None, help="Model label the ratios are taken against [default: the first].")
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=Path("bench.json"),
              show_default=True, help="Report JSON; the Markdown (.md) and chart (.png) go beside it.")
@verify_option
@force_option
def bench(models, labels, checkpoint, data_dir, inputs, device, batch_sizes, threads, runs, warmup, rounds,
          min_turn_ms, baseline, out, verify, force) -> None:
    """Time ONNX models (and PyTorch eager) side by side on the same MNIST test images.

    Every model runs with the same onnxruntime settings, interleaved per row, for every
    batch size and thread count: warm-up, then timed runs; the report gives mean, p50,
    p90, p99 latency, throughput and the run-to-run spread, with the CPU model, its
    flags (AVX2, AVX-512 VNNI, AMX...), library versions, and whether the CPU was real,
    emulated or virtualised. Writes OUT (JSON, see docs/bench-report.md), OUT.md (table
    with ratios against --baseline) and OUT.png. Needs no network: without --inputs or
    --data-dir it times the official test digits carried in the package.
    """
    from ..datasource import named_data_dir
    from ..errors import require
    from ..progress import ProgressDisplay
    from .bench import TORCH_LABEL
    from .bench import bench as run_bench
    from .plots import SKIPPED
    from .report import write_bench_outputs

    names, paths = check_timing_options(models, labels, inputs, data_dir, runs, rounds, out, force, verify)
    known = names + ([TORCH_LABEL] if checkpoint is not None else [])
    if baseline is not None and baseline not in known:
        raise click.BadParameter(f"{baseline!r} is not a model label (expected one of {', '.join(known)})",
                                 param_hint="--baseline")
    if checkpoint is not None:
        require("torch", "train")  # the PyTorch rows need the host extra: say so before any work starts
    with ProgressDisplay("bench") as progress:
        report = run_bench(dict(zip(names, models, strict=True)), batch_sizes, threads or sorted({1, usable_cores()}),
                           runs=runs, warmup=warmup, checkpoint=checkpoint,
                           data_dir=data_dir if inputs else named_data_dir(data_dir),  # the env var is not for --inputs
                           progress=progress, rounds=rounds, min_turn_ms=min_turn_ms, inputs=inputs, device=device)
    written = write_bench_outputs(report, *paths, baseline=baseline, record=False, replace=force)
    click.echo(written.markdown)
    click.echo(f"report: {written.json}, table: {written.md}", err=True)
    click.echo(f"chart: {written.png}" if written.png else f"chart skipped: {SKIPPED}", err=True)


@click.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the Markdown here, and the comparison's JSON (.json) and chart (.png) beside it, instead "
                   "of printing the Markdown.")
@force_option
def compare(reports, out, force) -> None:
    """Line up bench reports from different runs or devices, with ratios to the first.

    Rows match on model label, batch size and threads; a ratio marked * is beyond the
    run-to-run spread measured in both reports.
    """
    from ..fileio import check_writable, uninterrupted, write_json, write_text
    from .compare import compare as run_compare
    from .compare import format_compare_markdown, load_report, run_names
    from .plots import SKIPPED, plot_compare

    if out is not None:
        outputs = (out, out.with_suffix(".json"), out.with_suffix(".png"))
        if len(set(outputs)) != 3:
            raise click.BadParameter(f"{out} must not end in .json or .png (the comparison's JSON and chart go "
                                     "beside it)", param_hint="--out")
        for path in outputs:
            check_writable(path, force)
    comparison = run_compare([load_report(p) for p in reports], run_names(list(reports)))
    markdown = format_compare_markdown(comparison)
    if out is None:
        click.echo(markdown)
        return
    with uninterrupted():  # the table, its JSON and its chart are written as a set; the user's files: no manifest
        write_text(out, markdown, record=False, replace=force)
        write_json(outputs[1], comparison.to_json(), record=False, replace=force)
        drawn = plot_compare(comparison, outputs[2], record=False, replace=force)
    click.echo(f"table: {out}, comparison: {outputs[1]}", err=True)
    click.echo(f"chart: {outputs[2]}" if drawn else f"chart skipped: {SKIPPED}", err=True)


def check_timing_options(models, labels, inputs, data_dir, runs: int, rounds: int, out: Path, force: bool,
                         verify: bool) -> tuple[list[str], tuple[Path, Path, Path]]:
    """The checks bench and profile share, made before anything runs: the models' labels (each file's stem
    by default) and the report's JSON, Markdown and chart paths, each writable."""
    from ..errors import DataError
    from ..fileio import check_writable
    from .report import output_paths

    if rounds > runs:
        raise click.BadParameter(f"{rounds} is more than --runs {runs} (each round needs a run)",
                                 param_hint="'--rounds'")
    if inputs is not None and data_dir is not None:
        raise click.BadParameter("give --inputs or --data-dir, not both", param_hint="--inputs")
    if labels and len(labels) != len(models):
        raise click.BadParameter(f"{len(labels)} labels for {len(models)} models (expected one per model)",
                                 param_hint="--label")
    names = list(labels) if labels else [p.stem for p in models]
    if len(set(names)) != len(names):
        raise DataError(f"model labels {names} repeat (expected distinct names; pass --label for each model)")
    paths = output_paths(out)
    if len(set(paths)) != 3:
        raise click.BadParameter(f"{out} must not end in .md or .png (the table and chart go beside it)",
                                 param_hint="--out")
    for path in paths:
        check_writable(path, force)
    _verify(models, verify)
    return names, paths
