"""MANIFEST.sha256: the sha256 of every artefact lenet-edge wrote into a directory.

One `<64 hex digits>  <name>` line per file, sorted by name: the output format of
`sha256sum`, so `sha256sum -c MANIFEST.sha256` checks a directory with standard tools.
Names holding a backslash, a newline or a carriage return are escaped as sha256sum
escapes them (a leading backslash on the line, then `\\\\`, `\\n`, `\\r`). The atomic
writers of lenet_edge.fileio record each artefact as they put it in place; `verify`
checks one file against its entry. Standard library only: the device side uses it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import LenetEdgeError, ModelError

MANIFEST_NAME = "MANIFEST.sha256"
MAX_MANIFEST_BYTES = 1 << 20  # ~10,000 entries; a larger file is not one of ours
_LINE = re.compile(r"(\\?)([0-9a-f]{64}) [ *](.+)")
_ESCAPES = {"\\\\": "\\", "\\n": "\n", "\\r": "\r"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(artefact: Path) -> Path:
    """The manifest of the directory that holds `artefact`."""
    artefact = Path(artefact)
    return (artefact.parent if str(artefact.parent) else Path(".")) / MANIFEST_NAME


def parse(text: str, source: Path, error: type[LenetEdgeError]) -> dict[str, str]:
    """{name: sha256 hex} of a manifest's text; a malformed line raises `error`."""
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.fullmatch(line)
        if match is None:
            raise error(f"{source}: line {number} is not '<sha256>  <name>' (expected a sha256sum manifest)")
        escaped, digest, name = match.groups()
        if escaped:
            name = re.sub(r"\\[\\nr]", lambda m: _ESCAPES[m.group()], name)
        entries[name] = digest
    return entries


def render(entries: dict[str, str]) -> str:
    """The manifest's text: one line per name, sorted, in sha256sum's format."""
    lines = []
    for name in sorted(entries):
        if any(c in name for c in "\\\n\r"):
            escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            lines.append(f"\\{entries[name]}  {escaped}")
        else:
            lines.append(f"{entries[name]}  {name}")
    return "".join(line + "\n" for line in lines)


def read(manifest: Path, error: type[LenetEdgeError]) -> dict[str, str]:
    """The entries of a manifest file, {} when there is none."""
    from .reading import read_capped

    if not os.path.lexists(manifest):
        return {}
    # a FIFO or device in its place is refused, never read: opening a FIFO blocks until a writer comes
    data = read_capped(manifest, error, f"a {MANIFEST_NAME} written by lenet-edge", MAX_MANIFEST_BYTES)
    return parse(data.decode("utf-8", "surrogateescape"), manifest, error)  # names as the file system has them


def verify_models(paths) -> None:
    """--verify: each model file must match its entry in the MANIFEST.sha256 beside it."""
    for path in paths:
        verify(path)


def verify(path: str | Path) -> str:
    """Check a model file against the manifest beside it; returns its sha256.

    A missing manifest, a missing entry or a different sha256 is a ModelError.
    """
    from .reading import check_file

    path = Path(path)
    manifest = manifest_path(path)
    check_file(path, ModelError, f"a file listed in {manifest}", missing="no such model file")
    if not os.path.lexists(manifest):
        raise ModelError(f"{path}: no {MANIFEST_NAME} beside it (expected the manifest written with the model; "
                         f"--verify needs it)")
    expected = read(manifest, ModelError).get(path.name)
    if expected is None:
        raise ModelError(f"{path}: not listed in {manifest} (expected an entry for {path.name})")
    found = sha256_file(path)
    if found != expected:
        raise ModelError(f"{path}: sha256 {found[:12]}… does not match {manifest} ({expected[:12]}…); "
                         f"the file was changed or replaced")
    return found
