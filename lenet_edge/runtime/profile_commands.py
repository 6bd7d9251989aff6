"""`lenet-edge profile`: per layer, where each model's call goes on onnxruntime (numpy + onnxruntime only)."""

from __future__ import annotations

from pathlib import Path

import click

from ..defaults import PROFILE_BATCH_SIZES
from ..options import force_option, timing_options, usable_cores, verify_option
from .commands import check_timing_options


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
    from ..datasource import named_data_dir
    from ..progress import ProgressDisplay
    from .plots import SKIPPED
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
