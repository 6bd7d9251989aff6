"""The generated C checked against onnxruntime: built for the host and for emulated Cortex-M cores, run on
real MNIST test images, compared bit for bit; the footprint and instruction counts read from the same ELFs."""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ValidationError
from ..fileio import sha256_file
from ..parity import LogitComparison, require_bit_identical, require_close
from . import toolchain
from .emulate import EmulatedCore
from .generate import Program
from .records import CALLS, BuildCheck, CompiledLayer, CompileRecord, CoreFootprint, InstructionCounts

COUNTED_IMAGES = 20  # instructions are counted on this many images (a block hook makes a run ~5x slower)
EMULATED = "emulated (unicorn)"


def reference_logits(model: Path, images: np.ndarray) -> np.ndarray:
    """onnxruntime's CPU logits at its default graph optimisation: what the user validated on the host."""
    from ..runtime.session import load_model

    loaded = load_model(model)
    return loaded.predict(loaded.contract.preprocessing(images))


def host_logits(source: Path, workdir: Path, program: Program, images: np.ndarray, classes: int) -> np.ndarray:
    library = ctypes.CDLL(str(toolchain.build_host_library(source, workdir / f"lib{program.name}.so")))
    infer = getattr(library, f"{program.name}_infer")
    infer.restype = None
    pixels = np.ascontiguousarray(images.reshape(len(images), -1), np.uint8)
    out = np.empty((len(images), classes), np.float32)
    for image, logits in zip(pixels, out, strict=True):
        infer(image.ctypes.data_as(ctypes.c_void_p), logits.ctypes.data_as(ctypes.c_void_p))
    return out


def require_match(expected: np.ndarray, found: np.ndarray, program: Program, what: str) -> LogitComparison:
    """Bit-identical logits when every kernel reproduces onnxruntime exactly; otherwise (float kernels such as
    tanh, whose mlas code sums or rounds differently) finite logits with the same argmax on every image."""
    if program.exact:
        return require_bit_identical(expected, found, what)
    return require_close(expected, found, float("inf"), what)


def require_match_or_locate(expected: np.ndarray, found: np.ndarray, program: Program, what: str,
                            where: tuple[Path, Path, np.ndarray, str | None]) -> LogitComparison:
    """require_match; on a mismatch, the one-line error also names the first layer that differs and by how
    much (`where`: workdir, model, images, target or None for the host)."""
    from .locate import locate

    try:
        return require_match(expected, found, program, what)
    except ValidationError as exc:
        workdir, model, images, target = where
        raise ValidationError(f"{exc}; {locate(program, workdir, model, images, expected, found, target)}") from exc


def check_program(program: Program, source: Path, workdir: Path, model: Path, images: np.ndarray,
                  targets: list[str], step: Callable[[str], None] = lambda message: None,
                  expected: np.ndarray | None = None) -> CompileRecord:
    """Build `source` for the host and each target in `workdir`, run `images`, compare with onnxruntime.

    Returns the record of `model` compiled: every check and each core's footprint; ValidationError on the
    first mismatch.
    """
    expected = reference_logits(model, images) if expected is None else expected
    side = int(round(images[0].size ** 0.5))
    step(f"host: {' '.join(toolchain.host_compiler()[:1])} {toolchain.OPTIMISATION}, {len(images)} images")
    checks = [BuildCheck.of("host", f"native {platform.machine()}", require_match_or_locate(
        expected, host_logits(source, workdir, program, images, expected.shape[1]), program,
        f"{program.name}.c on the host vs onnxruntime", (workdir, model, images, None)))]
    footprints = []
    for name in targets:
        target = toolchain.TARGETS[name]
        elf = toolchain.build_elf(source, workdir / f"{program.name}.{name}.elf", target, f"{program.name}_infer")
        core = EmulatedCore(elf, target, side * side, expected.shape[1], layer_regions(elf, program))
        step(f"{name}: emulated, {len(images)} images")
        found = core.run(images)
        check = BuildCheck.of(name, EMULATED, require_match_or_locate(
            expected, found, program, f"{program.name}.c on an emulated {name} vs onnxruntime",
            (workdir, model, images, name)))
        checks.append(check)
        step(f"{name}: {check.bit_identical} of {check.images} bit-identical, {check.same_argmax} same argmax, "
             f"max abs difference {check.max_abs_diff:.3g}")
        per_image = [core.count_by_region(image) for image in images[:COUNTED_IMAGES]]
        counts = [sum(c.values()) for c in per_image]
        sizes = toolchain.footprint(elf)
        stack = max(core.stack_high_water(image) for image in images[:COUNTED_IMAGES])
        footprints.append(CoreFootprint(
            target=name, description=target.description, where=EMULATED,
            optimisation=target.optimisation, flash_bytes=sizes.flash_bytes, code_bytes=sizes.code_bytes,
            constant_bytes=sizes.constant_bytes, ram_bytes=sizes.static_ram_bytes + stack,
            arena_bytes=sizes.bss_bytes, data_bytes=sizes.data_bytes, stack_bytes=stack,
            instructions_per_inference=InstructionCounts(len(counts), min(counts), max(counts),
                                                         round(float(np.mean(counts)))),
            instructions_per_layer=mean_per_layer(per_image, [layer.function for layer in program.layers])))
    return CompileRecord(
        model=str(model), model_sha256=sha256_file(model), name=program.name, variant=program.variant,
        bit_exact_required=program.exact, arena_bytes=program.arena_bytes, constant_bytes=program.constant_bytes,
        multiply_accumulates=program.macs, entry_function=f"{program.name}_infer",
        layers=tuple(CompiledLayer(layer.function, layer.layer, layer.description, layer.macs)
                     for layer in program.layers),
        checks=tuple(checks), footprint=tuple(footprints))


