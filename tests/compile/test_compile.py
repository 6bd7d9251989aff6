"""The compile stage on a small int8 model built here: generated C built for the host and run on emulated
Cortex-M4F and M0+ cores, bit for bit against onnxruntime; refusals; deterministic bytes.

The toolchain (the mcu extra: ziglang, unicorn, pyelftools) is required: a missing one fails these tests.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lenet_edge.cli import cli
from lenet_edge.compile import kernels, toolchain
from lenet_edge.compile.check import (
    check_program,
    reference_logits,
    render_markdown,
    require_match,
    require_match_or_locate,
)
from lenet_edge.compile.emulate import EmulatedCore
from lenet_edge.compile.generate import compile_model
from lenet_edge.compile.records import (
    BuildCheck,
    CompiledLayer,
    CompileRecord,
    CoreFootprint,
    InstructionCounts,
    PipelineBuild,
)
from lenet_edge.errors import DataError, ValidationError
from lenet_edge.mnist import load_mnist

from ..idx_files import write_mnist_dir
from ..quantize_models import tiny_lenet


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(int8 model, fp32 model, synthetic MNIST dir): a hand-built model quantized by the quantize command."""
    tmp = tmp_path_factory.mktemp("tiny")
    fp32, data = tiny_lenet(tmp / "tiny.onnx"), write_mnist_dir(tmp / "mnist", train=200, test=60)
    result = CliRunner().invoke(cli, ["quantize", str(fp32), "--data-dir", str(data), "--calibration-count", "100",
                                      "--max-accuracy-drop", "100"])
    assert result.exit_code == 0, result.output
    return tmp / "tiny.int8.onnx", fp32, data


def compile_cli(model: Path, out: Path, data: Path, *args: str):
    return CliRunner().invoke(cli, ["compile", str(model), "-o", str(out), "--data-dir", str(data),
                                    "--check-images", "60", *args])


def test_compile_checks_host_and_both_cores_bit_for_bit(tiny_int8, tmp_path):
    model, _, data = tiny_int8
    out = tmp_path / "mcu"
    result = compile_cli(model, out, data, "--keep-elf")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "MANIFEST.sha256", "lenet.c", "lenet.cortex-m0plus.elf", "lenet.cortex-m4f.elf", "lenet.footprint.json",
        "lenet.footprint.md", "lenet.h"]
    record = json.loads((out / "lenet.footprint.json").read_text())
    assert record["bit_exact_required"] is True
    assert [(c["target"], c["images"], c["bit_mismatches"]) for c in record["checks"]] == [
        ("host", 60, 0), ("cortex-m4f", 60, 0), ("cortex-m0plus", 60, 0)]
    for f in record["footprint"]:
        assert f["constant_bytes"] > 4 * 25 + 10 * 784  # the weights are in flash (one variant of them per core)
        assert f["arena_bytes"] == record["arena_bytes"] and f["data_bytes"] == 0  # nothing copied into RAM
        assert 0 < f["stack_bytes"] < 1024
        assert f["instructions_per_inference"]["min"] > record["multiply_accumulates"] / 4
        # one count per layer function and one for the calls between them, adding up to the total
        per_layer = f["instructions_per_layer"]
        assert list(per_layer) == [layer["function"] for layer in record["layers"]] + ["calls"]
        assert sum(per_layer.values()) == f["instructions_per_inference"]["mean"]
        assert per_layer["layer1"] > record["layers"][1]["multiply_accumulates"] / 4 and 0 < per_layer["calls"] < 50
    assert [(layer["layer"], layer["multiply_accumulates"]) for layer in record["layers"]] == [
        ("input", 0), ("conv+pool", 4 * 25 * 28 * 28), ("fc", 10 * 4 * 14 * 14), ("logits_DequantizeLinear", 0)]
    assert "| cortex-m4f |" in result.stdout and "not cycles" in result.stdout
    assert re.search(r"\| conv\+pool \| layer1 \| 78,400 \| [\d,]+ \(\d+\.\d %\) \| [\d,]+ \(\d+\.\d %\) \|",
                     result.stdout)
    # the artefact's keys, as the stage has always written them; read back, the record is the one written
    assert list(record) == ["model", "model_sha256", "name", "variant", "bit_exact_required", "arena_bytes",
                            "constant_bytes", "multiply_accumulates", "entry_function", "layers", "checks",
                            "footprint"]
    assert list(record["checks"][0]) == ["target", "where", "images", "max_abs_diff", "argmax_mismatches",
                                         "bit_mismatches", "tolerance"]
    assert list(record["footprint"][0]) == [
        "target", "description", "where", "optimisation", "flash_bytes", "code_bytes", "constant_bytes",
        "ram_bytes", "arena_bytes", "data_bytes", "stack_bytes", "instructions_per_inference",
        "instructions_per_layer"]
    typed = CompileRecord.from_json(record, "lenet.footprint.json")
    assert typed.to_json() == record
    assert (out / "lenet.footprint.md").read_text().endswith(render_markdown(typed))
    from lenet_edge.compile.stage import choose_build
    from lenet_edge.pipeline.report import microcontroller_section

    build = PipelineBuild(typed, choose_build({"standard": typed}))
    section = "\n".join(microcontroller_section({"mcu": build}))
    assert "| conv+pool | layer1 | 78,400 |" in section and "| calls | lenet_infer |" in section  # report.md
    # the ELF's float ABI is what the core has
    assert toolchain.arm_attributes(out / "lenet.cortex-m4f.elf")["TAG_FP_ARCH"]
    assert not toolchain.arm_attributes(out / "lenet.cortex-m0plus.elf").get("TAG_FP_ARCH", 0)


