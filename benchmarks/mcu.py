"""int8 models as generated C on microcontrollers: every MNIST test image through the host build and through
each emulated Cortex-M core, bit for bit against onnxruntime; then flash, RAM and instructions per inference
read from the very ELFs that were checked. It prints figures; it is not a test.

    python benchmarks/mcu.py MODEL.int8.onnx [MODEL.int8.onnx ...] --data-dir DIR [--images 10000] [--json OUT]

Flash is code + constant data of the model alone (linked with --gc-sections, the entry function as the ELF
entry); RAM is the static arena + .data + the stack high-water mark (the stack painted, then read back).
Instructions are counted by the emulator with a block hook: deterministic, and not cycles.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from lenet_edge.compile.records import CompileRecord

TARGETS = ("flash <= 66 KB", "RAM <= 4 KB", "<= 800,000 instructions on the M4F (moonshot 600,000)",
           "<= 2.5 M on the M0+")


def measure(model: Path, images, targets: list[str], log) -> tuple[CompileRecord, float]:
    """The record of `model` compiled and checked on `images`, and the seconds the checks took."""
    from lenet_edge.compile.check import check_program, reference_logits
    from lenet_edge.compile.generate import compile_model

    program = compile_model(model)
    expected = reference_logits(model, images)
    with tempfile.TemporaryDirectory(prefix="lenet-edge-mcu-") as tmp:
        source = Path(tmp) / f"{program.name}.c"
        source.write_text(program.source)
        (Path(tmp) / f"{program.name}.h").write_text(program.header)
        start = time.perf_counter()
        record = check_program(program, source, Path(tmp), model, images, targets, step=log, expected=expected)
        seconds = round(time.perf_counter() - start, 1)
    return record, seconds


def print_table(records: list[CompileRecord]) -> None:
    print(f"\n{'variant':<15}{'target':<15}{'flash B':>9}{'code':>7}{'const':>8}{'RAM B':>8}{'arena':>7}{'stack':>7}"
          f"{'instructions':>14}{'MACs':>9}")
    for r in records:
        for f in r.footprint:
            print(f"{r.variant:<15}{f.target:<15}{f.flash_bytes:>9,}{f.code_bytes:>7,}{f.constant_bytes:>8,}"
                  f"{f.ram_bytes:>8,}{f.arena_bytes:>7,}{f.stack_bytes:>7,}{f.instructions_per_inference.mean:>14,}"
                  f"{r.multiply_accumulates:>9,}")
    print(f"\n{'variant':<15}{'build':<15}{'images':>8}{'bit-identical':>15}{'same argmax':>13}{'max |diff|':>12}")
    for r in records:
        for c in r.checks:
            print(f"{r.variant:<15}{c.target:<15}{c.images:>8,}{c.bit_identical:>15,}{c.same_argmax:>13,}"
                  f"{c.max_abs_diff:>12.3g}")
    from lenet_edge.compile.check import layer_table

    for r in records:
        print(f"\n{r.variant} ({r.model}): instructions per layer (mean of "
              f"{r.footprint[0].instructions_per_inference.images} images; helpers count for the layer that "
              "calls them, 'calls' is the entry function's own)")
        print("\n".join(layer_table(r)))
    print(f"\ntargets for lenet5-modern's default int8 build: {'; '.join(TARGETS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="int8 ONNX models from lenet-edge quantize")
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST IDX directory [default: $LENET_EDGE_DATA]")
    parser.add_argument("--images", type=int, default=10_000, help="test images per build (1 to 10000)")
    parser.add_argument("--targets", default="cortex-m4f,cortex-m0plus", help="emulated cores, comma-separated")
    parser.add_argument("--json", type=Path, default=None, help="also write the records here")
    args = parser.parse_args()

    from lenet_edge.bench.environment import environment
    from lenet_edge.errors import LenetEdgeError
    from lenet_edge.mnist import load_mnist
    from lenet_edge.mnist_download import resolve_data_dir

    if not 1 <= args.images <= 10_000:
        sys.exit(f"error: --images {args.images} (expected 1 to 10000)")
    env = environment()
    print(f"host: {env['cpu'].get('model', 'unknown CPU')}; Cortex-M cores emulated by unicorn "
          f"(instructions, not cycles)", flush=True)
    try:
        images = load_mnist(resolve_data_dir(args.data_dir), "test")[0][:args.images]
        measured = [measure(model, images, args.targets.split(","), lambda m: print(f"  {m}", flush=True))
                    for model in args.models]
    except LenetEdgeError as exc:
        sys.exit(f"error: {exc}")
    print_table([record for record, _ in measured])
    if args.json:
        records = [{**record.to_json(), "seconds": seconds} for record, seconds in measured]
        args.json.write_text(json.dumps({"environment": env, "records": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
