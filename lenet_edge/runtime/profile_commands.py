"""`lenet-edge profile`: per layer, where each model's call goes on onnxruntime (numpy + onnxruntime only)."""

from __future__ import annotations

from pathlib import Path

import click

from ..options import data_dir_option, force_option, verify_option
from .commands import IntList, _usable_cores, _verify
from .defaults import DEFAULT_MIN_TURN_MS


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--label", "labels", multiple=True,
              help="A name per model, in order (repeat the option) [default: each file's stem].")
@data_dir_option
@click.option("--inputs", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Profile on the digits of this file (IDX or .npy (N, 28, 28), or an image) instead of MNIST's "
                   "test set [default: --data-dir, $LENET_EDGE_DATA, else the official test digits in the package].")
@click.option("--device", default=None, help="Your name for this machine (e.g. 'pi5-8gb'), recorded in the report.")
@click.option("--batch-sizes", type=IntList(), default="1,64", show_default=True)
@click.option("--threads", type=IntList(), default=None,
              help="Thread counts to profile [default: 1 and all usable cores].")
@click.option("--runs", type=int, default=200, show_default=True,
              help="Timed calls per model and row (more where --min-turn-ms needs them).")
@click.option("--warmup", type=int, default=20, show_default=True, help="Untimed calls per model and row first.")
@click.option("--rounds", type=int, default=5, show_default=True,
              help="The timed calls are split into this many interleaved rounds (at least 2).")
@click.option("--min-turn-ms", type=float, default=DEFAULT_MIN_TURN_MS, show_default=True,
              help="A model's turn in a round lasts at least this long (as for bench).")
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
    from ..errors import DataError
    from ..fileio import check_writable
    from ..progress import ProgressDisplay
    from .plots import SKIPPED
    from .profile import profile as run_profile
    from .profile_report import write_profile_outputs
    from .report import output_paths

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
    with ProgressDisplay("profile") as progress:
        report = run_profile(dict(zip(names, models, strict=True)), batch_sizes,
                             threads or sorted({1, _usable_cores()}), runs=runs, warmup=warmup, rounds=rounds,
                             min_turn_ms=min_turn_ms,
                             data_dir=data_dir if inputs else named_data_dir(data_dir), inputs=inputs,
                             progress=progress, device=device)
    png = write_profile_outputs(report, *paths, record=False)  # the user's files: no manifest beside them
    click.echo(paths[1].read_text("utf-8"))
    click.echo(f"report: {paths[0]}, table: {paths[1]}", err=True)
    click.echo(f"chart: {png}" if png else f"chart skipped: {SKIPPED}", err=True)
