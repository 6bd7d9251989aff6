"""Atomic artefact writing: a temporary file in the target's directory, then a rename.

An interrupted or failed write never leaves a half-written artefact, and the previous
artefact at that path stays intact until the new one is complete. Without `replace`
(a command's --force) the rename itself refuses to replace a file that appeared since
the command checked its outputs (e.g. a second run writing the same path), so nothing
is lost between the check and the write. A write that fails (a full disk, a name too
long) is an OutputError naming the file. Each artefact put in place is recorded with its
sha256 in MANIFEST.sha256 beside it (lenet_edge.manifest), under a lock on the directory
and with Ctrl-C held back while the rename and the manifest's rewrite happen (never while
waiting for the lock), so the manifest always describes the files next to it.
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

NAME_MAX = 255  # bytes per file name on Linux, macOS and Windows file systems
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_TEMP_EXTRA = 15  # the temporary name's additions: "." + "." + 8 hex digits + ".tmp"


def check_writable(path: Path, force: bool) -> None:
    """Refuse an existing output without --force, a name too long, and an unwritable directory."""
    path = Path(path)
    check_name(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # e.g. a directory on the way that cannot be searched
        raise OutputError(f"{path}: cannot be checked ({exc.strerror})") from exc
    if is_dir:
        raise OutputError(f"{path}: is a directory (expected a file path)")
    if exists and not force:
        raise already_exists(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: directory {parent} does not exist (expected an existing directory)")
    try:  # a real probe: os.access says yes to root even where nothing can be created (e.g. /sys)
        _new_temp_file(parent, path.name).unlink()
    except OSError as exc:
        raise OutputError(f"{path}: directory {parent} is not writable ({exc.strerror})") from exc


def already_exists(path: Path) -> OutputError:
    return OutputError(f"{path}: already exists (expected a new path); pass --force to replace it")


def check_name(path: Path) -> None:
    """Refuse a path with a file or directory name longer than the file system allows."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise OutputError(f"{path}: a name of {size} bytes in this path (expected at most {NAME_MAX} bytes "
                              f"per file or directory name)")


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
def staged_directory(out: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a new, empty directory beside `out`; when the block succeeds it takes `out`'s place by
    renames (an earlier `out` is kept until the new one is in place, then removed), when it fails it
    is removed and `out` stays as it was. Without `replace` an existing `out` is never replaced,
    even one made while the block ran."""
    out = Path(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{_temp_stem(out.name)}.", suffix=".partial", dir=out.parent))
        # mkdtemp makes it 0700; a finished directory is as readable as the files in it (0777 minus the umask)
        os.chmod(staging, 0o777 & ~_umask())
    except OSError as exc:
        raise OutputError(f"{out}: cannot write in {out.parent} ({exc.strerror})") from exc
    try:
        try:
            yield staging
        except OSError as exc:
            if exc.errno not in _DISK_FULL:  # the block does more than write: only a full disk is said to be one
                raise
            raise _write_error(out, exc) from exc
        if not out.exists() or not replace:
            try:
                rename_no_replace(staging, out)  # a directory made meanwhile by another run is not replaced
            except FileExistsError:
                raise already_exists(out) from None
            except OSError as exc:
                raise OutputError(f"{out}: cannot put the finished directory in place ({exc.strerror})") from exc
            return
        old = Path(tempfile.mkdtemp(prefix=f".{_temp_stem(out.name)}.", suffix=".old", dir=out.parent))
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
def atomic_path(path: Path, record: bool = True, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it takes `path`'s place in one step and,
    with `record`, its sha256 goes into the directory's MANIFEST.sha256. Without `replace` an
    existing `path` is never replaced (OutputError), even one made while the block ran."""
    path = Path(path)
    check_name(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        tmp_path = _new_temp_file(parent, path.name)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {parent} ({exc.strerror})") from exc
    try:
        try:
            yield tmp_path
        except OSError as exc:  # a full disk, a quota, an I/O error while the artefact was written
            raise _write_error(path, exc) from exc
        record = record and path.name != manifest.MANIFEST_NAME
        # The lock and the manifest are waited for with signals still delivered (a lock held for ever
        # or a manifest that blocks must not make the command unkillable); only the rename and the
        # manifest's rewrite, which must not be cut in half, hold them back.
        with _locked(parent) if record else contextlib.nullcontext():
            entries = manifest.read(parent / manifest.MANIFEST_NAME, OutputError) if record else {}
            digest = sha256_file(tmp_path) if record else ""
            with uninterrupted():
                _put_in_place(tmp_path, path, replace)
                if record:
                    _write_manifest(parent, {**entries, path.name: digest}, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _write_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write it ({exc.strerror or type(exc).__name__}); nothing was written there")


def _put_in_place(tmp_path: Path, path: Path, replace: bool) -> None:
    try:
        if replace:
            os.replace(tmp_path, path)
        else:
            rename_no_replace(tmp_path, path)
    except FileExistsError:
        raise already_exists(path) from None
    except OSError as exc:  # e.g. `path` is a directory
        raise OutputError(f"{path}: cannot replace it ({exc.strerror})") from exc


_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100


def rename_no_replace(source: Path, target: Path) -> None:
    """Rename `source` to `target` in one step, raising FileExistsError if `target` exists.

    Linux's renameat2(RENAME_NOREPLACE) where the kernel and file system have it; else a hard
    link (which refuses an existing name just as atomically) and an unlink of `source`; where
    neither exists (a file system without links), a check and a rename, the best left.
    """
    if _renameat2(source, target):
        return
    if Path(source).is_file():
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
        else:
            os.unlink(source)
            return
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


def _renameat2(source: Path, target: Path) -> bool:
    """True when renameat2(RENAME_NOREPLACE) did the rename; False where it is not available."""
    function = _libc_renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
        return True
    import ctypes

    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # old kernel, or not this file system
        return False
    if code == errno.EEXIST:
        raise FileExistsError(code, os.strerror(code), str(target))
    raise OSError(code, os.strerror(code), str(target))


_RENAMEAT2: list = []  # the libc function, looked up once (None where there is none)


def _libc_renameat2():
    if not _RENAMEAT2:
        function = None
        try:
            import ctypes

            function = ctypes.CDLL(None, use_errno=True).renameat2
            function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            function.restype = ctypes.c_int
        except (ImportError, OSError, AttributeError):  # not Linux, or a libc without it
            function = None
        _RENAMEAT2.append(function)
    return _RENAMEAT2[0]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def _temp_stem(name: str) -> str:
    """`name`, cut so that its temporary name still fits in NAME_MAX bytes."""
    data = os.fsencode(name)
    return name if len(data) <= NAME_MAX - _TEMP_EXTRA else os.fsdecode(data[:NAME_MAX - _TEMP_EXTRA])


def _new_temp_file(parent: Path, name: str) -> Path:
    """An empty, new `.NAME.XXXX.tmp` in `parent`, created with mode 0o666 minus the umask
    (as a plain open() would; tempfile.mkstemp's 0o600 would make every artefact private)."""
    for _ in range(100):
        tmp = parent / f".{_temp_stem(name)}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(parent))


def write_bytes(path: Path, data: bytes, record: bool = True, *, replace: bool = False) -> None:
    with atomic_path(path, record, replace=replace) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str, record: bool = True, *, replace: bool = False) -> None:
    write_bytes(path, text.encode("utf-8"), record, replace=replace)


def write_npy(path: Path, array, record: bool = True, *, replace: bool = False) -> None:
    """An array as .npy (never pickled)."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    write_bytes(path, buffer.getvalue(), record, replace=replace)


def write_json(path: Path, obj, record: bool = True, *, replace: bool = False) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", record, replace=replace)
