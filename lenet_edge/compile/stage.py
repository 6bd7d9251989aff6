"""The compile stage: int8 ONNX -> NAME.c / NAME.h, checked, with its footprint report (JSON and Markdown).

Everything is generated, built and checked in a temporary directory first; the outputs are written
(atomically, each recorded in MANIFEST.sha256) only when every check has passed.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError, OutputError
from ..fileio import check_writable, ensure_directory, write_bytes, write_json, write_text
from . import toolchain

DEFAULT_TARGETS = tuple(toolchain.TARGETS)
DEFAULT_CHECK_IMAGES = 1000
TEST_IMAGES = 10_000


def output_paths(out: Path, name: str) -> dict[str, Path]:
    return {"source": out / f"{name}.c", "header": out / f"{name}.h",
            "json": out / f"{name}.footprint.json", "markdown": out / f"{name}.footprint.md"}


def compile_model_to_c(model: Path, out: Path, *, name: str = "lenet", targets: tuple[str, ...] = DEFAULT_TARGETS,
                       check_images: int = DEFAULT_CHECK_IMAGES, data_dir: Path, force: bool = False,
                       keep_elf: bool = False, step: Callable[[str], None] = lambda message: None) -> dict:
    """Compile `model` into `out`/NAME.c and NAME.h, checked on the host and each target on the first
    `check_images` MNIST test images of `data_dir` (a directory of MNIST IDX files, resolved by the
    caller); returns the record written to NAME.footprint.json."""
    from ..data import load_mnist
    from ..fileio import sha256_file
    from .check import check_program, render_markdown
    from .generate import compile_model

    model, out = Path(model), Path(out)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,30}", name):
        raise DataError(f"--name {name!r} (expected a C identifier in lower case, e.g. lenet)")
    if not 1 <= check_images <= TEST_IMAGES:
        raise DataError(f"check images {check_images} (expected 1 to {TEST_IMAGES})")
    unknown = [t for t in targets if t not in toolchain.TARGETS]
    if unknown:
        raise DataError(f"targets {unknown} (expected some of {', '.join(toolchain.TARGETS)})")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file (expected a directory for the C files)")
    paths = output_paths(out, name)
    if out.is_dir():
        for path in paths.values():
            check_writable(path, force)
    step(f"generate C from {model.name} (the graph onnxruntime runs)")
    program = compile_model(model, name)
    images, _ = load_mnist(data_dir, "test")
    images = images[:check_images]
    with tempfile.TemporaryDirectory(prefix="lenet-edge-compile-") as tmp:
        workdir = Path(tmp)
        source = workdir / f"{name}.c"
        source.write_text(program.source)
        (workdir / f"{name}.h").write_text(program.header)
        record = {"model": str(model), "model_sha256": sha256_file(model), "name": name,
                  **check_program(program, source, workdir, model, images, list(targets), step)}
        markdown = f"# {name}: {program.variant} int8 on microcontrollers\n\n" + render_markdown(record)
        ensure_directory(paths["source"])
        write_text(paths["source"], program.source)
        write_text(paths["header"], program.header)
        write_json(paths["json"], record)
        write_text(paths["markdown"], markdown)
        if keep_elf:
            for target in targets:
                elf = workdir / f"{name}.{target}.elf"
                write_bytes(out / elf.name, elf.read_bytes())
    return record


def compile_for_pipeline(model: Path, out: Path, *, data_dir: Path, check_images: int = DEFAULT_CHECK_IMAGES,
                         step: Callable[[str], None] = lambda message: None) -> dict:
    """The pipeline's microcontroller stage: compile `model` into `out` and check it; the record. Without
    the toolchain: {"skipped": reason}, nothing raised, so the rest of the pipeline still runs."""
    reason = toolchain.check_toolchain()
    if reason:
        step(f"compile to C skipped: {reason}")
        return {"skipped": reason}
    step(f"compile to C for microcontrollers, checked on {check_images} test images per build")
    return compile_model_to_c(model, out, check_images=check_images, data_dir=data_dir, step=step)
