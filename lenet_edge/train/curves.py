"""Training curves (loss and accuracy per epoch, train and validation) as a PNG."""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_path


def plot_curves(history: list[dict], path: Path, title: str, *, replace: bool = False) -> None:
    """Without `replace` an existing PNG is not replaced. Epochs without a validation split
    (val_count 0: null in the history) have no validation points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
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
    fig.tight_layout()
    with atomic_path(path, replace=replace) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value  # matplotlib leaves a gap at NaN
