"""Ctrl-C in the middle of train, export, quantize, bench and pipeline.

Each test starts the real `lenet-edge` in a child process on small synthetic data, waits
(bounded) until the command is under way, sends SIGINT, and checks: exit code 130, one
error line, the earlier artefacts at the output path byte-identical, and no temporary
file or directory left anywhere (the output directory and the process's TMPDIR).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from lenet_edge.cli import cli
from lenet_edge.fileio import sha256_file
from lenet_edge.train.checkpoint import load_checkpoint, meta_path
from tests.idx_files import write_mnist_dir

COMMAND = Path(sys.executable).with_name("lenet-edge")
INTERRUPTED = 130
START_TIMEOUT_S = 180  # generous: importing torch on a busy 2-core machine is slow
# 1,100 synthetic training images at batch size 1: one epoch takes seconds, so an
# interrupt sent when training starts lands inside the first epoch
SLOW_TRAIN = ["--val-count", "100", "--batch-size", "1", "--no-augment"]
QUICK_EPOCHS = ["--val-count", "100", "--batch-size", "20", "--no-augment"]  # ~50 steps per epoch
# What torch leaves in TMPDIR on every export, interrupted or not: not lenet-edge's to clean up
LIBRARY_LEFTOVERS = (".ses", "torchinductor_")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Synthetic MNIST: enough training images for quantize's default 1,000 calibration images."""
    return write_mnist_dir(tmp_path_factory.mktemp("interrupt") / "mnist", train=1100, test=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("trained") / "tiny.safetensors"
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(data), "-o", str(out), "--epochs", "1",
                                      "--val-count", "100", "--batch-size", "50"])
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained, data) -> Path:
    from lenet_edge.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("exported") / "tiny.onnx"
    export_checkpoint(trained, out, data_dir=data)
    return out


def _files(*directories: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for d in directories for p in sorted(d.rglob("*")) if p.is_file()}


def _leftovers(directory: Path, tmpdir: Path) -> list[str]:
    """Temporary files (.NAME.XXXX.tmp) and staging directories in `directory`, and anything
    but the libraries' own caches in the process's TMPDIR."""
    found = [str(p) for p in directory.rglob("*") if p.name.endswith((".tmp", ".partial", ".old"))]
    return found + [str(p) for p in tmpdir.iterdir() if not p.name.startswith(LIBRARY_LEFTOVERS)]