def test_generated_c_is_self_contained_and_deterministic(tiny_int8):
    model, _, _ = tiny_int8
    first, second = compile_model(model), compile_model(model)
    assert (first.source, first.header) == (second.source, second.header)
    assert re.findall(r"#include\s+(\S+)", first.source) == ['"lenet.h"', "<arm_acle.h>"]  # no libc
    assert "malloc" not in first.source and "static uint32_t arena_words[LENET_ARENA_BYTES / 4];" in first.source
    assert re.findall(r"#define LENET_\w+ \d+", first.header)[:3] == [
        "#define LENET_PIXEL_SIDE 28", "#define LENET_PIXELS 784", "#define LENET_CLASSES 10"]
    # every weight array is const; one comment per layer gives its operator and shapes
    allowed = r"const|inline|NOINLINE (FOR_SIZE )?void|OUT_OF_LINE int32_t requantize|uint32_t arena"
    assert not re.search(rf"^static (?!{allowed})", first.source, re.M)
    assert '/* layer1: node "conv" (QLinearConv) u8 1x1x32x32 -> u8 1x4x14x14, 5x5 stride 1, then node "pool" ' \
           '(MaxPool) 2x2 fused in; with a DSP extension each pool cell\'s inputs widened once for its four windows, ' \
           'without one each pool cell\'s nonzero inputs multiplied into its four windows */' in first.source


def test_layers_are_named_as_the_model_names_them(tiny_int8, tmp_path):
    """The exporter's module scopes survive quantize; onnxruntime's fused nodes keep their names, and a node
    it adds (the final DequantizeLinear) computes for the layer before it."""
    import onnx

    _, _, data = tiny_int8
    model = onnx.load(str(tiny_lenet(tmp_path / "scoped.onnx")))
    scopes = {"conv": "['', 'C1', 'C1.0', 'conv2d']", "relu": "['', 'C1', 'C1.1', 'relu']",
              "pool": "['', 'S2', 'max_pool2d']", "fc": "['', 'OUTPUT', 'linear']"}
    for node in model.graph.node:
        if node.name in scopes:
            node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=scopes[node.name])
    onnx.save(model, str(tmp_path / "scoped.onnx"))
    program = compile_model(quantize_cli(tmp_path / "scoped.onnx", data, tmp_path / "scoped.int8.onnx"))
    assert [(layer.function, layer.layer) for layer in program.layers] == [
        ("layer0", "input"), ("layer1", "C1+S2"), ("layer2", "output"), ("layer3", "output")]
    assert "static NOINLINE void layer1(" in program.source  # counted apart on the emulated cores


def test_fp32_model_is_refused_naming_node_and_operator(tiny_int8, tmp_path):
    _, fp32, data = tiny_int8
    result = compile_cli(fp32, tmp_path / "mcu", data)
    assert result.exit_code == 4
    assert result.stderr.strip().splitlines()[-1] == (
        'error: node "conv" (FusedConv): no C kernel for this operator of onnxruntime\'s optimised graph (expected '
        'an int8 model from lenet-edge quantize; kernels for Add, AveragePool, DequantizeLinear, Div, MaxPool, Mul, '
        'QGemm, QLinearAdd, QLinearAveragePool, QLinearConv, QLinearMatMul, QLinearMul, QLinearSigmoid, '
        'QuantizeLinear, ReduceSum, Sub, Tanh, Transpose, and Reshape, Flatten, Squeeze, Unsqueeze, Identity)')
    assert not (tmp_path / "mcu").exists()


