"""What machine a benchmark ran on: CPU model and the instruction sets that matter for
int8 and fp32 inference, cores, OS and library versions. Never the hostname or user.

Standard library + numpy + onnxruntime only. CPU details come from /proc/cpuinfo on
Linux (x86 `flags`, Arm `Features`) and sysctl on macOS; where neither answers, the
fields say "unknown" rather than guess.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

# Instruction sets that change how fast fp32 and int8 convolutions run.
FLAGS_OF_INTEREST = (
    # x86
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    # Arm
    "neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2",
)
# Of those, the ones with int8 dot-product instructions that onnxruntime's int8 kernels use.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per processor block (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        blocks.append(entry)
    return blocks


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def cpu_info() -> dict:
    """{"model", "architecture", "flags", "int8_dot_product", "logical_cores", "usable_cores", "physical_cores"}."""
    blocks = _cpuinfo()
    merged = {k: v for block in reversed(blocks) for k, v in block.items()}
    model = merged.get("model name") or merged.get("Model") or merged.get("Hardware") or merged.get("cpu model")
    if model is None and platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string")
    present = set((merged.get("flags") or merged.get("Features") or "").split())
    if platform.system() == "Darwin":
        features = (_sysctl("machdep.cpu.features") or "") + " " + (_sysctl("machdep.cpu.leaf7_features") or "")
        present |= {f.lower().replace(".", "_") for f in features.split()}
    flags = [f for f in FLAGS_OF_INTEREST if f in present]
    cores = {(b.get("physical id", "0"), b["core id"]) for b in blocks if "core id" in b}
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "model": model or platform.processor() or "unknown",
        "architecture": platform.machine() or "unknown",
        "flags": flags,
        "flags_source": "/proc/cpuinfo" if blocks else ("sysctl" if platform.system() == "Darwin" else "unavailable"),
        "int8_dot_product": [f for f in flags if f in INT8_DOT_FLAGS],
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "physical_cores": len(cores) or None,
    }


def library_versions(extra: dict[str, str] | None = None, modules: tuple[str, ...] = ()) -> dict[str, str]:
    """The one place library versions are gathered: python, numpy, onnxruntime and lenet-edge, the
    installed version of each of `modules` (e.g. ("torch",) for a checkpoint), then `extra` as given."""
    import importlib

    import numpy
    import onnxruntime

    from .. import __version__

    versions = {"python": platform.python_version(), "numpy": numpy.__version__,
                "onnxruntime": onnxruntime.__version__, "lenet-edge": __version__}
    versions.update({name: importlib.import_module(name).__version__ for name in modules})
    return {**versions, **(extra or {})}


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: a busy machine makes every timing slower."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment(extra_versions: dict[str, str] | None = None) -> dict:
    """The machine and software of a benchmark run (no hostname, no user, no paths)."""
    return {
        "cpu": cpu_info(),
        "os": {"system": platform.system(), "release": platform.release()},
        "versions": library_versions(extra_versions),
    }
