"""report.md of a pipeline run: one section per stage, rendered from the figures run_pipeline returns.

A section is a function of those figures returning its Markdown lines, "## Title" first; SECTIONS
lists them in order, so a new stage adds its figures to the run and one function here. Charts are
embedded as images (the report sits beside them), so it reads with its pictures on a code host or
in an editor's preview.
"""

from __future__ import annotations

from collections.abc import Callable

from ..compile.records import BuildChoice


def _image(summary: dict, chart: str, caption: str) -> list[str]:
    """The Markdown image of a chart drawn into the run's directory; nothing when it was skipped."""
    name = summary["charts"].get(chart)
    return ["", f"![{caption}]({name})"] if name else []


def training_section(summary: dict) -> list[str]:
    training = summary["training"]
    return [
        "## Training",
        f"- {training['train_images']} training images, {training['val_images']} held out for validation; "
        f"{training['epoch']} epochs in {training['train_seconds']:.0f} s",
        f"- test accuracy (PyTorch, 10,000 official test images): {training['test_accuracy']:.2%}",
        *_image(summary, "curves", f"{summary['variant']}: loss and accuracy per epoch"),
    ]


def export_section(summary: dict) -> list[str]:
    export = summary["export"]
    parity = ", ".join(f"batch {p['batch_size']}: {p['max_abs_diff']:.1e}" for p in export["parity"])
    return [
        "## Export (`model.onnx`)",
        f"- opset {export['opset']}; parity with PyTorch, max |logit difference| ({parity}), "
        f"tolerance {export['tolerance']:g}; argmax identical",
        f"- accuracy through onnxruntime: {export['accuracy']['onnxruntime']:.2%} "
        f"(PyTorch {export['accuracy']['pytorch']:.2%})",
    ]


def quantization_section(summary: dict) -> list[str]:
    quantized = summary["quantize"]  # a quantize.stage.Quantized
    record, size = quantized.quantization, quantized.size
    settings, validation, excluded = record.settings, record.validation, record.excluded_nodes
    lines = [
        "## Quantization (`model.int8.onnx`)",
        f"- recipe {record.recipe.name}, chosen by quantize --auto: {quantized.search['why']}",
        f"- {settings.mode} {settings.format if settings.is_static else ''} "
        f"{settings.method if settings.is_static else ''}, "
        f"{settings.activation_type} activations, {settings.weight_type} weights"
        + (f", kept in float: {', '.join(excluded)}" if excluded else ""),
        f"- accuracy fp32 {validation.fp32_accuracy:.2%}, int8 {validation.int8_accuracy:.2%} "
        f"(drop {validation.accuracy_drop_points:.2f} points); top-1 agreement {validation.top1_agreement:.2%}",
        f"- size {size.fp32_bytes:,} → {size.int8_bytes:,} bytes ({size.times_smaller:.2f}× smaller)",
    ]
    worst = quantized.layers["worst_activation"]
    if worst is not None:
        lines.append(f"- worst per-layer SQNR: {worst['sqnr_db']:.1f} dB at `{worst['tensor']}` ({worst['op']}); "
                     "every layer in `quantize.json`")
    return lines


def evaluation_section(summary: dict) -> list[str]:
    fp32, int8 = summary["evaluate"]["fp32"], summary["evaluate"]["int8"]
    return [
        "## Evaluation (official test set, onnxruntime)",
        f"- fp32 {fp32['accuracy']:.2%} ({fp32['images'] - fp32['correct']} errors), "
        f"int8 {int8['accuracy']:.2%} ({int8['images'] - int8['correct']} errors); "
        "per class in `evaluate.*.json`",
        *_image(summary, "confusion.fp32", "fp32 confusion matrix"),
        *_image(summary, "confusion.int8", "int8 confusion matrix"),
    ]


def bench_section(summary: dict) -> list[str]:
    from ..bench.markdown import bench_section as bench_lines

    return ["## Bench", "", *bench_lines(summary["bench"], baseline="fp32"),
            *_image(summary, "bench", "p50 latency per call, each batch size on a log axis")]


def microcontroller_section(summary: dict) -> list[str]:
    from ..compile.check import render_markdown

    mcu = summary["mcu"]  # a compile.records.PipelineBuild
    lines = ["## On a microcontroller (generated C, emulated Cortex-M)", ""]
    if mcu.skipped is not None:
        return [*lines, f"not built: {mcu.skipped}"]
    record, choice = mcu.record, mcu.choice
    source = "`model.int8.onnx`" if choice.chosen == choice.shipped else "`mcu/model.int8.onnx`"
    return [*lines, f"`mcu/{record.name}.c` and `{record.name}.h`, compiled from {source} "
                    f"({choice.chosen} recipe) and checked against onnxruntime:", "",
            render_markdown(record).strip(), "", _build_table(choice)]


def _build_table(choice: BuildChoice) -> str:
    """The int8 models compiled, instructions per inference on each core: why this one."""
    targets = list(choice.candidates[choice.shipped].instructions_per_inference)
    rows = [f"| {label}{' (chosen)' if label == choice.chosen else ''} | "
            + " | ".join(f"{c.instructions_per_inference[t]:,.0f}" for t in targets)
            + f" | {c.most_ram_bytes:,} B |" for label, c in choice.candidates.items()]
    head = "| int8 recipe | " + " | ".join(f"{t} instructions" for t in targets) + " | RAM (most of any core) |"
    return "\n".join([f"Builds compared ({choice.rule}):", "", head,
                      "| --- |" + " --- |" * (len(targets) + 1), *rows, "", f"Chosen: {choice.why}."])


def web_section(summary: dict) -> list[str]:
    web = summary["web"]
    lines = ["## In the browser (onnxruntime-web)", ""]
    if "skipped" in web:
        return [*lines, f"not built: {web['skipped']}"]
    return [*lines, f"`web/` runs both models in a browser with onnxruntime-web {web['onnxruntime_web']}: "
                    "`lenet-edge web --serve web` in this directory, then open http://127.0.0.1:8000/ (draw a digit, "
                    f"check the page against this host's logits on {web['selfcheck_images']} test digits, bench it "
                    "and `lenet-edge compare bench.json bench-browser.json`)."]


SECTIONS: tuple[Callable[[dict], list[str]], ...] = (
    training_section, export_section, quantization_section, evaluation_section, bench_section,
    microcontroller_section, web_section)


def render_report(summary: dict) -> str:
    """report.md: a title, then each of SECTIONS, separated by blank lines."""
    blocks = [[f"# lenet-edge pipeline: {summary['variant']}"], *(section(summary) for section in SECTIONS)]
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"
