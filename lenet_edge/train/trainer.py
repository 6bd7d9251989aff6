"""The training loop: SGD with momentum, cross-entropy, a one-cycle schedule, optional
random affine distortions, a validation split, a checkpoint after every epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..defaults import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_MOMENTUM, MAX_SEED, MIN_MOMENTUM
from ..errors import DataError, ModelError, ValidationError
from ..fileio import sha256_file
from ..mnist import load_mnist
from .checkpoint import load_checkpoint, load_optimizer_state, save_checkpoint
from .models import build_model


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run; stored in the checkpoint."""

    variant: str = "lenet5-modern"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    val_count: int = 1000
    augment: bool = True
    seed: int = 0

    def check(self) -> None:
        for name, top in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH_SIZE)):
            if not 1 <= getattr(self, name) <= top:
                raise DataError(f"{name} must be between 1 and {top} (found {getattr(self, name)})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise DataError(f"lr must be a positive number (found {self.lr})")
        if not MIN_MOMENTUM < self.momentum < MAX_MOMENTUM:  # NaN fails too
            raise DataError(f"momentum must be above {MIN_MOMENTUM:g} and below {MAX_MOMENTUM:g} "
                            f"(found {self.momentum})")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise DataError(f"weight_decay must be a finite number, 0 or more (found {self.weight_decay})")
        if self.val_count < 0:
            raise DataError(f"val_count must be 0 or more (found {self.val_count})")
        if not 0 <= self.seed <= MAX_SEED:
            raise DataError(f"seed must be between 0 and {MAX_SEED} (found {self.seed})")


def distort(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small random affine distortions (the paper's 'distortions'): rotate ±10°, scale
    0.9-1.1, shear ±0.1, shift ±2 px. x is (B, 1, 32, 32) pixels in [0, 1], background 0."""
    b = x.shape[0]
    u = lambda lo, hi: torch.rand(b, generator=gen) * (hi - lo) + lo  # noqa: E731
    angle, scale, shear = u(-0.175, 0.175), u(0.9, 1.1), u(-0.1, 0.1)
    tx, ty = u(-0.125, 0.125), u(-0.125, 0.125)  # affine_grid works in [-1, 1]: 2 px of 32
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos, -sin + shear, tx], 1),
        torch.stack([sin, cos, ty], 1),
    ], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _data_checksums(data_dir: Path) -> dict:
    from ..mnist import split_paths

    return {p.name: sha256_file(p) for split in ("train", "test") for p in split_paths(data_dir, split)}


def one_cycle_lr(step: int, total_steps: int, peak: float) -> float:
    """Linear warm-up over the first 20% of the steps, then cosine annealing to zero.

    A function of the global step alone, so a resumed run continues on the same curve."""
    warmup = max(1, round(0.2 * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))


def _evaluate(model, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(x[i:i + batch])
            loss += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
            correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return loss / len(x), correct / len(x)


def test_accuracy(model, data_dir: Path) -> tuple[float, int]:
    """Accuracy on the test split, and its number of images."""
    images, labels = load_mnist(data_dir, "test")
    x = torch.from_numpy(model.preprocessing(images))
    return _evaluate(model, x, torch.tensor(labels))[1], len(images)  # a copy: load_mnist's arrays are read-only


def train(
    data_dir: Path,
    out: Path,
    recipe: Recipe = Recipe(),
    resume: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    force: bool = False,
) -> dict:
    """Train from scratch (or on from `resume`) and write the checkpoint at `out` after
    every epoch; return its metadata, with the final test accuracy. The first checkpoint
    replaces existing files only with `force` (or when resuming them).

    A loss that is not finite (a learning rate or momentum that diverges) stops training with
    a ValidationError; the checkpoint of the last finished epoch, if any, is kept as it was."""
    recipe.check()
    torch.manual_seed(recipe.seed)
    history: list[dict] = []
    model = build_model(recipe.variant)
    optimizer_state = None
    if resume is not None:
        model, meta = load_checkpoint(resume)
        if meta.get("recipe", {}).get("variant") != recipe.variant:
            raise ModelError(f"{resume}: a {meta.get('variant')} checkpoint cannot resume a {recipe.variant} run")
        history = meta.get("history", [])
        if len(history) >= recipe.epochs:
            raise DataError(f"{resume}: already trained for {len(history)} epochs "
                            f"(expected --epochs above {len(history)} to resume)")
        optimizer_state = load_optimizer_state(resume)

    images, labels = load_mnist(data_dir, "train")
    if recipe.val_count >= len(images):
        raise DataError(f"val_count {recipe.val_count} leaves no training images (found {len(images)})")
    order = np.random.default_rng(recipe.seed).permutation(len(images))
    val_idx, train_idx = order[:recipe.val_count], order[recipe.val_count:]
    prep = model.preprocessing
    padded = np.pad(images[train_idx], ((0, 0), (prep.pad,) * 2, (prep.pad,) * 2))
    pixels = torch.from_numpy(padded[:, None] / 255.0).float()  # (N, 1, 32, 32) in [0, 1]; distorted before normalising
    y_train = torch.from_numpy(labels[train_idx])
    x_val, y_val = torch.from_numpy(prep(images[val_idx])), torch.from_numpy(labels[val_idx])

    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=True, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(pixels) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    if optimizer_state is not None:
        for i, group in enumerate(optimizer.param_groups):
            for j, p in enumerate(group["params"]):
                if f"{i}.{j}" in optimizer_state:
                    optimizer.state[p]["momentum_buffer"] = optimizer_state[f"{i}.{j}"]

    gen = torch.Generator().manual_seed(recipe.seed)
    mean, std = prep.mean, prep.std
    checksums = _data_checksums(Path(data_dir))
    started = time.perf_counter() - sum(h["seconds"] for h in history)
    first_epoch = len(history) + 1
    for epoch in range(first_epoch, recipe.epochs + 1):
        gen.manual_seed(recipe.seed * 1000 + epoch)  # each epoch's shuffle and distortions are reproducible on resume
        model.train()
        perm = torch.randperm(len(pixels), generator=gen)
        seen, loss_sum, correct = 0, 0.0, 0
        epoch_start = time.perf_counter()
        for step, i in enumerate(range(0, len(pixels), recipe.batch_size), (epoch - 1) * steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = one_cycle_lr(step, total_steps, recipe.lr)
            idx = perm[i:i + recipe.batch_size]
            x = pixels[idx]  # (B, 1, 32, 32) in [0, 1]
            if recipe.augment:
                x = distort(x, gen)
            logits = model((x - mean) / std)
            loss = F.cross_entropy(logits, y_train[idx])
            if not torch.isfinite(loss):
                kept = f"the checkpoint of epoch {epoch - 1} at {out} is kept" if epoch > 1 else "nothing was written"
                raise ValidationError(f"training loss became {loss.item()} at epoch {epoch}, step {step + 1} "
                                      f"(expected a finite loss; try a lower --lr or --momentum); {kept}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y_train[idx]).sum().item()
        val_loss, val_acc = _evaluate(model, x_val, y_val) if len(x_val) else (None, None)  # JSON null: not measured
        history.append({
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - epoch_start,
        })
        momentum = {f"{i}.{j}": optimizer.state[p]["momentum_buffer"]
                    for i, g in enumerate(optimizer.param_groups)
                    for j, p in enumerate(g["params"]) if "momentum_buffer" in optimizer.state[p]}
        meta = {"recipe": asdict(recipe), "epoch": epoch, "history": history, "data_dir_sha256": checksums,
                "train_images": len(pixels), "val_images": len(x_val),
                "train_seconds": time.perf_counter() - started}
        save_checkpoint(out, model, meta, momentum, replace=force or resume is not None or epoch > first_epoch)
        if on_epoch:
            on_epoch(history[-1])
    model.eval()
    meta["test_accuracy"], meta["test_images"] = test_accuracy(model, Path(data_dir))
    save_checkpoint(out, model, meta, momentum)
    return meta
