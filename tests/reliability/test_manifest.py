"""MANIFEST.sha256 beside every artefact, and holding Ctrl-C back while it is recorded."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys

import pytest

from lenet_edge import manifest
from lenet_edge.errors import ModelError, OutputError
from lenet_edge.fileio import atomic_path, uninterrupted, write_bytes, write_text
from tests.cli_output import one_error_line


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256sum_check(directory) -> subprocess.CompletedProcess:
    """coreutils' own check of the manifest, as a user would run it."""
    tool = shutil.which("sha256sum")
    assert tool is not None, "sha256sum (coreutils) is needed to check the manifest format"
    return subprocess.run([tool, "--strict", "-c", manifest.MANIFEST_NAME], cwd=directory,
                          capture_output=True, text=True, errors="surrogateescape", timeout=60)


def test_every_write_is_recorded_sorted_in_sha256sum_format(tmp_path):
    write_bytes(tmp_path / "model.onnx", b"onnx bytes")
    write_text(tmp_path / "bench.md", "| table |\n")
    write_bytes(tmp_path / "model.onnx", b"new onnx bytes", replace=True)  # replaced: its entry follows
    text = (tmp_path / manifest.MANIFEST_NAME).read_text()
    assert text == (f"{_sha(b'| table |' + bytes([10]))}  bench.md\n"
                    f"{_sha(b'new onnx bytes')}  model.onnx\n")
    result = _sha256sum_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["bench.md: OK", "model.onnx: OK"]


def test_manifest_never_lists_itself_or_temporary_files(tmp_path):
    write_bytes(tmp_path / "a.bin", b"a")
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    entries = manifest.read(tmp_path / manifest.MANIFEST_NAME, OutputError)
    assert list(entries) == ["a.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANIFEST.sha256", "a.bin"]


def test_entries_of_deleted_files_are_dropped_on_the_next_write(tmp_path):
    write_bytes(tmp_path / "old.json", b"{}")
    (tmp_path / "old.json").unlink()
    write_bytes(tmp_path / "new.json", b"[]")
    assert list(manifest.read(tmp_path / manifest.MANIFEST_NAME, OutputError)) == ["new.json"]
    assert _sha256sum_check(tmp_path).returncode == 0


def test_names_that_sha256sum_escapes_round_trip(tmp_path):
    names = ["back\\slash.onnx", "new\nline.onnx", "plain name.onnx"]
    for i, name in enumerate(names):
        write_bytes(tmp_path / name, bytes([i]))
    entries = manifest.read(tmp_path / manifest.MANIFEST_NAME, OutputError)
    assert entries == {name: _sha(bytes([i])) for i, name in enumerate(names)}
    result = _sha256sum_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_foreign_manifest_is_refused_and_the_artefact_left_as_it_was(tmp_path):
    (tmp_path / manifest.MANIFEST_NAME).write_text("these are my notes\n")
    (tmp_path / "model.onnx").write_bytes(b"previous")
    with pytest.raises(OutputError, match=r"MANIFEST\.sha256: line 1 is not '<sha256>  <name>'"):
        write_bytes(tmp_path / "model.onnx", b"next")
    assert (tmp_path / "model.onnx").read_bytes() == b"previous"
    assert (tmp_path / manifest.MANIFEST_NAME).read_text() == "these are my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANIFEST.sha256", "model.onnx"]


