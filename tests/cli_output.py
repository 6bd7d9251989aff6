"""What a failed lenet-edge command prints, as the tests read it."""

from __future__ import annotations


def one_error_line(stderr: str) -> str:
    """The one `error: ...` line of a failed command: the last line, after any progress or announcement
    lines, and never an internal error or a traceback."""
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return errors[0]
