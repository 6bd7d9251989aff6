"""Builders of small synthetic IDX files and MNIST-style directories for hermetic tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from lenet_edge.mnist import IDX_DTYPES

TYPE_CODES = {dtype: code for code, dtype in IDX_DTYPES.items()}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array`: magic 0x0000TTNN, big-endian u32 dims, big-endian payload."""
    dtype = np.dtype(array.dtype).newbyteorder(">")
    code = TYPE_CODES[dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def synthetic_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(count, 28, 28) uint8 images and (count,) uint8 labels; each class is a bright
    bar at its own position plus noise, so that a tiny training run has something to learn."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 3 + 2 * int(label)
        images[i, row:row + 2, 4:24] = 255
    return images, labels


def write_mnist_dir(directory: Path, train: int = 200, test: int = 100, gz: bool = True) -> Path:
    """A directory with the four MNIST file names holding synthetic digits."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, count, seed in (("train", train, 1), ("t10k", test, 2)):
        images, labels = synthetic_digits(count, seed)
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels, gz)
    return directory
