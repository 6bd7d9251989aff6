"""Nothing hangs for ever: a model that would compute for ever is refused when it is read, and Ctrl-C or
SIGTERM ends a long onnxruntime call (exit 130 in seconds, one line), as well as an interrupt while the
command line is still being imported.

The signal cases run the real program in a child process, each bounded by a timeout, so that the
behaviour they guard against (a process no signal ends) fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import tomllib
from onnx import TensorProto, helper, numpy_helper

from lenet_edge.contract import ModelContract
from lenet_edge.mnist import MODERN_PREPROCESSING
from tests.idx_files import synthetic_digits
from tests.runtime_models import slow_model

INTERRUPTED, MODEL = 130, 4
ROOT = Path(__file__).resolve().parents[2]
PROGRAM = [sys.executable, "-m", "lenet_edge"]  # what the `lenet-edge` script runs (pyproject: lenet_edge.entry)


def _environment(**extra) -> dict:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def _save(graph, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    helper.set_model_props(model, ModelContract(variant="lenet5-modern",
                                                preprocessing=MODERN_PREPROCESSING).to_metadata())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def endless_loop_model(path: Path) -> Path:
    """The right signature and metadata; the logits depend on a Loop of 10^15 iterations."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["count_in", "one"], ["count_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("count_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("count_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "true", "zero"], ["count"], body=body),
         helper.make_node("Flatten", ["image"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "B"], ["scores"]),
         helper.make_node("Add", ["scores", "count"], ["logits"])],
        "endless",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(np.array(10**15, np.int64), "trips"),
         numpy_helper.from_array(np.array(True), "true"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
         numpy_helper.from_array(np.zeros((1024, 10), np.float32), "W"),
         numpy_helper.from_array(np.zeros(10, np.float32), "B")])
    return _save(graph, path)


@pytest.fixture
def digits(tmp_path) -> Path:
    np.save(tmp_path / "digits.npy", synthetic_digits(4)[0])
    return tmp_path / "digits.npy"


@pytest.mark.parametrize("command", ["run", "compile"])
def test_a_model_with_an_endless_loop_is_refused_when_it_is_read(tmp_path, digits, command, mnist_dir):
    model = endless_loop_model(tmp_path / "endless.onnx")
    args = {"run": ["run", str(model), str(digits)],
            "compile": ["compile", str(model), "-o", str(tmp_path / "mcu"), "--data-dir", str(mnist_dir)]}[command]
    result = subprocess.run([*PROGRAM, *args], capture_output=True, text=True, timeout=120, env=_environment())
    assert result.returncode == MODEL, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # compile: a step line first
    assert errors == [result.stderr.splitlines()[-1]], result.stderr
    assert errors[0].startswith(f"error: {model}: operators Loop (refused: "), result.stderr
    assert result.stdout == "" and not (tmp_path / "mcu").exists()


@pytest.mark.parametrize("op", ["If", "Scan"])
def test_other_control_flow_is_refused_too(tmp_path, op):
    from lenet_edge.errors import ModelError
    from lenet_edge.runtime.model_file import read_model_bytes

    model = onnx.load(str(endless_loop_model(tmp_path / "m.onnx")))
    model.graph.node[0].op_type = op  # the walk reads op types, not whether the node is well formed
    (tmp_path / "other.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=rf"other\.onnx: operators {op} \(refused: not in a LeNet-5"):
        read_model_bytes(tmp_path / "other.onnx")


def test_a_graph_far_larger_than_a_lenet_is_refused_before_onnxruntime_optimises_it(tmp_path):
    from lenet_edge.errors import ModelError
    from lenet_edge.runtime.model_file import MAX_NODES, read_model_bytes

    slow_model(tmp_path / "fits.onnx", layers=MAX_NODES // 2 - 1)  # Flatten, 2 per layer, Gemm: MAX_NODES
    assert read_model_bytes(tmp_path / "fits.onnx")
    slow_model(tmp_path / "huge.onnx", layers=MAX_NODES // 2)
    with pytest.raises(ModelError, match=rf"huge\.onnx: more than {MAX_NODES} nodes \(expected a LeNet-5"):
        read_model_bytes(tmp_path / "huge.onnx")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_a_long_onnxruntime_call_within_seconds(tmp_path, signum):
    model = slow_model(tmp_path / "slow.onnx")
    np.save(tmp_path / "many.npy", np.zeros((10_000, 28, 28), np.uint8))
    child = subprocess.Popen([*PROGRAM, "run", str(model), str(tmp_path / "many.npy"), "--batch-size", "10000",
                              "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_environment(PYTHONUNBUFFERED="1"))
    try:
        header = child.stdout.readline()  # written just before the first batch goes to onnxruntime
        assert header.startswith("label"), header
        time.sleep(1.5)  # inside the one call of 10,000 digits, minutes long
        assert child.poll() is None
        sent = time.monotonic()
        child.send_signal(signum)
        code = child.wait(timeout=30)  # without RunOptions.terminate: minutes, or for ever
        took = time.monotonic() - sent
        stderr = child.stderr.read()
    finally:
        child.kill()
        child.wait()
    assert code == INTERRUPTED and took < 10, (code, took, stderr)
    assert stderr == "error: interrupted; earlier artefacts are left as they were\n"


def test_ctrl_c_while_the_cli_is_imported_is_one_line_not_a_traceback(tmp_path):
    plant = tmp_path / "plant"
    plant.mkdir()
    # A seam: the interrupt arrives exactly while lenet_edge.cli imports click (on a terminal, in its first 100 ms).
    (plant / "sitecustomize.py").write_text(
        "import os, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'click':\n"
        "            sys.meta_path.remove(self)\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Interrupt())\n")
    env = _environment()
    env["PYTHONPATH"] = os.pathsep.join([str(plant), env["PYTHONPATH"]])
    result = subprocess.run([*PROGRAM, "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == INTERRUPTED, result.stderr
    assert result.stderr == "error: interrupted; earlier artefacts are left as they were\n"
    assert result.stdout == ""


def test_the_installed_script_is_the_entry_that_handles_it():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"lenet-edge": "lenet_edge.entry:main"}
