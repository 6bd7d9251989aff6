"""Every bad input through the real CLI, in one place: one line naming the file, the error
kind's exit code, no traceback, and nothing written (no output, no temporary file, earlier
outputs byte-identical).

Each case builds its inputs in a fresh directory from the real trained model, checkpoint
and MNIST files, runs `lenet-edge`, and compares the directory before and after.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lenet_edge.cli import cli
from lenet_edge.mnist import read_idx
from lenet_edge.runtime.model_file import MAX_MODEL_BYTES
from tests.cli_output import one_error_line
from tests.idx_files import write_idx

pytestmark = pytest.mark.integration

USAGE, DATA, MODEL, OUTPUT = 2, 3, 4, 6
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


@dataclass
class Kit:
    """What a case builds from: a fresh directory and the real artefacts (read only)."""

    tmp: Path
    mnist: Path
    onnx: Path
    checkpoint: Path
    digits: np.ndarray  # (8, 28, 28) uint8 real test digits
    labels: np.ndarray  # (8,)

    def npy(self, name: str, array) -> Path:
        np.save(self.tmp / name, array, allow_pickle=True)
        return self.tmp / name

    def data_dir(self, images: bytes | None = None, labels: bytes | None = None) -> Path:
        """A copy of MNIST's test split with the image or label file replaced by these bytes."""
        directory = self.tmp / "mnist"
        directory.mkdir()
        for name, data in ((TEST_IMAGES, images), (TEST_LABELS, labels)):
            target = directory / name
            target.write_bytes(data) if data is not None else shutil.copy(self.mnist / name, target)
        return directory

    def checkpoint_copy(self, weights: bytes | None = None, **meta_changes) -> Path:
        """The real checkpoint copied, optionally with other weights (the JSON's sha256 made to match,
        so the check under test is reached) and changed JSON fields."""
        import hashlib

        out = self.tmp / "ckpt.safetensors"
        data = self.checkpoint.read_bytes() if weights is None else weights
        out.write_bytes(data)
        meta = json.loads(self.checkpoint.with_suffix(".json").read_text())
        meta.update(weights_sha256=hashlib.sha256(data).hexdigest(), **meta_changes)
        out.with_suffix(".json").write_text(json.dumps(meta))
        return out

    def onnx_copy(self, name: str, change: Callable | None = None) -> Path:
        import onnx

        model = onnx.load(str(self.onnx))
        if change is not None:
            change(model)
        path = self.tmp / name
        path.write_bytes(model.SerializeToString())
        return path

    def run(self, model: Path, *inputs: Path, extra=()) -> list[str]:
        """run stopping at the first bad file (by default it gives the file an error row and
        goes on; that path is tested with the run command's own tests)."""
        return ["run", str(model), *map(str, inputs), "--fail-fast", *extra]

    def export(self, checkpoint: Path, out: Path | None = None, extra=()) -> list[str]:
        return ["export", str(checkpoint), "-o", str(out or self.tmp / "out.onnx"), "--data-dir", str(self.mnist),
                *extra]


@dataclass
class Case:
    args: list[str]
    code: int
    names: str  # what the error line must name: the file (or the option) at fault
    says: str = ""  # and, for some, what it must say


