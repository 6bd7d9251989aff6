"""Click options shared by several commands, their defaults and ranges from lenet_edge/defaults.py."""

from __future__ import annotations

import math
from pathlib import Path

import click

from .defaults import (
    DEFAULT_BATCH,
    DEFAULT_MIN_TURN_MS,
    DEFAULT_ROUNDS,
    DEFAULT_RUNS,
    DEFAULT_VARIANT,
    DEFAULT_WARMUP,
    MAX_BATCH,
    MAX_RUNS,
    MAX_THREADS,
    MAX_TURN_MS,
    VARIANT_NAMES,
)


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that also refuses nan and inf (which compare false with any bound)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number.", param, ctx)
        return number


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Directory of the MNIST IDX files [default: $LENET_EDGE_DATA, else a download cache].",
)
force_option = click.option("--force", is_flag=True, help="Replace outputs that already exist.")
verify_option = click.option(
    "--verify", is_flag=True,
    help="Check each model file against the MANIFEST.sha256 beside it before loading it (exit 4 on a mismatch).",
)


class IntList(click.ParamType):
    """A comma-separated list of integers, e.g. 1,32,256, each in click's IntRange(low, high)."""

    name = "INT[,INT...]"

    def __init__(self, low: int, high: int):
        self.item = click.IntRange(low, high)

    def convert(self, value, param, ctx):
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
        if not items:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)
        try:
            return [self.item.convert(v, param, ctx) for v in items]
        except click.BadParameter as exc:
            self.fail(exc.message if len(items) == 1 else f"{value!r}: {exc.message}", param, ctx)


def variant_option(function):
    return click.option("--variant", type=click.Choice(VARIANT_NAMES), default=DEFAULT_VARIANT,
                        show_default=True)(function)


batch_size_option = click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=DEFAULT_BATCH,
                                 show_default=True, help="Images per onnxruntime call; bounds memory on large inputs.")
threads_option = click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None,
                              help="onnxruntime intra-op threads [default: onnxruntime's choice, all cores].")


def timing_options(batch_sizes: tuple[int, ...], what: str):
    """The options of a command that times models as bench does (bench, profile): the same names, ranges and
    defaults, `batch_sizes` aside; `what` is the verb its help uses ("time", "profile")."""
    options = (
        click.option("--label", "labels", multiple=True,
                     help="A name per model, in order (repeat the option) [default: each file's stem]."),
        data_dir_option,
        click.option("--inputs", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help=f"{what.capitalize()} on the digits of this file (IDX or .npy (N, 28, 28), or an image) "
                          "instead of MNIST's test set [default: --data-dir, $LENET_EDGE_DATA, else the official test "
                          "digits in the package]."),
        click.option("--device", default=None,
                     help="Your name for this machine (e.g. 'pi5-8gb'), recorded in the report."),
        click.option("--batch-sizes", type=IntList(1, MAX_BATCH), default=",".join(map(str, batch_sizes)),
                     show_default=True),
        click.option("--threads", type=IntList(1, MAX_THREADS), default=None,
                     help=f"Thread counts to {what} [default: 1 and all usable cores]."),
        click.option("--runs", type=click.IntRange(2, MAX_RUNS), default=DEFAULT_RUNS, show_default=True,
                     help="Timed calls per model and row (more where --min-turn-ms needs them)."),
        click.option("--warmup", type=click.IntRange(0, MAX_RUNS), default=DEFAULT_WARMUP, show_default=True,
                     help="Untimed calls per model and row first."),
        click.option("--rounds", type=click.IntRange(2, MAX_RUNS), default=DEFAULT_ROUNDS, show_default=True,
                     help="The timed calls are split into this many interleaved rounds (at least 2) to measure "
                          "the spread."),
        click.option("--min-turn-ms", type=FiniteFloatRange(0, MAX_TURN_MS), default=DEFAULT_MIN_TURN_MS,
                     show_default=True,
                     help="A model's turn in a round lasts at least this long: short calls (batch 1) get more "
                          "calls, so the switch between models does not dominate."),
    )

    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


def usable_cores() -> int:
    """The cores this process may run on: the default second thread count of bench and profile."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
