"""Scratch directories in the temporary directory, named after the process that made them.

A run ended by SIGKILL (or a power cut) cannot remove its scratch directory, and quantize's
holds megabytes of candidate models. Each scratch directory is therefore named
`lenet-edge-KIND-pPID-XXXXXXXX`, and every new one first removes those of the same user whose
process is gone. A directory whose process id was reused by a live process is left for later:
nothing is removed that might still be in use. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_NAME = re.compile(r"lenet-edge-[a-z0-9-]+?-p(\d+)-[A-Za-z0-9_]+")


@contextlib.contextmanager
def scratch_directory(kind: str) -> Iterator[Path]:
    """A new directory in the temporary directory for this block, removed after it."""
    remove_stale()
    with tempfile.TemporaryDirectory(prefix=f"lenet-edge-{kind}-p{os.getpid()}-") as tmp:
        yield Path(tmp)


def remove_stale(directory: Path | None = None) -> list[Path]:
    """Remove the scratch directories in `directory` (default: the temporary directory) left by
    processes of this user that no longer run; the ones removed."""
    root = Path(directory or tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        try:
            if match is None or not entry.is_dir(follow_symlinks=False) or not _ours(entry):
                continue
        except OSError:
            continue
        if not _running(int(match.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _ours(entry: os.DirEntry) -> bool:
    return not hasattr(os, "getuid") or entry.stat(follow_symlinks=False).st_uid == os.getuid()


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):  # another user's process, or no way to tell: keep it
        return True
    return True