# ----------------------------------------------------------------------------- helpers


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def _idx_bytes(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def _png(kit: Kit, name: str, image: Image.Image, **params) -> Path:
    path = kit.tmp / name
    image.save(path, **params)
    return path


def _unwritable_dir(tmp: Path) -> Path:
    """A directory nothing can be created in; as root (which ignores file modes) a kernel one."""
    if os.geteuid() == 0:
        return Path("/sys")
    directory = tmp / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    return directory


class _Payload:
    """Unpickling this creates a marker file: proof that a loader executed code from a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _safetensors(tensors: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()})


def _tensors(kit: Kit) -> dict:
    from safetensors.torch import load_file

    return load_file(str(kit.checkpoint))


def _rename_input(model) -> None:
    old = model.graph.input[0].name
    model.graph.input[0].name = "pixels"
    for node in model.graph.node:
        node.input[:] = ["pixels" if name == old else name for name in node.input]


def _input_28x28(model) -> None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = 28, 28


def _strip_contract(model) -> None:
    del model.metadata_props[:]


def _pad_beyond_cap(model) -> None:
    from onnx import helper

    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "padding": "x" * MAX_MODEL_BYTES})


def _external_data(kit: Kit) -> Path:
    import onnx

    path = kit.tmp / "external.onnx"
    onnx.save_model(onnx.load(str(kit.onnx)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="external.weights", size_threshold=0)
    return path


# ----------------------------------------------------------------------------- the cases
#
# Each builds its inputs in kit.tmp and returns the command line, the exit code and what the
# one error line must name.

def _evaluate(directory: Path, kit: Kit, names: str, says: str = "") -> Case:
    return Case(["evaluate", str(kit.onnx), "--data-dir", str(directory)], DATA, names, says)


def _labels_with(kit: Kit, change) -> bytes:
    labels = read_idx(kit.mnist / TEST_LABELS).copy()
    labels = change(labels)
    path = kit.tmp / "labels.idx"
    write_idx(path, labels, gz=False)
    data = path.read_bytes()
    path.unlink()
    return _gz(data)


def _label_11(labels):
    labels[123] = 11
    return labels


CASES: dict[str, Callable[[Kit], Case]] = {
    # ---- MNIST IDX files (evaluate --data-dir)
    "idx-empty-file": lambda k: _evaluate(k.data_dir(images=b""), k, TEST_IMAGES),
    "idx-truncated-gz": lambda k: _evaluate(
        k.data_dir(images=(k.mnist / TEST_IMAGES).read_bytes()[:100_000]), k, TEST_IMAGES),
    "idx-gzip-far-larger-than-header": lambda k: _evaluate(
        k.data_dir(labels=_gz(_idx_bytes(k.mnist / TEST_LABELS) + bytes(64 << 20))), k, TEST_LABELS, "trailing bytes"),
    "idx-wrong-magic": lambda k: _evaluate(
        k.data_dir(images=_gz(b"\x00\x00\x0a\x03" + _idx_bytes(k.mnist / TEST_IMAGES)[4:])), k, TEST_IMAGES),
    "idx-labels-file-as-images": lambda k: _evaluate(
        k.data_dir(images=(k.mnist / TEST_LABELS).read_bytes()), k, TEST_IMAGES),
    "idx-header-count-above-payload": lambda k: _evaluate(
        k.data_dir(labels=_gz(_idx_bytes(k.mnist / TEST_LABELS)[:4] + (10_001).to_bytes(4, "big")
                              + _idx_bytes(k.mnist / TEST_LABELS)[8:])), k, TEST_LABELS),
    "idx-fewer-labels-than-images": lambda k: _evaluate(
        k.data_dir(labels=_labels_with(k, lambda labels: labels[:9_999])), k, TEST_LABELS),
    "idx-label-out-of-range": lambda k: _evaluate(k.data_dir(labels=_labels_with(k, _label_11)), k, TEST_LABELS),
    # ---- image files (run)
    "image-float-mode": lambda k: Case(k.run(k.onnx, _png(k, "float.tiff", Image.fromarray(
        k.digits[0].astype(np.float32)))), DATA, "float.tiff"),
    "image-1x1-pixel": lambda k: Case(k.run(k.onnx, _png(k, "dot.png", Image.new("L", (1, 1), 255))), DATA,
                                      "dot.png"),
    "image-blank": lambda k: Case(k.run(k.onnx, _png(k, "blank.png", Image.new("RGB", (40, 30), "white"))), DATA,
                                  "blank.png"),
    "image-not-an-image": lambda k: Case(k.run(k.onnx, _write(k, "notes.png", b"these are notes, not pixels\n")),
                                         DATA, "notes.png"),
    "image-empty-file": lambda k: Case(k.run(k.onnx, _write(k, "empty.png", b"")), DATA, "empty.png"),
    "image-truncated": lambda k: Case(k.run(k.onnx, _write(k, "cut.png", _png_bytes(k)[:60])), DATA, "cut.png"),
    "image-decompression-bomb": lambda k: Case(k.run(k.onnx, _write(k, "bomb.png", _bomb_png())), DATA, "bomb.png",
                                                "decompression bomb"),
    # ---- .npy arrays (run)
    "npy-wrong-shape": lambda k: Case(k.run(k.onnx, k.npy("shape.npy", np.zeros((3, 27, 27), np.uint8))), DATA,
                                      "shape.npy"),
    "npy-wrong-dtype-complex": lambda k: Case(k.run(k.onnx, k.npy("complex.npy", k.digits.astype(np.complex64))),
                                              DATA, "complex.npy"),
    "npy-wrong-dtype-bool": lambda k: Case(k.run(k.onnx, k.npy("bool.npy", k.digits > 0)), DATA, "bool.npy"),
    "npy-structured": lambda k: Case(k.run(k.onnx, k.npy("record.npy", np.zeros(3, [("a", "f4"), ("b", "i4")]))),
                                     DATA, "record.npy"),
    "npy-nan": lambda k: Case(k.run(k.onnx, k.npy("nan.npy", _with(k.digits.astype(np.float32), np.nan))), DATA,
                              "nan.npy"),
    "npy-inf": lambda k: Case(k.run(k.onnx, k.npy("inf.npy", _with(k.digits.astype(np.float64), np.inf))), DATA,
                              "inf.npy"),
    "npy-out-of-range": lambda k: Case(k.run(k.onnx, k.npy("range.npy", k.digits.astype(np.int16) * 2)), DATA,
                                       "range.npy"),
    "npy-truncated": lambda k: Case(k.run(k.onnx, _write(k, "cut.npy", _npy_bytes(k)[:-100])), DATA, "cut.npy"),
    "npy-objects-never-unpickled": lambda k: Case(k.run(k.onnx, _pickled_npy(k)), DATA, "objects.npy",
                                                  "never unpickled"),
    # ---- ONNX models (run)
    "onnx-not-onnx": lambda k: Case(k.run(_write(k, "notes.onnx", b"not a model\n"), k.npy("d.npy", k.digits)),
                                    MODEL, "notes.onnx"),
    "onnx-empty-file": lambda k: Case(k.run(_write(k, "empty.onnx", b""), k.npy("d.npy", k.digits)), MODEL,
                                      "empty.onnx"),
    "onnx-truncated": lambda k: Case(k.run(_write(k, "cut.onnx", k.onnx.read_bytes()[:5000]),
                                           k.npy("d.npy", k.digits)), MODEL, "cut.onnx"),
    "onnx-wrong-input-name": lambda k: Case(k.run(k.onnx_copy("named.onnx", _rename_input), k.npy("d.npy", k.digits)),
                                            MODEL, "named.onnx"),
    "onnx-wrong-input-shape": lambda k: Case(k.run(k.onnx_copy("small.onnx", _input_28x28),
                                                   k.npy("d.npy", k.digits)), MODEL, "small.onnx"),
    "onnx-without-contract": lambda k: Case(k.run(k.onnx_copy("bare.onnx", _strip_contract), k.npy("d.npy", k.digits)),
                                            MODEL, "bare.onnx"),
    "onnx-external-data": lambda k: Case(k.run(_external_data(k), k.npy("d.npy", k.digits)), MODEL, "external.onnx",
                                         "refers to external data file 'external.weights' (refused"),
    "onnx-larger-than-cap": lambda k: Case(k.run(k.onnx_copy("huge.onnx", _pad_beyond_cap), k.npy("d.npy", k.digits)),
                                           MODEL, "huge.onnx"),
    # ---- checkpoints (export, train --resume)
    "checkpoint-not-safetensors": lambda k: Case(k.export(k.checkpoint_copy(b"weights, honestly\n")), MODEL,
                                                 "ckpt.safetensors"),
    "checkpoint-empty-file": lambda k: Case(k.export(k.checkpoint_copy(b"")), MODEL, "ckpt.safetensors"),
    "checkpoint-changed-weights": lambda k: Case(k.export(_tampered_checkpoint(k)), MODEL, "ckpt.safetensors"),
    "checkpoint-of-another-variant": lambda k: Case(k.export(k.checkpoint_copy(variant="lenet5")), MODEL,
                                                    "ckpt.safetensors"),
    "checkpoint-missing-tensor": lambda k: Case(k.export(k.checkpoint_copy(_safetensors(
        {n: t for n, t in _tensors(k).items() if not n.startswith("F6")}))), MODEL, "ckpt.safetensors"),
    "checkpoint-unexpected-tensor": lambda k: Case(k.export(k.checkpoint_copy(_safetensors(
        {**_tensors(k), "extra.weight": _tensors(k)["C1.0.weight"]}))), MODEL, "ckpt.safetensors"),
    "checkpoint-pickle-never-unpickled": lambda k: Case(k.export(_pickled_checkpoint(k)), MODEL, "ckpt.safetensors",
                                                        "never unpickled"),
    "checkpoint-resume-another-variant": lambda k: Case(
        ["train", "--variant", "lenet5", "--resume", "--epochs", "2", "-o", str(_full_checkpoint_copy(k)),
         "--data-dir", str(k.mnist)], MODEL, "ckpt.safetensors"),
    # ---- batch sizes
    "batch-size-zero": lambda k: Case(k.run(k.onnx, k.npy("d.npy", k.digits), extra=["--batch-size", "0"]), USAGE,
                                      "Invalid value for '--batch-size'"),
    "batch-size-negative": lambda k: Case(k.run(k.onnx, k.npy("d.npy", k.digits), extra=["--batch-size", "-8"]),
                                          USAGE, "Invalid value for '--batch-size'"),
    "batch-size-huge": lambda k: Case(k.run(k.onnx, k.npy("d.npy", k.digits), extra=["--batch-size", "10000000"]),
                                      USAGE, "Invalid value for '--batch-size'"),
    "batch-size-zero-evaluate": lambda k: Case(["evaluate", str(k.onnx), "--data-dir", str(k.mnist),
                                                "--batch-size", "0"], USAGE, "Invalid value for '--batch-size'"),
    "batch-size-zero-bench": lambda k: Case(["bench", str(k.onnx), "--data-dir", str(k.mnist), "--batch-sizes", "0",
                                             "-o", str(k.tmp / "bench.json")], USAGE,
                                            "Invalid value for '--batch-sizes'"),
    "batch-size-zero-train": lambda k: Case(["train", "--batch-size", "0", "-o", str(k.tmp / "m.safetensors"),
                                             "--data-dir", str(k.mnist)], USAGE, "Invalid value for '--batch-size'"),
    # ---- calibration images (quantize)
    "calibration-no-images": lambda k: Case(
        ["quantize", str(k.onnx), "-o", str(k.tmp / "int8.onnx"), "--data-dir", str(k.mnist),
         "--calibration-images", str(k.npy("none.npy", np.zeros((0, 28, 28), np.uint8)))], DATA, "none.npy"),
    "calibration-count-zero": lambda k: Case(
        ["quantize", str(k.onnx), "-o", str(k.tmp / "int8.onnx"), "--data-dir", str(k.mnist),
         "--calibration-count", "0"], DATA, "calibration count"),
    "calibration-images-nan": lambda k: Case(
        ["quantize", str(k.onnx), "-o", str(k.tmp / "int8.onnx"), "--data-dir", str(k.mnist),
         "--calibration-images", str(k.npy("nan.npy", _with(k.digits.astype(np.float32), np.nan)))], DATA, "nan.npy"),
    # ---- outputs: a directory nothing can be written in
    "output-unwritable-run": lambda k: Case(k.run(k.onnx, k.npy("d.npy", k.digits), extra=[
        "-o", str(_unwritable_dir(k.tmp) / "p.csv")]), OUTPUT, "p.csv"),
    "output-unwritable-export": lambda k: Case(k.export(k.checkpoint, _unwritable_dir(k.tmp) / "m.onnx"), OUTPUT,
                                               "m.onnx"),
    "output-unwritable-train": lambda k: Case(["train", "-o", str(_unwritable_dir(k.tmp) / "sub" / "m.safetensors"),
                                               "--data-dir", str(k.mnist)], OUTPUT, "m.safetensors"),
    "output-unwritable-quantize": lambda k: Case(
        ["quantize", str(k.onnx), "-o", str(_unwritable_dir(k.tmp) / "m.int8.onnx"), "--data-dir", str(k.mnist)],
        OUTPUT, "m.int8.onnx"),
    "output-unwritable-evaluate-png": lambda k: Case(
        ["evaluate", str(k.onnx), "--data-dir", str(k.mnist), "--png", str(_unwritable_dir(k.tmp) / "c.png")],
        OUTPUT, "c.png"),
    "output-unwritable-bench": lambda k: Case(
        ["bench", str(k.onnx), "--data-dir", str(k.mnist), "-o", str(_unwritable_dir(k.tmp) / "b.json")],
        OUTPUT, "b.json"),
    "output-unwritable-pipeline": lambda k: Case(
        ["pipeline", "--data-dir", str(k.mnist), "--out", str(_unwritable_dir(k.tmp) / "sub" / "run")],
        OUTPUT, "run"),
    # ---- outputs that exist, without --force
    "output-exists-run": lambda k: Case(k.run(k.onnx, k.npy("d.npy", k.digits), extra=[
        "-o", str(_write(k, "p.csv", b"earlier predictions\n"))]), OUTPUT, "p.csv"),
    "output-exists-export": lambda k: Case(k.export(k.checkpoint, _write(k, "m.onnx", b"earlier model")), OUTPUT,
                                           "m.onnx"),
    "output-exists-train": lambda k: Case(["train", "-o", str(_write(k, "m.safetensors", b"earlier")),
                                           "--data-dir", str(k.mnist)], OUTPUT, "m.safetensors"),
    "output-exists-quantize": lambda k: Case(
        ["quantize", str(k.onnx), "-o", str(_write(k, "m.int8.onnx", b"earlier")), "--data-dir", str(k.mnist)],
        OUTPUT, "m.int8.onnx"),
    "output-exists-evaluate-png": lambda k: Case(
        ["evaluate", str(k.onnx), "--data-dir", str(k.mnist), "--png", str(_write(k, "c.png", b"earlier"))],
        OUTPUT, "c.png"),
    "output-exists-bench-table": lambda k: Case(  # b.json is new, but the table beside it exists
        ["bench", str(k.onnx), "--data-dir", str(k.mnist), "-o",
         str(_write(k, "b.md", b"earlier").with_suffix(".json"))], OUTPUT, "b.md"),
    "output-exists-pipeline": lambda k: Case(
        ["pipeline", "--data-dir", str(k.mnist), "--out", str(_mkdir(k.tmp / "run"))], OUTPUT, "run"),
}


def _write(kit: Kit, name: str, data: bytes) -> Path:
    (kit.tmp / name).write_bytes(data)
    return kit.tmp / name


def _mkdir(path: Path) -> Path:
    path.mkdir()
    (path / "report.md").write_text("an earlier run\n")
    return path


def _with(array: np.ndarray, value: float) -> np.ndarray:
    array[3, 14, 14] = value
    return array


def _png_bytes(kit: Kit) -> bytes:
    path = _png(kit, "whole.png", Image.fromarray(kit.digits[0]))
    data = path.read_bytes()
    path.unlink()
    return data


def _npy_bytes(kit: Kit) -> bytes:
    path = kit.npy("whole.npy", kit.digits)
    data = path.read_bytes()
    path.unlink()
    return data


def _bomb_png() -> bytes:
    """A PNG header declaring 100,000 x 100,000 pixels (10 gigapixels) and one tiny data chunk."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))


def _pickled_npy(kit: Kit) -> Path:
    marker = kit.tmp.parent / f"{kit.tmp.name}-unpickled"
    array = np.empty(2, dtype=object)
    array[0], array[1] = _Payload(marker), 1
    return kit.npy("objects.npy", array)


def _pickled_checkpoint(kit: Kit) -> Path:
    marker = kit.tmp.parent / f"{kit.tmp.name}-unpickled"
    return kit.checkpoint_copy(pickle.dumps({"C1.0.weight": _Payload(marker)}))


def _tampered_checkpoint(kit: Kit) -> Path:
    path = kit.checkpoint_copy()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))  # the JSON keeps the original sha256
    return path


