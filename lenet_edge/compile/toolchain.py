"""Building the generated C: for the host (a shared library) and for Cortex-M cores (an ELF), with zig's clang.

The `mcu` extra installs everything without root: ziglang (clang and lld for every target, compiler-rt's
soft float included), unicorn (the emulator) and pyelftools (section sizes, ARM attributes).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

from ..errors import DependencyError, ValidationError, require

FLASH_ORIGIN, FLASH_BYTES = 0x0800_0000, 1 << 20  # as on an STM32: flash at 0x08000000
RAM_ORIGIN, RAM_BYTES = 0x2000_0000, 128 << 10
# Never -ffast-math: the float steps must round exactly as onnxruntime's do, one operation at a time.
C_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-fno-fast-math")
OPTIMISATION = "-O2"  # the host's
# C needs no unwinding tables; clang writes them for Arm by default (156 to 216 bytes of flash here).
DEVICE_FLAGS = ("-fno-unwind-tables", "-fno-asynchronous-unwind-tables")


@dataclass(frozen=True)
class Target:
    name: str
    triple: str
    cpu: str  # zig's spelling; cortex_m4 alone has no FPU and ignores -mfpu, hence +vfp4d16sp
    emulated_cpu: str  # unicorn's CPU model
    hard_float: bool
    description: str
    optimisation: str


TARGETS = {
    "cortex-m4f": Target("cortex-m4f", "thumb-freestanding-eabihf", "cortex_m4+vfp4d16sp", "UC_CPU_ARM_CORTEX_M4",
                         True, "Cortex-M4F (ARMv7E-M, single-precision FPU, hard-float ABI)", "-O2"),
    "cortex-m0plus": Target("cortex-m0plus", "thumb-freestanding-eabi", "cortex_m0plus", "UC_CPU_ARM_CORTEX_M0",
                            False, "Cortex-M0+ (ARMv6-M, no FPU: integer requantisation)", "-Os"),
}
# -Os on the M0+ is both smaller and faster than -O2 (lenet5-modern: 1,410 bytes less code, 2.7 % fewer
# instructions; with eight low registers, -O2's unrolled loops spill). On the M4F -O2 is 5 % faster.

LINKER_SCRIPT = Template("""\
MEMORY
{
  FLASH (rx) : ORIGIN = $flash_origin, LENGTH = $flash_bytes
  RAM (rwx) : ORIGIN = $ram_origin, LENGTH = $ram_bytes
}
SECTIONS
{
  .text : { *(.text*) } > FLASH
  .rodata : { *(.rodata*) } > FLASH
  .data : { *(.data*) } > RAM AT > FLASH
  .bss (NOLOAD) : { *(.bss*) *(COMMON) } > RAM
}
""").substitute(flash_origin=hex(FLASH_ORIGIN), flash_bytes=hex(FLASH_BYTES), ram_origin=hex(RAM_ORIGIN),
                ram_bytes=hex(RAM_BYTES))


def zig() -> list[str]:
    """The command that runs zig (from the ziglang wheel), or DependencyError naming the extra."""
    require("ziglang", "mcu")
    return [sys.executable, "-m", "ziglang"]


def host_compiler() -> list[str]:
    """The system C compiler if there is one, else zig's clang for the host."""
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [name]
    return [*zig(), "cc"]


