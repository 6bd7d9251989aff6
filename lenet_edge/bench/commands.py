"""CLI commands of benchmarking: bench, profile and compare (numpy and onnxruntime only, torch only for
bench --checkpoint), imported inside the command bodies so that `lenet-edge --help` stays instant."""

from __future__ import annotations

from pathlib import Path

import click

from ..defaults import BENCH_BATCH_SIZES, PROFILE_BATCH_SIZES
from ..manifest import verify_models
from ..options import force_option, timing_options, usable_cores, verify_option


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
    from ..charts import SKIPPED
    from ..errors import require
    from ..mnist_download import named_data_dir
    from ..progress import ProgressDisplay
    from .markdown import write_bench_outputs
    from .timing import TORCH_LABEL
    from .timing import bench as run_bench

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
    from ..charts import SKIPPED, plot_compare
    from ..fileio import check_writable, uninterrupted, write_json, write_text
    from .compare import compare as run_compare
    from .compare import format_compare_markdown, load_report, run_names

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
    from .markdown import output_paths

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
    if verify:
        verify_models(models)
    return names, paths


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@timing_options(PROFILE_BATCH_SIZES, "profile")
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=Path("profile.json"),
              show_default=True, help="Report JSON; the Markdown (.md) and chart (.png) go beside it.")
@verify_option
@force_option
def profile(models, labels, data_dir, inputs, device, batch_sizes, threads, runs, warmup, rounds, min_turn_ms, out,
            verify, force) -> None:
    """Per layer, where the time of a call goes: onnxruntime's own profiler, model by model side by side.

    Every model is timed as bench times it (same inputs and session options, interleaved rounds) with
    onnxruntime's profiler on, and again with it off in the same rounds. For every batch size and thread
    count the report gives each node onnxruntime ran after its graph optimisations (its operator, median us,
    share of the call), mapped back to the layers C1, S2, C3, S4, C5, F6, OUTPUT (a node onnxruntime
    inserted, such as a layout Transpose, under its own name), and the call overhead: the call minus the
    sum of its nodes. Writes OUT (JSON, schema lenet-edge-profile), OUT.md and OUT.png.
    """
    from ..charts import SKIPPED
    from ..mnist_download import named_data_dir
    from ..progress import ProgressDisplay
    from .profile import profile as run_profile
    from .profile_report import write_profile_outputs

    names, paths = check_timing_options(models, labels, inputs, data_dir, runs, rounds, out, force, verify)
    with ProgressDisplay("profile") as progress:
        report = run_profile(dict(zip(names, models, strict=True)), batch_sizes,
                             threads or sorted({1, usable_cores()}), runs=runs, warmup=warmup, rounds=rounds,
                             min_turn_ms=min_turn_ms,
                             data_dir=data_dir if inputs else named_data_dir(data_dir), inputs=inputs,
                             progress=progress, device=device)
    png, markdown = write_profile_outputs(report, *paths, record=False, replace=force)  # the user's: no manifest
    click.echo(markdown)
    click.echo(f"report: {paths[0]}, table: {paths[1]}", err=True)
    click.echo(f"chart: {png}" if png else f"chart skipped: {SKIPPED}", err=True)
