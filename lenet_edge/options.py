"""Click options shared by several commands."""

from __future__ import annotations

import math
from pathlib import Path

import click


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
