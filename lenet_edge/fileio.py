"""Atomic artefact writing: a temporary file in the target's directory, then os.replace.

An interrupted or failed write never leaves a half-written artefact, and the previous
artefact at that path stays intact until the new one is complete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


def check_writable(path: Path, force: bool) -> None:
    """Refuse an existing output without --force, and an unwritable directory."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory (expected a file path)")
    if path.exists() and not force:
        raise OutputError(f"{path}: already exists (expected a new path); pass --force to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: directory {parent} does not exist (expected an existing directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: directory {parent} is not writable")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one step."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        tmp_path = _new_temp_file(parent, path.name)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {parent} ({exc.strerror})") from exc
    try:
        yield tmp_path
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    try:
        os.replace(tmp_path, path)
    except OSError as exc:  # e.g. `path` is a directory
        tmp_path.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot replace it ({exc.strerror})") from exc


def _new_temp_file(parent: Path, name: str) -> Path:
    """An empty, new `.NAME.XXXX.tmp` in `parent`, created with mode 0o666 minus the umask
    (as a plain open() would; tempfile.mkstemp's 0o600 would make every artefact private)."""
    for _ in range(100):
        tmp = parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(parent))


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
