"""Running the exact ELF a user would flash on an emulated Cortex-M core (unicorn), one image at a time.

The ELF's loadable segments are mapped at their addresses (flash 0x08000000, RAM 0x20000000); the
harness puts the pixels and the logits in a region of its own, points SP at a painted stack, sets
R0/R1 and a return address in LR, and starts at the entry function with the thumb bit set.

Instructions are counted with a block hook: each translated block's instructions are counted once
(16- and 32-bit Thumb encodings), then summed per execution, per region: a block inside one of the
regions given (the layers' functions, the entry function) counts for it, a block anywhere else (a
helper such as compiler-rt's soft float) for the region that called it. Deterministic; a per-instruction hook
would be 30x slower and miss the instructions skipped inside IT blocks, which a real core still
issues. Instructions are not cycles: a Cortex-M4 multiply-accumulate, a load and a float divide
differ by up to 14 cycles, and flash wait states come on top.
"""

from __future__ import annotations

import bisect
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ValidationError, require
from .toolchain import RAM_BYTES, RAM_ORIGIN, Target

IO_BASE, IO_BYTES = 0x3000_0000, 0x2000  # the harness's pixels, then its logits, outside the program's RAM
LOGITS = IO_BASE + 0x1000
STACK_BYTES = 16 << 10
STACK_BASE = RAM_ORIGIN + RAM_BYTES  # the stack sits just above the program's RAM, growing down
PAINT = 0xA5  # stack paint: the lowest byte no longer PAINT is the high-water mark
RETURN = 0x0FFF_FFF0  # LR: the emulation stops when the entry function returns here
TIMEOUT_US = 300_000_000  # wall clock: generous, since a busy machine slows the emulator 10x and more


def _page(n: int) -> int:
    return (n + 0xFFF) & ~0xFFF


