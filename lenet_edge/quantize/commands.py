"""CLI command of the quantization stage: `quantize` (onnx and onnxruntime imported inside)."""

from __future__ import annotations

from pathlib import Path

import click

from ..options import FiniteFloatRange, data_dir_option, force_option
from ..progress import ProgressDisplay
from .settings import (  # pure Python, light
    AUTO_MAX_ACCURACY_DROP,
    DEFAULT_CALIBRATION_COUNT,
    DEFAULT_MAX_ACCURACY_DROP,
    FORMATS,
    METHODS,
    MODES,
    TARGETS,
    TYPES,
)


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Int8 model path [default: MODEL with the suffix .int8.onnx].")
@click.option("--mode", type=click.Choice(MODES), default="static", show_default=True,
              help="static: activation ranges calibrated on training images; dynamic: computed per batch.")
@click.option("--format", "quant_format", type=click.Choice(FORMATS), default=None,
              help="Static only: QuantizeLinear/DequantizeLinear pairs or QLinear* operators [default: qdq].")
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="Weight scales per output channel.")
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="Static only: calibration method [default: minmax].")
@click.option("--calibration-count", type=click.IntRange(min=0), default=None,
              help="Static only: training images to calibrate on [default: 1000].")
@click.option("--calibration-images", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Static only: digits to calibrate on instead of MNIST's training images: an image, .npy or IDX "
                   "file, read as `run` reads its inputs.")
@click.option("--target", type=click.Choice(TARGETS), default="host", show_default=True,
              help="CPU the int8 types are chosen for, following onnxruntime's guidance.")
@click.option("--activation-type", type=click.Choice(TYPES), default=None, help="Override the target's choice.")
@click.option("--weight-type", type=click.Choice(TYPES), default=None, help="Override the target's choice.")
@click.option("--reduce-range/--full-range", default=None,
              help="7-bit weights against saturation on x86 without VNNI [default: the target's choice].")
@click.option("--exclude-node", "exclude_nodes", multiple=True, metavar="NAME",
              help="Keep this node in float (repeatable).")
@click.option("--exclude-op-type", "exclude_op_types", multiple=True, metavar="TYPE",
              help="Keep every node of this op type in float, e.g. Conv (repeatable).")
@click.option("--max-accuracy-drop", type=FiniteFloatRange(min=0), default=None,
              help=f"Refuse the int8 model if it loses more test accuracy than this, in percentage points "
                   f"[default: {DEFAULT_MAX_ACCURACY_DROP:g}; {AUTO_MAX_ACCURACY_DROP:g} with --auto].")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the per-layer error report (JSON) here and print it as a table.")
@click.option("--auto", is_flag=True,
              help="Search recipes (standard, C1 in float, an exact kernel-friendly rewrite of the graph) and keep "
                   "the fastest vs fp32 that is within --max-accuracy-drop and 3x smaller; prints every candidate.")
