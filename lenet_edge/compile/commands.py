"""CLI command of the compile stage: `compile` (onnx, onnxruntime and the toolchain imported inside)."""

from __future__ import annotations

from pathlib import Path

import click

from ..defaults import DEFAULT_CHECK_IMAGES, MAX_CHECK_IMAGES
from ..options import data_dir_option, force_option
from .toolchain import TARGETS  # standard library only


@click.command("compile")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="Directory for NAME.c, NAME.h and the footprint report (NAME.footprint.json / .md).")
@click.option("--name", default="lenet", show_default=True, help="File names and C prefix (NAME_infer, NAME_H).")
@click.option("--target", "targets", type=click.Choice(tuple(TARGETS)), multiple=True,
              help="Emulated core to build, check and measure on (repeatable) [default: both].")
@click.option("--check-images", type=click.IntRange(1, MAX_CHECK_IMAGES), default=DEFAULT_CHECK_IMAGES,
              show_default=True,
              help="MNIST test images every build must reproduce bit for bit.")
@click.option("--keep-elf", is_flag=True, help="Also write the checked ELF of each target.")
@data_dir_option
@force_option
def compile_command(model, out, name, targets, check_images, keep_elf, data_dir, force) -> None:
    """Compile an int8 ONNX model into self-contained C99 for microcontrollers and hosts.

    Writes OUT/NAME.c and OUT/NAME.h (const weights, one static arena, no malloc, no libc;
    NAME_infer(pixels[784], logits[10])) only after the C, built for the host and for each
    emulated Cortex-M core, gave logits bit-identical to onnxruntime's on the first
    --check-images MNIST test images (a model with float layers whose onnxruntime kernels
    cannot be reproduced exactly, such as the classic lenet5: the same prediction on every
    image, the largest logit difference reported).
    """
    from ..errors import require_extra
    from ..mnist_download import resolve_data_dir

    require_extra("mcu", "onnx", "ziglang", "unicorn", "elftools")
    from .stage import DEFAULT_TARGETS, check_compile_request, compile_model_to_c

    targets = targets or DEFAULT_TARGETS
    check_compile_request(out, name=name, targets=targets, check_images=check_images, keep_elf=keep_elf, force=force)
    record = compile_model_to_c(model, out, name=name, targets=targets, check_images=check_images,
                                data_dir=resolve_data_dir(data_dir), force=force, keep_elf=keep_elf,
                                step=lambda message: click.echo(message, err=True))
    from .check import render_markdown

    click.echo(render_markdown(record), nl=False)
    click.echo(f"wrote {out / (name + '.c')} and {out / (name + '.h')}")
