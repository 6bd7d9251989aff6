"""The suite's own promise: a test that needs the real MNIST files is skipped, in one line, on a developer's
machine without them, and fails under CI=true, where skipping it would hide what CI must check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_without_data(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_needs_data.py").write_text(
        "def test_one(mnist_dir):\n    pass\n\n"
        "def test_two(mnist_dir):\n    pass\n\n"
        "def test_hermetic():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LENET_EDGE_DATA", "CI")}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-p",
                           "tests.conftest", "--rootdir", str(tmp_path), str(tmp_path / "test_needs_data.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_missing_data_skips_in_one_line_on_a_developers_machine(tmp_path):
    result = _run_without_data(tmp_path, None)
    assert result.returncode == 0 and "1 passed, 2 deselected" in result.stdout, result.stdout
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped == ["SKIPPED 2 tests that need the real MNIST files were left out: LENET_EDGE_DATA is not set: "
                       "point it at a directory of MNIST IDX files (make test DATA=...)"]


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_data_fails_under_ci(tmp_path, ci):
    result = _run_without_data(tmp_path, ci)
    assert result.returncode == 1 and "1 passed, 2 errors" in result.stdout, result.stdout
    assert "LENET_EDGE_DATA is not set" in result.stdout and "(required under CI=true)" in result.stdout
