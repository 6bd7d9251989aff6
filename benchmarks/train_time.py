"""Time to reach the accuracy targets: how short can each variant's recipe be on this machine?

    python benchmarks/train_time.py                                  # every variant, default grid
    python benchmarks/train_time.py --variant lenet5-modern --epochs 4 6 8 --seeds 0 1 2
    python benchmarks/train_time.py --variant lenet5-modern --batch-size 128 --lr 0.1   # another recipe
    python benchmarks/train_time.py --variant lenet5-tanh --epochs 8 --seeds 0 --threads 1  # one grid point

For every epoch count E and seed it trains the variant's default recipe (or the one --batch-size
and --lr make of it) with E epochs (the one-cycle schedule is stretched or squeezed to E, so a
shorter run is not a truncated longer one), then measures test accuracy on the official 10,000
images. A recipe "meets the target"
when every seed reaches it; the time to target is the mean wall time of the shortest such
recipe. The default recipe is the shortest whose worst seed clears the target by --margin
points (seeds alone move the accuracy by ~0.1-0.2 points, and CI trains on one). It prints
figures; it asserts nothing. Training times depend on what else runs on the machine (the load
average is printed); run it alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from lenet_edge.errors import LenetEdgeError
from lenet_edge.mnist_download import resolve_data_dir
from lenet_edge.train.recipes import ACCURACY_TARGETS, default_recipe
from lenet_edge.train.trainer import Recipe, train

DEFAULT_GRID = {"lenet5-modern": (4, 6, 8, 10, 12), "lenet5": (6, 8, 10, 12, 15), "lenet5-tanh": (4, 6, 8, 10, 12)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = resolve_data_dir(args.data_dir)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.2f}")
    for variant in args.variant or DEFAULT_GRID:
        grid = args.epochs or DEFAULT_GRID[variant]
        overrides = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
        recipe = replace(default_recipe(variant), **overrides)
        rows = [measure(recipe, epochs, args.seeds, data) for epochs in grid]
        print(table(recipe, rows, args.seeds, args.margin), flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", action="append", choices=tuple(DEFAULT_GRID), help="repeatable; default: all")
    p.add_argument("--epochs", type=int, nargs="+", help="epoch counts to try (default: a grid per variant)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--margin", type=float, default=0.1, help="points above the target the worst seed must reach "
                   "for a recipe to be a safe default (default: 0.1)")
    p.add_argument("--batch-size", type=int, help="instead of the recipe's")
    p.add_argument("--lr", type=float, help="peak learning rate, instead of the recipe's")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores); on a busy "
                   "machine 1 thread per run wastes less time waiting for the other thread")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST directory (default: $LENET_EDGE_DATA)")
    return p.parse_args(argv)


def measure(base: Recipe, epochs: int, seeds: list[int], data: Path) -> dict:
    """Test accuracy and wall time of `base` with `epochs` epochs, for each seed."""
    runs, variant = [], base.variant
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="lenet-edge-train-time-") as tmp:
            meta = train(data, Path(tmp) / f"{variant}.safetensors", replace(base, epochs=epochs, seed=seed))
        runs.append({"seed": seed, "accuracy": meta["test_accuracy"], "seconds": meta["train_seconds"]})
        print(f"  {variant} {epochs:>2} epochs seed {seed}: {meta['test_accuracy']:.2%} in "
              f"{meta['train_seconds']:.1f} s", flush=True)
    return {"epochs": epochs, "runs": runs}


def table(recipe: Recipe, rows: list[dict], seeds: list[int], margin: float) -> str:
    target, default = ACCURACY_TARGETS[recipe.variant], default_recipe(recipe.variant)
    lines = ["", f"{recipe.variant}, batch {recipe.batch_size}, peak lr {recipe.lr:g}: target {target:.1%} test "
             f"accuracy on every seed; the default recipe is {default.epochs} epochs at batch {default.batch_size}, "
             f"lr {default.lr:g}",
             f"{'epochs':>6} {'mean s':>7} {'s/epoch':>7} | " + " ".join(f"{'seed ' + str(s):>8}" for s in seeds)
             + f" | {'worst':>7} {'margin':>7} | target"]
    for row in rows:
        accs = [r["accuracy"] for r in row["runs"]]
        seconds = sum(r["seconds"] for r in row["runs"]) / len(row["runs"])
        worst = min(accs)
        row["meets"], row["safe"], row["seconds"] = worst >= target, worst >= target + margin / 100, seconds
        lines.append(f"{row['epochs']:>6} {seconds:>7.1f} {seconds / row['epochs']:>7.2f} | "
                     + " ".join(f"{a:>8.2%}" for a in accs)
                     + f" | {worst:>7.2%} {100 * (worst - target):>+6.2f}p | {'met' if row['meets'] else 'missed'}")
    lines.append(_shortest(rows, "meets", f"time to target: {{}} (the shortest recipe tried that reaches "
                           f"{target:.1%} on every seed)"))
    lines.append(_shortest(rows, "safe", f"safe default: {{}} (the shortest whose worst seed reaches "
                           f"{target + margin / 100:.2%}, {margin:g} points of margin)"))
    return "\n".join(lines)


def _shortest(rows: list[dict], key: str, text: str) -> str:
    found = [r for r in rows if r[key]]
    if not found:
        return text.format("none of the recipes tried")
    best = min(found, key=lambda r: r["epochs"])
    return text.format(f"{best['epochs']} epochs, {best['seconds']:.1f} s")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LenetEdgeError as exc:  # bad input: one line, as the CLI gives it
        sys.exit(f"error: {exc}")
