"""Write lenet_edge/bench_digits.npz: the first 512 official MNIST test digits and labels, which
`lenet-edge bench` uses when it is given no data directory (a device without network).

The source files must be the published t10k files (their MD5 is checked), so the packaged
digits are the official ones:

    python scripts/make_bench_digits.py --data-dir DIR_WITH_T10K_FILES
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from lenet_edge.errors import DataError
from lenet_edge.mnist import BENCH_DIGITS, load_mnist, split_paths
from lenet_edge.mnist_download import MD5

COUNT = 512
OUT = Path(__file__).resolve().parents[1] / "lenet_edge" / BENCH_DIGITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    try:
        for path in split_paths(args.data_dir, "test"):
            found = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
            if found != MD5.get(path.name):
                raise DataError(f"{path}: md5 {found} (expected the published {MD5.get(path.name)})")
        images, labels = load_mnist(args.data_dir, "test")
    except DataError as exc:
        sys.exit(f"error: {exc}")
    images_file = "t10k-images-idx3-ubyte.gz"
    source = f"the first {COUNT} official MNIST test images ({images_file}, md5 {MD5[images_file]})"
    np.savez_compressed(OUT, images=images[:COUNT], labels=labels[:COUNT].astype(np.uint8), source=np.array(source))
    print(f"{OUT}: {COUNT} digits, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
