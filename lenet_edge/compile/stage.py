"""The compile stage: int8 ONNX -> NAME.c / NAME.h, checked, with its footprint report (JSON and Markdown).

Everything is generated, built and checked in a temporary directory first; the outputs are written
(atomically, each recorded in MANIFEST.sha256) only when every check has passed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ..defaults import DEFAULT_CHECK_IMAGES, MAX_CHECK_IMAGES
from ..errors import DataError, OutputError
from ..fileio import check_name, check_writable, ensure_directory, write_bytes, write_json, write_text
from ..scratch import scratch_directory
from . import toolchain
from .records import BuildCandidate, BuildChoice, CompileRecord, PipelineBuild

DEFAULT_TARGETS = tuple(toolchain.TARGETS)
# The pipeline compiles the int8 model it ships (chosen for x86 speed by quantize --auto) and the standard
# recipe's: --auto's rewrite for x86 kernels adds zero taps, transposes and wider activations, which the C runs
# as written. Measured on the emulated cores (instructions per inference, M4F / M0+; RAM on the M4F):
# lenet5-modern --auto 2,482,346 / 7,020,434, 14,688 B; standard 1,069,183 / 3,374,695, 2,332 B. But the
# standard recipe keeps lenet5-tanh's tanh in float, which a core without an FPU pays for: --auto
# 2,087,455 / 7,524,835, 11,532 B; standard 1,401,480 / 24,263,027, 24,728 B. Hence a rule over all cores.
PIPELINE_RULE = ("the build with the lowest worst-case ratio of instructions per inference to the shipped model's "
                 "build over the emulated cores; within 2% of the best, the shipped model")
TIE = 0.02


def output_paths(out: Path, name: str) -> dict[str, Path]:
    return {"source": out / f"{name}.c", "header": out / f"{name}.h",
            "json": out / f"{name}.footprint.json", "markdown": out / f"{name}.footprint.md"}


def elf_path(out: Path, name: str, target: str) -> Path:
    return out / f"{name}.{target}.elf"


def check_compile_request(out: Path, *, name: str, targets: tuple[str, ...], check_images: int, keep_elf: bool,
                          force: bool) -> None:
    """Every option and every output (the ELF files with `keep_elf` too), before any data is read or fetched."""
    out = Path(out)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,30}", name):
        raise DataError(f"--name {name!r} (expected a C identifier in lower case, e.g. lenet)")
    if isinstance(check_images, bool) or not isinstance(check_images, int) or not 1 <= check_images <= MAX_CHECK_IMAGES:
        raise DataError(f"check images {check_images} (expected 1 to {MAX_CHECK_IMAGES})")
    unknown = [t for t in targets if t not in toolchain.TARGETS]
    if unknown:
        raise DataError(f"targets {unknown} (expected some of {', '.join(toolchain.TARGETS)})")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file (expected a directory for the C files)")
    paths = [*output_paths(out, name).values(), *(elf_path(out, name, t) for t in targets if keep_elf)]
    if out.is_dir():
        for path in paths:
            check_writable(path, force)
    else:
        for path in paths:
            check_name(path)


def compile_model_to_c(model: Path, out: Path, *, name: str = "lenet", targets: tuple[str, ...] = DEFAULT_TARGETS,
                       check_images: int = DEFAULT_CHECK_IMAGES, data_dir: Path, force: bool = False,
                       keep_elf: bool = False, step: Callable[[str], None] = lambda message: None) -> CompileRecord:
    """Compile `model` into `out`/NAME.c and NAME.h, checked on the host and each target on the first
    `check_images` MNIST test images of `data_dir` (a directory of MNIST IDX files, resolved by the
    caller); returns the record written to NAME.footprint.json."""
    from ..mnist import load_mnist
    from .check import check_program, render_markdown
    from .generate import compile_model

    model, out = Path(model), Path(out)
    check_compile_request(out, name=name, targets=targets, check_images=check_images, keep_elf=keep_elf, force=force)
    paths = output_paths(out, name)
    step(f"generate C from {model.name} (the graph onnxruntime runs)")
    program = compile_model(model, name)
    images, _ = load_mnist(data_dir, "test")
    images = images[:check_images]
    with scratch_directory("compile") as tmp:
        workdir = Path(tmp)
        source = workdir / f"{name}.c"
        source.write_text(program.source)
        (workdir / f"{name}.h").write_text(program.header)
        record = check_program(program, source, workdir, model, images, list(targets), step)
        markdown = f"# {name}: {program.variant} int8 on microcontrollers\n\n" + render_markdown(record)
        ensure_directory(paths["source"])
        write_text(paths["source"], program.source, replace=force)
        write_text(paths["header"], program.header, replace=force)
        write_json(paths["json"], record.to_json(), replace=force)
        write_text(paths["markdown"], markdown, replace=force)
        if keep_elf:
            for target in targets:
                write_bytes(elf_path(out, name, target), elf_path(workdir, name, target).read_bytes(), replace=force)
    return record


def compile_for_pipeline(models: dict[str, Path], out: Path, *, data_dir: Path,
                         check_images: int = DEFAULT_CHECK_IMAGES,
                         step: Callable[[str], None] = lambda message: None) -> PipelineBuild:
    """The pipeline's microcontroller stage. `models`: label -> int8 model, the one the pipeline ships first.
    Each is compiled and checked; the C of the one PIPELINE_RULE picks goes into `out`, with the model it was
    compiled from as `out`/model.int8.onnx when that is not the shipped one. Returns that build's record
    and the choice. Without the toolchain: only the reason it was skipped, nothing raised, so the rest of the
    pipeline still runs."""
    reason = toolchain.check_toolchain()
    if reason:
        step(f"compile to C skipped: {reason}")
        return PipelineBuild(skipped=reason)
    records = {}
    with scratch_directory("mcu") as tmp:
        for label, model in models.items():
            step(f"compile the {label} int8 model to C for microcontrollers, checked on {check_images} test images "
                 f"per build")
            records[label] = compile_model_to_c(model, Path(tmp) / label, check_images=check_images,
                                                data_dir=data_dir, step=step)
        choice = choose_build(records)
        shutil.copytree(Path(tmp) / choice.chosen, out)
    chosen, shipped = choice.chosen, next(iter(models))
    model = models[chosen] if chosen == shipped else out / "model.int8.onnx"
    if chosen != shipped:
        write_bytes(model, models[chosen].read_bytes())
    record = records[chosen].at(str(model))  # not the scratch copy it was compiled from
    write_json(output_paths(out, record.name)["json"], record.to_json(), replace=True)  # the copy made just above
    return PipelineBuild(record, choice)


def choose_build(records: dict[str, CompileRecord]) -> BuildChoice:
    """PIPELINE_RULE over compile records (label -> record, the shipped model first)."""
    candidates = {label: BuildCandidate.of(record) for label, record in records.items()}
    instructions = {label: c.instructions_per_inference for label, c in candidates.items()}
    shipped = next(iter(records))
    worst = {label: max((counts[t] / instructions[shipped][t], t) for t in counts)
             for label, counts in instructions.items()}
    best = min(ratio for ratio, _ in worst.values())
    chosen = next(label for label in records if worst[label][0] <= best * (1 + TIE))
    ratios = ", ".join(f"{label} {r:.2f}x on the {t}" for label, (r, t) in worst.items() if label != shipped)
    why = f"{chosen}; worst case of each alternative against the shipped model's instructions: {ratios}"
    return BuildChoice(chosen, why, PIPELINE_RULE, candidates)