class EmulatedCore:
    def __init__(self, elf_path: Path, target: Target, pixels: int, classes: int,
                 regions: dict[str, tuple[int, int]] | None = None):
        """`regions`: label -> [start, end) of the code whose instructions count_instructions reports apart;
        before the first block inside one, blocks count for "" (none)."""
        unicorn = require("unicorn", "mcu")
        elffile = require("elftools.elf.elffile", "mcu")
        from unicorn import arm_const

        self.arm, self.target, self.pixels, self.classes = arm_const, target, pixels, classes
        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(getattr(arm_const, target.emulated_cpu))
        with open(elf_path, "rb") as f:
            elf = elffile.ELFFile(f)
            self.entry = elf.header["e_entry"] & ~1
            mapped: list[tuple[int, int]] = []
            for segment in elf.iter_segments():
                if segment["p_type"] != "PT_LOAD" or not segment["p_memsz"]:
                    continue
                start = segment["p_vaddr"] & ~0xFFF
                end = _page(segment["p_vaddr"] + segment["p_memsz"])
                for lo, hi in mapped:  # segments may share a page
                    if lo < end and start < hi:
                        start = max(start, hi)
                if start < end:
                    self.uc.mem_map(start, end - start)
                    mapped.append((start, end))
                self.uc.mem_write(segment["p_vaddr"], segment.data() + bytes(segment["p_memsz"] - segment["p_filesz"]))
        self.uc.mem_map(STACK_BASE - STACK_BYTES, STACK_BYTES)
        self.uc.mem_map(IO_BASE, IO_BYTES)
        if IO_BASE + pixels > LOGITS or LOGITS + 4 * classes > IO_BASE + IO_BYTES:
            raise ValidationError(f"{pixels} pixels and {classes} logits do not fit the emulator's I/O region")
        self._enable_fpu()
        self._regions = sorted((start, end, label) for label, (start, end) in (regions or {}).items())
        self._starts = [start for start, _, _ in self._regions]
        self._blocks: dict[tuple[int, int], tuple[int, str | None]] = {}
        self._counts: Counter[str] = Counter()
        self._current = ""

    def _enable_fpu(self) -> None:
        if self.target.hard_float:  # CPACR: full access to CP10 and CP11, as a startup file does
            self.uc.reg_write(self.arm.UC_ARM_REG_C1_C0_2, self.uc.reg_read(self.arm.UC_ARM_REG_C1_C0_2) | (0xF << 20))

    def infer(self, pixels: np.ndarray) -> np.ndarray:
        """The logits (classes,) float32 of one image (pixels,) uint8."""
        self.uc.mem_write(IO_BASE, np.ascontiguousarray(pixels, np.uint8).tobytes())
        self.uc.reg_write(self.arm.UC_ARM_REG_SP, STACK_BASE)
        self.uc.reg_write(self.arm.UC_ARM_REG_R0, IO_BASE)
        self.uc.reg_write(self.arm.UC_ARM_REG_R1, LOGITS)
        self.uc.reg_write(self.arm.UC_ARM_REG_LR, RETURN | 1)
        try:
            self.uc.emu_start(self.entry | 1, RETURN, timeout=TIMEOUT_US)
        except Exception as exc:  # unicorn's UcError: a fault inside the model
            pc = self.uc.reg_read(self.arm.UC_ARM_REG_PC)
            raise ValidationError(f"{self.target.name}: the model faulted at pc {pc:#x} ({exc})") from exc
        if self.uc.reg_read(self.arm.UC_ARM_REG_PC) != RETURN:
            raise ValidationError(f"{self.target.name}: the model did not return within {TIMEOUT_US // 10**6} s")
        return np.frombuffer(bytes(self.uc.mem_read(LOGITS, 4 * self.classes)), np.float32).copy()

    def read(self, address: int, nbytes: int) -> bytes:
        """The core's memory: what the model left there (a check build's trace of each layer's output)."""
        return bytes(self.uc.mem_read(address, nbytes))

    def run(self, images: np.ndarray, on_image=None) -> np.ndarray:
        """Logits (N, classes) of images (N, side, side) uint8."""
        out = np.empty((len(images), self.classes), np.float32)
        for i, image in enumerate(images):
            out[i] = self.infer(image.reshape(-1))
            if on_image:
                on_image(i)
        return out

    def stack_high_water(self, image: np.ndarray) -> int:
        """Bytes of stack one inference uses: the stack is painted, the model run, the paint read back."""
        self.uc.mem_write(STACK_BASE - STACK_BYTES, bytes([PAINT]) * STACK_BYTES)
        self.infer(image.reshape(-1))
        stack = bytes(self.uc.mem_read(STACK_BASE - STACK_BYTES, STACK_BYTES))
        untouched = len(stack) - len(stack.lstrip(bytes([PAINT])))
        if untouched == 0:
            raise ValidationError(f"{self.target.name}: the model used all {STACK_BYTES} bytes of the emulated stack")
        return STACK_BYTES - untouched

    def count_instructions(self, image: np.ndarray) -> int:
        """Instructions executed by one inference (block hook; deterministic for a given image)."""
        return sum(self.count_by_region(image).values())

    def count_by_region(self, image: np.ndarray) -> dict[str, int]:
        """Instructions executed by one inference, per region label (see __init__); they sum to the total."""
        unicorn = require("unicorn", "mcu")
        self._counts, self._current = Counter(), ""
        hook = self.uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
        self.uc.ctl_flush_tb()  # blocks translated before the hook existed would not call it
        try:
            self.infer(image.reshape(-1))
        finally:
            self.uc.hook_del(hook)
        return dict(self._counts)

    def _region(self, address: int) -> str | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and address < self._regions[i][1]:
            return self._regions[i][2]
        return None

    def _on_block(self, uc, address: int, size: int, user_data) -> None:
        key = (address, size)
        block = self._blocks.get(key)
        if block is None:
            block = self._blocks[key] = (_thumb_instructions(bytes(uc.mem_read(address, size))), self._region(address))
        count, region = block
        if region is not None:
            self._current = region
        self._counts[self._current] += count


def _thumb_instructions(code: bytes) -> int:
    """Instructions in a block of Thumb code: a halfword starting 0b11101, 0b11110 or 0b11111 opens a 32-bit one."""
    count, i = 0, 0
    while i + 1 < len(code):
        halfword = code[i] | code[i + 1] << 8
        i += 4 if (halfword >> 11) in (0b11101, 0b11110, 0b11111) else 2
        count += 1
    return count