def test_existing_outputs_need_force(tiny_int8, tmp_path):
    model, _, data = tiny_int8
    out = tmp_path / "mcu"
    out.mkdir()
    (out / "lenet.c").write_text("mine")
    result = compile_cli(model, out, data, "--target", "cortex-m4f")
    assert result.exit_code == 6 and "already exists" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["lenet.c"] and (out / "lenet.c").read_text() == "mine"
    assert compile_cli(model, out, data, "--target", "cortex-m4f", "--force").exit_code == 0
    assert (out / "lenet.c").read_text() == compile_model(model).source


@pytest.mark.parametrize("args, code, message", [
    (["--name", "Le-Net"], 3, "expected a C identifier"),
    (["--check-images", "0"], 2, "Invalid value for '--check-images': 0 is not in the range 1<=x<=10000."),
])
def test_bad_options_are_refused_before_anything_is_written(tiny_int8, tmp_path, args, code, message):
    model, _, data = tiny_int8
    result = compile_cli(model, tmp_path / "mcu", data, *args)
    assert result.exit_code == code and message in result.stderr
    assert not (tmp_path / "mcu").exists()


def planted(source: str) -> str:
    """The C with the output scale one float32 step larger: every logit moves by about 1e-9."""
    matches = list(re.finditer(r"dequantize\(\(int32_t\)\(x\) - \d+, (0x[0-9a-f.]+p[-+]\d+)f\);", source))
    assert matches, "the planted change needs the final DequantizeLinear"
    match = matches[-1]
    changed = float(np.nextafter(np.float32(float.fromhex(match.group(1))), np.float32(1)))
    return source[:match.start(1)] + changed.hex() + source[match.end(1):]


def written(program, directory: Path) -> Path:
    """The program's lenet.c and lenet.h in `directory`, as compile writes them; the source's path."""
    source = directory / "lenet.c"
    source.write_text(program.source)
    (directory / "lenet.h").write_text(program.header)
    return source


def test_a_planted_mismatch_is_refused_on_host_and_emulated_core(tiny_int8, tmp_path):
    model, _, data = tiny_int8
    program = compile_model(model)
    program.source, program.trace_source = planted(program.source), planted(program.trace_source)
    source = written(program, tmp_path)
    images = load_mnist(data, "test")[0][:20]
    with pytest.raises(ValidationError, match=r"lenet.c on the host vs onnxruntime: logits differ bit-wise on 20 "
                                              r"of 20 images .*argmax differs on 0\)"):
        check_program(program, source, tmp_path, model, images, ["cortex-m4f"])
    target = toolchain.TARGETS["cortex-m4f"]
    core = EmulatedCore(toolchain.build_elf(source, tmp_path / "m4.elf", target, "lenet_infer"), target, 784, 10)
    with pytest.raises(ValidationError, match="on an emulated cortex-m4f: logits differ bit-wise on 20 of 20"):
        require_match(reference_logits(model, images), core.run(images), program, "lenet.c on an emulated cortex-m4f")


def one_ulp(source: str, array: str, index: int, direction: int) -> str:
    """`source` with entry `index` of the float array `array` one float32 step up (+1) or down (-1)."""
    match = re.search(rf"static const float {array}\[\d+\] = \{{[^\n]*\n([^}}]*)\}};", source)
    literals = list(re.finditer(r"-?0x[0-9a-f.]+p[-+]\d+f", match.group(1)))
    old = literals[index]
    value = np.float32(float.fromhex(old.group()[:-1]))
    new = float(np.nextafter(value, np.float32(np.inf if direction > 0 else -np.inf))).hex() + "f"
    start = match.start(1) + old.start()
    return source[:start] + new + source[start + len(old.group()):]