def test_concurrent_writers_keep_every_entry(tmp_path):
    """Two processes writing into one directory at once: the directory lock keeps both sets."""
    script = ("import sys; from pathlib import Path; from lenet_edge.fileio import write_bytes\n"
              "for i in range(25): write_bytes(Path(sys.argv[1]) / f'{sys.argv[2]}{i}.bin', bytes([i]))\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), prefix]) for prefix in "ab"]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    entries = manifest.read(tmp_path / manifest.MANIFEST_NAME, OutputError)
    assert sorted(entries) == sorted(f"{p}{i}.bin" for p in "ab" for i in range(25))
    assert _sha256sum_check(tmp_path).returncode == 0


def test_uninterrupted_delivers_ctrl_c_after_the_block():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with uninterrupted():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the whole block ran")
        done.append("not reached")  # the held-back interrupt arrives here
    assert done == ["the whole block ran"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_uninterrupted_nests_and_restores_handlers():
    """A signal inside the inner block is handed to the outer one: the rest of the outer block still runs."""
    before = signal.getsignal(signal.SIGTERM)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with uninterrupted():
            with uninterrupted():
                os.kill(os.getpid(), signal.SIGINT)
            done.append("the outer block ran on")
        done.append("not reached")
    assert done == ["the outer block ran on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == before


# ----------------------------------------------------------------------------- verify


def test_verify_accepts_the_recorded_file(tmp_path):
    write_bytes(tmp_path / "model.onnx", b"model")
    assert manifest.verify(tmp_path / "model.onnx") == _sha(b"model")


def test_verify_refusals(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model")
    with pytest.raises(ModelError, match=r"model\.onnx: no MANIFEST\.sha256 beside it"):
        manifest.verify(model)
    write_bytes(tmp_path / "other.onnx", b"other")
    with pytest.raises(ModelError, match=r"model\.onnx: not listed in .*MANIFEST\.sha256 \(expected an entry"):
        manifest.verify(model)
    write_bytes(model, b"model", replace=True)
    model.write_bytes(b"tampered")
    with pytest.raises(ModelError, match=r"model\.onnx: sha256 [0-9a-f]{12}… does not match .*changed or replaced"):
        manifest.verify(model)
    (tmp_path / manifest.MANIFEST_NAME).write_text("garbage\n")
    with pytest.raises(ModelError, match=r"MANIFEST\.sha256: line 1 is not"):
        manifest.verify(model)


# ----------------------------------------------------------------------------- --verify on the CLI


@pytest.fixture
def recorded_model(tmp_path):
    """A band model written through fileio, so the manifest beside it lists it."""
    from tests.runtime_models import band_model

    built = band_model(tmp_path / "built.onnx")
    model = tmp_path / "models" / "band.onnx"
    model.parent.mkdir()
    write_bytes(model, built.read_bytes())
    return model


@pytest.fixture
def digits(tmp_path):
    from tests.idx_files import synthetic_digits

    path = tmp_path / "digits.npy"
    import numpy as np

    np.save(path, synthetic_digits(5)[0])
    return path


def test_run_verify_passes_a_recorded_model_and_refuses_a_changed_one(runner, recorded_model, digits):
    from lenet_edge.cli import cli

    ok = runner.invoke(cli, ["run", "--verify", str(recorded_model), str(digits)])
    assert ok.exit_code == 0, ok.stderr
    assert len(ok.stdout.splitlines()) == 6  # header + 5 predictions
    from tests.runtime_models import random_model

    random_model(recorded_model, seed=3)  # replaced behind lenet-edge's back by another valid model
    assert runner.invoke(cli, ["run", str(recorded_model), str(digits)]).exit_code == 0
    refused = runner.invoke(cli, ["run", "--verify", str(recorded_model), str(digits)])
    assert refused.exit_code == 4
    assert one_error_line(refused.stderr).startswith(f"error: {recorded_model}: sha256 ")
    assert "does not match" in refused.stderr and refused.stdout == ""


def test_evaluate_and_bench_verify_refuse_before_any_work(runner, recorded_model, tmp_path):
    from lenet_edge.cli import cli
    from tests.idx_files import write_mnist_dir

    data = write_mnist_dir(tmp_path / "mnist", train=20, test=30)
    unlisted = recorded_model.with_name("copy.onnx")
    unlisted.write_bytes(recorded_model.read_bytes())
    result = runner.invoke(cli, ["evaluate", "--verify", "--data-dir", str(data), str(unlisted)])
    assert result.exit_code == 4
    manifest = recorded_model.parent / "MANIFEST.sha256"
    assert one_error_line(result.stderr) == (f"error: {unlisted}: not listed in {manifest} "
                                             "(expected an entry for copy.onnx)")
    out = tmp_path / "bench.json"
    result = runner.invoke(cli, ["bench", "--verify", "--data-dir", str(data), "--runs", "4", "--warmup", "1",
                                 "--rounds", "2", "--batch-sizes", "1", "--threads", "1", "-o", str(out),
                                 str(recorded_model), str(unlisted)])
    assert result.exit_code == 4 and "copy.onnx: not listed in" in one_error_line(result.stderr)
    assert not out.exists() and not list(tmp_path.glob("bench.*"))
    (recorded_model.parent / "MANIFEST.sha256").unlink()
    result = runner.invoke(cli, ["evaluate", "--verify", "--data-dir", str(data), str(recorded_model)])
    assert result.exit_code == 4
    assert one_error_line(result.stderr).startswith(f"error: {recorded_model}: no MANIFEST.sha256 beside it")


def test_without_verify_an_unlisted_model_still_runs(runner, recorded_model, digits):
    from lenet_edge.cli import cli

    (recorded_model.parent / "MANIFEST.sha256").unlink()
    assert runner.invoke(cli, ["run", str(recorded_model), str(digits)]).exit_code == 0


def test_a_name_that_is_not_utf8_is_recorded_byte_for_byte(tmp_path):
    name = os.fsdecode(b"caf\xe9.onnx")  # Latin-1 bytes: no UTF-8 text, yet a valid file name
    write_bytes(tmp_path / name, b"model")
    assert manifest.read(tmp_path / manifest.MANIFEST_NAME, OutputError) == {name: _sha(b"model")}
    assert manifest.verify(tmp_path / name) == _sha(b"model")
    result = _sha256sum_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
