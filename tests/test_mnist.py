"""The strict IDX reader, MNIST loading and the preprocessing (hermetic, synthetic files)."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenet_edge import mnist as data
from lenet_edge.errors import DataError
from lenet_edge.mnist import (
    CLASSIC_PREPROCESSING,
    MODERN_PREPROCESSING,
    Preprocessing,
    load_mnist,
    read_idx,
)
from tests.idx_files import idx_bytes, synthetic_digits, write_idx, write_mnist_dir


def one_line_data_error(call, *match: str) -> str:
    """Run `call`, expect a DataError with a one-line message containing every `match`."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for text in match:
        assert text in message, message
    return message


# --- read_idx: valid files ---------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28),
        np.array([0, 9, 3], dtype=np.uint8),
        np.array([-128, 0, 127], dtype=np.int8),
        np.array([[-30000, 2], [3, 30000]], dtype=np.int16),
        np.array([-(2**31), 2**31 - 1], dtype=np.int32),
        np.array([1.5, -2.25e10], dtype=np.float32).reshape(1, 1, 1, 2),
        np.array([np.pi, -1e300], dtype=np.float64),
    ],
    ids=["u1-3d", "u1-1d", "i1", "i2", "i4", "f4-4d", "f8"],
)
def test_read_idx_round_trips_every_type_raw_and_gzip(tmp_path, array, gz):
    path = write_idx(tmp_path / "a.idx", array, gz=gz)
    if gz:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    out = read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_accepts_zero_records(tmp_path):
    out = read_idx(write_idx(tmp_path / "empty.idx", np.zeros((0, 28, 28), np.uint8)))
    assert out.shape == (0, 28, 28)


# --- read_idx: malformed files -----------------------------------------------------------


@pytest.mark.parametrize(
    "magic",
    [b"\x00\x00\x08\x05", b"\x00\x00\x08\x00", b"\x00\x00\x07\x03", b"\x01\x00\x08\x03",
     b"\x00\x01\x08\x01", b"PK\x03\x04"],
)
def test_wrong_magic_is_refused_with_its_value(tmp_path, magic):
    path = tmp_path / "digits.idx"
    path.write_bytes(magic + b"\x00" * 64)
    one_line_data_error(lambda: read_idx(path), "digits.idx", f"wrong magic 0x{magic.hex()}", "expected")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_empty_file_is_refused(tmp_path, gz):
    path = tmp_path / "empty.idx"
    path.write_bytes(gzip.compress(b"") if gz else b"")
    one_line_data_error(lambda: read_idx(path), "empty.idx", "expected 4 bytes, found 0")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_truncated_dimensions_are_refused(tmp_path, gz):
    raw = idx_bytes(np.zeros((3, 28, 28), np.uint8))[:9]  # magic + 5 of the 12 dimension bytes
    path = tmp_path / "short.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    one_line_data_error(lambda: read_idx(path), "short.idx", "dimensions", "expected 12 bytes, found 5")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_declared_count_larger_than_the_payload_gives_expected_and_found_sizes(tmp_path, gz):
    # The header declares 5 images of 28x28 (3,920 bytes) but only 3 are present (2,352).
    raw = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    raw = raw[:4] + struct.pack(">I", 5) + raw[8:]
    path = tmp_path / "images.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    one_line_data_error(lambda: read_idx(path), "images.idx", "(5, 28, 28)", "expected 3920 bytes, found 2352")


def test_truncated_raw_payload_is_refused(tmp_path):
    raw = idx_bytes(np.ones((4, 28, 28), np.uint8))[:-1]
    path = tmp_path / "cut.idx"
    path.write_bytes(raw)
    one_line_data_error(lambda: read_idx(path), "cut.idx", "truncated", "expected 3136 bytes, found 3135")


def test_gzip_cut_short_is_refused(tmp_path):
    # A download that stopped half-way: the deflate stream ends before its end marker.
    compressed = gzip.compress(idx_bytes(synthetic_digits(50)[0]))
    path = tmp_path / "cut.idx.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    one_line_data_error(lambda: read_idx(path), "cut.idx.gz", "gzip")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_trailing_bytes_are_refused(tmp_path, gz):
    raw = idx_bytes(np.array([1, 2, 3], np.uint8)) + b"\x00"
    path = tmp_path / "labels.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    one_line_data_error(lambda: read_idx(path), "labels.idx", "trailing bytes", "expected exactly 3 bytes", "(3,)")


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda c: c[:10] + bytes(b ^ 0xFF for b in c[10:30]) + c[30:],  # mangled deflate blocks
        lambda c: c[:-8] + bytes(b ^ 0xFF for b in c[-8:-4]) + c[-4:],  # wrong CRC32
        lambda c: c[:3] + b"\xff" + c[4:],  # reserved header flags
        lambda c: c[:2] + b"\x07" + c[3:],  # unknown compression method
        lambda c: c + b"garbage!",  # a second member that is not gzip
    ],
    ids=["deflate", "crc", "flags", "method", "trailing-garbage"],
)
def test_corrupt_gzip_is_refused(tmp_path, corrupt):
    compressed = gzip.compress(idx_bytes(synthetic_digits(20)[0]), mtime=0)
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(corrupt(compressed))
    message = one_line_data_error(lambda: read_idx(path), "bad.idx.gz")
    assert "gzip" in message or "magic" in message, message