def _run(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise DependencyError(f"{what}: {command[0]} not found (install a C compiler or lenet-edge[mcu])") from exc
    if result.returncode:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
        raise ValidationError(f"{what} failed ({' '.join(command[:3])} ...): {lines[0][:300]}")


def build_host_library(source: Path, out: Path) -> Path:
    """The generated C as a shared library for this machine (what a Linux program would link)."""
    _run([*host_compiler(), *C_FLAGS, OPTIMISATION, "-shared", "-fPIC", str(source), "-o", str(out), "-lm"],
         f"{source.name}: host build")
    return out


def build_elf(source: Path, out: Path, target: Target, entry: str) -> Path:
    """The generated C linked alone into a Cortex-M ELF: flash at 0x08000000, RAM at 0x20000000, the model's
    entry function as the ELF entry (nothing else is kept: --gc-sections)."""
    script = out.with_suffix(".ld")
    script.write_text(LINKER_SCRIPT)
    _run([*zig(), "cc", "-target", target.triple, f"-mcpu={target.cpu}", *C_FLAGS, target.optimisation,
          *DEVICE_FLAGS, "-g",
          "-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections", f"-Wl,--entry={entry}",
          f"-Wl,-T,{script}", str(source), "-o", str(out)], f"{source.name}: {target.name} build")
    check_float_abi(out, target)
    return out


def arm_attributes(elf_path: Path) -> dict[str, object]:
    elffile = require("elftools.elf.elffile", "mcu")
    with open(elf_path, "rb") as f:
        section = elffile.ELFFile(f).get_section_by_name(".ARM.attributes")
        if section is None:
            return {}
        return {attribute.tag: attribute.value for sub in section.iter_subsections()
                for subsub in sub.iter_subsubsections() for attribute in subsub.iter_attributes()}


def check_float_abi(elf_path: Path, target: Target) -> None:
    """A hard-float target must have FPU instructions (Tag_FP_arch) and pass floats in FPU registers; a
    soft-float build slipping through (zig ignores -mfpu) would be 10x slower and call another ABI."""
    attributes = arm_attributes(elf_path)
    fp_arch = attributes.get("TAG_FP_ARCH", 0)
    vfp_args = attributes.get("TAG_ABI_VFP_ARGS", 0)
    if target.hard_float and (not fp_arch or vfp_args != 1):
        raise ValidationError(f"{elf_path.name}: built for {target.name} without hardware float "
                              f"(Tag_FP_arch {fp_arch}, Tag_ABI_VFP_args {vfp_args}; expected an FPU and the "
                              f"hard-float ABI)")
    if not target.hard_float and fp_arch:
        raise ValidationError(f"{elf_path.name}: built for {target.name} with FPU instructions "
                              f"(Tag_FP_arch {fp_arch}; expected soft float: the core has no FPU)")


@dataclass(frozen=True)
class Footprint:
    code_bytes: int  # .text
    constant_bytes: int  # .rodata (weights, biases, scales, table)
    data_bytes: int  # .data: initialised RAM, copied from flash at boot (0 when every table is const)
    bss_bytes: int  # .bss: the arena

    @property
    def flash_bytes(self) -> int:
        return self.code_bytes + self.constant_bytes + self.data_bytes

    @property
    def static_ram_bytes(self) -> int:
        return self.data_bytes + self.bss_bytes


def footprint(elf_path: Path) -> Footprint:
    elffile = require("elftools.elf.elffile", "mcu")
    sizes = {"code": 0, "const": 0, "data": 0, "bss": 0}
    with open(elf_path, "rb") as f:
        for section in elffile.ELFFile(f).iter_sections():
            flags, address, size = section["sh_flags"], section["sh_addr"], section["sh_size"]
            if not flags & 0x2 or not size:  # SHF_ALLOC: only what is on the device
                continue
            if section["sh_type"] == "SHT_NOBITS":
                sizes["bss"] += size
            elif RAM_ORIGIN <= address < RAM_ORIGIN + RAM_BYTES:
                sizes["data"] += size
            elif flags & 0x4:  # SHF_EXECINSTR
                sizes["code"] += size
            else:  # .rodata, and .ARM.exidx unwinding tables if any
                sizes["const"] += size
    return Footprint(sizes["code"], sizes["const"], sizes["data"], sizes["bss"])


def symbol_ranges(elf_path: Path, kind: str = "STT_FUNC") -> dict[str, tuple[int, int]]:
    """Each symbol of `kind` (functions; STT_OBJECT: variables) in the ELF -> its [start, end) addresses
    (a function's Thumb bit cleared)."""
    elffile = require("elftools.elf.elffile", "mcu")
    ranges = {}
    with open(elf_path, "rb") as f:
        symbols = elffile.ELFFile(f).get_section_by_name(".symtab")
        for symbol in symbols.iter_symbols() if symbols else ():
            if symbol["st_info"]["type"] == kind and symbol["st_size"]:
                start = symbol["st_value"] & ~1
                ranges[symbol.name] = (start, start + symbol["st_size"])
    return ranges


def check_toolchain() -> str | None:
    """None if the microcontroller toolchain is installed, else a one-line reason."""
    try:
        zig()
        require("unicorn", "mcu")
        require("elftools", "mcu")
    except DependencyError as exc:
        return str(exc)
    return None
