"""Atomic artefact writing and the refusal of existing outputs."""

from __future__ import annotations

import json
import os
import stat

import pytest

from lenet_edge.errors import OutputError
from lenet_edge.fileio import (
    atomic_path,
    check_writable,
    sha256_file,
    staged_directory,
    write_bytes,
    write_json,
    write_text,
)


class WriterFailed(Exception):
    pass


def test_atomic_write_keeps_the_old_file_when_the_writer_raises(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous artefact")
    with pytest.raises(WriterFailed):
        with atomic_path(target, replace=True) as tmp:
            tmp.write_bytes(b"half of a new")
            assert target.read_bytes() == b"previous artefact"  # not replaced before the end
            raise WriterFailed
    assert target.read_bytes() == b"previous artefact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left


def test_atomic_write_survives_an_interrupt(tmp_path):
    target = tmp_path / "bench.json"
    write_json(target, {"run": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("{")
            raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"run": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANIFEST.sha256", "bench.json"]


def test_atomic_write_of_a_new_file_leaves_nothing_when_it_fails(tmp_path):
    with pytest.raises(WriterFailed):
        with atomic_path(tmp_path / "new.bin") as tmp:
            tmp.write_bytes(b"x")
            raise WriterFailed
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_in_one_step_and_cleans_up(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    with atomic_path(target, replace=True) as tmp:
        assert tmp.parent == tmp_path and tmp != target  # same directory: os.replace is atomic
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANIFEST.sha256", "report.md"]


def test_write_helpers_round_trip(tmp_path):
    write_bytes(tmp_path / "a.bin", b"\x00\x01")
    write_text(tmp_path / "a.txt", "héllo\n")
    write_json(tmp_path / "a.json", {"accuracy": 0.99, "labels": ["0", "1"]})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a.txt").read_text("utf-8") == "héllo\n"
    assert json.loads((tmp_path / "a.json").read_text()) == {"accuracy": 0.99, "labels": ["0", "1"]}
    assert len(sha256_file(tmp_path / "a.bin")) == 64


def test_artefacts_get_the_umask_mode_not_a_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "model.onnx", b"x")
        os.umask(0o027)
        write_bytes(tmp_path / "model.int8.onnx", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model.int8.onnx").stat().st_mode) == 0o640


def test_writing_where_a_directory_stands_is_an_output_error(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="out: already exists"):
        write_text(tmp_path / "out", "x")
    with pytest.raises(OutputError, match="out: cannot replace it"):
        write_text(tmp_path / "out", "x", replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_writing_into_a_missing_directory_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="cannot write in"):
        write_text(tmp_path / "absent" / "a.txt", "x")


def test_check_writable_refuses_existing_outputs_without_force(tmp_path):
    target = tmp_path / "m.safetensors"
    check_writable(target, force=False)  # new path: fine
    target.write_bytes(b"x")
    with pytest.raises(OutputError) as info:
        check_writable(target, force=False)
    assert "m.safetensors: already exists" in str(info.value) and "--force" in str(info.value)
    check_writable(target, force=True)


@pytest.mark.parametrize("force", [False, True])
def test_check_writable_refuses_a_directory_and_a_missing_parent(tmp_path, force):
    with pytest.raises(OutputError, match="is a directory"):
        check_writable(tmp_path, force=force)
    with pytest.raises(OutputError, match="does not exist"):
        check_writable(tmp_path / "absent" / "m.onnx", force=force)


def test_staged_directory_replaces_the_old_one_only_when_the_block_succeeds(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("earlier run")
    with pytest.raises(RuntimeError, match="stage failed"):
        with staged_directory(out) as staging:
            (staging / "half.txt").write_text("half done")
            raise RuntimeError("stage failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging left behind
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    with staged_directory(out, replace=True) as staging:
        (staging / "new.txt").write_text("this run")
        assert sorted(p.name for p in out.iterdir()) == ["old.txt"]  # untouched until the block is done
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nor the old copy
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    with staged_directory(tmp_path / "fresh") as staging:
        (staging / "a.txt").write_text("first run")
    assert (tmp_path / "fresh" / "a.txt").read_text() == "first run"
