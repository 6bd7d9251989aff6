"""CLI commands of the training stage: `summary` and `train` (torch imported inside)."""

from __future__ import annotations

from pathlib import Path

import click

from ..defaults import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_MOMENTUM, MAX_SEED, MAX_THREADS, MIN_MOMENTUM
from ..options import FiniteFloatRange, data_dir_option, force_option, variant_option


@click.command()
@variant_option
def summary(variant: str) -> None:
    """Print each layer's output shape, trainable parameters and connections."""
    from ..errors import require_extra

    require_extra("train", "torch")
    from .models import build_model
    from .summary import format_summary, summarize

    click.echo(format_summary(variant, summarize(build_model(variant))))


@click.command()
@data_dir_option
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Checkpoint path (.safetensors) [default: runs/VARIANT.safetensors].")
@variant_option
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=None,
              help="Epochs [default: the variant's recipe].")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=None)
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Peak learning rate of the one-cycle schedule.")
@click.option("--momentum", type=FiniteFloatRange(MIN_MOMENTUM, MAX_MOMENTUM, min_open=True, max_open=True),
              default=None, help="Nesterov momentum.")
@click.option("--weight-decay", type=FiniteFloatRange(min=0), default=None)
@click.option("--val-count", type=click.IntRange(min=0), default=None,
              help="Training images held out for validation (0: none, the validation figures are null).")
@click.option("--augment/--no-augment", default=None, help="Random affine distortions.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None,
              help="torch intra-op threads [default: all cores].")
@click.option("--resume", is_flag=True, help="Continue the run stored at --out up to --epochs.")
@force_option
def train(data_dir, out, variant, epochs, batch_size, lr, momentum, weight_decay, val_count,
          augment, seed, threads, resume, force) -> None:
    """Train a LeNet-5 variant on MNIST and write a checkpoint and its training curves."""
    from dataclasses import replace

    from ..errors import DataError, require_extra

    require_extra("train", "torch", "safetensors", "matplotlib")
    import torch

    from ..fileio import check_writable, ensure_directory
    from ..mnist_download import resolve_data_dir
    from ..progress import ProgressDisplay
    from .checkpoint import checkpoint_paths
    from .curves import plot_curves
    from .recipes import ACCURACY_TARGETS, default_recipe
    from .trainer import train as run_training

    out = out or Path("runs") / f"{variant}.safetensors"
    overrides = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                                      weight_decay=weight_decay, val_count=val_count, augment=augment).items()
                 if v is not None}
    recipe = replace(default_recipe(variant), seed=seed, **overrides)
    recipe.check()  # bad options fail before anything is created or downloaded
    curves = out.with_suffix(".curves.png")
    if resume:
        if not out.is_file():
            raise DataError(f"{out}: no checkpoint to resume (expected the --out of an earlier run)")
    else:
        ensure_directory(out)
        for path in (*checkpoint_paths(out), curves):  # every file the run writes, none replaced without --force
            check_writable(path, force)
    if threads is not None:
        torch.set_num_threads(threads)
    data = resolve_data_dir(data_dir)
    with ProgressDisplay(f"training {variant}", announce=True) as progress:
        def on_epoch(h: dict) -> None:
            val = "" if h["val_accuracy"] is None else f" val {h['val_accuracy']:.2%}"
            progress(h["epoch"], recipe.epochs, f"epoch {h['epoch']} loss {h['train_loss']:.3f}{val}")

        meta = run_training(data, out, recipe, resume=out if resume else None, on_epoch=on_epoch, force=force)
    plot_curves(meta["history"], curves, title=f"{variant} on MNIST", replace=force or resume)
    target = ACCURACY_TARGETS[variant]
    verdict = "met" if meta["test_accuracy"] >= target else "MISSED: try another --seed, more --epochs or a lower --lr"
    click.echo(f"{out}: {variant}, {meta['epoch']} epochs in {meta['train_seconds']:.0f} s, "
               f"test accuracy {meta['test_accuracy']:.2%} on {meta['test_images']} test images "
               f"(target {target:.1%}: {verdict})")
    click.echo(f"curves: {curves}")
