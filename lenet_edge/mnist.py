"""MNIST data: a strict IDX reader, the dataset directory, and the one preprocessing.

numpy only: the device side imports this module, so it never imports torch or onnx.
"""

from __future__ import annotations

import functools
import gzip
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .reading import check_file

# IDX type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_IDX_BYTES = 1 << 30  # 1 GiB of payload: ~17x the full MNIST; anything larger is refused
NUM_CLASSES = 10
CLASS_LABELS = tuple(str(d) for d in range(NUM_CLASSES))
DIGIT_SIDE = 28  # MNIST's digit field, in pixels
POLARITIES = ("light-on-dark", "dark-on-light")

# The first 512 official test digits, carried in the package so that bench runs without network or
# data directory: 512 covers the default batch sizes (up to 256) twice; 80 KiB as a compressed .npz.
# Made by scripts/make_bench_digits.py from the published t10k files (checked against their MD5).
BENCH_DIGITS = "bench_digits.npz"

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _open(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read_exact(f, n: int, path: Path, what: str) -> bytes:
    try:
        data = f.read(n)
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt or truncated gzip stream while reading {what} ({exc})") from exc
    if len(data) != n:
        raise DataError(f"{path}: truncated {what}: expected {n} bytes, found {len(data)}")
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian array, checking every header field.

    Reads at most the declared payload plus one byte, so a gzip whose content is far
    larger than its header promises is refused without being decompressed in full.
    """
    path = Path(path)
    check_file(path, DataError, "an IDX file")
    try:
        f = _open(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror})") from exc
    with f:
        magic = _read_exact(f, 4, path, "IDX header")
        if magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_DTYPES or not 1 <= magic[3] <= 4:
            raise DataError(
                f"{path}: wrong magic 0x{magic.hex()} (expected 0x0000TTNN with a type code "
                f"TT in {{08,09,0b,0c,0d,0e}} and 1-4 dimensions NN)"
            )
        dtype, ndim = IDX_DTYPES[magic[2]], magic[3]
        dims = tuple(int(d) for d in np.frombuffer(_read_exact(f, 4 * ndim, path, "dimensions"), ">u4"))
        expected = math.prod(dims) * dtype.itemsize  # Python ints: four u32 dims overflow int64
        if expected > MAX_IDX_BYTES:
            raise DataError(f"{path}: header declares {dims} = {expected} bytes (expected at most {MAX_IDX_BYTES})")
        array = np.empty(expected // dtype.itemsize, dtype)  # filled straight from the file: no second copy
        _read_into(f, array.view(np.uint8), path, f"payload for shape {dims}")
        try:
            extra = f.read(1)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip stream after the payload ({exc})") from exc
        if extra:
            raise DataError(f"{path}: trailing bytes after the payload "
                            f"(expected exactly {expected} bytes for shape {dims})")
    if not dtype.isnative:  # IDX is big-endian: swap in place, then view with the native byte order
        array = array.byteswap(inplace=True).view(dtype.newbyteorder("="))
    try:
        return array.reshape(dims)
    except ValueError as exc:  # e.g. (0, 2**32 - 1, 2**32 - 1): no data, but no array has that shape
        raise DataError(f"{path}: header declares shape {dims}, which no array can have ({exc})") from exc


def _read_into(f, buffer: np.ndarray, path: Path, what: str) -> None:
    filled = 0
    try:
        while filled < len(buffer):
            n = f.readinto(buffer[filled:])
            if not n:
                break
            filled += n
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt or truncated gzip stream while reading {what} ({exc})") from exc
    if filled != len(buffer):
        raise DataError(f"{path}: truncated {what}: expected {len(buffer)} bytes, found {filled}")


def split_paths(data_dir: Path, split: str) -> tuple[Path, Path]:
    """The image and label files of a split, as `NAME.gz` or raw `NAME`."""
    found = []
    for name in SPLIT_FILES[split]:
        candidates = [data_dir / f"{name}.gz", data_dir / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(f"{data_dir}: missing {name}.gz (expected the MNIST {split} files in IDX form)")
        found.append(path)
    return found[0], found[1]


def load_mnist(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the 'train' or 'test' split, read-only.

    Decoded once per process while the files stay the same: a pipeline's stages each read the
    test split (train's test accuracy, export's parity, quantize, evaluate of both models,
    bench), and decoding it takes ~0.6 s (the training split ~1.4 s) on a busy 2-core machine.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory (expected a directory of MNIST IDX files)")
    image_path, label_path = split_paths(data_dir, split)
    return _decode_split(image_path, label_path, split, _identity(image_path), _identity(label_path))


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is replaced or rewritten: the cache key beside its path."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=4)  # both splits of up to two directories: ~50 MB at most
def _decode_split(image_path: Path, label_path: Path, split: str, *identities) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{image_path}: expected uint8 images of shape (N, 28, 28), "
                        f"found {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{label_path}: expected uint8 labels of shape (N,), found {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{label_path}: {len(images)} images but {len(labels)} labels in the {split} split "
                        f"(expected one label per image of {image_path.name})")
    if len(images) == 0:
        raise DataError(f"{image_path}: no records (expected at least one image)")
    if labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DataError(f"{label_path}: label {labels[bad]} at record {bad} (expected 0..9)")
    labels = labels.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False  # shared by every caller: nobody may change them
    return images, labels


def load_bench_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """The packaged test digits: images (N, 28, 28) uint8, labels (N,) int64, and where they came from."""
    from importlib import resources

    try:
        with resources.files(__package__).joinpath(BENCH_DIGITS).open("rb") as f, np.load(f) as saved:
            images, labels, source = saved["images"], saved["labels"], str(saved["source"])
    except (OSError, KeyError, ValueError) as exc:  # a broken install; np.load never unpickles (allow_pickle off)
        raise DataError(f"{BENCH_DIGITS}: the packaged test digits cannot be read ({exc}); "
                        f"reinstall lenet-edge or pass --data-dir") from exc
    return images, labels.astype(np.int64), source


@dataclass(frozen=True)
class Preprocessing:
    """How a 28x28 MNIST-style digit becomes a model input (N, 1, size, size) float32.

    pixel in [0, 255] -> zero-pad `pad` pixels per side -> (pixel / 255 - mean) / std.
    Polarity is MNIST's: a light digit on a dark background.
    """

    mean: float
    std: float
    input_size: int = 32
    pad: int = 2
    polarity: str = "light-on-dark"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 or float pixels in [0, 255] -> (N, 1, 32, 32) float32."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.input_size - 2 * self.pad,) * 2:
            side = self.input_size - 2 * self.pad
            raise DataError(f"expected images of shape (N, {side}, {side}), found {x.shape}")
        p = self.pad
        x = np.pad(x, ((0, 0), (p, p), (p, p)))  # (N, 32, 32), background 0
        x = (x / 255.0 - self.mean) / self.std
        return x[:, None].astype(np.float32)  # (N, 1, 32, 32)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """A record read from a file, checked: finite mean, std > 0, a pad and input size that leave
        MNIST's 28x28 digit field, a known polarity (anything else would turn every input into
        Inf or NaN, or crop the digit away)."""
        fields = ("mean", "std", "input_size", "pad", "polarity")
        missing = [k for k in fields if not isinstance(d, dict) or k not in d]
        if missing:
            raise DataError(f"preprocessing record without {', '.join(missing)} (expected {', '.join(fields)})")
        number = (int, float)
        if not all(isinstance(d[k], number) and not isinstance(d[k], bool) and math.isfinite(d[k])
                   for k in ("mean", "std")) or not d["std"] > 0:
            raise DataError(f"preprocessing mean {d['mean']!r} and std {d['std']!r} (expected finite numbers, "
                            f"std above 0)")
        if not all(isinstance(d[k], int) and not isinstance(d[k], bool) for k in ("input_size", "pad")) \
                or d["pad"] < 0 or d["input_size"] - 2 * d["pad"] != DIGIT_SIDE:
            raise DataError(f"preprocessing input_size {d['input_size']!r} and pad {d['pad']!r} (expected integers "
                            f"that leave MNIST's {DIGIT_SIDE}x{DIGIT_SIDE} digit field: input_size = "
                            f"{DIGIT_SIDE} + 2 * pad, pad 0 or more)")
        if d["polarity"] not in POLARITIES:
            raise DataError(f"preprocessing polarity {d['polarity']!r} (expected one of {', '.join(POLARITIES)})")
        return cls(mean=float(d["mean"]), std=float(d["std"]), input_size=d["input_size"], pad=d["pad"],
                   polarity=d["polarity"])


# MNIST's own statistics, the usual choice for ReLU networks.
MODERN_PREPROCESSING = Preprocessing(mean=0.1307, std=0.3081)
# LeCun et al. 1998: background -0.1 and foreground 1.175, so the inputs have mean ~0 and
# variance ~1; i.e. x * 1.275 - 0.1 with x = pixel / 255.
CLASSIC_PREPROCESSING = Preprocessing(mean=0.1 / 1.275, std=1 / 1.275)