def _full_checkpoint_copy(kit: Kit) -> Path:
    """The checkpoint with its JSON and optimizer state, as train --resume reads them."""
    from lenet_edge.train.checkpoint import meta_path, resume_path

    out = kit.tmp / "ckpt.safetensors"
    for place in (lambda p: p, meta_path, resume_path):
        shutil.copy(place(kit.checkpoint), place(out))
    return out


# ----------------------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def real_digits(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(mnist_dir / TEST_IMAGES), read_idx(mnist_dir / TEST_LABELS)
    return images[:8], labels[:8]


@pytest.fixture
def kit(tmp_path, mnist_dir, modern_onnx, modern_checkpoint, real_digits) -> Kit:
    work = tmp_path / "work"
    work.mkdir()
    yield Kit(work, mnist_dir, modern_onnx, modern_checkpoint, *real_digits)
    for path in work.rglob("*"):  # a read-only directory made by a case: let pytest clean up
        if path.is_dir():
            path.chmod(0o755)


def _snapshot(*directories: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for d in directories for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, kit, modern_onnx, modern_checkpoint):
    case = CASES[name](kit)
    watched = (kit.tmp, modern_onnx.parent, modern_checkpoint.parent)
    before = _snapshot(*watched)
    result = CliRunner().invoke(cli, case.args)
    line = one_error_line(result.stderr)
    assert result.exit_code == case.code, line
    assert case.names in line and case.says in line, line
    assert result.stdout == ""
    assert _snapshot(*watched) == before  # nothing written, nothing changed, no temporary file
    assert not list(kit.tmp.parent.glob("*-unpickled")), "a file's pickle was executed"


