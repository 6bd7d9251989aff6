"""Atomic artefact writing: a temporary file in the target's directory, then os.replace.

An interrupted or failed write never leaves a half-written artefact, and the previous
artefact at that path stays intact until the new one is complete. Each artefact put in
place is recorded with its sha256 in MANIFEST.sha256 beside it (lenet_edge.manifest),
under a lock on the directory and with Ctrl-C held back until both are done, so the
manifest always describes the files next to it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from . import manifest
from .errors import OutputError
from .manifest import sha256_file  # noqa: F401  (re-exported: stages hash their artefacts through fileio)


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
    try:  # a real probe: os.access says yes to root even where nothing can be created (e.g. /sys)
        _new_temp_file(parent, path.name).unlink()
    except OSError as exc:
        raise OutputError(f"{path}: directory {parent} is not writable ({exc.strerror})") from exc


def ensure_directory(path: Path) -> None:
    """Create the directory that will hold `path` (an output file), or say why not."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create directory {parent} ({exc.strerror})") from exc


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) and SIGTERM until the block is done, then deliver them.

    For steps that must not be cut in half, such as replacing an artefact and recording
    it in the manifest, or writing a checkpoint's weights and its JSON. Python runs signal
    handlers in the main thread only, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    # a handler installed outside Python (getsignal None) could not be put back: leave it alone
    held = [signum for signum in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(signum) is not None]
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])  # now handled as it would have been (KeyboardInterrupt)


@contextlib.contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """Yield a new, empty directory beside `out`; when the block succeeds it takes `out`'s place by
    renames (an earlier `out` is kept until the new one is in place, then removed), when it fails it
    is removed and `out` stays as it was. The caller decides whether `out` may be replaced."""
    out = Path(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"{out}: cannot write in {out.parent} ({exc.strerror})") from exc
    try:
        yield staging
        if not out.exists():
            os.replace(staging, out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        try:
            os.replace(staging, out)
        except BaseException:
            os.replace(old / out.name, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_path(path: Path, record: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one step and,
    with `record`, its sha256 goes into the directory's MANIFEST.sha256."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        tmp_path = _new_temp_file(parent, path.name)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {parent} ({exc.strerror})") from exc
    try:
        yield tmp_path
        record = record and path.name != manifest.MANIFEST_NAME
        with uninterrupted(), _locked(parent) if record else contextlib.nullcontext():
            entries = manifest.read(parent / manifest.MANIFEST_NAME, OutputError) if record else {}
            digest = sha256_file(tmp_path) if record else ""
            try:
                os.replace(tmp_path, path)
            except OSError as exc:  # e.g. `path` is a directory
                raise OutputError(f"{path}: cannot replace it ({exc.strerror})") from exc
            if record:
                _write_manifest(parent, {**entries, path.name: digest}, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _write_manifest(parent: Path, entries: dict[str, str], artefact: Path) -> None:
    """Rewrite the manifest atomically, keeping only entries whose file is still there."""
    target = parent / manifest.MANIFEST_NAME
    text = manifest.render({name: digest for name, digest in entries.items() if (parent / name).is_file()})
    tmp = None
    try:
        tmp = _new_temp_file(parent, target.name)
        tmp.write_bytes(text.encode("utf-8", "surrogateescape"))  # file names are bytes: keep them as they are
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"{target}: cannot record {artefact.name} in it ({exc.strerror}); "
                          f"{artefact} was written") from exc


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on a directory, so that concurrent writers do not lose each
    other's manifest entries (POSIX flock; where there is none, no lock)."""
    try:
        import fcntl

        fd = os.open(directory, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


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


def write_bytes(path: Path, data: bytes, record: bool = True) -> None:
    with atomic_path(path, record) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str, record: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), record)


def write_npy(path: Path, array, record: bool = True) -> None:
    """An array as .npy (never pickled)."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    write_bytes(path, buffer.getvalue(), record)


def write_json(path: Path, obj, record: bool = True) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", record)


def read_json(path: Path, error: type[Exception]):
    """The JSON value in `path`; text that is not UTF-8 JSON raises `error` naming the file."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from exc
