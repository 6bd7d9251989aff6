"""Training curves (loss and accuracy per epoch, train and validation) as a PNG, drawn as every chart is
(charts.py: a Figure and its Agg canvas, no pyplot state)."""

from __future__ import annotations

from pathlib import Path

from ..charts import SKIPPED, new_figure, save_figure
from ..errors import DependencyError


def plot_curves(history: list[dict], path: Path, title: str, *, replace: bool = False) -> None:
    """Without `replace` an existing PNG is not replaced. Epochs without a validation split
    (val_count 0: null in the history) have no validation points."""
    fig = new_figure(10, 4)
    if fig is None:  # matplotlib comes with the train extra: a host without it is missing a dependency
        raise DependencyError(SKIPPED)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [_nan(h["val_loss"]) for h in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [100 * h["train_accuracy"] for h in history], label="train")
    ax_acc.plot(epochs, [100 * _nan(h["val_accuracy"]) for h in history], label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path, record=True, replace=replace)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value  # matplotlib leaves a gap at NaN