# ----------------------------------------------------------------------------- converted images


def _convertible(digit: np.ndarray) -> dict[str, Callable[[Path], Path]]:
    """The digit saved in the modes and sizes the documented rules convert (lenet_edge.runtime.inputs)."""
    paper = 255 - digit  # dark ink on light paper

    def save(name, image, **params):
        def build(directory: Path) -> Path:
            image.save(directory / name, **params)
            return directory / name
        return build

    rgb = np.stack([paper, paper * 0.9, paper * 0.8], axis=-1).astype(np.uint8)  # a tinted photo of paper
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit  # black ink whose opacity is the digit, on a transparent background
    wide = Image.fromarray(paper).resize((61, 45), Image.Resampling.BICUBIC)
    return {
        "rgb": save("rgb.png", Image.fromarray(rgb)),
        "rgba": save("rgba.png", Image.fromarray(rgba)),
        "16-bit": save("deep.png", Image.fromarray(digit.astype(np.uint16) * 257)),
        "palette": save("palette.gif", Image.fromarray(rgb).quantize(colors=64)),
        "odd-size": save("wide.png", wide),
        "bilevel": save("bilevel.bmp", Image.fromarray(digit).convert("1", dither=Image.Dither.NONE)),
        "jpeg": save("photo.jpg", Image.fromarray(rgb), quality=80),
    }