def test_gzip_far_larger_than_its_header_is_refused_without_decompressing_it(tmp_path, monkeypatch):
    """A 3-byte IDX followed by 64 MiB of zeros inside one gzip member whose CRC is wrong:
    decompressing it all would end in a CRC error and hand out 64 MiB; the reader must
    stop right after the declared payload and report trailing bytes."""
    zeros = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, wrapped by hand below
    body = [compressor.compress(idx_bytes(np.array([1, 2, 3], np.uint8)))]
    body += [compressor.compress(zeros) for _ in range(64)]
    body.append(compressor.flush())
    header = b"\x1f\x8b\x08\x00" + b"\x00" * 4 + b"\x02\xff"
    trailer = struct.pack("<II", 0xDEADBEEF, (3 + 11 + 64 * len(zeros)) & 0xFFFFFFFF)  # CRC deliberately wrong
    path = tmp_path / "bomb.idx.gz"
    path.write_bytes(header + b"".join(body) + trailer)
    assert path.stat().st_size < 200_000

    handed_out = []
    real_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        chunk = real_read(self, size)
        handed_out.append(len(chunk))
        return chunk

    monkeypatch.setattr(gzip.GzipFile, "read", counting_read)
    one_line_data_error(lambda: read_idx(path), "bomb.idx.gz", "trailing bytes", "expected exactly 3 bytes")
    assert sum(handed_out) <= 4 + 4 + 3 + 1, handed_out


@pytest.mark.parametrize(
    "dims",
    [(65536, 65536, 65536, 65536), (2**32 - 1,) * 4, (60000, 28, 28, 1000)],
    ids=["wraps-int64-to-0", "wraps-int64-negative", "huge"],
)
def test_header_declaring_an_absurd_size_is_refused_before_reading(tmp_path, dims):
    path = tmp_path / "huge.idx"
    path.write_bytes(bytes([0, 0, 0x0E, 4]) + struct.pack(">4I", *dims) + b"\x00" * 16)
    one_line_data_error(lambda: read_idx(path), "huge.idx", "header declares", f"at most {data.MAX_IDX_BYTES}")


def test_missing_file_and_directory_are_refused(tmp_path):
    one_line_data_error(lambda: read_idx(tmp_path / "nope.idx"), "nope.idx", "no such file")
    one_line_data_error(lambda: read_idx(tmp_path), str(tmp_path), "a directory, not a regular file")


# --- read_idx: property tests --------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_only_data_errors(path, blob: bytes) -> None:
    path.write_bytes(blob)
    try:
        out = read_idx(path)
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(out, np.ndarray)
    assert 1 <= out.ndim <= 4 and out.dtype.isnative


@FUZZ
@given(blob=st.binary(max_size=600))
def test_random_bytes_only_ever_raise_data_error(tmp_path, blob):
    _read_only_data_errors(tmp_path / "fuzz.idx", blob)


@FUZZ
@given(blob=st.binary(max_size=400))
def test_random_bytes_behind_a_gzip_magic_only_ever_raise_data_error(tmp_path, blob):
    _read_only_data_errors(tmp_path / "fuzz.idx.gz", b"\x1f\x8b" + blob)


_VALID = [
    idx_bytes(np.arange(6 * 5 * 4, dtype=np.uint8).reshape(6, 5, 4)),
    idx_bytes(np.array([3, 1, 4, 1, 5, 9, 2, 6], np.uint8)),
    idx_bytes(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 2, 2, 1)),
    idx_bytes(np.array([7, -7, 300], np.int16)),
]


