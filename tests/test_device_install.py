"""The device install: run, evaluate, bench and compare work with only numpy, onnxruntime,
click and pillow, i.e. with torch, onnx, onnxruntime's quantization tooling, safetensors
and matplotlib impossible to import; the host-only modules are never even looked for.

Each command runs as the real `lenet-edge` program in a subprocess whose sitecustomize
installs an import hook that refuses those modules and logs every attempt.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST_ONLY = ("torch", "onnx", "onnxruntime.quantization", "onnxscript", "safetensors")
OPTIONAL = ("matplotlib",)  # the [plot] extra: charts are skipped without it
BLOCKED = HOST_ONLY + OPTIONAL
BASE_DEPENDENCIES = {"numpy", "onnxruntime", "click", "pillow"}

BLOCKER = '''
import atexit, os, sys

BLOCKED = tuple(os.environ["LENET_EDGE_BLOCKED"].split(","))
LOG = os.environ["LENET_EDGE_BLOCK_LOG"]


def _blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)


class _Blocker:
    """A meta-path finder that refuses the host-only modules, as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        if _blocked(name):
            with open(LOG, "a") as f:
                f.write("attempted " + name + "\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Blocker())


@atexit.register
def _report_loaded():
    loaded = sorted(m for m in sys.modules if _blocked(m))
    if loaded:
        with open(LOG, "a") as f:
            f.write("loaded " + " ".join(loaded) + "\\n")
'''


def test_base_dependencies_are_the_device_set():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        names.add(name.strip().lower())
    assert names == BASE_DEPENDENCIES


DEVICE_MODULES = ("lenet_edge.mnist", "lenet_edge.mnist_download", "lenet_edge.sessions", "lenet_edge.charts",
                  *(f"lenet_edge.{package}.{p.stem}" for package in ("runtime", "bench")
                    for p in (ROOT / "lenet_edge" / package).glob("*.py")))
# The ways from the device side to a host-only module: bench --checkpoint's PyTorch rows, behind
# errors.require() (exit 7 without torch; the integration test below runs it); and sessions.optimized_graph,
# the one reader of onnxruntime's optimised graph, which only quantize and compile (host stages) call.
HOST_ONLY_EDGES = {("lenet_edge.bench.runners", "lenet_edge.train.checkpoint"), ("lenet_edge.sessions", "onnx")}


def _module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    return next((p for p in (path / "__init__.py", path.with_suffix(".py")) if p.is_file()), None)


def _imports(name: str) -> set[str]:
    """Every module `name` imports anywhere in its source, inside functions too (what sys.modules after an
    import would miss), as absolute names; `from X import y` gives X.y when y is a module."""
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if _module_file(f"{base}.{alias.name}") else base)
    return found


def test_device_modules_never_import_host_only_modules():
    """Hermetic: follows every import of the device side's modules through lenet_edge, function bodies
    included, and refuses any host-only module reached (the subprocess test below needs trained models)."""
    seen, edges_used, reached = set(), set(), []
    pending = list(DEVICE_MODULES)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        for imported in _imports(module):
            if (module, imported) in HOST_ONLY_EDGES:
                edges_used.add((module, imported))
            elif imported.split(".")[0] == "lenet_edge":
                pending.append(imported)
            elif any(imported == m or imported.startswith(m + ".") for m in HOST_ONLY):
                reached.append(f"{module} imports {imported}")
    assert reached == []
    assert edges_used == HOST_ONLY_EDGES  # the exception is still needed, so it still says something


@pytest.fixture
def device(tmp_path):
    """Run `lenet-edge ...` with the host-only modules blocked; returns (run, log path)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKER)
    log = tmp_path / "imports.log"
    # the hook first; then the caller's own path, so that a checkout run with PYTHONPATH is what gets tested
    python_path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": python_path, "LENET_EDGE_BLOCKED": ",".join(BLOCKED),
           "LENET_EDGE_BLOCK_LOG": str(log), "PYTHONNOUSERSITE": "1"}
    program = Path(sys.executable).parent / "lenet-edge"

    def run(*args: str, python: bool = False) -> subprocess.CompletedProcess:
        command = [sys.executable, *args] if python else [str(program), *args]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)

    return run, log


def test_the_blocker_blocks(device):
    """The hook itself works: without it this test would prove nothing."""
    run, log = device
    result = run("-c", "import torch", python=True)
    assert result.returncode == 1 and "No module named 'torch'" in result.stderr
    result = run("-c", "import onnxruntime; import onnxruntime.quantization", python=True)
    assert result.returncode == 1 and "onnxruntime.quantization" in result.stderr
    assert log.read_text().splitlines() == ["attempted torch", "attempted onnxruntime.quantization"]


@pytest.mark.integration
def test_device_commands_without_host_modules(device, modern_onnx, modern_int8_onnx, mnist_dir, tmp_path):
    from PIL import Image

    from lenet_edge.mnist import load_mnist

    run, log = device
    images, labels = load_mnist(mnist_dir, "test")
    np.save(tmp_path / "digits.npy", images[:20])
    Image.fromarray(255 - images[0]).resize((200, 200)).convert("RGB").save(tmp_path / "digit.jpg")

    result = run("--help")
    assert result.returncode == 0 and all(c in result.stdout for c in ("run", "evaluate", "bench", "compare"))

    result = run("run", str(modern_int8_onnx), str(tmp_path / "digit.jpg"), str(tmp_path / "digits.npy"),
                 "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 21 and int(rows[0]["label"]) == labels[0]
    assert np.mean([int(r["label"]) == y for r, y in zip(rows[1:], labels[:20], strict=True)]) >= 0.95

    result = run("evaluate", str(modern_int8_onnx), "--data-dir", str(mnist_dir), "--json", "--png", "c.png")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accuracy"] >= 0.97
    assert "chart skipped: matplotlib is not installed" in result.stderr and not (tmp_path / "c.png").exists()

    bench = ["bench", str(modern_onnx), str(modern_int8_onnx), "--data-dir", str(mnist_dir), "--batch-sizes", "4",
             "--threads", "1", "--runs", "4", "--rounds", "2", "--warmup", "1"]
    for name in ("a", "b"):
        result = run(*bench, "-o", f"{name}.json")
        assert result.returncode == 0, result.stderr
        assert "chart skipped" in result.stderr and (tmp_path / f"{name}.md").is_file()
    result = run("compare", "a.json", "b.json", "-o", "cmp.md")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cmp.md").is_file()

    # only the optional chart library was looked for (and its absence handled); nothing was loaded
    attempts = set(log.read_text().splitlines()) if log.exists() else set()
    assert attempts <= {f"attempted {m}" for m in OPTIONAL}, attempts

    # asking for the PyTorch rows is the one thing that needs torch: a clear error, exit 7
    result = run(*bench, "-o", "t.json", "--checkpoint", str(tmp_path / "any.safetensors"))
    assert result.returncode == 7
    assert result.stderr.strip() == ("error: torch is not installed (needed here); "
                                     "install it with pip install 'lenet-edge[train]'")


@pytest.mark.integration
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_device_run_reads_numbers_and_keeps_going(device, precision, modern_onnx, modern_int8_onnx, mnist_dir,
                                                  tmp_path):
    """Numbers, error rows, the unsure count and --annotate, with the host-only modules blocked."""
    from PIL import Image

    from lenet_edge.mnist import load_mnist
    from tests.pictures import number_photo

    run, log = device
    model = modern_onnx if precision == "fp32" else modern_int8_onnx
    images, labels = load_mnist(mnist_dir, "test")
    Image.fromarray(number_photo(images[:3], np.random.default_rng(0))).save(tmp_path / "number.jpg")
    Image.new("RGB", (120, 80), (210, 205, 190)).save(tmp_path / "blank.jpg")
    result = run("run", str(model), "blank.jpg", "number.jpg", "--format", "json", "--annotate", "seen")
    assert result.returncode == 3, result.stderr
    blank, number = json.loads(result.stdout)
    assert "no digit found" in blank["error"] and number["label"] == "".join(map(str, labels[:3]))
    assert len(number["digits"]) == 3 and "1 predictions (json), " in result.stderr and "1 failed" in result.stderr
    assert (tmp_path / "seen" / "number.png").is_file() and not (tmp_path / "seen" / "blank.png").exists()
    attempts = set(log.read_text().splitlines()) if log.exists() else set()
    assert attempts <= {f"attempted {m}" for m in OPTIONAL}, attempts


def test_device_profile_without_host_modules(device, tmp_path):
    """profile needs neither onnx (the layer map reads the model's bytes itself) nor torch nor matplotlib."""
    from tests.idx_files import write_mnist_dir
    from tests.runtime_models import band_model, random_model

    run, log = device
    band_model(tmp_path / "band.onnx")
    random_model(tmp_path / "noise.onnx")
    write_mnist_dir(tmp_path / "mnist", train=10, test=20)
    result = run("profile", "band.onnx", "noise.onnx", "--data-dir", "mnist", "--batch-sizes", "1,4", "--threads", "1",
                 "--runs", "4", "--rounds", "2", "--warmup", "1", "--min-turn-ms", "0", "-o", "p.json")
    assert result.returncode == 0, result.stderr
    assert "chart skipped: matplotlib is not installed" in result.stderr and not (tmp_path / "p.png").exists()
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["schema"] == "lenet-edge-profile" and len(report["rows"]) == 4
    assert "| call overhead |" in (tmp_path / "p.md").read_text()
    attempts = set(log.read_text().splitlines()) if log.exists() else set()
    assert attempts <= {f"attempted {m}" for m in OPTIONAL}, attempts
