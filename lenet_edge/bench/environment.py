"""What machine a benchmark ran on: CPU model and the instruction sets that matter for
int8 and fp32 inference, cores, OS and library versions, and whether the CPU was real,
emulated or virtualised. Never the hostname or user.

Standard library + numpy + onnxruntime only. CPU details come from /proc/cpuinfo on
Linux (x86 `flags`, Arm `Features`) and sysctl on macOS; where neither answers, the
fields say "unknown" rather than guess.

Where the code ran (`execution`), from what the system tells, each finding kept as evidence:
- emulated: the process runs one instruction set on a kernel of another. User-mode
  emulation (qemu-user) fakes `uname -m` but not the kernel's own /proc/sys/kernel/arch
  (x86_64 under qemu-aarch64), and the process's name in /proc/self/status is the
  emulator's (`qemu-aarch64-st`) when it is started directly; on macOS, Rosetta 2 sets
  sysctl.proc_translated. A 32-bit userland on its 64-bit kernel (i686 on x86_64, armv7l on
  aarch64) is native, not emulated.
- virtualised: the CPU's `hypervisor` flag (x86 CPUID leaf 1, bit 31), a hypervisor-made
  DMI vendor or product (/sys/class/dmi/id), /sys/hypervisor/type, a device tree with a
  hypervisor node or qemu's `linux,dummy-virt` board; macOS's kern.hv_vmm_present.
- native: Linux or macOS, none of the above found; unknown elsewhere.
Emulated timings measure the emulator, not the CPU it imitates: `compare` never ranks them.
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
# Arm's /proc/cpuinfo names no model, only implementer and part numbers (MIDR_EL1); the cores of
# common boards (Raspberry Pi 3/4/5, Jetson Nano/Orin, Graviton, Ampere), after the Linux kernel's cputype.h.
ARM_CORES = {
    ("0x41", "0xd03"): "Arm Cortex-A53", ("0x41", "0xd04"): "Arm Cortex-A35", ("0x41", "0xd05"): "Arm Cortex-A55",
    ("0x41", "0xd07"): "Arm Cortex-A57", ("0x41", "0xd08"): "Arm Cortex-A72", ("0x41", "0xd09"): "Arm Cortex-A73",
    ("0x41", "0xd0a"): "Arm Cortex-A75", ("0x41", "0xd0b"): "Arm Cortex-A76", ("0x41", "0xd0c"): "Arm Neoverse-N1",
    ("0x41", "0xd0d"): "Arm Cortex-A77", ("0x41", "0xd40"): "Arm Neoverse-V1", ("0x41", "0xd41"): "Arm Cortex-A78",
    ("0x41", "0xd42"): "Arm Cortex-A78AE", ("0x41", "0xd44"): "Arm Cortex-X1", ("0x41", "0xd46"): "Arm Cortex-A510",
    ("0x41", "0xd47"): "Arm Cortex-A710", ("0x41", "0xd48"): "Arm Cortex-X2", ("0x41", "0xd49"): "Arm Neoverse-N2",
    ("0x41", "0xd4f"): "Arm Neoverse-V2", ("0x4e", "0x004"): "NVIDIA Carmel", ("0xc0", "0xac3"): "Ampere-1",
}


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
    arm_core = ARM_CORES.get((merged.get("CPU implementer", "").lower(), merged.get("CPU part", "").lower()))
    model = (merged.get("model name") or arm_core or merged.get("Model") or merged.get("Hardware")
             or merged.get("cpu model"))
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


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\0", "").strip() or None
    except OSError:
        return None


# The 32-bit userlands a 64-bit kernel runs natively (compat mode): not emulation.
NATIVE_COMPAT = {"x86_64": ("i386", "i486", "i586", "i686"), "aarch64": ("armv7l", "armv8l", "armv6l", "arm")}
HYPERVISOR_VENDORS = ("qemu", "kvm", "vmware", "virtualbox", "innotek", "xen", "bochs", "parallels",
                      "amazon ec2", "google compute engine", "microsoft corporation virtual machine",
                      "openstack", "firecracker", "cloud hypervisor", "apple virtualization")


def execution(root: Path = Path("/")) -> dict:
    """{"kind": "native" | "emulated" | "virtualised" | "unknown", "evidence": [what was found]}.

    `root` is the filesystem root the /proc and /sys files are read under (tests give a fake one).
    """
    evidence_emulated, evidence_virtual = [], []
    machine = platform.machine().lower()
    kernel_arch = _read(root / "proc/sys/kernel/arch")
    if kernel_arch and machine and kernel_arch != machine and machine not in NATIVE_COMPAT.get(kernel_arch, ()):
        evidence_emulated.append(f"process runs {machine} code on a {kernel_arch} kernel (/proc/sys/kernel/arch)")
    status = _read(root / "proc/self/status") or ""
    name = next((line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith("Name:")), "")
    if name.startswith("qemu-"):
        evidence_emulated.append(f"process name {name} (/proc/self/status)")
    if platform.system() == "Darwin":
        if _sysctl("sysctl.proc_translated") == "1":
            evidence_emulated.append("translated by Rosetta 2 (sysctl.proc_translated)")
        if _sysctl("kern.hv_vmm_present") == "1":
            evidence_virtual.append("kern.hv_vmm_present = 1 (sysctl)")
    cpuinfo = _read(root / "proc/cpuinfo") or ""
    if any(line.startswith("flags") and "hypervisor" in line.split() for line in cpuinfo.splitlines()):
        evidence_virtual.append("CPU flag hypervisor (/proc/cpuinfo)")
    for field in ("sys_vendor", "product_name"):
        value = _read(root / "sys/class/dmi/id" / field)
        if value and any(v in value.lower() for v in HYPERVISOR_VENDORS):
            evidence_virtual.append(f"{field} {value!r} (/sys/class/dmi/id)")
    hypervisor = _read(root / "sys/hypervisor/type")
    if hypervisor:
        evidence_virtual.append(f"hypervisor {hypervisor} (/sys/hypervisor/type)")
    if (root / "proc/device-tree/hypervisor").exists():
        evidence_virtual.append("device tree has a hypervisor node (/proc/device-tree/hypervisor)")
    if "linux,dummy-virt" in (_read(root / "proc/device-tree/compatible") or ""):
        evidence_virtual.append("qemu virtual board linux,dummy-virt (/proc/device-tree/compatible)")
    if evidence_emulated:
        kind = "emulated"
    elif evidence_virtual:
        kind = "virtualised"
    elif platform.system() in ("Linux", "Darwin"):
        kind = "native"
    else:
        kind = "unknown"
    return {"kind": kind, "evidence": evidence_emulated + evidence_virtual}


def board_model(root: Path = Path("/")) -> str | None:
    """The board as the firmware names it: the device tree's model (a Raspberry Pi, a Jetson), else DMI's."""
    for path in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        model = _read(root / path)
        if model:
            return model
    vendor, product = _read(root / "sys/class/dmi/id/sys_vendor"), _read(root / "sys/class/dmi/id/product_name")
    return " ".join(v for v in (vendor, product) if v) or None


def kernel() -> dict:
    """The kernel the process talks to: under user-mode emulation, the host's."""
    return {"system": platform.system(), "release": platform.release(), "version": platform.version(),
            "architecture": _read(Path("/proc/sys/kernel/arch")) or platform.machine() or "unknown"}


def onnxruntime_build() -> dict:
    """The onnxruntime build: its wheel's platform tag, build info and execution providers."""
    from importlib import metadata

    import onnxruntime

    try:
        wheel = metadata.distribution("onnxruntime").read_text("WHEEL") or ""
        tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    except metadata.PackageNotFoundError:  # another distribution name (onnxruntime-gpu, a local build)
        tags = []
    build_info = getattr(onnxruntime, "get_build_info", lambda: None)()
    return {"version": onnxruntime.__version__, "wheel_tags": tags, "build_info": build_info,
            "device": onnxruntime.get_device(), "providers": onnxruntime.get_available_providers()}


def environment(extra_versions: dict[str, str] | None = None, device: str | None = None) -> dict:
    """The machine and software of a benchmark run (no hostname, no user, no paths).

    `device` is the user's name for the machine (bench --device), None when not given."""
    return {
        "device": device,
        "execution": execution(),
        "board": board_model(),
        "cpu": cpu_info(),
        "os": {"system": platform.system(), "release": platform.release()},
        "kernel": kernel(),
        "versions": library_versions(extra_versions),
        "onnxruntime": onnxruntime_build(),
    }
