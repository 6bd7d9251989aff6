"""This CPU's peak multiply-accumulate rate, fp32 and int8, with the basis it rests on: what the benchmarks'
"share of peak" figures and the per-layer report hold achieved rates against (numpy-free, no onnx).

fp32: cores x FMA_UNITS x SIMD lanes x 2 flops x the clock. int8 with VNNI (AVX-512 VNNI, AVX-VNNI):
VPDPBUSD, 4 u8 x s8 MACs per 32-bit lane per instruction, FMA_UNITS per cycle. int8 on AVX2 without VNNI:
32 u8 x s8 products take a VPMADDUBSW (into int16 pairs) and a VPMADDWD (into int32), and both issue to the
same two vector integer-multiply pipes (Zen 3: FP0 and FP3, as LLVM's znver3 scheduling model and
InstLatX64's Zen 3 port measurements place them; Intel's Skylake-class cores: ports 0 and 1), so the pair
takes a cycle: 32 MACs per cycle per core, half of what counting VPMADDUBSW alone at two per cycle gives.
The clock is /proc/cpuinfo's "cpu MHz" (nominal under a hypervisor; turbo unknown); two FMA units per core
is an assumption (true of AMD's Zen cores and most AVX-512 server cores, not all).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .environment import cpu_info

FMA_UNITS = 2  # per core: an assumption, see the module docstring
VNNI_MACS_PER_LANE = 4  # VPDPBUSD: four u8 x s8 products summed into each 32-bit lane
AVX2_INT8_MACS_PER_CYCLE = 32  # VPMADDUBSW + VPMADDWD per 32 products, both on the two multiply pipes


@dataclass(frozen=True)
class Peak:
    fp32: float | None  # GFLOP/s (2 per multiply-accumulate); None where unknown
    int8: float | None  # GOP/s (2 per multiply-accumulate)
    basis: str  # how they were counted, for the report

    def __getitem__(self, key: str):  # peak["fp32"], peak["int8"], peak["basis"]: as the benchmarks read it
        if key not in ("fp32", "int8", "basis"):
            raise KeyError(key)
        return getattr(self, key)


def cpu_mhz() -> float | None:
    """/proc/cpuinfo's first "cpu MHz"; None where there is none (not Linux, or an Arm kernel)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def int8_macs_per_cycle(flags: set[str]) -> tuple[int | None, str]:
    """int8 multiply-accumulates per cycle per core and the instructions that give them."""
    if "avx512_vnni" in flags:
        return FMA_UNITS * 16 * VNNI_MACS_PER_LANE, f"AVX-512 VNNI: {FMA_UNITS} VPDPBUSD x 16 lanes x 4 MACs"
    if "avx_vnni" in flags:
        return FMA_UNITS * 8 * VNNI_MACS_PER_LANE, f"AVX-VNNI: {FMA_UNITS} VPDPBUSD x 8 lanes x 4 MACs"
    if "avx2" in flags:
        return AVX2_INT8_MACS_PER_CYCLE, ("AVX2 without VNNI: VPMADDUBSW + VPMADDWD per 32 MACs, both on the two "
                                          "vector integer-multiply pipes: 32 MACs")
    return None, "no AVX2 or VNNI: unknown"


def cpu_peak(threads: int) -> Peak:
    """The peak of `threads` cores of this CPU (at most its usable cores)."""
    cpu = cpu_info()
    flags = set(cpu["flags"])
    mhz = cpu_mhz()
    if mhz is None:
        return Peak(None, None, "clock unknown (no 'cpu MHz' in /proc/cpuinfo): no peak")
    cores = min(threads, cpu["usable_cores"] or threads)
    ghz = mhz / 1000
    lanes = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} <= flags else None  # fp32 lanes per FMA
    int8_macs, int8_via = int8_macs_per_cycle(flags)
    basis = (f"{cores} core(s) x {ghz:.2f} GHz; fp32: {FMA_UNITS} FMA units x {lanes or '?'} lanes x 2 flops; "
             f"int8 per cycle per core: {int8_via}" + ("; AMX present (not counted)" if "amx_int8" in flags else ""))
    return Peak(cores * FMA_UNITS * lanes * 2 * ghz if lanes else None,
                cores * int8_macs * 2 * ghz if int8_macs else None, basis)
