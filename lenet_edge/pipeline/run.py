"""run_pipeline: every stage, in order, into one directory.

Everything is built in a staging directory beside `out` (fileio.staged_directory) and moved
into place only when every stage has passed, so a failed or interrupted run leaves an earlier
`out` as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from ..errors import OutputError
from ..fileio import check_name
from ..progress import Progress
from ..scratch import scratch_directory

FP32, INT8 = "model.onnx", "model.int8.onnx"


def check_output_directory(out: Path, force: bool) -> None:
    """`out` must be new, or an earlier run's directory to replace with --force."""
    check_name(out)
    if out.exists() and not force:
        raise OutputError(f"{out}: already exists (expected a new directory); pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file (expected a directory for the pipeline's artefacts)")


def _no_progress(label: str) -> AbstractContextManager[Progress]:
    return contextlib.nullcontext(lambda done, total, what: None)


def run_pipeline(data_dir: Path, out: Path, *, variant: str = "lenet5-modern", force: bool = False,
                 bench_runs: int = 200, check_images: int = 1000, step: Callable[[str], None] = lambda message: None,
                 progress: Callable[[str], AbstractContextManager[Progress]] = _no_progress) -> dict:
    """Run every stage on the MNIST files in `data_dir` into `out`; return the figures report.md is
    written from: {"variant", "training", "export", "quantize", "evaluate": {"fp32", "int8"}, "bench", "mcu",
    "web", "charts": {name: file or None}}.

    `check_images`: MNIST test images each microcontroller build must reproduce (compile's check).
    `step` hears what each stage starts; `progress(label)` gives the long steps (epochs, evaluation,
    bench rows) a display to report to, e.g. lenet_edge.progress.ProgressDisplay.
    """
    from ..bench.markdown import write_bench_outputs
    from ..bench.timing import bench
    from ..charts import plot_confusion
    from ..compile.stage import compile_for_pipeline
    from ..errors import DependencyError
    from ..export.exporter import export_checkpoint
    from ..fileio import ensure_directory, staged_directory, write_json, write_text
    from ..quantize.search import auto_quantize
    from ..quantize.settings import STANDARD
    from ..runtime.evaluate import evaluate
    from ..train.curves import plot_curves
    from ..train.recipes import default_recipe
    from ..train.trainer import train
    from ..web.site import build_site
    from .report import render_report

    out = Path(out)
    check_output_directory(out, force)
    ensure_directory(out)
    with staged_directory(out, replace=force) as staging, scratch_directory("pipeline") as scratch:
        checkpoint = staging / f"{variant}.safetensors"
        recipe = default_recipe(variant)
        step(f"train {variant} ({recipe.epochs} epochs)")
        with progress("train") as epochs:
            trained = train(data_dir, checkpoint, recipe, on_epoch=lambda h: epochs(
                h["epoch"], recipe.epochs, f"epoch {h['epoch']}: val {h['val_accuracy']:.2%}"))
        curves = checkpoint.with_suffix(".curves.png")
        plot_curves(trained["history"], curves, title=f"{variant} on MNIST")
        charts = {"curves": curves.name}

        step("export to ONNX, checking parity with PyTorch")
        exported = export_checkpoint(checkpoint, staging / FP32, data_dir=data_dir)
        step("quantize to int8 (--auto: candidates validated and timed against fp32)")
        standard = Path(scratch) / "standard.int8.onnx"  # a candidate for microcontrollers (compile.stage)
        quantized = auto_quantize(staging / FP32, staging / INT8, data_dir=data_dir,
                                  report=staging / "quantize.json", also_write={STANDARD: standard},
                                  progress=lambda done, total, what: step(f"  {what}") if done < total else None)

        evaluations = {}
        for precision, name in (("fp32", FP32), ("int8", INT8)):
            step(f"evaluate {precision}")
            with progress(f"evaluate {precision}") as batches:
                evaluations[precision] = evaluate(staging / name, data_dir, progress=batches)
            write_json(staging / f"evaluate.{precision}.json", evaluations[precision])
            confusion = staging / f"confusion.{precision}.png"
            drawn = plot_confusion(evaluations[precision], confusion)
            charts[f"confusion.{precision}"] = confusion.name if drawn else None

        step("bench fp32, int8 and PyTorch eager side by side")
        with progress("bench") as rows:
            timings = bench({"fp32": staging / FP32, "int8": staging / INT8}, batch_sizes=(1, 64), threads=(1, 2),
                            runs=bench_runs, checkpoint=checkpoint, data_dir=data_dir, progress=rows)
        written = write_bench_outputs(timings, staging / "bench.json", staging / "bench.md", staging / "bench.png",
                                      baseline="fp32")
        charts["bench"] = written.png.name if written.png else None
        step("web: the browser site (onnxruntime-web)")
        try:  # labelled as bench labels them, so that compare lines the page's report up with bench.json
            web = build_site(staging / INT8, staging / "web", staging / FP32, labels=("int8", "fp32"))
        except DependencyError as exc:  # no runtime files on this machine: the rest of the pipeline runs
            web = {"skipped": str(exc)}
        int8_models = {quantized.search["winner"]: staging / INT8,
                       **{name: Path(path) for name, path in quantized.also_written.items()}}
        mcu = compile_for_pipeline(int8_models, staging / "mcu", data_dir=data_dir, check_images=check_images,
                                   step=step)
        summary = {"variant": variant, "training": trained, "export": exported, "quantize": quantized,
                   "evaluate": evaluations, "bench": timings, "mcu": mcu, "web": web,
                   "charts": charts}
        write_text(staging / "report.md", render_report(summary))
    return summary