def boundary_digits(model: Path, direction: int, count: int = 4000) -> list[tuple[np.ndarray, int]]:
    """Random sparse digits whose first convolution's pooled accumulator, requantised with output channel m's
    scale one float32 step off in `direction`, gives another code: [(image, m)], found with the C's integer
    arithmetic in numpy. A one-ulp change moves a product by ~1e-5 of a code, so on MNIST's images it shows in
    the logits rarely (1 of 44 such changes in lenet5-modern's C1 and C3 did, on 1,000 test images)."""
    from numpy.lib.stride_tricks import sliding_window_view

    from lenet_edge.compile.conv import read_conv
    from lenet_edge.compile.kernels import scalar
    from lenet_edge.compile.runtime_graph import optimized_model, value_arrays, value_shapes
    from lenet_edge.contract import INPUT_NAME
    from lenet_edge.graph import GraphIndex
    from lenet_edge.runtime.session import load_model

    graph_model = optimized_model(model.read_bytes(), model)
    graph = GraphIndex(graph_model)
    node = next(n for n in graph.nodes if n.op_type == "QLinearConv")
    preprocessing = load_model(model).contract.preprocessing
    rng = np.random.default_rng(0)
    images = (rng.integers(0, 256, (count, 28, 28)) * (rng.random((count, 28, 28)) < 0.15)).astype(np.uint8)
    codes = value_arrays(graph_model, INPUT_NAME, preprocessing(images))[node.input[0]][:, 0]  # (N, 32, 32)
    conv = read_conv(graph, node, value_shapes(graph_model, INPUT_NAME, preprocessing(images[:1])))
    zp = int(scalar(graph, node, 7, "y_zero_point"))
    windows = sliding_window_view(codes.astype(np.float64), (5, 5), axis=(1, 2)).reshape(count, 28, 28, 25)
    acc = windows @ conv.taps.T.astype(np.float64) + conv.bias  # (N, 28, 28, M): exact integers
    best = acc.reshape(count, 14, 2, 14, 2, conv.m).max(axis=(2, 4)).astype(np.float32)
    off = np.nextafter(conv.scale, np.float32(np.inf if direction > 0 else -np.inf)).astype(np.float32)

    def requantise(scale):
        return np.rint(np.clip(best * scale, np.float32(-zp), np.float32(255 - zp)))

    image, channel = np.nonzero((requantise(conv.scale) != requantise(off)).any(axis=(1, 2)))
    return [(images[i], int(m)) for i, m in zip(image, channel, strict=True)]


def test_a_one_ulp_change_in_a_layer_scale_is_named_with_its_layer(tiny_int8, tmp_path):
    """The conv's requantisation scale one float32 step off, on a digit at that step's rounding boundary:
    the error names the conv (not the Gemm after it, whose output differs too) and by how much, on the host
    and on an emulated core."""
    model, _, _ = tiny_int8
    tried = []
    for direction in (1, -1):
        for image, channel in boundary_digits(model, direction)[:10]:
            program = compile_model(model)
            program.source = one_ulp(program.source, "layer1_scale", channel, direction)
            program.trace_source = one_ulp(program.trace_source, "layer1_scale", channel, direction)
            source = written(program, tmp_path)
            images = image[None]
            expected = reference_logits(model, images)
            try:
                check_program(program, source, tmp_path, model, images, [], expected=expected)
            except ValidationError as exc:
                tried.append(str(exc))
                break
            tried.append("same logits")
        if tried and tried[-1] != "same logits":
            break
    assert tried and tried[-1] != "same logits", f"no boundary digit moved a logit ({len(tried)} tried)"
    assert re.search(r"^lenet.c on the host vs onnxruntime: logits differ bit-wise on 1 of 1 images .*; first layer "
                     r"that differs on image 0: conv\+pool \(layer1\), [1-4] of 784 uint8 values, by up to 1$",
                     tried[-1]), tried[-1]
    target = toolchain.TARGETS["cortex-m4f"]
    core = EmulatedCore(toolchain.build_elf(source, tmp_path / "m4.elf", target, "lenet_infer"), target, 784, 10)
    with pytest.raises(ValidationError, match=r"^m4: logits differ bit-wise on 1 of 1 .*; first layer that differs "
                                              r"on image 0: conv\+pool \(layer1\), [1-4] of 784 uint8 values, by up "
                                              r"to 1$"):
        require_match_or_locate(expected, core.run(images), program, "m4", (tmp_path, model, images, "cortex-m4f"))


def test_a_soft_float_build_for_the_m4f_is_refused(tiny_int8, tmp_path):
    model, _, _ = tiny_int8
    source = tmp_path / "lenet.c"
    source.write_text(compile_model(model).source)
    (tmp_path / "lenet.h").write_text(compile_model(model).header)
    no_fpu = dataclasses.replace(toolchain.TARGETS["cortex-m4f"], cpu="cortex_m4")  # zig: no FPU, -mfpu ignored
    with pytest.raises(ValidationError, match=r"built for cortex-m4f without hardware float \(Tag_FP_arch 0"):
        toolchain.build_elf(source, tmp_path / "soft.elf", no_fpu, "lenet_infer")
    with_fpu = dataclasses.replace(toolchain.TARGETS["cortex-m0plus"], triple="thumb-freestanding-eabihf",
                                   cpu="cortex_m4+vfp4d16sp")
    with pytest.raises(ValidationError, match="with FPU instructions"):
        toolchain.build_elf(source, tmp_path / "hard.elf", with_fpu, "lenet_infer")


