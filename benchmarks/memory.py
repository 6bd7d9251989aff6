"""Peak memory of `lenet-edge evaluate` on the full test set and of `lenet-edge run` on
100,000 images, next to the size of their input. It prints figures; it is not a test.

    python benchmarks/memory.py --model model.onnx --data-dir DIR [--images 100000]
    python benchmarks/memory.py --checkpoint C.safetensors --data-dir DIR     # export first

Each command runs as its own process and its peak resident set size is its ru_maxrss, read
with os.wait4 when it ends (Linux reports KiB). Linux counts into a child's peak the size
its parent had when it forked, so each command is started by a small launcher process
(a fresh interpreter of a few MiB), not by this script, which holds the inputs. A first child only
loads the model (numpy + onnxruntime imported, session created): the floor every command
stands on, so the rest shows what the data adds. The inputs for `run` are the official
test images tiled to --images records, written once as a uint8 .npy (memory-mapped and
streamed in batches), as an uncompressed IDX file and as a float32 .npy of the same digits.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COMMAND = str(Path(sys.executable).with_name("lenet-edge"))


# argv: REPORT COMMAND ARGS...; runs the command as its own child and writes "peak_kib exit_code" to REPORT
LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def peak_rss(argv: list[str], work: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one command; exits loudly if the command fails."""
    report, stderr = work / "rss.txt", work / "stderr.txt"
    start = time.perf_counter()
    with open(work / "stdout.txt", "wb") as out, open(stderr, "wb") as err:
        subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *argv], stdout=out, stderr=err, check=True)
    seconds = time.perf_counter() - start
    peak_kib, code = map(int, report.read_text().split())
    if code != 0:
        sys.exit(f"{' '.join(argv)} failed ({code}): {stderr.read_text()}")
    return peak_kib / 1024, seconds


def write_inputs(data_dir: Path, count: int, work: Path) -> dict[str, Path]:
    """The test images tiled to `count` records: uint8 .npy, raw IDX and float32 .npy."""
    from lenet_edge.mnist import load_mnist

    images, _ = load_mnist(data_dir, "test")
    tiled = np.resize(images, (count, *images.shape[1:]))  # (count, 28, 28) uint8, the set repeated
    paths = {"npy-uint8": work / "digits.npy", "idx": work / "digits.idx", "npy-float32": work / "digits-f32.npy"}
    np.save(paths["npy-uint8"], tiled)
    header = bytes([0, 0, 0x08, 3]) + np.array(tiled.shape, ">u4").tobytes()  # IDX: ubyte, 3 dimensions
    paths["idx"].write_bytes(header + tiled.tobytes())
    np.save(paths["npy-float32"], tiled.astype(np.float32))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="fp32 ONNX model from lenet-edge export")
    parser.add_argument("--checkpoint", type=Path, help="export this checkpoint first (when --model is not given)")
    parser.add_argument("--data-dir", type=Path, required=True, help="directory of the MNIST IDX files")
    parser.add_argument("--images", type=int, default=100_000, help="records in the run inputs")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    if (args.model is None) == (args.checkpoint is None):
        parser.error("give --model or --checkpoint")

    with tempfile.TemporaryDirectory(prefix="lenet-edge-memory-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            from lenet_edge.export.exporter import export_checkpoint

            model = work / "model.onnx"
            export_checkpoint(args.checkpoint, model, data_dir=args.data_dir)
        inputs = write_inputs(args.data_dir, args.images, work)
        batch = ["--batch-size", str(args.batch_size)]
        runs = [
            ("load the model only", "-", [sys.executable, "-c", "import sys; from lenet_edge.runtime.session import "
                                                               "load_model; load_model(sys.argv[1])", str(model)]),
            ("evaluate, 10,000 test images", args.data_dir / "t10k-images-idx3-ubyte.gz",
             [COMMAND, "evaluate", str(model), "--data-dir", str(args.data_dir), "--json", *batch]),
        ]
        for kind, path in inputs.items():
            runs.append((f"run, {args.images:,} images ({kind})", path,
                         [COMMAND, "run", str(model), str(path), "--format", "csv", "-o", str(work / f"{kind}.csv"),
                          *batch]))
        print(f"model {model.name}, batch size {args.batch_size}; peak RSS of each command in its own process")
        print(f"{'command':<44} {'input MiB':>10} {'peak RSS MiB':>13} {'seconds':>8}")
        for label, path, argv in runs:
            rss, seconds = peak_rss(argv, work)
            size = "-" if path == "-" else f"{Path(path).stat().st_size / 2**20:.1f}"
            print(f"{label:<44} {size:>10} {rss:>13.1f} {seconds:>8.1f}", flush=True)
        for kind in inputs:
            rows = (work / f"{kind}.csv").read_text().count("\n") - 1
            if rows != args.images:
                sys.exit(f"run on {kind} wrote {rows} predictions (expected {args.images})")


if __name__ == "__main__":
    main()