@data_dir_option
@force_option
def quantize(model, out, mode, quant_format, per_channel, method, calibration_count, calibration_images, target,
             activation_type, weight_type, reduce_range, exclude_nodes, exclude_op_types, max_accuracy_drop,
             report, auto, data_dir, force) -> None:
    """Quantize an fp32 ONNX model to int8 with onnxruntime, validated against the fp32 model.

    The int8 model is written only if it passes: accuracy on the official MNIST test set
    within --max-accuracy-drop of the fp32 model, its convolutions and fully connected
    layers running as int8 kernels, and agreement with the ONNX reference implementation.
    """
    from ..errors import require
    from ..mnist_download import resolve_data_dir

    require("onnx", "quantize")
    from .settings import QuantSettings
    from .stage import quantize_model

    static_only = {"--format": quant_format, "--method": method, "--calibration-count": calibration_count,
                   "--calibration-images": calibration_images}
    if mode == "dynamic":
        given = [name for name, value in static_only.items() if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} only apply to --mode static "
                                   f"(dynamic quantization has no calibration)")
    settings = QuantSettings(
        mode=mode, format=quant_format or "qdq", per_channel=per_channel, method=method or "minmax",
        calibration_count=DEFAULT_CALIBRATION_COUNT if calibration_count is None else calibration_count,
        target=target, activation_type=activation_type, weight_type=weight_type, reduce_range=reduce_range,
        exclude_nodes=exclude_nodes, exclude_op_types=exclude_op_types)
    out = out or model.with_name(model.name.removesuffix(".onnx") + ".int8.onnx")
    if max_accuracy_drop is None:
        max_accuracy_drop = AUTO_MAX_ACCURACY_DROP if auto else DEFAULT_MAX_ACCURACY_DROP
    data_dir = resolve_data_dir(data_dir)
    if auto:
        _refuse_searched_options(click.get_current_context())
    run = {"data_dir": data_dir, "max_accuracy_drop": max_accuracy_drop, "report": report, "force": force,
           "calibration_images": calibration_images}
    with ProgressDisplay("quantize") as progress:
        if auto:
            from .search import auto_quantize, format_search

            result = auto_quantize(model, out, base=settings, progress=progress, **run)
        else:
            result = quantize_model(model, out, settings=settings, progress=progress, **run)
    click.echo(format_summary(result))
    if auto:
        click.echo(format_search(result.search))


SEARCHED = ("mode", "quant_format", "per_channel", "method", "activation_type", "weight_type", "reduce_range",
            "exclude_nodes", "exclude_op_types")  # options --auto chooses itself


def _refuse_searched_options(ctx: click.Context) -> None:
    defaulted = (click.core.ParameterSource.DEFAULT, None)
    given = [p.opts[0] for p in ctx.command.params if p.name in SEARCHED and ctx.get_parameter_source(p.name)
             not in defaulted]
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot be combined with --auto (the search chooses them; "
                               f"--target, --calibration-count and --calibration-images apply to every candidate)")


def format_summary(result) -> str:
    """What `quantize` prints of a stage.Quantized."""
    q, size, st, ref = result.quantization, result.size, result.structure, result.reference
    s, v = q.settings, q.validation
    if s.is_static:
        how = f"static {s.format}, {s.method} calibration on {s.calibration_count} images ({q.calibration_source})"
    else:
        how = "dynamic"
    excluded = f"; kept in float: {', '.join(q.excluded_nodes)}" if q.excluded_nodes else ""
    lines = [
        f"{result.model}: {how}",
        f"types: {s.activation_type} activations, {s.weight_type} weights "
        f"{'per channel' if s.per_channel else 'per tensor'}{', reduce_range' if s.reduce_range else ''}"
        f"{excluded}; why: {s.type_reason}",
        f"accuracy on {v.test_images} test images: fp32 {v.fp32_accuracy:.2%}, int8 {v.int8_accuracy:.2%} "
        f"(drop {v.accuracy_drop_points:.2f} points, limit {result.max_accuracy_drop:g}); "
        f"top-1 agreement {v.top1_agreement:.2%}",
        f"size: {size.fp32_bytes:,} -> {size.int8_bytes:,} bytes ({size.times_smaller:.2f}× smaller)",
        f"int8 kernels after onnxruntime's optimisation: {st['int8']['conv']}/{st['expected_int8']['conv']} "
        f"convolutions, {st['int8']['fc']}/{st['expected_int8']['fc']} fully connected layers",
        f"ONNX reference implementation: {ref['top1_agreement']:.1%} top-1 agreement with onnxruntime on "
        f"{ref['images']} images (max logit difference {ref['max_abs_logit_diff']:.3g})",
    ]
    if result.layers is not None:  # only with --report: layer_report.py is not imported otherwise
        from .layer_report import format_table

        lines += [format_table(result.layers), f"report: {result.report}"]
    return "\n".join(lines)