def layer_regions(elf: Path, program: Program) -> dict[str, tuple[int, int]]:
    """Each layer's function and the entry function (labelled CALLS) -> its addresses in the ELF."""
    ranges = toolchain.symbol_ranges(elf)
    wanted = {layer.function: layer.function for layer in program.layers} | {f"{program.name}_infer": CALLS}
    missing = [symbol for symbol in wanted if symbol not in ranges]
    if missing:
        raise ValidationError(f"{elf.name}: no symbol for {', '.join(missing)} (expected one function per layer, "
                              "not inlined, to count its instructions)")
    return {label: ranges[symbol] for symbol, label in wanted.items()}


def mean_per_layer(per_image: list[dict[str, int]], functions: list[str]) -> dict[str, int]:
    """Mean instructions per layer function and CALLS over the images, rounded so that they add up to the
    rounded mean total (largest remainders): the per-layer table sums to the figure beside it."""
    labels = [*functions, CALLS]
    unknown = {label for counts in per_image for label in counts} - set(labels)
    if unknown:  # a block before the entry function's first: cannot happen when the ELF's entry is the model's
        raise ValidationError(f"instructions outside the model's functions: {sorted(unknown)}")
    sums = {label: sum(counts.get(label, 0) for counts in per_image) for label in labels}
    n = len(per_image)
    total = round(sum(sums.values()) / n)
    means = {label: sums[label] // n for label in labels}
    by_remainder = sorted(labels, key=lambda label: -(sums[label] % n))
    for label in by_remainder[:total - sum(means.values())]:
        means[label] += 1
    return means


def render_markdown(record: CompileRecord) -> str:
    """The footprint and check tables (Markdown), with where each figure comes from."""
    lines = [
        "| target | flash (code + const) | RAM (arena + stack) | instructions / inference | where |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in record.footprint:
        n = f.instructions_per_inference
        lines.append(f"| {f.target} | {f.flash_bytes:,} B ({f.code_bytes:,} + {f.constant_bytes:,}) | "
                     f"{f.ram_bytes:,} B ({f.static_ram_bytes:,} + {f.stack_bytes:,}) | "
                     f"{n.mean:,} (min {n.min:,}, max {n.max:,}; {n.images} images) | {f.where}, {f.optimisation} |")
    lines += ["", "| target | images | logits bit-identical to onnxruntime | same argmax | max abs diff |",
              "| --- | --- | --- | --- | --- |"]
    for c in record.checks:
        lines.append(f"| {c.target} ({c.where}) | {c.images:,} | {c.bit_identical:,} | {c.same_argmax:,} | "
                     f"{c.max_abs_diff:.3g} |")
    lines += ["", *layer_table(record)]
    lines += ["", f"{record.multiply_accumulates:,} multiply-accumulates per inference. Instructions are counted "
              "by the emulator (deterministic), not cycles: on a real core a load, a multiply-accumulate and a "
              "float division take different numbers of cycles, and flash wait states come on top."]
    return "\n".join(lines) + "\n"


def layer_table(record: CompileRecord) -> list[str]:
    """Instructions per layer on each emulated core (Markdown), with the calls between layers as a row: the
    rows add up to the total. Helpers a layer calls (soft float, dot products) count for that layer."""
    cores = record.footprint
    if not cores:
        return []
    head = "| layer | function | multiply-accumulates | " + " | ".join(
        f"{f.target} instructions (share)" for f in cores) + " |"
    lines = [head, "| --- | --- | ---: |" + " ---: |" * len(cores)]
    rows = [(layer.layer, layer.function, layer.function, f"{layer.multiply_accumulates:,}")
            for layer in record.layers]
    for label, function, key, macs in [*rows, (CALLS, record.entry_function, CALLS, "")]:
        cells = [f"{f.instructions_per_layer[key]:,} ({100 * f.layer_share(key):.1f} %)" for f in cores]
        lines.append(f"| {label} | {function} | {macs} | " + " | ".join(cells) + " |")
    lines.append(f"| total | | {record.multiply_accumulates:,} | " + " | ".join(
        f"{f.instructions_per_inference.mean:,}" for f in cores) + " |")
    return lines
