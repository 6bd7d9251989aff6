"""Writers: nothing replaced without --force even at the final rename, a full disk or a name too long is an
output error naming the file (exit 6), every output a command writes is checked before it starts, and
nothing blocks on a FIFO where a manifest or an input should be.

The full-disk cases write onto a real 64 KiB tmpfs mounted for the test (root only); CI runs as root, so
there a failed mount fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lenet_edge import fileio
from lenet_edge.cli import cli
from lenet_edge.errors import OutputError
from lenet_edge.fileio import atomic_path, rename_no_replace, staged_directory, write_bytes, write_text
from lenet_edge.manifest import MANIFEST_NAME
from lenet_edge.scratch import remove_stale, scratch_directory
from tests.cli_output import one_error_line
from tests.idx_files import synthetic_digits, write_mnist_dir
from tests.runtime_models import band_model, slow_model

OUTPUT, USAGE, DATA, MODEL = 6, 2, 3, 4


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (instead of hanging the test session) when the block has not returned in time."""
    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".tmp", ".partial", ".old")))


@pytest.fixture
def model(tmp_path) -> Path:
    return band_model(tmp_path / "band.onnx")


@pytest.fixture
def digits(tmp_path) -> Path:
    np.save(tmp_path / "digits.npy", synthetic_digits(4)[0])
    return tmp_path / "digits.npy"


# ----------------------------------------------------------------------------- the final rename


def test_the_final_rename_never_replaces_a_file_made_while_the_output_was_written(tmp_path):
    target = tmp_path / "predictions.txt"
    with pytest.raises(OutputError, match=r"predictions\.txt: already exists \(expected a new path\); pass --force"):
        with atomic_path(target) as tmp:
            tmp.write_text("this run")
            target.write_text("another run's, finished first")  # a second writer of the same path
    assert target.read_text() == "another run's, finished first"
    assert leftovers(tmp_path) == [] and not (tmp_path / MANIFEST_NAME).exists()
    with atomic_path(target, replace=True) as tmp:  # --force
        tmp.write_text("this run")
    assert target.read_text() == "this run"


