"""PNG charts of evaluate, bench and compare, drawn with matplotlib when it is installed.

On a device matplotlib is the optional extra `lenet-edge[plot]`: without it each function
returns False and the caller says the chart was skipped. matplotlib's object API is used
(Figure + Agg canvas, no pyplot), so no global backend state is touched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fileio import atomic_path

SKIPPED = "matplotlib is not installed; install it with pip install 'lenet-edge[plot]'"


def _figure(width: float, height: float):
    """A new Figure, or None when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, record: bool, replace: bool) -> None:
    with atomic_path(Path(path), record, replace=replace) as tmp:
        fig.savefig(tmp, format="png")


def plot_confusion(result: dict, path: Path, record: bool = True, *, replace: bool = False) -> bool:
    """Confusion matrix of an evaluate() result as a heat map with counts."""
    fig = _figure(6.5, 5.5)
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
    _save(fig, path, record, replace)
    return True


def plot_bench(report: dict, path: Path, record: bool = True, *, replace: bool = False) -> bool:
    """Per (batch size, threads): p50 latency per image (bar) to p90 (whisker), and throughput."""
    fig = _figure(max(6.0, 1.2 * len(_row_keys(report)) + 3), 6.5)
    if fig is None:
        return False
    keys = _row_keys(report)
    models = [m["label"] for m in report["models"]]
    rows = {(r["model"], r["batch_size"], r["threads"]): r for r in report["rows"]}
    top, bottom = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(models)
    x = np.arange(len(keys))
    for k, label in enumerate(models):
        found = [rows.get((label, b, t)) for b, t in keys]
        p50 = np.array([r["latency_ms"]["p50"] / r["batch_size"] if r else np.nan for r in found])
        p90 = np.array([r["latency_ms"]["p90"] / r["batch_size"] if r else np.nan for r in found])
        ips = np.array([r["throughput_ips"] if r else np.nan for r in found])
        offset = x - 0.4 + width * (k + 0.5)
        top.bar(offset, p50, width, yerr=[np.zeros_like(p50), p90 - p50], capsize=2, label=label)
        bottom.bar(offset, ips, width, label=label)
    top.set_ylabel("ms per image (p50, whisker p90)")
    top.legend(fontsize=8)
    bottom.set_ylabel("images / s (mean)")
    bottom.set_xticks(x, [f"batch {b}\n{t} thread{'s' if t > 1 else ''}" for b, t in keys], fontsize=8)
    env = report["environment"]
    top.set_title(f"{env['cpu']['model']} · onnxruntime {env['versions'].get('onnxruntime', '?')}", fontsize=9)
    _save(fig, path, record, replace)
    return True


def _row_keys(report: dict) -> list[tuple[int, int]]:
    return sorted({(r["batch_size"], r["threads"]) for r in report["rows"]}, key=lambda k: (k[1], k[0]))


def plot_compare(comparison: dict, path: Path, record: bool = True, *, replace: bool = False) -> bool:
    """Mean latency of each row in each run, as a ratio to the reference run (log scale)."""
    fig = _figure(max(6.0, 0.5 * len(comparison["rows"]) + 3), 4.5)
    if fig is None:
        return False
    runs = [r["name"] for r in comparison["runs"]]
    rows = comparison["rows"]
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(runs) - 1)
    for k in range(1, len(runs)):
        ratios = np.array([r["ratios"][k] if r["ratios"][k] is not None else np.nan for r in rows])
        # bars grow from 1 (no difference) up or down to the ratio
        bars = ax.bar(x - 0.4 + width * (k - 0.5), ratios - 1.0, width, bottom=1.0, label=f"{runs[k]} / {runs[0]}")
        for bar, row in zip(bars, rows, strict=True):
            if row["exceeds_spread"][k]:
                bar.set_hatch("//")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("mean latency ratio (hatched: beyond run-to-run spread)")
    ax.set_xticks(x, [f"{r['model']}\nb{r['batch_size']} t{r['threads']}" for r in rows], fontsize=7, rotation=45,
                  ha="right")
    ax.legend(fontsize=8)
    _save(fig, path, record, replace)
    return True