def test_instruction_counts_are_deterministic(tiny_int8, tmp_path):
    model, _, data = tiny_int8
    program = compile_model(model)
    source = written(program, tmp_path)
    target = toolchain.TARGETS["cortex-m4f"]
    elf = toolchain.build_elf(source, tmp_path / "m4.elf", target, "lenet_infer")
    image = load_mnist(data, "test")[0][0]
    counts = [EmulatedCore(elf, target, 784, 10).count_instructions(image) for _ in range(2)]
    assert counts[0] == counts[1] > program.macs / 4


def test_pipeline_section_without_the_toolchain_gives_one_line_and_builds_nothing(tiny_int8, tmp_path, monkeypatch):
    import sys

    from lenet_edge.compile.stage import compile_for_pipeline
    from lenet_edge.pipeline.report import microcontroller_section

    model, _, data = tiny_int8
    monkeypatch.setitem(sys.modules, "unicorn", None)  # as on a machine without the mcu extra: import fails
    build = compile_for_pipeline({"standard": model}, tmp_path / "mcu", data_dir=data)
    assert build == PipelineBuild(skipped="unicorn is not installed (needed here); install it with pip install "
                                          "'lenet-edge[mcu]'")
    assert microcontroller_section({"mcu": build})[-1] == f"not built: {build.skipped}"
    assert not (tmp_path / "mcu").exists()


def test_the_pipeline_keeps_the_shipped_build_on_a_tie_and_reports_it(tiny_int8, tmp_path):
    """Two labels of the same model: the same instructions, so the shipped one's C goes into `out`, its record
    naming the model it was compiled from, not a scratch copy; report.md's section reads that record."""
    from lenet_edge.compile.stage import compile_for_pipeline
    from lenet_edge.pipeline.report import microcontroller_section

    model, _, data = tiny_int8
    build = compile_for_pipeline({"kernel-friendly": model, "standard": model}, tmp_path / "mcu", data_dir=data,
                                 check_images=4)
    assert build.skipped is None and build.choice.chosen == build.choice.shipped == "kernel-friendly"
    assert build.record.model == str(model) and not (tmp_path / "mcu" / "model.int8.onnx").exists()
    written = json.loads((tmp_path / "mcu" / "lenet.footprint.json").read_text())
    assert written == build.record.to_json() and [c["images"] for c in written["checks"]] == [4, 4, 4]
    counts = build.choice.candidates["standard"].instructions_per_inference
    assert counts == {f.target: f.instructions_per_inference.mean for f in build.record.footprint}
    section = "\n".join(microcontroller_section({"mcu": build}))
    assert "compiled from `model.int8.onnx` (kernel-friendly recipe)" in section
    assert "| kernel-friendly (chosen) |" in section and "| standard |" in section


def _build(m4f: int, m0plus: int) -> CompileRecord:
    """A compile record with these instructions per inference on the two cores."""
    cores = tuple(CoreFootprint(t, t, "emulated (unicorn)", "-O2", 60_000, 2_000, 58_000, 1_000, 600, 0, 400,
                                InstructionCounts(20, n, n, n), {"layer0": n - 10, "calls": 10})
                  for t, n in (("cortex-m4f", m4f), ("cortex-m0plus", m0plus)))
    return CompileRecord("x.int8.onnx", "0" * 64, "lenet", "lenet5-modern", True, 600, 58_000, 416_520,
                         "lenet_infer", (CompiledLayer("layer0", "input", "the input", 0),),
                         (BuildCheck("host", "native x86_64", 20, 0.0, 0, 0, 0.0),), cores)


@pytest.mark.parametrize("alternative, chosen", [
    ((1_070_000, 3_370_000), "standard"),  # fewer on both cores (lenet5-modern)
    ((1_400_000, 24_300_000), "kernel-friendly"),  # fewer on the M4F, 3.2x more on the M0+ (lenet5-tanh's tanh)
    ((2_450_000, 7_500_000), "kernel-friendly"),  # within 2 % on the worse core: the shipped model stays
])
def test_the_pipeline_compiles_the_build_best_in_the_worst_case(alternative, chosen):
    from lenet_edge.compile.stage import choose_build

    choice = choose_build({"kernel-friendly": _build(2_480_000, 7_020_000), "standard": _build(*alternative)})
    assert choice.chosen == chosen and choice.shipped == "kernel-friendly"
    assert choice.candidates["standard"].instructions_per_inference == dict(
        zip(("cortex-m4f", "cortex-m0plus"), alternative, strict=True))


def test_a_footprint_record_round_trips_through_its_json():
    record = _build(1_000, 3_000)
    host = dataclasses.replace(record.checks[0], tolerance=float("inf"))  # a float variant: only the argmax promised
    record = dataclasses.replace(record, checks=(host,))
    assert CompileRecord.from_json(json.loads(json.dumps(record.to_json())), "f.json") == record