@pytest.mark.parametrize("mode", ["rgb", "rgba", "16-bit", "palette", "odd-size", "bilevel", "jpeg"])
def test_images_of_other_modes_and_sizes_are_converted_and_classified(mode, tmp_path, modern_onnx, real_digits):
    images, labels = real_digits
    paths = [_convertible(images[i])[mode](_mkdir_fresh(tmp_path / str(i))) for i in range(len(images))]
    result = CliRunner().invoke(cli, ["run", str(modern_onnx), *map(str, paths), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    predicted = [int(r["label"]) for r in json.loads(result.stdout)]
    assert predicted == labels.tolist()


def _mkdir_fresh(path: Path) -> Path:
    path.mkdir()
    return path


# ----------------------------------------------------------------------------- the real process


@pytest.mark.parametrize("name", ["idx-gzip-far-larger-than-header", "npy-objects-never-unpickled",
                                  "onnx-external-data", "checkpoint-pickle-never-unpickled"])
def test_the_installed_command_prints_one_line_and_no_traceback(name, kit):
    """The same refusals from `lenet-edge` itself in a child process: what a user's terminal shows."""
    case = CASES[name](kit)
    before = _snapshot(kit.tmp)
    command = Path(sys.executable).with_name("lenet-edge")
    result = subprocess.run([str(command), *case.args], capture_output=True, text=True, timeout=300)
    assert result.returncode == case.code, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert case.names in result.stderr and case.says in result.stderr
    assert result.stdout == ""
    assert _snapshot(kit.tmp) == before and not list(kit.tmp.parent.glob("*-unpickled"))


def test_debug_shows_the_traceback(kit):
    case = CASES["onnx-external-data"](kit)
    command = Path(sys.executable).with_name("lenet-edge")
    result = subprocess.run([str(command), "--debug", *case.args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "ModelError" in result.stderr
