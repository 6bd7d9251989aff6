"""The lenet-edge command line: one thin command per stage.

Command modules hold click and pure-Python constants only; each command imports its stage
inside the function body, so that `lenet-edge run` on a device never imports torch or onnx,
and `--help` loads no numpy.
"""

from __future__ import annotations

import signal
import sys

import click

from .compile.commands import compile_command
from .errors import LenetEdgeError
from .export.commands import export
from .pipeline.commands import pipeline
from .quantize.commands import quantize
from .runtime.commands import bench, compare, evaluate, run
from .runtime.profile_commands import profile
from .train.commands import summary, train
from .web.commands import web

INTERRUPTED = 130


class CliError(click.ClickException):
    """A LenetEdgeError shown as one line on stderr, with the error kind's exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", file=file or sys.stderr)


class LenetEdgeGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise CliError("interrupted; earlier artefacts are left as they were", INTERRUPTED) from None
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            if isinstance(exc, LenetEdgeError):
                raise CliError(str(exc), exc.exit_code) from exc
            message = f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)"
            raise CliError(message, 1) from exc


@click.group(cls=LenetEdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="lenet-edge")
def cli(debug: bool) -> None:
    """Train LeNet-5 on MNIST, export it to ONNX, quantize it to int8, and run,
    benchmark and compare the models on any CPU."""


for command in (summary, train, export, quantize, compile_command, run, evaluate, bench, profile, compare, web,
                pipeline):
    cli.add_command(command)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # A terminated run (SIGTERM) cleans up like Ctrl-C: temporary files go, artefacts stay intact.
    signal.signal(signal.SIGTERM, _interrupt)
    cli(prog_name="lenet-edge")
