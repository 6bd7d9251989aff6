"""PNG charts of evaluate, bench and compare (and training's curves, train/curves.py), drawn with matplotlib
when it is installed: the one plotting path.

On a device matplotlib is the optional extra `lenet-edge[plot]`: without it each function
returns False and the caller says the chart was skipped. matplotlib's object API is used
(Figure + Agg canvas, no pyplot), so no global backend state is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .bench.records import BenchReport, RowKey
from .fileio import atomic_path

if TYPE_CHECKING:
    from .bench.compare import Comparison

SKIPPED = "matplotlib is not installed; install it with pip install 'lenet-edge[plot]'"


def new_figure(width: float, height: float):
    """A new Figure, or None when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path, record: bool, replace: bool = False) -> None:
    """Written atomically; an existing file is replaced only with `replace` (the caller's --force)."""
    with atomic_path(Path(path), record, replace=replace) as tmp:
        fig.savefig(tmp, format="png")


def plot_confusion(result: dict, path: Path, record: bool = True, *, replace: bool = False) -> bool:
    """Confusion matrix of an evaluate() result as a heat map with counts."""
    fig = new_figure(6.5, 5.5)
    if fig is None:
        return False
    matrix = np.asarray(result["confusion_matrix"])
    labels = result["class_labels"]
    ax = fig.add_subplot()
    # log colour scale so the few errors show against the large diagonal
    image = ax.imshow(np.log1p(matrix), cmap="Blues")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    for (r, c), v in np.ndenumerate(matrix):
        if v:
            ax.text(c, r, str(v), ha="center", va="center", fontsize=7,
                    color="white" if np.log1p(v) > 0.6 * np.log1p(matrix.max()) else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{Path(result['model']).name}: accuracy {result['accuracy']:.2%} on {result['images']} test images",
                 fontsize=9)
    save_figure(fig, path, record, replace)
    return True


def plot_bench(report: BenchReport, path: Path, record: bool = True, *, replace: bool = False) -> bool:
    """One panel per batch size: p50 latency per call (bar) to p90 (whisker) of every model at each thread
    count, on a log axis, so that PyTorch eager's tens of ms and onnxruntime's tens of us both read."""
    batch_sizes = sorted({r.batch_size for r in report.rows})
    threads = sorted({r.threads for r in report.rows})
    fig = new_figure(max(6.0, 2.2 * len(batch_sizes) + 1.5), 4.5)
    if fig is None:
        return False
    axes = fig.subplots(1, len(batch_sizes), squeeze=False)[0]
    width = 0.8 / len(report.labels)
    x = np.arange(len(threads))
    for ax, b in zip(axes, batch_sizes, strict=True):
        for k, label in enumerate(report.labels):
            found = [report.by_key.get(RowKey(label, b, t)) for t in threads]
            p50 = np.array([r.latency_ms.p50 if r else np.nan for r in found])
            p90 = np.array([r.latency_ms.p90 if r else np.nan for r in found])
            ax.bar(x - 0.4 + width * (k + 0.5), p50, width, yerr=[np.zeros_like(p50), p90 - p50], capsize=2,
                   label=label)
        ax.set_yscale("log")
        ax.set_title(f"batch {b}", fontsize=9)
        ax.set_xticks(x, [f"{t} thread{'s' if t > 1 else ''}" for t in threads], fontsize=8)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("ms per call (p50, whisker p90; log scale)")
    axes[0].legend(fontsize=8)
    env = report.environment
    fig.suptitle(f"{env['cpu']['model']} · {report.execution} · onnxruntime "
                 f"{env['versions'].get('onnxruntime', '?')}", fontsize=9)
    save_figure(fig, path, record, replace)
    return True


def plot_compare(comparison: Comparison, path: Path, record: bool = True, *, replace: bool = False) -> bool:
    """Latency of each row in each run, as a ratio to the reference run (log scale)."""
    fig = new_figure(max(6.0, 0.5 * len(comparison.rows) + 3), 4.5)
    if fig is None:
        return False
    runs = [r.name for r in comparison.runs]
    rows = comparison.rows
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(runs) - 1)
    for k in range(1, len(runs)):
        ratios = np.array([r.ratios[k] if r.ratios[k] is not None else np.nan for r in rows])
        # bars grow from 1 (no difference) up or down to the ratio
        bars = ax.bar(x - 0.4 + width * (k - 0.5), ratios - 1.0, width, bottom=1.0, label=f"{runs[k]} / {runs[0]}")
        for bar, row in zip(bars, rows, strict=True):
            if row.exceeds_spread[k]:
                bar.set_hatch("//")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("latency ratio (hatched: beyond run-to-run spread)")
    ax.set_xticks(x, [f"{r.model}\nb{r.batch_size} t{r.threads}" for r in rows], fontsize=7, rotation=45,
                  ha="right")
    ax.legend(fontsize=8)
    save_figure(fig, path, record, replace)
    return True
