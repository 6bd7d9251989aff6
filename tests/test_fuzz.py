"""Property tests: random and mutated bytes into every loader of untrusted files.

The image loader (with .npy and IDX behind it, as `lenet-edge run` reads inputs), the ONNX
model loader and the checkpoint loader either accept a file or raise one of lenet-edge's
own errors: never another exception, a hang (a per-example alarm) or a crash of the
process. The IDX reader's own properties are in tests/test_mnist.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lenet_edge.errors import LenetEdgeError
from lenet_edge.mnist import MODERN_PREPROCESSING
from lenet_edge.runtime.inputs import open_input
from lenet_edge.runtime.session import load_model
from tests.idx_files import idx_bytes, synthetic_digits

EXAMPLE_SECONDS = 20  # far beyond what one example takes: more means the loader hangs
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@contextlib.contextmanager
def bounded():
    """Fail an example that runs longer than EXAMPLE_SECONDS instead of hanging the suite."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"a loader ran longer than {EXAMPLE_SECONDS} s on one file")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(EXAMPLE_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def accepts_or_refuses(load, path: Path, capfd):
    """Run a loader: a result, or None when it refused the file with a LenetEdgeError.

    Either way it prints nothing itself (the CLI's one error line must be the only output):
    file descriptors 1 and 2 are checked, where C libraries write."""
    with bounded():
        try:
            result = load(path)
        except LenetEdgeError:
            result = None
    assert capfd.readouterr() == ("", ""), "the loader printed something"
    return result


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """One of `seeds` with a few bytes changed, a run inserted or deleted, and maybe cut short."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()) and data:
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=16))
    if draw(st.booleans()) and data:
        at = draw(st.integers(0, len(data) - 1))
        del data[at:at + draw(st.integers(1, 16))]
    if draw(st.integers(0, 3)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


# ----------------------------------------------------------------------------- inputs of `run`


def _image_seeds() -> list[bytes]:
    digit = synthetic_digits(1, seed=5)[0][0]  # (28, 28) uint8
    rgb = np.stack([digit, 255 - digit, digit // 2], axis=-1)
    rgba = np.dstack([rgb, digit])
    seeds = []
    for image, fmt, params in [
        (Image.fromarray(digit), "PNG", {}),
        (Image.fromarray(rgba), "PNG", {}),
        (Image.fromarray(digit.astype(np.uint16) * 257), "PNG", {}),
        (Image.fromarray(rgb).quantize(16), "GIF", {}),
        (Image.fromarray(rgb), "JPEG", {"quality": 70}),
        (Image.fromarray(digit), "BMP", {}),
        (Image.fromarray(rgb), "TIFF", {"compression": "tiff_lzw"}),
        (Image.fromarray(rgb), "WEBP", {"lossless": True}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **params)
        seeds.append(buffer.getvalue())
    return seeds


def _array_seeds() -> list[bytes]:
    digits = synthetic_digits(3, seed=6)[0]
    seeds = [idx_bytes(digits), idx_bytes(digits[0])]
    for array in (digits, digits.astype(np.float32), np.zeros((2, 1, 32, 32), np.float32)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        seeds.append(buffer.getvalue())
    return seeds


IMAGE_SEEDS, ARRAY_SEEDS = _image_seeds(), _array_seeds()


def _open(path: Path):
    return open_input(path, MODERN_PREPROCESSING)


def _check_input(source) -> None:
    """What open_input accepts is what the model can take."""
    if source is None:
        return
    assert source.records >= 1
    assert source.data.ndim in (3, 4) and np.isfinite(np.asarray(source.data[:1], dtype=np.float64)).all()


@settings(FUZZ, max_examples=150)
@given(blob=st.binary(max_size=3000))
def test_random_bytes_into_the_input_loader(tmp_path, capfd, blob):
    path = tmp_path / "input"
    path.write_bytes(blob)
    _check_input(accepts_or_refuses(_open, path, capfd))


@settings(FUZZ, max_examples=250)
@given(blob=mutated(IMAGE_SEEDS))
def test_mutated_images_into_the_input_loader(tmp_path, capfd, blob):
    path = tmp_path / "image"
    path.write_bytes(blob)
    _check_input(accepts_or_refuses(_open, path, capfd))


@settings(FUZZ, max_examples=150)
@given(blob=mutated(ARRAY_SEEDS))
def test_mutated_npy_and_idx_into_the_input_loader(tmp_path, capfd, blob):
    path = tmp_path / "array"
    path.write_bytes(blob)
    _check_input(accepts_or_refuses(_open, path, capfd))


def test_the_seeds_themselves_load(tmp_path):
    """The mutations start from files the loader accepts (else the properties would test little)."""
    for i, blob in enumerate(IMAGE_SEEDS + ARRAY_SEEDS):
        path = tmp_path / f"seed{i}"
        path.write_bytes(blob)
        assert _open(path).records >= 1


# Files that fuzzing found to escape as other exceptions (or to print), kept as regressions.


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _npy_with_header(text: str) -> bytes:
    import struct

    body = text.encode("latin1")
    body += b" " * (-(10 + len(body) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body + bytes(3 * 28 * 28)


@pytest.mark.parametrize("blob, message", [
    (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", b"\0\0\0\x1c\0"), "cannot read (ValueError: Truncated IHDR chunk)"),
    (_npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 28, 28"), "malformed .npy header"),
    (_flip(IMAGE_SEEDS[6], 8), "corrupt or truncated TIFF image"),  # libtiff prints "Using code not yet in table"
    (bytes([0, 0, 0x0D, 3]) + (0).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big") * 2,
     "which no array can have"),  # no payload, but numpy has no array of that shape: ValueError
], ids=["png-short-ihdr-valueerror", "npy-header-tokenerror", "tiff-bad-lzw-code", "idx-empty-impossible-shape"])
def test_found_input_files_are_data_errors_and_print_nothing(tmp_path, capfd, blob, message):
    from lenet_edge.errors import DataError

    path = tmp_path / "found"
    path.write_bytes(blob)
    with pytest.raises(DataError) as info:
        _open(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert capfd.readouterr() == ("", "")


# ----------------------------------------------------------------------------- ONNX models


@pytest.fixture(scope="module")
def model_seeds(tmp_path_factory) -> list[bytes]:
    from tests.runtime_models import band_model, random_model

    directory = tmp_path_factory.mktemp("seeds")
    return [band_model(directory / "band.onnx").read_bytes(), random_model(directory / "random.onnx").read_bytes()]


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_random_and_mutated_bytes_into_the_model_loader(tmp_path, capfd, model_seeds, data):
    blob = data.draw(st.one_of(st.binary(max_size=2000), mutated(model_seeds)))
    path = tmp_path / "model.onnx"
    path.write_bytes(blob)
    model = accepts_or_refuses(load_model, path, capfd)
    if model is not None:  # a mutation it survived (e.g. in a name): the contract was still checked
        assert model.contract.preprocessing.input_size == 32


def test_metadata_that_is_not_utf8_is_a_model_error(tmp_path, capfd, model_seeds):
    """protobuf fields appended to a valid model: a metadata entry {"x": b"\\xff"} (ModelProto field 14)."""
    from lenet_edge.errors import ModelError

    entry = b"\x0a\x01x" + b"\x12\x01\xff"  # StringStringEntryProto key = "x", value = 0xff
    path = tmp_path / "latin.onnx"
    path.write_bytes(model_seeds[0] + b"\x72" + bytes([len(entry)]) + entry)
    with pytest.raises(ModelError, match=r"latin\.onnx: (metadata or names that are not UTF-8 text|not a loadable)"):
        load_model(path)
    assert capfd.readouterr() == ("", "")  # no "EP Error ... Falling back" banner from onnxruntime


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint_seed(tmp_path_factory) -> tuple[bytes, dict]:
    from lenet_edge.train.checkpoint import save_checkpoint
    from lenet_edge.train.models import build_model

    out = tmp_path_factory.mktemp("checkpoint") / "seed.safetensors"
    save_checkpoint(out, build_model("lenet5-modern"), {"epoch": 1, "history": []})
    return out.read_bytes(), json.loads(out.with_suffix(".json").read_text())


def _load_checkpoint(path: Path):
    from lenet_edge.train.checkpoint import load_checkpoint

    return load_checkpoint(path)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_mutated_safetensors_into_the_checkpoint_loader(tmp_path, capfd, checkpoint_seed, data):
    """Mutated weights whose JSON names their sha256, so the safetensors parser itself is reached."""
    weights, meta = checkpoint_seed
    # mutate the header (the first few hundred bytes: JSON with dtypes, shapes and offsets) or anywhere
    head = data.draw(st.booleans())
    if head:
        blob = data.draw(mutated([weights[:600]])) + weights[600:]
    else:
        blob = data.draw(st.one_of(st.binary(max_size=1000), mutated([weights])))
    path = tmp_path / "ckpt.safetensors"
    path.write_bytes(blob)
    path.with_suffix(".json").write_text(json.dumps({**meta, "weights_sha256": hashlib.sha256(blob).hexdigest()}))
    accepts_or_refuses(_load_checkpoint, path, capfd)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_mutated_checkpoint_json_into_the_checkpoint_loader(tmp_path, capfd, checkpoint_seed, data):
    weights, meta = checkpoint_seed
    text = json.dumps(meta).encode()
    blob = data.draw(st.one_of(mutated([text]), st.binary(max_size=300)))
    path = tmp_path / "ckpt.safetensors"
    path.write_bytes(weights)
    path.with_suffix(".json").write_bytes(blob)
    accepts_or_refuses(_load_checkpoint, path, capfd)