def interrupt(args: list[str], tmp_path: Path, under_way: Callable[[str], bool],
              signum: int = signal.SIGINT) -> tuple[int, str]:
    """Run `lenet-edge ARGS`, send `signum` once under_way(stderr so far) holds; (exit code, stderr)."""
    stderr_path = tmp_path / "stderr.txt"
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    with open(stderr_path, "w") as stderr:
        # A shell's background job ignores SIGINT and its children inherit that; a user's
        # foreground command does not, so the child starts with the default disposition.
        proc = subprocess.Popen([str(COMMAND), *args], stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not under_way(stderr_path.read_text()):
                if proc.poll() is not None:
                    pytest.fail(f"lenet-edge ended (exit {proc.returncode}) before it was under way: "
                                f"{stderr_path.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"lenet-edge was not under way after {START_TIMEOUT_S} s: {stderr_path.read_text()}")
                time.sleep(0.02)
            proc.send_signal(signum)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, stderr_path.read_text()


def _assert_interrupted(code: int, stderr: str) -> None:
    assert code == INTERRUPTED, stderr
    last = stderr.splitlines()[-1]
    assert last == "error: interrupted; earlier artefacts are left as they were", stderr
    assert "Traceback" not in stderr


def _previous_run(directory: Path, trained: Path) -> Path:
    """An earlier checkpoint at the output path, written by lenet-edge (manifest included)."""
    from lenet_edge.fileio import write_bytes

    directory.mkdir()
    out = directory / "model.safetensors"
    for suffix in (".safetensors", ".json", ".resume.safetensors", ".curves.png"):
        write_bytes(out.with_name("model" + suffix), trained.with_name("tiny" + suffix).read_bytes())
    return out


def test_ctrl_c_during_training_keeps_the_earlier_checkpoint(tmp_path, data, trained):
    out = _previous_run(tmp_path / "run", trained)
    before = _files(out.parent)
    # far more epochs than it takes to see the run start: on a fast idle CPU five epochs of this tiny set were
    # over before a loaded test runner had read the first line and sent the signal
    code, stderr = interrupt(["train", "--data-dir", str(data), "-o", str(out), "--force", "--epochs", "100",
                              *SLOW_TRAIN], tmp_path, lambda err: "training lenet5-modern" in err)
    _assert_interrupted(code, stderr)
    assert _files(out.parent) == before
    assert not _leftovers(out.parent, tmp_path / "tmpdir")


def test_training_interrupted_after_an_epoch_resumes_from_its_checkpoint(tmp_path, data):
    out = tmp_path / "run" / "model.safetensors"

    def first_epoch_written(_: str) -> bool:
        try:
            return json.loads(meta_path(out).read_text())["epoch"] >= 1
        except (OSError, ValueError, KeyError):
            return False

    code, stderr = interrupt(["train", "--data-dir", str(data), "-o", str(out), "--epochs", "200", *QUICK_EPOCHS],
                             tmp_path, first_epoch_written)
    _assert_interrupted(code, stderr)
    assert not _leftovers(out.parent, tmp_path / "tmpdir")
    _, meta = load_checkpoint(out)  # weights and JSON belong together: the sha256 check passes
    done = meta["epoch"]
    assert 1 <= done < 200 and [h["epoch"] for h in meta["history"]] == list(range(1, done + 1))
    manifest = (out.parent / "MANIFEST.sha256").read_text()
    assert f"{sha256_file(out)}  model.safetensors\n" in manifest

    resumed = CliRunner().invoke(cli, ["train", "--data-dir", str(data), "-o", str(out), "--epochs", str(done + 1),
                                       "--resume", *QUICK_EPOCHS])
    assert resumed.exit_code == 0, resumed.stderr
    after = json.loads(meta_path(out).read_text())
    assert after["epoch"] == done + 1
    assert after["history"][:done] == meta["history"]  # the finished epochs are kept, not redone


def test_ctrl_c_during_export_keeps_the_earlier_model(tmp_path, data, trained):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an earlier model")
    tmpdir = tmp_path / "tmpdir"
    code, stderr = interrupt(["export", str(trained), "-o", str(out), "--force", "--data-dir", str(data)], tmp_path,
                             lambda _: any(tmpdir.glob("lenet-edge-export-*")))
    _assert_interrupted(code, stderr)
    assert out.read_bytes() == b"an earlier model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "stderr.txt", "tmpdir"]
    assert not _leftovers(tmp_path, tmpdir)  # the export's working directory is gone too


def test_ctrl_c_during_quantization_keeps_the_earlier_int8_model(tmp_path, data, exported):
    out = tmp_path / "model.int8.onnx"
    out.write_bytes(b"an earlier int8 model")
    code, stderr = interrupt(["quantize", str(exported), "-o", str(out), "--force", "--data-dir", str(data)],
                             tmp_path, lambda err: "quantizing" in err)
    _assert_interrupted(code, stderr)
    assert out.read_bytes() == b"an earlier int8 model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx", "stderr.txt", "tmpdir"]
    assert not _leftovers(tmp_path, tmp_path / "tmpdir")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_bench_keeps_the_earlier_report(tmp_path, data, exported, signum):
    out = tmp_path / "bench.json"
    earlier = {out.with_suffix(s): f"earlier {s}".encode() for s in (".json", ".md", ".png")}
    for path, content in earlier.items():
        path.write_bytes(content)
    code, stderr = interrupt(["bench", str(exported), "--data-dir", str(data), "-o", str(out), "--force",
                              "--runs", "1000000", "--batch-sizes", "1", "--threads", "1"], tmp_path,
                             lambda err: "bench" in err, signum)
    _assert_interrupted(code, stderr)
    assert {p: p.read_bytes() for p in earlier} == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.md", "bench.png", "stderr.txt",
                                                          "tmpdir"]
    assert not _leftovers(tmp_path, tmp_path / "tmpdir")


def test_ctrl_c_during_the_pipeline_keeps_the_earlier_directory(tmp_path, data):
    out = tmp_path / "pipeline"
    out.mkdir()
    (out / "report.md").write_text("an earlier run\n")
    code, stderr = interrupt(["pipeline", "--data-dir", str(data), "--out", str(out), "--force"], tmp_path,
                             lambda _: any(tmp_path.glob(".pipeline.*.partial")))
    _assert_interrupted(code, stderr)
    assert _files(out) == {str(out / "report.md"): b"an earlier run\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline", "stderr.txt", "tmpdir"]  # no staging left
    assert not _leftovers(tmp_path, tmp_path / "tmpdir")
