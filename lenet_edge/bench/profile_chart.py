"""The profile's chart: per thread count, a stacked bar per model and batch size, one segment per layer.

A bar is the sum of the row's layer medians per image (us), the call overhead included, so batch 1 and 64
share an axis; a black mark is the same model's call with the profiler off. Drawn with matplotlib's object
API as charts.py draws the others; skipped without matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..charts import new_figure, save_figure
from ..contract import LAYERS
from .profile_report import OVERHEAD, ProfileReport, row_layers


def plot_profile(report: ProfileReport, path: Path, record: bool = True, *, replace: bool = False) -> bool:
    """Write the chart to `path`; False (nothing written) when matplotlib is not installed."""
    threads = report.settings.threads
    labels = [m.label for m in report.models]
    bars = [(label, b) for b in report.settings.batch_sizes for label in labels]
    fig = new_figure(max(6.0, 0.7 * len(bars) + 3), 3.2 * len(threads) + 1)
    if fig is None:
        return False
    axes = np.atleast_1d(fig.subplots(len(threads), 1, squeeze=False)[:, 0])
    layers = row_layers(list(report.rows))
    palette = [f"C{i}" for i in range(10) if i != 7]  # C7 (grey) is the call overhead's
    colours = {name: palette[i % len(palette)] for i, name in enumerate(layers)}
    colours[OVERHEAD] = "C7"
    for ax, t in zip(axes, threads, strict=True):
        x = np.arange(len(bars))
        bottom = np.zeros(len(bars))
        for name in layers:
            heights = []
            for label, b in bars:
                row = report.row(label, b, t)
                entry = row.layer(name) if row else None
                heights.append(entry.median_us / b if entry else 0.0)
            ax.bar(x, heights, 0.7, bottom=bottom, label=name, color=colours[name],
                   hatch="//" if name not in LAYERS and name != OVERHEAD else None)  # inserted by onnxruntime
            bottom += heights
        unprofiled = [(row.unprofiled_median_us / b if (row := report.row(label, b, t)) else np.nan)
                      for label, b in bars]
        ax.scatter(x, unprofiled, marker="_", s=600, color="black", zorder=3,
                   label="call, profiler off" if ax is axes[0] else None)
        ax.set_xticks(x, [f"{label}\nbatch {b}" for label, b in bars], fontsize=7)
        ax.set_ylabel(f"us per image, {t} thread{'s' if t > 1 else ''}")
    axes[0].legend(fontsize=7, ncol=2, loc="upper right")
    env = report.environment
    axes[0].set_title(f"median per layer (onnxruntime profiler on) · {env['cpu']['model']} · onnxruntime "
                      f"{env['versions'].get('onnxruntime', '?')}", fontsize=8)
    save_figure(fig, path, record, replace)
    return True