def _forged(change) -> dict:
    obj = json.loads(json.dumps(_build(1_000, 3_000).to_json()))
    change(obj)
    return obj


@pytest.mark.parametrize("change, message", [
    (lambda o: o["checks"][0].update(bit_mismatches="0"), r"f\.json: checks\[0\]\.bit_mismatches is str \(expected int "
                                                          r"in a compile footprint record"),
    (lambda o: o["checks"][0].update(tolerance=float("nan")), r"checks\[0\]\.tolerance is nan \(expected a finite"),
    (lambda o: o.update(bit_exact_required=1), r"bit_exact_required is int \(expected bool"),
    (lambda o: o["footprint"][1].pop("stack_bytes"), r"footprint\[1\]\.stack_bytes is missing"),
    (lambda o: o["footprint"][0]["instructions_per_layer"].update(layer0=5),
     r"footprint\[0\]\.instructions_per_layer adds up to 15 \(expected the mean per inference, 1,000\)"),
    (lambda o: o["layers"][0].update(function="layer9"),
     r"footprint\[0\]\.instructions_per_layer counts \['layer0', 'calls'\] \(expected \['layer9', 'calls'\]"),
    (lambda o: o["footprint"][0].update(target="m4\x1b[2J"), r"footprint\[0\]\.target 'm4\\x1b\[2J' holds control"),
])
def test_a_forged_footprint_record_is_refused_naming_the_field(change, message):
    with pytest.raises(DataError, match=message):
        CompileRecord.from_json(_forged(change), "f.json")
    with pytest.raises(DataError, match=r"^f\.json: holds list \(expected an object"):
        CompileRecord.from_json([], "f.json")


def quantize_cli(fp32: Path, data: Path, out: Path, *args: str) -> Path:
    result = CliRunner().invoke(cli, ["quantize", str(fp32), "-o", str(out), "--data-dir", str(data),
                                      "--calibration-count", "100", "--max-accuracy-drop", "100", *args])
    assert result.exit_code == 0, result.output
    return out


def sigmoid_lenet(path: Path) -> Path:
    """tiny_lenet with sigmoids: conv -> sigmoid -> maxpool -> sigmoid -> sigmoid -> flatten -> gemm."""
    import onnx
    from onnx import helper

    model = onnx.load(str(tiny_lenet(path)))
    nodes = model.graph.node
    relu = next(n for n in nodes if n.op_type == "Relu")
    relu.op_type, relu.name = "Sigmoid", "sigmoid"
    pool = next(n for n in nodes if n.op_type == "MaxPool")
    pool.output[0] = "pooled"
    at = list(nodes).index(pool) + 1
    nodes.insert(at, helper.make_node("Sigmoid", ["pooled"], ["sigmoid_2_out"], name="sigmoid_2"))
    nodes.insert(at + 1, helper.make_node("Sigmoid", ["sigmoid_2_out"], ["pool_out"], name="sigmoid_3"))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module", params=[("uint8", "qdq"), ("int8", "qoperator")], ids=["uint8", "int8"])
def sigmoid_int8(request, tiny_int8, tmp_path_factory) -> tuple[Path, Path, str]:
    """(int8 model, synthetic MNIST dir, activation type) whose onnxruntime graph runs each sigmoid as a
    QLinearSigmoid of such codes. int8 needs the QOperator format: on x86 onnxruntime turns int8 QDQ activations into
    uint8 ones before fusing them."""
    activation, format_ = request.param
    _, _, data = tiny_int8
    tmp = tmp_path_factory.mktemp(f"sigmoid-{activation}")
    model = quantize_cli(sigmoid_lenet(tmp / "sigmoid.onnx"), data, tmp / "sigmoid.int8.onnx",
                         "--activation-type", activation, "--format", format_)
    return model, data, activation