def test_two_runs_writing_the_same_output_one_is_refused_and_nothing_is_lost(tmp_path):
    """The issue's race, for real: both runs pass the check at the start; the one that finishes second
    must not replace the first one's predictions."""
    model = slow_model(tmp_path / "slow.onnx", layers=100)
    np.save(tmp_path / "many.npy", np.zeros((2000, 28, 28), np.uint8))  # seconds at batch 2,000
    np.save(tmp_path / "few.npy", synthetic_digits(3)[0])
    out = tmp_path / "same.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                    os.environ.get("PYTHONPATH")]))}
    run = [sys.executable, "-m", "lenet_edge", "run", str(model)]
    slow = subprocess.Popen([*run, str(tmp_path / "many.npy"), "--batch-size", "2000", "--threads", "1", "-o",
                             str(out)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        with deadline(120):
            while not list(tmp_path.glob(".same.txt.*.tmp")):  # past its check: writing its temporary file
                assert slow.poll() is None, slow.stderr.read()
                time.sleep(0.05)
        fast = subprocess.run([*run, str(tmp_path / "few.npy"), "-o", str(out)], capture_output=True, text=True,
                              env=env, timeout=120)
        assert fast.returncode == 0 and slow.poll() is None, fast.stderr  # the fast one finished first
        first = out.read_text()
        code, stderr = slow.wait(timeout=600), slow.stderr.read()
    finally:
        slow.kill()
        slow.wait()
    assert code == OUTPUT and stderr == f"error: {out}: already exists (expected a new path); pass --force to " \
                                        f"replace it\n", stderr
    assert out.read_text() == first and "few.npy[2]" in first and leftovers(tmp_path) == []


def test_without_renameat2_a_hard_link_refuses_just_as_well(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "_libc_renameat2", lambda: None)  # a kernel or libc without it
    (tmp_path / "new").write_text("a")
    rename_no_replace(tmp_path / "new", tmp_path / "target")
    assert (tmp_path / "target").read_text() == "a" and not (tmp_path / "new").exists()
    (tmp_path / "second").write_text("b")
    with pytest.raises(FileExistsError):
        rename_no_replace(tmp_path / "second", tmp_path / "target")
    assert (tmp_path / "target").read_text() == "a" and (tmp_path / "second").read_text() == "b"


def test_a_staged_directory_never_replaces_one_made_meanwhile(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(OutputError, match=r"run: already exists"):
        with staged_directory(out) as staging:
            (staging / "report.md").write_text("this run")
            out.mkdir()
            (out / "theirs.txt").write_text("another run")
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"] and leftovers(tmp_path) == []


def test_the_pipeline_directory_is_as_readable_as_its_files(tmp_path):
    previous = os.umask(0o022)
    try:
        with staged_directory(tmp_path / "run") as staging:
            write_text(staging / "report.md", "done")
    finally:
        os.umask(previous)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
    assert (tmp_path / "run" / "report.md").stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------- a full disk


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A 64 KiB tmpfs with every data block taken: creating a file works, writing into it does not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs ({mounted.stderr.strip()})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_an_output_error_naming_the_file_and_leaves_nothing(full_disk):
    (full_disk / "model.onnx").unlink(missing_ok=True)
    with pytest.raises(OutputError, match=r"model\.onnx: cannot write it \(No space left on device\)"):
        write_bytes(full_disk / "model.onnx", b"\1" * 100_000)
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_run_onto_a_full_disk_exits_6_naming_the_output(full_disk, model, tmp_path):
    many = tmp_path / "many.npy"
    np.save(many, np.repeat(synthetic_digits(10)[0], 200, axis=0))  # 2,000 rows: far more than the space left
    result = CliRunner().invoke(cli, ["run", str(model), str(many), "-o", str(full_disk / "p.txt")])
    assert result.exit_code == OUTPUT, result.stderr
    assert "p.txt: cannot write it (No space left on device)" in one_error_line(result.stderr)
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_a_staged_directory_on_a_full_disk_names_the_directory(full_disk):
    with pytest.raises(OutputError, match=r"run: cannot write it \(No space left on device\)"):
        with staged_directory(full_disk / "run") as staging:
            (staging / "big.bin").write_bytes(b"\1" * 100_000)
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


# ----------------------------------------------------------------------------- names too long


def test_an_output_name_over_255_bytes_is_an_output_error(model, digits, tmp_path):
    out = tmp_path / ("p" * 300 + ".txt")
    result = CliRunner().invoke(cli, ["run", str(model), str(digits), "-o", str(out)])
    assert result.exit_code == OUTPUT
    assert "a name of 304 bytes in this path (expected at most 255 bytes" in one_error_line(result.stderr)
    result = CliRunner().invoke(cli, ["pipeline", "--out", str(tmp_path / ("r" * 256))])
    assert result.exit_code == OUTPUT and "a name of 256 bytes in this path" in one_error_line(result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["band.onnx", "digits.npy"]


def test_a_name_of_250_bytes_still_gets_its_temporary_file(tmp_path):
    target = tmp_path / ("n" * 246 + ".txt")  # the temporary name adds 15 bytes: cut, not refused
    write_text(target, "fits")
    assert target.read_text() == "fits" and leftovers(tmp_path) == []


def test_a_model_or_input_name_over_255_bytes_is_refused_as_that_kind(model, digits, tmp_path):
    long = tmp_path / ("m" * 300 + ".onnx")
    result = CliRunner().invoke(cli, ["run", str(long), str(digits)])
    assert result.exit_code == MODEL and "file name too long" in one_error_line(result.stderr)
    result = CliRunner().invoke(cli, ["run", str(model), str(tmp_path / ("d" * 300 + ".npy")), "--fail-fast"])
    assert result.exit_code == DATA and "file name too long" in one_error_line(result.stderr)


# ----------------------------------------------------------------------------- every output checked first


@pytest.mark.parametrize("planted", ["m.json", "m.curves.png", "m.resume.safetensors"])
def test_train_refuses_any_of_its_outputs_that_exists_before_training(tmp_path, planted):
    data = write_mnist_dir(tmp_path / "mnist", train=200, test=50)
    (tmp_path / planted).write_bytes(b"someone's file")
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(data), "-o", str(tmp_path / "m.safetensors"),
                                      "--epochs", "1", "--val-count", "50"])
    assert result.exit_code == OUTPUT
    assert f"{planted}: already exists" in one_error_line(result.stderr)  # the one line: training never started
    assert (tmp_path / planted).read_bytes() == b"someone's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["mnist", planted])


def test_compile_keep_elf_refuses_an_existing_elf_before_anything_runs(model, tmp_path):
    out = tmp_path / "mcu"
    out.mkdir()
    (out / "lenet.cortex-m4f.elf").write_bytes(b"my firmware")
    result = CliRunner().invoke(cli, ["compile", str(model), "-o", str(out), "--target", "cortex-m4f", "--keep-elf",
                                      "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == OUTPUT
    assert "lenet.cortex-m4f.elf: already exists" in one_error_line(result.stderr)
    assert sorted(p.name for p in out.iterdir()) == ["lenet.cortex-m4f.elf"]


def test_compile_check_images_0_is_refused_before_any_download(model, tmp_path, monkeypatch):
    monkeypatch.delenv("LENET_EDGE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["compile", str(model), "-o", str(tmp_path / "mcu"), "--check-images", "0"])
    assert result.exit_code == USAGE
    assert one_error_line(result.stderr) == ("error: Invalid value for '--check-images': 0 is not in the range "
                                      "1<=x<=10000.")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "mcu").exists()


# ----------------------------------------------------------------------------- FIFOs and devices


def test_a_manifest_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / MANIFEST_NAME)
    with deadline(20), pytest.raises(OutputError, match=r"MANIFEST\.sha256: a FIFO, not a regular file"):
        write_bytes(tmp_path / "model.onnx", b"onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]  # no .model.onnx.XXXX.tmp left


def test_verify_with_a_fifo_manifest_is_a_model_error_without_blocking(model, digits, tmp_path):
    write_bytes(tmp_path / "m.onnx", model.read_bytes(), record=False)
    os.mkfifo(tmp_path / MANIFEST_NAME)
    with deadline(20):
        result = CliRunner().invoke(cli, ["run", str(tmp_path / "m.onnx"), str(digits), "--verify"])
    assert result.exit_code == MODEL and "a FIFO, not a regular file" in one_error_line(result.stderr)


def test_a_fifo_or_a_device_given_as_model_or_input_is_not_a_regular_file(model, digits, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with deadline(20):
        as_model = CliRunner().invoke(cli, ["run", "/dev/zero", str(digits)])
        as_input = CliRunner().invoke(cli, ["run", str(model), str(tmp_path / "pipe"), "--fail-fast"])
        as_report = CliRunner().invoke(cli, ["compare", str(tmp_path / "pipe"), "/dev/zero"])
    assert as_model.exit_code == MODEL
    assert "/dev/zero: a character device, not a regular file (expected an .onnx file)" in one_error_line(
        as_model.stderr)
    assert as_input.exit_code == DATA and "pipe: a FIFO, not a regular file" in one_error_line(as_input.stderr)
    assert as_report.exit_code == DATA and "pipe: a FIFO, not a regular file" in one_error_line(as_report.stderr)


# ----------------------------------------------------------------------------- scratch of killed runs


def test_scratch_directories_of_runs_that_are_gone_are_removed(tmp_path, monkeypatch):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f"lenet-edge-quantize-p{dead_pid}-abcd1234"
        running = tmp_path / f"lenet-edge-quantize-p{live.pid}-efgh5678"
        other = tmp_path / "lenet-edge-notes"
        for directory in (stale, running, other):
            directory.mkdir()
            (directory / "candidate.onnx").write_bytes(b"x")
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        with scratch_directory("quantize") as work:
            assert work.name.startswith(f"lenet-edge-quantize-p{os.getpid()}-")
            assert not stale.exists() and running.is_dir() and other.is_dir()
        assert not work.exists()
        assert remove_stale(tmp_path) == []  # nothing left to remove: the live one stays
    finally:
        live.kill()
        live.wait()
    assert remove_stale(tmp_path) == [running]
