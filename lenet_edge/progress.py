"""Progress of long steps (training epochs, bench rows, evaluating 10,000 images), shown one way.

Library functions take a callback `progress(done, total, what)` and know nothing of terminals;
a command renders it with ProgressDisplay: click's progress bar with an ETA on a terminal, one
plain line per update otherwise (a log or CI keeps readable lines, not carriage returns).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

Progress = Callable[[int, int, str], None]  # (steps done, total steps, what runs now)


class ProgressDisplay:
    """A Progress callback on stderr; use it as a context manager so the bar is closed on any exit."""

    def __init__(self, label: str, file=None, announce: bool = False):
        self.label, self.file, self.announce = label, file or sys.stderr, announce
        self.bar = None

    def __call__(self, done: int, total: int, what: str) -> None:
        if not self.file.isatty():
            click.echo(f"{self.label}: {done}/{total} {what}", file=self.file)
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=self.file, show_pos=True,
                                         show_eta=True, item_show_func=lambda item: item)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos, what)

    def __enter__(self) -> ProgressDisplay:
        # `announce`: in a log, say at once that a long first step (a training epoch) is under way, as
        # click's bar does on a terminal; off by default, so a refused input stays the one line on stderr
        if self.announce and not self.file.isatty():
            click.echo(f"{self.label} ...", file=self.file)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