def test_sigmoid_tables_are_bit_identical_on_host_and_both_cores(sigmoid_int8, tmp_path):
    model, data, activation = sigmoid_int8
    result = compile_cli(model, tmp_path / "mcu", data)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "mcu" / "lenet.footprint.json").read_text())
    assert record["bit_exact_required"] is True
    assert [(c["target"], c["images"], c["bit_mismatches"]) for c in record["checks"]] == [
        ("host", 60, 0), ("cortex-m4f", 60, 0), ("cortex-m0plus", 60, 0)]
    source = (tmp_path / "mcu" / "lenet.c").read_text()
    short, byte = {"uint8": ("u8", "x"), "int8": ("i8", "(uint8_t)x")}[activation]  # int8: indexed by its byte
    # the sigmoid after the convolution has a loop of its own; the two in a row share one, with two tables
    assert re.search(rf'/\* layer2: node "sigmoid\w*" \(QLinearSigmoid\) {short} 1x4x28x28 -> {short} 1x4x28x28 \*/\n'
                     rf'static const {activation}_t layer2_table\[256\]', source)
    assert f"out0[i] = layer2_table[{byte}];" in source
    assert re.search(r'/\* layer4: node "sigmoid_2\w*" \(QLinearSigmoid\) .*; node "sigmoid_3\w*" \(QLinearSigmoid\)',
                     source)
    assert f"out0[i] = layer4_table2[{'' if short == 'u8' else '(uint8_t)'}(layer4_table[{byte}])];" in source


def sigmoid_input_codes(model: Path, node_name: str, images: np.ndarray) -> np.ndarray:
    """The codes that reach the QLinearSigmoid `node_name` of onnxruntime's graph for `images`."""
    import onnx
    import onnxruntime as ort

    from lenet_edge.compile.runtime_graph import optimized_model
    from lenet_edge.contract import INPUT_NAME
    from lenet_edge.runtime.session import load_model

    graph = optimized_model(model.read_bytes(), model)
    node = next(n for n in graph.graph.node if n.name == node_name)
    graph.graph.output.append(onnx.ValueInfoProto(name=node.input[0]))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = load_model(model).contract.preprocessing(images)
    return session.run([node.input[0]], {INPUT_NAME: pixels})[0]


def test_a_wrong_sigmoid_table_is_refused(tiny_int8, tmp_path, monkeypatch):
    """One entry of the last sigmoid's table changed, the most used one: the check refuses, nothing is written."""
    from lenet_edge.compile.runtime_graph import optimized_model
    from lenet_edge.graph import GraphIndex

    _, _, data = tiny_int8
    model = quantize_cli(sigmoid_lenet(tmp_path / "sigmoid.onnx"), data, tmp_path / "sigmoid.int8.onnx")
    images = load_mnist(data, "test")[0][:60]
    codes = sigmoid_input_codes(model, "sigmoid_3", images)
    code = int(np.bincount(codes.reshape(-1), minlength=256).argmax())
    graph = GraphIndex(optimized_model(model.read_bytes(), model))
    last = next(n for n in graph.nodes if n.name == "sigmoid_3")
    target_scale = np.float32(graph.constant(last, 1))
    right_table = kernels.sigmoid_table
    changed = []

    def wrong_table(x_scale, x_zero_point, y_scale, y_zero_point, dtype):
        table = right_table(x_scale, x_zero_point, y_scale, y_zero_point, dtype)
        if np.float32(x_scale) == target_scale:
            table = table.copy()
            table[code] = 0 if table[code] > 127 else 255  # as far as it goes: the Gemm after it must notice
            changed.append(code)
        return table

    monkeypatch.setattr(kernels, "sigmoid_table", wrong_table)
    result = compile_cli(model, tmp_path / "mcu", data)
    assert changed == [code]
    assert result.exit_code == 5, result.output
    assert re.fullmatch(r"error: lenet.c on the host vs onnxruntime: logits differ bit-wise on \d+ of 60 images "
                        r"\(max abs difference .*, argmax differs on \d+\); first layer that differs on image \d+: "
                        r"sigmoid_2\+sigmoid_3 \(layer4\), \d+ of 784 uint8 values, by up to \d+",
                        result.stderr.strip().splitlines()[-1])
    assert not (tmp_path / "mcu").exists()


def test_a_max_pool_of_2x1_windows_is_fused_into_its_convolution(tiny_int8, tmp_path):
    """The fused pool's window is kh x kw, not kh x kh (`quantize --auto` folds pools into 2x1 ones)."""
    import onnx
    from onnx import numpy_helper

    _, _, data = tiny_int8
    model = onnx.load(str(tiny_lenet(tmp_path / "tall.onnx")))
    pool = next(n for n in model.graph.node if n.op_type == "MaxPool")
    for attribute in pool.attribute:
        attribute.ints[:] = [2, 1]  # kernel_shape and strides: (N, 4, 28, 28) -> (N, 4, 14, 28)
    fc = next(t for t in model.graph.initializer if t.name == "fc.weight")
    fc.CopyFrom(numpy_helper.from_array(np.random.default_rng(1).normal(0, 0.05, (10, 4 * 14 * 28))
                                        .astype(np.float32), "fc.weight"))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(tmp_path / "tall.onnx"))
    int8 = quantize_cli(tmp_path / "tall.onnx", data, tmp_path / "tall.int8.onnx")
    assert '/* layer1: node "conv" (QLinearConv) u8 1x1x32x32 -> u8 1x4x14x28, 5x5 stride 1, then node "pool" ' \
           '(MaxPool) 2x1 fused in; with a DSP extension windows as halfword patches, two output channels at a ' \
           'time, without one the nonzero inputs of each window, one dot product over them per output channel */' \
           in compile_model(int8).source
    result = compile_cli(int8, tmp_path / "mcu", data, "--target", "cortex-m4f")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "mcu" / "lenet.footprint.json").read_text())
    assert [(c["target"], c["bit_mismatches"]) for c in record["checks"]] == [("host", 0), ("cortex-m4f", 0)]


