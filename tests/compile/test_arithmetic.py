"""arithmetic.c's requantize and dequantize against numpy's float32, bit for bit, on both emulated cores: on the
Cortex-M4F they are float instructions; on the Cortex-M0+ (no FPU) integer code that must round as the FPU
would, ties, signed zeros, accumulators beyond 2^24, zero, subnormal and huge scales included.

The toolchain (the mcu extra) is required: a missing one fails these tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lenet_edge.compile import toolchain
from lenet_edge.compile.csource import template
from lenet_edge.compile.emulate import EmulatedCore
from lenet_edge.compile.kernels import c_float

# dequantize's scales are literals, as the generator writes them: an integer path for the normal ones, the
# soft-float one for a subnormal scale and for one whose products could overflow
DEQUANTIZE_SCALES = [0.20288, -0.37, 2.0 ** -126, 1e-40, 2.0 ** 117, 3.4e38]
# requantize: (scale, lo, hi, zero point) as requantize_line writes them (a ReLU's uint8, a signed int8)
REQUANTIZE = [(0.5, 0, 255, 0), (2.0 ** -10 * 1.37, -88, 167, 88), (-0.0173, -128, 127, 0), (1e-40, -128, 127, 5)]


def probe_source(dequantize_scales=DEQUANTIZE_SCALES, requantize_cases=REQUANTIZE) -> str:
    """A C file that runs every case of one run: an int32 accumulator in bytes 0-3, a code pair in 4-5."""
    dequantized = [f"  out[{i}] = dequantize(q, {c_float(np.float32(s))});" for i, s in enumerate(dequantize_scales)]
    requantized = [f"  bits[{len(dequantize_scales) + i}] = (uint32_t)requantize(acc, {c_float(np.float32(s))}, "
                   f"{lo - zp}, {hi - zp}, {zp});" for i, (s, lo, hi, zp) in enumerate(requantize_cases)]
    return "\n".join([
        "#include <stdint.h>", template("arithmetic.c"),
        "void probe(const uint8_t in[784], float out[10])", "{",
        "  uint32_t *bits = (uint32_t *)out;",
        "  const int32_t acc = (int32_t)((uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | "
        "(uint32_t)in[3] << 24);",
        "  const int32_t q = (int32_t)in[4] - (int32_t)in[5];",
        *dequantized, *requantized, "}", ""])


def cases(count: int = 1536) -> np.ndarray:
    """Runs as (count, 784) uint8: every code difference -255..255, accumulators of every magnitude."""
    rng = np.random.default_rng(7)
    magnitude = rng.integers(0, 31, count)
    acc = (rng.integers(0, 2 ** 31 - 1, count) >> (30 - magnitude)) * rng.choice([-1, 1], count)
    acc[:64] = np.arange(-32, 32)  # ties of the 0.5 scale: half to even
    acc[64:70] = [2 ** 31 - 1, -2 ** 31, 2 ** 24 + 1, -(2 ** 24 + 3), 2 ** 25 - 1, 16777217 * 3]
    q = np.arange(count) % 511 - 255
    runs = np.zeros((count, 784), np.uint8)
    runs[:, :4] = acc.astype("<i4").view(np.uint8).reshape(count, 4)
    runs[:, 4], runs[:, 5] = np.maximum(q, 0), np.maximum(-q, 0)
    return runs


def expected(runs: np.ndarray) -> np.ndarray:
    """What onnxruntime's float32 arithmetic gives, as the bits the probe writes."""
    acc = runs[:, :4].copy().view("<i4").reshape(-1)
    q = runs[:, 4].astype(np.int32) - runs[:, 5]
    out = np.zeros((len(runs), 10), np.uint32)
    with np.errstate(over="ignore"):
        for i, s in enumerate(DEQUANTIZE_SCALES):
            out[:, i] = (q.astype(np.float32) * np.float32(s)).view(np.uint32)
        for i, (s, lo, hi, zp) in enumerate(REQUANTIZE):
            v = np.clip(acc.astype(np.float32) * np.float32(s), np.float32(lo - zp), np.float32(hi - zp))
            out[:, len(DEQUANTIZE_SCALES) + i] = (np.rint(v).astype(np.int32) + zp).view(np.uint32)
    return out


@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m4f"])
def test_requantize_and_dequantize_round_as_float32(target, tmp_path: Path):
    source = tmp_path / "probe.c"
    source.write_text(probe_source())
    elf = toolchain.build_elf(source, tmp_path / "probe.elf", toolchain.TARGETS[target], "probe")
    runs = cases()
    found = EmulatedCore(elf, toolchain.TARGETS[target], 784, 10).run(runs).view(np.uint32)
    want = expected(runs)
    wrong = np.argwhere(found != want)
    assert not len(wrong), (f"{len(wrong)} wrong, first run {wrong[0][0]} case {wrong[0][1]}: "
                            f"{found[tuple(wrong[0])]:#x}, expected {want[tuple(wrong[0])]:#x}")
    assert len({tuple(row) for row in want[:, :6]}) > 500  # every code difference, not one repeated value


def test_the_m0plus_build_of_a_model_links_no_soft_float(tmp_path: Path):
    """Normal scales alone, as in a model: the integer paths only (checked on the ELF's symbols)."""
    source = tmp_path / "normal.c"
    source.write_text(probe_source([0.20288] * 6, [(0.5, 0, 255, 0), (-0.0173, -128, 127, 0)] * 2))
    elf = toolchain.build_elf(source, tmp_path / "normal.elf", toolchain.TARGETS["cortex-m0plus"], "probe")
    soft_float = [name for name in toolchain.symbol_ranges(elf) if name.startswith("__aeabi_f")]
    assert "requantize" in toolchain.symbol_ranges(elf) and not soft_float, soft_float
