"""The lenet-edge command line: one thin command per stage.

Command modules hold click and pure-Python constants only; each command imports its stage
inside the function body, so that `lenet-edge run` on a device never imports torch or onnx,
and `--help` loads no numpy.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from .bench.commands import bench, compare, profile
from .compile.commands import compile_command
from .errors import LenetEdgeError
from .export.commands import export
from .pipeline.commands import pipeline
from .quantize.commands import quantize
from .runtime.commands import evaluate, run
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


USAGE = 2


class LenetEdgeGroup(click.Group):
    def main(self, *args, **kwargs):
        """click's main, with every usage error shown as one line, as every other error is."""
        kwargs["standalone_mode"] = False  # click then raises its errors here instead of printing them
        try:
            result = super().main(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe fails here, not in the interpreter's flush at exit
        except BrokenPipeError:
            raise _closed_pipe() from None
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `lenet-edge` alone: the help, as click shows it
                exc.show()
                sys.exit(exc.exit_code)
            message = " ".join(exc.format_message().split())  # click's message, on one line
            click.echo(f"error: {message}", err=True)
            sys.exit(USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:  # click's prompt interrupted; lenet-edge has none, but say it as one line too
            click.echo("error: interrupted; earlier artefacts are left as they were", err=True)
            sys.exit(INTERRUPTED)
        sys.exit(result if isinstance(result, int) else 0)

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:  # `lenet-edge --help | true`
            raise _closed_pipe() from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            raise _closed_pipe() from None
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


def _closed_pipe() -> SystemExit:
    """The reader of stdout (head, `| true`) stopped early: not an error, for every command (exit 0).
    stdout then points at /dev/null, so that nothing more (the interpreter's flush at exit) fails."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no descriptor behind sys.stdout (e.g. a test runner's buffer)
        pass
    return SystemExit(0)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    from .runtime.interrupts import install

    # A terminated run (SIGTERM) cleans up like Ctrl-C: temporary files go, artefacts stay intact.
    signal.signal(signal.SIGTERM, _interrupt)
    install()  # and both end a long onnxruntime call
    cli(prog_name="lenet-edge")
