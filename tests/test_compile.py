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
from lenet_edge.compile import toolchain
from lenet_edge.compile.check import check_program, reference_logits, require_match
from lenet_edge.compile.emulate import EmulatedCore
from lenet_edge.compile.generate import compile_model
from lenet_edge.data import load_mnist
from lenet_edge.errors import ValidationError

from .idx_files import write_mnist_dir
from .quantize_models import tiny_lenet


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
        assert f["constant_bytes"] >= record["constant_bytes"] > 4 * 25 + 10 * 784  # the weights are in flash
        assert f["arena_bytes"] == record["arena_bytes"] and f["data_bytes"] == 0  # nothing copied into RAM
        assert 0 < f["stack_bytes"] < 1024
        assert f["instructions_per_inference"]["min"] > record["multiply_accumulates"] / 4
    assert "| cortex-m4f |" in result.stdout and "not cycles" in result.stdout
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
    assert not re.search(r"^static (?!const|inline|void|uint32_t arena)", first.source, re.M)
    assert '/* layer1: node "conv" (QLinearConv) u8 1x1x32x32 -> u8 1x4x14x14, 5x5 stride 1, then node "pool" ' \
           '(MaxPool) 2x2 fused in */' in first.source


def test_fp32_model_is_refused_naming_node_and_operator(tiny_int8, tmp_path):
    _, fp32, data = tiny_int8
    result = compile_cli(fp32, tmp_path / "mcu", data)
    assert result.exit_code == 4
    assert result.stderr.strip().splitlines()[-1] == (
        'error: node "conv" (FusedConv): no C kernel for this operator of onnxruntime\'s optimised graph (expected '
        'an int8 model from lenet-edge quantize; kernels for Add, AveragePool, DequantizeLinear, Div, MaxPool, Mul, '
        'QGemm, QLinearAdd, QLinearAveragePool, QLinearConv, QLinearMatMul, QLinearMul, QuantizeLinear, ReduceSum, '
        'Sub, Tanh, Transpose, and Reshape, Flatten, Squeeze, Unsqueeze, Identity)')
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


@pytest.mark.parametrize("args, message", [
    (["--name", "Le-Net"], "expected a C identifier"),
    (["--check-images", "0"], "check images 0 (expected 1 to 10000)"),
])
def test_bad_options_are_refused_before_anything_is_written(tiny_int8, tmp_path, args, message):
    model, _, data = tiny_int8
    result = compile_cli(model, tmp_path / "mcu", data, *args)
    assert result.exit_code == 3 and message in result.stderr
    assert not (tmp_path / "mcu").exists()


def planted(source: str) -> str:
    """The C with the output scale one float32 step larger: every logit moves by about 1e-9."""
    matches = list(re.finditer(r"\(float\)\(\(int32_t\)\(x\) - \d+\) \* (0x[0-9a-f.]+p[-+]\d+)f;", source))
    assert matches, "the planted change needs the final DequantizeLinear"
    match = matches[-1]
    changed = float(np.nextafter(np.float32(float.fromhex(match.group(1))), np.float32(1)))
    return source[:match.start(1)] + changed.hex() + source[match.end(1):]


def test_a_planted_mismatch_is_refused_on_host_and_emulated_core(tiny_int8, tmp_path):
    model, _, data = tiny_int8
    program = compile_model(model)
    program.source = planted(program.source)
    source = tmp_path / "lenet.c"
    source.write_text(program.source)
    (tmp_path / "lenet.h").write_text(program.header)
    images = load_mnist(data, "test")[0][:20]
    with pytest.raises(ValidationError, match=r"lenet.c on the host vs onnxruntime: logits differ bit-wise on 20 "
                                              r"of 20 images .*argmax differs on 0\)"):
        check_program(program, source, tmp_path, model, images, ["cortex-m4f"])
    target = toolchain.TARGETS["cortex-m4f"]
    core = EmulatedCore(toolchain.build_elf(source, tmp_path / "m4.elf", target, "lenet_infer"), target, 784, 10)
    with pytest.raises(ValidationError, match="on an emulated cortex-m4f: logits differ bit-wise on 20 of 20"):
        require_match(reference_logits(model, images), core.run(images), program, "lenet.c on an emulated cortex-m4f")


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
    source = tmp_path / "lenet.c"
    source.write_text(program.source)
    (tmp_path / "lenet.h").write_text(program.header)
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
    record = compile_for_pipeline(model, tmp_path / "mcu", data_dir=data)
    assert record == {"skipped": "unicorn is not installed (needed here); install it with pip install "
                                 "'lenet-edge[mcu]'"}
    assert microcontroller_section({"mcu": record})[-1] == f"not built: {record['skipped']}"
    assert not (tmp_path / "mcu").exists()