def test_a_conv_of_mostly_zero_taps_runs_only_the_nonzero_ones_bit_for_bit(tiny_int8, tmp_path):
    """The rewrites' zero taps (padded maps, averaging convs) are skipped; the host and both cores still
    reproduce onnxruntime exactly, and a wrong tap offset would not (the check is the oracle)."""
    import onnx
    from onnx import numpy_helper

    _, _, data = tiny_int8
    model = onnx.load(str(tiny_lenet(tmp_path / "sparse.onnx")))
    conv = next(t for t in model.graph.initializer if t.name == "conv.weight")
    weights = numpy_helper.to_array(conv).copy()  # (4, 1, 5, 5)
    weights[1] = 0  # a whole map zero, as C1's padded maps
    weights[:, :, ::2, :] = 0  # and rows 0, 2 and 4 of every filter: at most 30 of 100 taps left
    conv.CopyFrom(numpy_helper.from_array(weights, "conv.weight"))
    onnx.save(model, str(tmp_path / "sparse.onnx"))
    int8 = quantize_cli(tmp_path / "sparse.onnx", data, tmp_path / "sparse.int8.onnx")
    program = compile_model(int8)
    quantized = next(numpy_helper.to_array(t) for t in onnx.load(str(int8)).graph.initializer
                     if t.data_type == onnx.TensorProto.INT8 and tuple(t.dims) == (4, 1, 5, 5))
    nonzero = int((quantized != 0).sum())
    assert 0 < nonzero <= 30 and f"{nonzero} of 100 taps nonzero" in program.source
    assert "tap_offset[k]" in program.source and "dot_u8_i8(xw" not in program.source
    result = compile_cli(int8, tmp_path / "mcu", data)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "mcu" / "lenet.footprint.json").read_text())
    assert [(c["target"], c["bit_mismatches"]) for c in record["checks"]] == [
        ("host", 0), ("cortex-m4f", 0), ("cortex-m0plus", 0)]
    assert record["multiply_accumulates"] == nonzero * 28 * 28 + 10 * 4 * 14 * 14  # only the nonzero taps count


def test_a_layer_function_inlined_away_is_refused(tiny_int8, tmp_path):
    """Without NOINLINE the compiler inlines each layer into the entry function: no layer can be counted."""
    model, _, data = tiny_int8
    program = compile_model(model)
    program.source = program.source.replace("#define NOINLINE __attribute__((noinline))", "#define NOINLINE")
    source = written(program, tmp_path)
    images = load_mnist(data, "test")[0][:2]
    with pytest.raises(ValidationError, match=r"lenet.cortex-m4f.elf: no symbol for layer\d(, layer\d)* \(expected one "
                                              r"function per layer, not inlined"):
        check_program(program, source, tmp_path, model, images, ["cortex-m4f"])


def test_per_layer_means_add_up_to_the_mean_total():
    from lenet_edge.compile.check import mean_per_layer

    per_image = [{"layer0": 10, "layer1": 101, "calls": 3}, {"layer0": 10, "layer1": 102, "calls": 4}]
    means = mean_per_layer(per_image, ["layer0", "layer1"])
    assert means == {"layer0": 10, "layer1": 102, "calls": 3}  # 10 + 101.5 + 3.5 = 115: one half rounds up
    assert sum(means.values()) == round((114 + 116) / 2)
    with pytest.raises(ValidationError, match=r"instructions outside the model's functions: \[''\]"):
        mean_per_layer([{"": 5, "layer0": 1}], ["layer0"])


def test_a_pipeline_build_is_a_record_with_its_choice_or_a_reason():
    from lenet_edge.compile.stage import choose_build

    record = _build(1_000, 3_000)
    for broken in ({}, {"record": record}, {"skipped": "no zig", "record": record,
                                            "choice": choose_build({"standard": record})}):
        with pytest.raises(ValueError, match="a record and its choice, or the reason it was skipped"):
            PipelineBuild(**broken)
