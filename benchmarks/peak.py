"""The work a LeNet-5 inference does and this CPU's peak rate, for the benchmarks' "achieved
GFLOP/s (% of peak)" figures (headline.py, peers.py).

Work: the multiply-accumulates of an fp32 (or QDQ) ONNX model's Conv and Gemm layers for one
image; pooling and activations are left out. Peak: cores used x FMA units x SIMD lanes x 2 x
clock. The clock is /proc/cpuinfo's "cpu MHz" (nominal under a hypervisor; turbo unknown); 2 FMA
units per core is an assumption (true of most AVX-512 server cores and of AMD's Zen cores, not
all). The int8 peak is that of AVX-512 VNNI or AVX-VNNI (VPDPBUSD: 4 u8*s8 MACs per 32-bit lane);
without VNNI it is unknown, unless the caller asks for the AVX2 fallback (see cpu_peak).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenet_edge.runtime.environment import cpu_info

FMA_UNITS = 2  # per core: an assumption, see the module docstring
# VPMADDUBSW on a 256-bit register: 32 u8 x s8 products, summed in pairs into 16 saturating int16s.
AVX2_INT8_MACS = 32


def count_macs(path: Path) -> int | None:
    """Multiply-accumulates of one image through the Conv/Gemm layers of an fp32 or QDQ model
    (weights read through DequantizeLinear); None for operators it cannot size (QOperator models)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*g.value_info, *g.input, *g.output)}
    constants = {t.name: numpy_helper.to_array(t).shape for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}

    def weight_shape(name):  # through DequantizeLinear to the constant, else the inferred shape
        while name not in constants and name in producers and producers[name].op_type == "DequantizeLinear":
            name = producers[name].input[0]
        shape = constants.get(name) or shapes.get(name)
        return tuple(shape) if shape and all(shape) else None

    total = 0
    for node in g.node:
        if node.op_type == "Conv":
            w, out = weight_shape(node.input[1]), shapes.get(node.output[0])
            if w is None or not out:
                return None
            total += int(np.prod(out[1:])) * int(np.prod(w[1:]))  # output elements x (Cin/group x kH x kW)
        elif node.op_type in ("Gemm", "MatMul"):
            w = weight_shape(node.input[1])
            if w is None or len(w) != 2:
                return None
            total += int(np.prod(w))  # one row: K x N
        elif node.op_type in ("QLinearConv", "QGemm", "ConvInteger", "MatMulInteger", "QLinearMatMul"):
            return None
    return total


def cpu_mhz() -> float | None:
    """/proc/cpuinfo's first "cpu MHz"; None where there is none (not Linux, or an Arm kernel)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_peak(threads: int, avx2_int8: bool = False) -> dict:
    """Peak fp32 FLOP/s and int8 op/s of `threads` cores, and what they rest on.

    The int8 peak needs VNNI. With `avx2_int8`, a CPU with AVX2 but no VNNI gets the rate of
    VPMADDUBSW instead: 32 MACs per instruction, FMA_UNITS instructions per cycle (an assumption,
    as for the FMAs: two vector integer multiply ports). It is an upper bound: the instruction sums
    its products in pairs into saturating int16s, and the VPMADDWD + VPADDD that widen those into
    int32 accumulators compete for the same ports, so real kernels reach a half to a third of it."""
    cpu = cpu_info()
    flags = set(cpu["flags"])
    mhz = cpu_mhz()
    lanes = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} <= flags else None  # fp32 lanes per FMA
    int8_macs = 64 if "avx512_vnni" in flags else 32 if "avx_vnni" in flags else None  # per VNNI instruction
    int8_via = "VNNI"
    if int8_macs is None and avx2_int8 and "avx2" in flags:
        int8_macs, int8_via = AVX2_INT8_MACS, "VPMADDUBSW (AVX2, no VNNI; an upper bound)"
    cores = min(threads, cpu["usable_cores"] or threads)
    if mhz is None:
        return {"fp32": None, "int8": None, "basis": "clock unknown (no 'cpu MHz' in /proc/cpuinfo): no peak"}
    ghz = mhz / 1000
    fp32 = cores * FMA_UNITS * lanes * 2 * ghz if lanes else None
    int8 = cores * FMA_UNITS * int8_macs * 2 * ghz if int8_macs else None
    basis = (f"{cores} core(s) x {FMA_UNITS} FMA units x {lanes or '?'} fp32 lanes x 2 x {ghz:.2f} GHz"
             + (f"; int8: x {int8_macs} {int8_via} MACs x 2" if int8_macs else "; int8: no VNNI, unknown")
             + ("; AMX present (not counted)" if "amx_int8" in flags else ""))
    return {"fp32": fp32, "int8": int8, "basis": basis}


def format_peak(value: float | None) -> str:
    """A peak in G(FL)OP/s for the printed tables; "unknown" where the CPU does not tell."""
    return "unknown" if value is None else f"{value:.0f}"
