"""The whole job in one command: train -> export -> quantize -> evaluate -> bench -> report.

Everything is built in a staging directory beside DIR and moved into place only when
every stage has passed, so a failed or interrupted run leaves an earlier DIR as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from .options import data_dir_option, force_option

FP32, INT8 = "model.onnx", "model.int8.onnx"


def run_pipeline(data_dir: Path | None, out: Path, *, variant: str = "lenet5-modern", force: bool = False,
                 bench_runs: int = 200, step: Callable[[str], None] = lambda message: None) -> dict:
    """Run every stage into `out`; return the figures that report.md is written from."""
    from .compile.stage import microcontroller_section
    from .datasource import resolve_data_dir
    from .errors import OutputError
    from .export.exporter import export_checkpoint
    from .fileio import ensure_directory, write_json, write_text
    from .quantize.search import auto_quantize
    from .runtime.bench import bench
    from .runtime.evaluate import evaluate
    from .runtime.plots import plot_confusion
    from .runtime.report import write_bench_outputs
    from .train.curves import plot_curves
    from .train.recipes import default_recipe
    from .train.trainer import train

    out = Path(out)
    if out.exists() and not force:
        raise OutputError(f"{out}: already exists (expected a new directory); pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file (expected a directory for the pipeline's artefacts)")
    data = resolve_data_dir(data_dir)
    ensure_directory(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"{out}: cannot write in {out.parent} ({exc.strerror})") from exc
    try:
        checkpoint = staging / f"{variant}.safetensors"
        recipe = default_recipe(variant)
        step(f"train {variant} ({recipe.epochs} epochs)")
        trained = train(data, checkpoint, recipe,
                        on_epoch=lambda h: step(f"  epoch {h['epoch']}: val {h['val_accuracy']:.2%}"))
        plot_curves(trained["history"], checkpoint.with_suffix(".curves.png"), title=f"{variant} on MNIST")

        step("export to ONNX, checking parity with PyTorch")
        exported = export_checkpoint(checkpoint, staging / FP32, data_dir=data)
        step("quantize to int8 (--auto: candidates validated and timed against fp32)")
        quantized = auto_quantize(staging / FP32, staging / INT8, data_dir=data,
                                  report=staging / "quantize.json", on_step=step)

        evaluations = {}
        for label, name in (("fp32", FP32), ("int8", INT8)):
            step(f"evaluate {label}")
            evaluations[label] = evaluate(staging / name, data)
            write_json(staging / f"evaluate.{label}.json", evaluations[label])
            plot_confusion(evaluations[label], staging / f"confusion.{label}.png")

        step("bench fp32, int8 and PyTorch eager side by side")
        report = bench({"fp32": staging / FP32, "int8": staging / INT8}, batch_sizes=(1, 64), threads=(1, 2),
                       runs=bench_runs, checkpoint=checkpoint, data_dir=data)
        bench_paths = write_bench_outputs(report, staging / "bench.json", staging / "bench.md",
                                          staging / "bench.png", baseline="fp32")
        summary = {"variant": variant, "training": trained, "export": exported, "quantize": quantized,
                   "evaluate": evaluations, "bench": report}
        summary["mcu"], mcu_section = microcontroller_section(staging / INT8, staging / "mcu", data_dir=data, step=step)
        write_text(staging / "report.md",
                   render_report(summary, bench_paths["md"].read_text("utf-8")) + "\n" + mcu_section)
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _move_into_place(staging: Path, out: Path) -> None:
    """Swap the finished staging directory in for `out`, keeping the old one until it succeeds."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old / out.name, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def render_report(s: dict, bench_markdown: str) -> str:
    t, e, q = s["training"], s["export"], s["quantize"]
    v, settings = q["validation"], q["settings"]
    ev32, ev8 = s["evaluate"]["fp32"], s["evaluate"]["int8"]
    worst = q["layers"]["worst_activation"]
    parity = ", ".join(f"batch {p['batch_size']}: {p['max_abs_diff']:.1e}" for p in e["parity"])
    lines = [
        f"# lenet-edge pipeline: {s['variant']}",
        "",
        "## Training",
        f"- {t['train_images']} training images, {t['val_images']} held out for validation; "
        f"{t['epoch']} epochs in {t['train_seconds']:.0f} s",
        f"- test accuracy (PyTorch, 10,000 official test images): {t['test_accuracy']:.2%}",
        "- curves: " + f"`{s['variant']}.curves.png`",
        "",
        "## Export (`model.onnx`)",
        f"- opset {e['opset']}; parity with PyTorch, max |logit difference| ({parity}), tolerance {e['tolerance']:g}; "
        f"argmax identical",
        f"- accuracy through onnxruntime: {e['accuracy']['onnxruntime']:.2%} (PyTorch {e['accuracy']['pytorch']:.2%})",
        "",
        "## Quantization (`model.int8.onnx`)",
        f"- recipe {settings['recipe']['name']}, chosen by quantize --auto: {q['search']['why']}",
        f"- {settings['mode']} {settings.get('format', '')} {settings.get('method', '')}, "
        f"{settings['activation_type']} activations, {settings['weight_type']} weights"
        + (f", kept in float: {', '.join(settings['excluded_nodes'])}" if settings.get("excluded_nodes") else ""),
        f"- accuracy fp32 {v['fp32_accuracy']:.2%}, int8 {v['int8_accuracy']:.2%} "
        f"(drop {v['accuracy_drop_points']:.2f} points); top-1 agreement {v['top1_agreement']:.2%}",
        f"- size {v['fp32_bytes']:,} → {v['int8_bytes']:,} bytes ({v['size_ratio']:.2f}× smaller)",
    ]
    if worst is not None:
        lines.append(f"- worst per-layer SQNR: {worst['sqnr_db']:.1f} dB at `{worst['tensor']}` ({worst['op']}); "
                     "every layer in `quantize.json`")
    lines += [
        "",
        "## Evaluation (official test set, onnxruntime)",
        f"- fp32 {ev32['accuracy']:.2%} ({ev32['images'] - ev32['correct']} errors), "
        f"int8 {ev8['accuracy']:.2%} ({ev8['images'] - ev8['correct']} errors); "
        "per class and confusion matrices in `evaluate.*.json` and `confusion.*.png`",
        "",
        "## Bench",
        "",
        bench_markdown.replace("# lenet-edge bench\n", "", 1).strip(),
        "",
    ]
    return "\n".join(lines)


@click.command()
@data_dir_option
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("runs/pipeline"),
              show_default=True, help="Directory for every artefact (replaced only with --force).")
@click.option("--variant", type=click.Choice(("lenet5-modern", "lenet5")), default="lenet5-modern", show_default=True)
@click.option("--bench-runs", type=click.IntRange(min=10), default=200, show_default=True,
              help="Timed runs per model and bench row.")
@force_option
def pipeline(data_dir, out, variant, bench_runs, force) -> None:
    """Train, export, quantize, evaluate and bench, and write report.md: the whole job.

    DIR ends up with the checkpoint and its curves, model.onnx, model.int8.onnx,
    quantize.json, evaluate.{fp32,int8}.json, confusion PNGs, bench.json/.md/.png and
    report.md. Nothing is moved into DIR until every stage has passed.
    """
    run_pipeline(data_dir, out, variant=variant, force=force, bench_runs=bench_runs,
                 step=lambda message: click.echo(message, err=True))
    click.echo((out / "report.md").read_text("utf-8"))
    click.echo(f"artefacts: {out}", err=True)
