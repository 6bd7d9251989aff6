"""When a build's logits differ from onnxruntime's: the first layer whose output differs, and by how much.

The check build of the C (Program.trace_source) copies each layer's output into NAME_trace as it is written;
onnxruntime gives every value of the graph it runs when each is made a graph output. Both are run on the
first image whose logits differ, and compared layer by layer in the order the C computes them.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ValidationError
from . import toolchain
from .emulate import EmulatedCore
from .generate import Program


@dataclass(frozen=True)
class LayerDifference:
    layer: str  # C1+S2
    function: str  # layer1
    image: int
    differing: int  # values whose bits differ
    size: int
    dtype: str
    max_abs_diff: float

    def __str__(self) -> str:
        by = f"{self.max_abs_diff:.0f}" if self.dtype != "float32" else f"{self.max_abs_diff:.3g}"
        return (f"first layer that differs on image {self.image}: {self.layer} ({self.function}), {self.differing:,} "
                f"of {self.size:,} {self.dtype} values, by up to {by}")


def first_differing_image(expected: np.ndarray, found: np.ndarray) -> int:
    rows = np.flatnonzero((np.ascontiguousarray(expected).view(np.uint32)
                           != np.ascontiguousarray(found).view(np.uint32)).any(axis=1))
    return int(rows[0]) if rows.size else 0


def reference_values(model: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """Every value onnxruntime computes for one image (side, side) uint8, in the graph the C is compiled from."""
    from ..contract import INPUT_NAME
    from ..runtime.model_file import read_model_bytes
    from ..runtime.session import load_model
    from .runtime_graph import optimized_model, value_arrays

    prepared = load_model(model).contract.preprocessing(image[None])
    return value_arrays(optimized_model(read_model_bytes(model), model), INPUT_NAME, prepared)


def host_trace(program: Program, workdir: Path, image: np.ndarray, classes: int) -> bytes:
    source = workdir / f"{program.name}.trace.c"
    source.write_text(program.trace_source)
    library = ctypes.CDLL(str(toolchain.build_host_library(source, workdir / f"lib{program.name}.trace.so")))
    infer = getattr(library, f"{program.name}_infer")
    infer.restype = None
    pixels = np.ascontiguousarray(image.reshape(-1), np.uint8)
    logits = np.empty(classes, np.float32)
    infer(pixels.ctypes.data_as(ctypes.c_void_p), logits.ctypes.data_as(ctypes.c_void_p))
    return bytes((ctypes.c_uint8 * program.trace_bytes).in_dll(library, f"{program.name}_trace"))


def emulated_trace(program: Program, workdir: Path, image: np.ndarray, target_name: str, classes: int) -> bytes:
    source = workdir / f"{program.name}.trace.c"
    source.write_text(program.trace_source)
    target = toolchain.TARGETS[target_name]
    elf = toolchain.build_elf(source, workdir / f"{program.name}.trace.{target_name}.elf", target,
                              f"{program.name}_infer")
    core = EmulatedCore(elf, target, image.size, classes)
    core.infer(image.reshape(-1))
    start, _ = toolchain.symbol_ranges(elf, "STT_OBJECT")[f"{program.name}_trace"]
    return core.read(start, program.trace_bytes)


def value_difference(want: np.ndarray, got: np.ndarray) -> tuple[int, float]:
    """(values whose bits differ, the largest absolute difference) of two arrays of one dtype and size."""
    want, got = np.ascontiguousarray(want).reshape(-1), np.ascontiguousarray(got).reshape(-1)
    differ = want.view(np.uint8).reshape(want.size, -1) != got.view(np.uint8).reshape(got.size, -1)
    differing = int(differ.any(axis=1).sum())
    if not differing:
        return 0, 0.0
    gap = np.abs(want.astype(np.float64) - got.astype(np.float64))
    return differing, float(np.nanmax(gap)) if np.isfinite(gap).any() else float("inf")


def compare_layers(program: Program, trace: bytes, reference: dict[str, np.ndarray], image: int) -> LayerDifference:
    """The first of the program's layers whose traced output differs from onnxruntime's value."""
    for layer in program.layers:
        want = np.ascontiguousarray(reference[layer.output]).reshape(-1)
        got = np.frombuffer(trace, want.dtype, want.size, layer.trace_offset)
        differing, gap = value_difference(want, got)
        if differing:
            return LayerDifference(layer.layer, layer.function, image, differing, want.size, want.dtype.name, gap)
    raise ValidationError(f"image {image}: the logits differ but no layer's traced output does (expected the last "
                          "layer to differ at least)")


def locate(program: Program, workdir: Path, model: Path, images: np.ndarray, expected: np.ndarray,
           found: np.ndarray, target: str | None) -> LayerDifference:
    """The first differing layer on the first image whose logits differ, on the host (`target` None) or an
    emulated core."""
    image = first_differing_image(expected, found)
    trace = (host_trace(program, workdir, images[image], expected.shape[1]) if target is None else
             emulated_trace(program, workdir, images[image], target, expected.shape[1]))
    return compare_layers(program, trace, reference_values(model, images[image]), image)
