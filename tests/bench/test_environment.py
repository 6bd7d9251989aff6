"""Where a bench ran: native, emulated or virtualised, from fake /proc and /sys trees; the board;
the onnxruntime build. Under the real emulator the ARM64 device job checks the same detection."""

from __future__ import annotations

import platform

import pytest

from lenet_edge.bench import environment
from lenet_edge.bench.environment import board_model, execution
from lenet_edge.bench.records import EXECUTION_KINDS


def _tree(root, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def linux(monkeypatch):
    """platform as a Linux process on the given machine (instruction set)."""
    def on(machine: str) -> None:
        monkeypatch.setattr(platform, "machine", lambda: machine)
        monkeypatch.setattr(platform, "system", lambda: "Linux")
    return on


X86_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse4_2 avx2\n\n"
STATUS = "Name:\tpython3\nUmask:\t0022\n"


def test_native(tmp_path, linux):
    linux("x86_64")
    root = _tree(tmp_path, {"proc/sys/kernel/arch": "x86_64\n", "proc/cpuinfo": X86_CPUINFO,
                            "proc/self/status": STATUS})
    assert execution(root) == {"kind": "native", "evidence": []}


def test_qemu_user_is_emulated(tmp_path, linux):
    # What qemu-aarch64 shows a program on an x86-64 host: uname -m says aarch64, the kernel says
    # x86_64, and the process is the emulator (as /proc/self/status showed under qemu 7.2).
    linux("aarch64")
    root = _tree(tmp_path, {"proc/sys/kernel/arch": "x86_64\n", "proc/self/status": "Name:\tqemu-aarch64-st\n",
                            "proc/cpuinfo": "processor\t: 0\nFeatures\t: fp asimd\nCPU part\t: 0xd08\n\n"})
    assert execution(root) == {"kind": "emulated", "evidence": [
        "process runs aarch64 code on a x86_64 kernel (/proc/sys/kernel/arch)",
        "process name qemu-aarch64-st (/proc/self/status)"]}


def test_emulator_started_by_binfmt_is_still_emulated(tmp_path, linux):
    linux("aarch64")  # binfmt_misc gives the process the program's name; the kernel's arch still tells
    root = _tree(tmp_path, {"proc/sys/kernel/arch": "x86_64\n", "proc/self/status": STATUS})
    assert execution(root)["kind"] == "emulated"


@pytest.mark.parametrize("kernel,machine", [("aarch64", "armv7l"), ("x86_64", "i686")])
def test_a_32_bit_userland_on_its_64_bit_kernel_is_native(tmp_path, linux, kernel, machine):
    linux(machine)
    assert execution(_tree(tmp_path, {"proc/sys/kernel/arch": kernel}))["kind"] == "native"


@pytest.mark.parametrize("files,evidence", [
    ({"proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu avx2 hypervisor\n\n"}, "CPU flag hypervisor (/proc/cpuinfo)"),
    ({"sys/class/dmi/id/sys_vendor": "QEMU\n"}, "sys_vendor 'QEMU' (/sys/class/dmi/id)"),
    ({"sys/class/dmi/id/product_name": "VMware Virtual Platform\n"}, "product_name 'VMware Virtual Platform'"),
    ({"sys/hypervisor/type": "xen\n"}, "hypervisor xen (/sys/hypervisor/type)"),
    ({"proc/device-tree/compatible": "linux,dummy-virt\0"}, "qemu virtual board linux,dummy-virt"),
    ({"proc/device-tree/hypervisor/compatible": "xen,xen\0"}, "device tree has a hypervisor node"),
])
def test_virtualised(tmp_path, linux, files, evidence):
    linux("x86_64")
    found = execution(_tree(tmp_path, {"proc/sys/kernel/arch": "x86_64\n", **files}))
    assert found["kind"] == "virtualised" and found["evidence"][0].startswith(evidence)


def test_emulated_wins_over_a_virtualised_host(tmp_path, linux):
    linux("aarch64")
    root = _tree(tmp_path, {"proc/sys/kernel/arch": "x86_64\n", "sys/class/dmi/id/sys_vendor": "QEMU\n"})
    found = execution(root)
    assert found["kind"] == "emulated" and len(found["evidence"]) == 2  # both findings kept


def test_unknown_off_linux_and_macos(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    assert execution(tmp_path) == {"kind": "unknown", "evidence": []}


def test_board_model(tmp_path):
    assert board_model(tmp_path) is None
    _tree(tmp_path, {"sys/class/dmi/id/sys_vendor": "Dell Inc.\n", "sys/class/dmi/id/product_name": "XPS 13\n"})
    assert board_model(tmp_path) == "Dell Inc. XPS 13"
    _tree(tmp_path, {"proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\0"})  # NUL-terminated
    assert board_model(tmp_path) == "Raspberry Pi 5 Model B Rev 1.0"


def test_arm_cores_are_named():
    assert environment.ARM_CORES[("0x41", "0xd08")] == "Arm Cortex-A72"  # Raspberry Pi 4
    assert environment.ARM_CORES[("0x41", "0xd0b")] == "Arm Cortex-A76"  # Raspberry Pi 5


def test_environment_records_where_and_what():
    env = environment.environment(device="bench-box")
    assert env["device"] == "bench-box"
    assert env["execution"]["kind"] in EXECUTION_KINDS
    assert "CPUExecutionProvider" in env["onnxruntime"]["providers"]
    assert env["onnxruntime"]["version"] == env["versions"]["onnxruntime"]
    assert env["kernel"]["release"] == platform.release()
