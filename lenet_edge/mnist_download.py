"""Where the MNIST files come from: --data-dir, else $LENET_EDGE_DATA, else a download cache.

Downloads go to the cache from the public mirrors and are checked against the published
MD5 checksums before they take their final name.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DataError
from .fileio import atomic_path

ENV_VAR = "LENET_EDGE_DATA"
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# The checksums published with the original files (also used by torchvision).
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MAX_DOWNLOAD_BYTES = 64 << 20  # the largest MNIST file is 9.9 MB
TIMEOUT_S = 30


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lenet-edge" / "mnist"


def resolve_data_dir(data_dir: str | Path | None, mirrors: tuple[str, ...] | None = None) -> Path:
    """The directory to read MNIST from, downloading into the cache if it comes to that.

    Made absolute here, where it is read: a relative $LENET_EDGE_DATA (`make test DATA=../shared/...`)
    must name the same directory for a command started with another working directory.
    """
    named = named_data_dir(data_dir)
    if named is not None:
        return named
    target = cache_dir()
    download_mnist(target, mirrors)
    return target


def named_data_dir(data_dir: str | Path | None) -> Path | None:
    """--data-dir, else $LENET_EDGE_DATA, made absolute; None when the user named neither (a command
    that must not download, such as bench, then uses the digits carried in the package)."""
    if data_dir is not None:
        return Path(data_dir).absolute()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).absolute()
    return None


def download_mnist(target: Path, mirrors: tuple[str, ...] | None = None) -> None:
    """Fetch each missing MNIST file into `target`, verified against its published MD5."""
    mirrors = MIRRORS if mirrors is None else mirrors  # looked up at call time, not import time
    target.mkdir(parents=True, exist_ok=True)
    for name, md5 in MD5.items():
        path = target / name
        if path.is_file() and _md5(path.read_bytes()) == md5:
            continue
        _fetch_verified(name, md5, path, mirrors)


def _fetch_verified(name: str, md5: str, path: Path, mirrors) -> None:
    failures = []
    for mirror in mirrors:
        url = mirror + name
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                data = response.read(MAX_DOWNLOAD_BYTES + 1)
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
            continue
        except (urllib.error.URLError, OSError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        if len(data) > MAX_DOWNLOAD_BYTES:
            failures.append(f"{url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
            continue
        found = _md5(data)
        if found != md5:
            failures.append(f"{url}: md5 {found} (expected {md5})")
            continue
        with atomic_path(path, record=False, replace=True) as tmp:  # downloaded data, not an artefact: no manifest
            tmp.write_bytes(data)
        return
    raise DataError(
        f"{name}: could not download a verified copy ({'; '.join(failures)}); "
        f"pass --data-dir or set {ENV_VAR} to a directory holding the MNIST files"
    )


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()

