"""Opening the files a user names: regular files only, each problem one error naming the file.

A FIFO or a device (/dev/zero) is refused before it is opened: reading one may block for
ever or never end. Files are opened without blocking and checked again on the open
descriptor, so a path swapped for a FIFO in between cannot hang the reader either.
Standard library only: the device side uses it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import LenetEdgeError

MAX_JSON_BYTES = 64 << 20  # a bench report or checkpoint JSON is kilobytes


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def _stat_error(path: Path, exc: OSError, error: type[LenetEdgeError], expected: str, missing: str):
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return error(f"{path}: {missing} (expected {expected})")
    if exc.errno == errno.ENAMETOOLONG:
        return error(f"{path}: file name too long (expected at most 255 bytes per name)")
    return error(f"{path}: cannot read ({exc.strerror})")


def check_file(path: str | Path, error: type[LenetEdgeError], expected: str, missing: str = "no such file") -> int:
    """The size of `path`, a regular file; anything else raises `error` saying what it is."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _stat_error(path, exc, error, expected, missing) from exc
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: {_kind(info.st_mode)}, not a regular file (expected {expected})")
    return info.st_size


def open_file(path: str | Path, error: type[LenetEdgeError], expected: str, missing: str = "no such file") -> BinaryIO:
    """`path` opened for binary reading, checked to be a regular file on the open descriptor."""
    path = Path(path)
    check_file(path, error, expected, missing)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _stat_error(path, exc, error, expected, missing) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: {_kind(mode)}, not a regular file (expected {expected})")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_capped(path: str | Path, error: type[LenetEdgeError], expected: str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; a larger one raises `error` naming the file."""
    with open_file(path, error, expected) as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read ({exc.strerror})") from exc
    if len(data) > limit:
        raise error(f"{path}: larger than {limit} bytes (expected {expected})")
    return data


def read_json(path: str | Path, error: type[LenetEdgeError], expected: str = "a JSON file"):
    """The JSON value in `path`; a file that is not UTF-8 JSON, too large or too deeply nested for
    the parser raises `error` naming the file."""
    data = read_capped(path, error, expected, MAX_JSON_BYTES)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError:
        raise error(f"{path}: nested too deeply to read (expected {expected})") from None
