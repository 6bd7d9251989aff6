"""Shared fixtures. Integration fixtures use the real MNIST files named by LENET_EDGE_DATA
and train real models once per test run (the default recipes, as a user would): under pytest-xdist
the first worker to ask builds each one and the others wait for it (build_once)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from filelock import FileLock
from hypothesis import configuration as hypothesis_configuration

from lenet_edge.cli import cli
from lenet_edge.mnist_download import resolve_data_dir

# Hypothesis keeps its example database (the failing examples it replays first on the next run)
# in ./.hypothesis; tests never write into the working directory, so it lives in the user's cache.
hypothesis_configuration.set_hypothesis_home_dir(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lenet-edge" / "hypothesis")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_mnist() -> str | None:
    """Why the real MNIST files cannot be used, or None when they can."""
    value = os.environ.get("LENET_EDGE_DATA")
    if not value:
        return "LENET_EDGE_DATA is not set: point it at a directory of MNIST IDX files (make test DATA=...)"
    if not (resolve_data_dir(None) / "t10k-images-idx3-ubyte.gz").is_file():
        return f"LENET_EDGE_DATA={value} holds no MNIST IDX files"
    return None


def pytest_collection_modifyitems(config, items):
    """On a developer's machine without the data, the tests that need it are left out and said so in one line
    at the end; under CI=true they stay in and fail (mnist_dir), since skipping them would hide what CI checks."""
    reason = missing_mnist()
    if reason is None or in_ci():
        return
    needing = [item for item in items if "mnist_dir" in getattr(item, "fixturenames", ())]
    if needing:
        items[:] = [item for item in items if item not in needing]
        config.hook.pytest_deselected(items=needing)
        config.stash[_LEFT_OUT] = f"{len(needing)} tests that need the real MNIST files were left out: {reason}"


_LEFT_OUT = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, config):
    if _LEFT_OUT in config.stash:
        terminalreporter.write_line(f"SKIPPED {config.stash[_LEFT_OUT]}", yellow=True)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST directory, absolute as the CLI resolves it (tests run commands in other working
    directories); missing under CI=true, the test fails."""
    reason = missing_mnist()
    if reason is not None:
        pytest.fail(f"{reason} (required under CI=true)" if in_ci() else reason)
    return resolve_data_dir(None)


def shared_directory(tmp_path_factory, name: str) -> Path:
    """A directory of this test run that every pytest-xdist worker sees (each worker's own temporary
    directory lies inside the run's)."""
    root = tmp_path_factory.getbasetemp()
    return (root.parent if "PYTEST_XDIST_WORKER" in os.environ else root) / "shared" / name


def build_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """shared_directory `name`, filled by `build(directory)` once per test run: the first worker to ask
    builds it under a file lock, the others wait and reuse it. Tests only read what is in it."""
    directory = shared_directory(tmp_path_factory, name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock"):
        if not (directory.parent / f"{name}.built").exists():
            shutil.rmtree(directory, ignore_errors=True)  # what a failed build left
            directory.mkdir()
            build(directory)
            (directory.parent / f"{name}.built").touch()
    return directory


def _train(tmp_path_factory, mnist_dir: Path, variant: str) -> Path:
    def train(directory: Path) -> None:
        result = CliRunner().invoke(cli, ["train", "--variant", variant, "--data-dir", str(mnist_dir), "-o",
                                          str(directory / f"{variant}.safetensors")])
        assert result.exit_code == 0, result.output

    return build_once(tmp_path_factory, variant, train) / f"{variant}.safetensors"


@pytest.fixture(scope="session")
def modern_checkpoint(tmp_path_factory, mnist_dir) -> Path:
    """lenet5-modern trained with its default recipe on the 20,000 training images."""
    return _train(tmp_path_factory, mnist_dir, "lenet5-modern")


@pytest.fixture(scope="session")
def classic_checkpoint(tmp_path_factory, mnist_dir) -> Path:
    """lenet5 (1998) trained with its default recipe on the 20,000 training images."""
    return _train(tmp_path_factory, mnist_dir, "lenet5")


@pytest.fixture(scope="session")
def tanh_checkpoint(tmp_path_factory, mnist_dir) -> Path:
    """lenet5-tanh (the tutorials' textbook form) trained with its default recipe on the 20,000 training images."""
    return _train(tmp_path_factory, mnist_dir, "lenet5-tanh")


def _export(tmp_path_factory, checkpoint: Path, mnist_dir: Path) -> Path:
    from lenet_edge.export.exporter import export_checkpoint

    name = checkpoint.with_suffix(".onnx").name
    return build_once(tmp_path_factory, f"onnx-{checkpoint.stem}",
                      lambda directory: export_checkpoint(checkpoint, directory / name, data_dir=mnist_dir)) / name


def _quantize(tmp_path_factory, onnx_model: Path, mnist_dir: Path) -> Path:
    """The int8 model of the quantize stage's default settings, in a directory of its own (a test may watch
    the fp32 model's directory while another worker quantizes)."""
    from lenet_edge.quantize.stage import quantize_model

    name = onnx_model.stem + ".int8.onnx"
    return build_once(tmp_path_factory, f"int8-{onnx_model.stem}",
                      lambda directory: quantize_model(onnx_model, directory / name, data_dir=mnist_dir)) / name


@pytest.fixture(scope="session")
def modern_onnx(tmp_path_factory, modern_checkpoint, mnist_dir) -> Path:
    """modern_checkpoint exported to ONNX (validated, contract in its metadata) by the export stage."""
    return _export(tmp_path_factory, modern_checkpoint, mnist_dir)


@pytest.fixture(scope="session")
def classic_onnx(tmp_path_factory, classic_checkpoint, mnist_dir) -> Path:
    """classic_checkpoint exported to ONNX (validated, contract in its metadata) by the export stage."""
    return _export(tmp_path_factory, classic_checkpoint, mnist_dir)


@pytest.fixture(scope="session")
def tanh_onnx(tmp_path_factory, tanh_checkpoint, mnist_dir) -> Path:
    """tanh_checkpoint exported to ONNX (validated, contract in its metadata) by the export stage."""
    return _export(tmp_path_factory, tanh_checkpoint, mnist_dir)


@pytest.fixture(scope="session")
def modern_int8_onnx(tmp_path_factory, modern_onnx, mnist_dir) -> Path:
    """modern_onnx quantized to int8 with the quantize stage's default settings."""
    return _quantize(tmp_path_factory, modern_onnx, mnist_dir)


@pytest.fixture(scope="session")
def classic_int8_onnx(tmp_path_factory, classic_onnx, mnist_dir) -> Path:
    """classic_onnx quantized to int8 with the quantize stage's default settings."""
    return _quantize(tmp_path_factory, classic_onnx, mnist_dir)


@pytest.fixture(scope="session")
def tanh_int8_onnx(tmp_path_factory, tanh_onnx, mnist_dir) -> Path:
    """tanh_onnx quantized to int8 with the quantize stage's default settings."""
    return _quantize(tmp_path_factory, tanh_onnx, mnist_dir)