@st.composite
def mutated_idx(draw):
    """A valid IDX file with random byte flips, cuts, insertions or header rewrites."""
    blob = bytearray(draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "header"]))
        if kind == "flip" and blob:
            i = draw(st.integers(0, len(blob) - 1))
            blob[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            blob = blob[: draw(st.integers(0, len(blob)))]
        elif kind == "insert":
            i = draw(st.integers(0, len(blob)))
            blob[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "header" and len(blob) >= 8:
            # rewrite the type, the rank, or one dimension with an arbitrary u32
            i = draw(st.sampled_from([2, 3, 4, 8]))
            width = 1 if i < 4 else 4
            blob[i:i + width] = draw(st.integers(0, 2 ** (8 * width) - 1)).to_bytes(width, "big")
    return bytes(blob), draw(st.booleans())


@FUZZ
@given(case=mutated_idx())
def test_mutated_idx_files_only_ever_raise_data_error(tmp_path, case):
    blob, gz = case
    _read_only_data_errors(tmp_path / "mutated.idx", gzip.compress(blob) if gz else blob)


@FUZZ
@given(case=mutated_idx(), cut=st.integers(0, 200))
def test_mutated_gzip_streams_only_ever_raise_data_error(tmp_path, case, cut):
    compressed = bytearray(gzip.compress(case[0], mtime=0))
    if len(compressed) > 2:
        i = 2 + cut % (len(compressed) - 2)
        compressed[i] ^= 0x5A
    _read_only_data_errors(tmp_path / "mutated.idx.gz", bytes(compressed))


# --- load_mnist ------------------------------------------------------------------------------


def test_load_mnist_decodes_a_split_once_until_its_files_change(tmp_path, monkeypatch):
    directory = write_mnist_dir(tmp_path / "mnist", train=10, test=20)
    decoded = []
    real = data.read_idx
    monkeypatch.setattr(data, "read_idx", lambda path: decoded.append(path.name) or real(path))
    first, again = load_mnist(directory, "test"), load_mnist(directory, "test")
    assert decoded == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert again[0] is first[0] and again[1] is first[1]
    with pytest.raises(ValueError, match="read-only"):
        first[0][0, 0, 0] = 1  # shared by every stage of the process: nobody may change it

    images, labels = synthetic_digits(5, seed=9)  # the file is replaced: decoded afresh
    write_idx(directory / "t10k-images-idx3-ubyte.gz", images, True)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", labels, True)
    assert len(load_mnist(directory, "test")[0]) == 5 and len(decoded) == 4


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_load_mnist_reads_both_splits_raw_and_gzip(tmp_path, gz):
    directory = write_mnist_dir(tmp_path / "mnist", train=30, test=20, gz=gz)
    for split, count, seed in (("train", 30, 1), ("test", 20, 2)):
        images, labels = load_mnist(directory, split)
        expected_images, expected_labels = synthetic_digits(count, seed)
        assert images.dtype == np.uint8 and images.shape == (count, 28, 28)
        assert labels.dtype == np.int64 and labels.shape == (count,)
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)


def _mnist_dir_with(tmp_path, images=None, labels=None):
    directory = write_mnist_dir(tmp_path / "mnist", train=10, test=10)
    if images is not None:
        write_idx(directory / "t10k-images-idx3-ubyte.gz", images)
    if labels is not None:
        write_idx(directory / "t10k-labels-idx1-ubyte.gz", labels)
    return directory


def test_image_and_label_counts_must_match(tmp_path):
    directory = _mnist_dir_with(tmp_path, labels=np.zeros(9, np.uint8))
    one_line_data_error(lambda: load_mnist(directory, "test"), "10 images but 9 labels", "test split")


def test_label_out_of_range_names_the_record(tmp_path):
    labels = np.zeros(10, np.uint8)
    labels[7] = 10
    directory = _mnist_dir_with(tmp_path, labels=labels)
    one_line_data_error(lambda: load_mnist(directory, "test"),
                        "t10k-labels-idx1-ubyte.gz", "label 10 at record 7", "expected 0..9")


def test_zero_records_are_refused(tmp_path):
    directory = _mnist_dir_with(tmp_path, images=np.zeros((0, 28, 28), np.uint8), labels=np.zeros(0, np.uint8))
    one_line_data_error(lambda: load_mnist(directory, "test"), "no records")


@pytest.mark.parametrize(
    "images, labels, found",
    [
        (np.zeros((10, 32, 32), np.uint8), None, "(10, 32, 32)"),
        (np.zeros((10, 28, 28), np.float32), None, "float32"),
        (np.zeros((10, 784), np.uint8), None, "(10, 784)"),
        (None, np.zeros((10, 1), np.uint8), "(10, 1)"),
        (None, np.zeros(10, np.int32), "int32"),
    ],
    ids=["32x32", "float-images", "flat-images", "2d-labels", "int32-labels"],
)
def test_wrong_shapes_and_types_are_refused(tmp_path, images, labels, found):
    directory = _mnist_dir_with(tmp_path, images=images, labels=labels)
    one_line_data_error(lambda: load_mnist(directory, "test"), "expected", found)


def test_missing_directory_and_missing_files_are_named(tmp_path):
    one_line_data_error(lambda: load_mnist(tmp_path / "absent", "train"), "absent", "not a directory")
    directory = write_mnist_dir(tmp_path / "mnist", train=10, test=10)
    (directory / "train-labels-idx1-ubyte.gz").unlink()
    one_line_data_error(lambda: load_mnist(directory, "train"), "train-labels-idx1-ubyte", "missing")


def test_a_swapped_file_is_refused(tmp_path):
    """Labels where images belong: caught by the shape check, not by a crash later."""
    directory = write_mnist_dir(tmp_path / "mnist", train=10, test=10)
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes((directory / "t10k-labels-idx1-ubyte.gz").read_bytes())
    one_line_data_error(lambda: load_mnist(directory, "test"), "t10k-images-idx3-ubyte.gz", "(N, 28, 28)")


# --- Preprocessing ---------------------------------------------------------------------------


def test_padding_to_32x32_fills_the_border_with_background():
    images = np.full((3, 28, 28), 255, np.uint8)
    for prep in (MODERN_PREPROCESSING, CLASSIC_PREPROCESSING):
        x = prep(images)
        assert x.shape == (3, 1, 32, 32) and x.dtype == np.float32
        background = (0.0 - prep.mean) / prep.std
        foreground = (1.0 - prep.mean) / prep.std
        border = np.ones((32, 32), bool)
        border[2:30, 2:30] = False
        np.testing.assert_allclose(x[:, 0][:, border], background, rtol=0, atol=1e-6)
        np.testing.assert_allclose(x[:, 0, 2:30, 2:30], foreground, rtol=0, atol=1e-6)


def test_classic_preprocessing_matches_lecun_1998():
    # Background (white paper) -0.1, foreground (ink) 1.175: mean ~0, variance ~1.
    x = CLASSIC_PREPROCESSING(np.array([[[0] * 27 + [255]] * 28], np.uint8))
    assert x[0, 0, 0, 0] == pytest.approx(-0.1, abs=1e-6)
    assert x[0, 0, 2, 29] == pytest.approx(1.175, abs=1e-6)
    assert x[0, 0, 2, 2] == pytest.approx(-0.1, abs=1e-6)


def test_modern_preprocessing_uses_mnist_mean_and_std():
    assert (MODERN_PREPROCESSING.mean, MODERN_PREPROCESSING.std) == (0.1307, 0.3081)
    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(1, 28, 28)  # 0..255 repeating
    x = MODERN_PREPROCESSING(pixels)
    expected = (pixels.astype(np.float64) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(x[0, 0, 2:30, 2:30], expected[0], rtol=1e-6, atol=1e-6)
    assert x[0, 0, 0, 0] == pytest.approx(-0.1307 / 0.3081, abs=1e-6)


def test_preprocessing_accepts_float_pixels_like_uint8():
    images, _ = synthetic_digits(4)
    np.testing.assert_array_equal(MODERN_PREPROCESSING(images), MODERN_PREPROCESSING(images.astype(np.float64)))


@pytest.mark.parametrize(
    "shape", [(28, 28), (1, 1, 28, 28), (2, 32, 32), (2, 28, 27), (0,), ()],
)
def test_preprocessing_refuses_bad_shapes(shape):
    bad = np.zeros(shape, np.uint8)
    one_line_data_error(lambda: MODERN_PREPROCESSING(bad), "expected images of shape (N, 28, 28)", str(shape))


def test_preprocessing_round_trips_through_a_dict():
    for prep in (MODERN_PREPROCESSING, CLASSIC_PREPROCESSING, Preprocessing(0.5, 0.25, 30, 1, "dark-on-light")):
        assert Preprocessing.from_dict(prep.to_dict()) == prep
    one_line_data_error(lambda: Preprocessing.from_dict({"mean": 0.1}), "without std, input_size, pad, polarity")
    one_line_data_error(lambda: Preprocessing.from_dict({**MODERN_PREPROCESSING.to_dict(), "std": "x"}),
                        "expected finite numbers")


def test_data_module_stays_free_of_torch_and_onnx():
    import subprocess
    import sys

    code = ("import sys, lenet_edge.mnist, lenet_edge.mnist_download, lenet_edge.contract; "
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime.quantization') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
