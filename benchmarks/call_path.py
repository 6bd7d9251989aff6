"""Where a batch-1 call's microseconds go: onnxruntime's Python call paths side by side, the fixed
cost of a call to a model that does (almost) nothing, and each model's nodes by onnxruntime's profiler.
It prints figures; it is not a test.

    python benchmarks/call_path.py model.onnx model.int8.onnx [--batch 1] [--threads 1]

Call paths, each timed by lenet_edge.bench.timing.time_interleaved (all paths and models take
turns in rounds, per-call medians of the rounds, then the median over rounds):
- `run`: session.run([output], {input: x}) - names looked up, an output list built, the logits copied out;
- `run_with_ort_values`: the input wrapped as an OrtValue once, outputs returned as OrtValues;
- `io_binding`: what lenet-edge uses (LoadedModel.logits): the input bound in place, the output
  written into an array bound once per batch size and copied out (binding the output anew on
  every call costs more than session.run saves).
The empty model is the same signature with one tiny Gemm (image flattened -> 10 logits): what any
model pays per call before its own work. The profile is onnxruntime's (enable_profiling), per node
the median over the calls; the profiler adds its own few microseconds to every node, so compare
nodes with each other, not with the wall-clock figures above.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lenet_edge.bench.environment import environment
from lenet_edge.bench.markdown import describe_environment
from lenet_edge.bench.timing import time_interleaved
from lenet_edge.contract import INPUT_NAME, OUTPUT_NAME, ModelContract
from lenet_edge.mnist import MODERN_PREPROCESSING
from lenet_edge.runtime.session import load_model, session_options


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", type=Path, nargs="+", help="lenet-edge ONNX models (fp32 and int8)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    print(describe_environment(environment()))
    x = np.ascontiguousarray(np.random.default_rng(0).random((args.batch, 1, 32, 32), np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        models = [empty_model(Path(tmp) / "empty.onnx"), *args.models]
        runs = {}
        for path in models:
            for name, call in call_paths(path, args.threads, x).items():
                runs[f"{path.name} {name}"] = (call, x)
        per_round = time_interleaved(runs, [200] * args.rounds, warmup=200, min_turn_ms=50)
        medians = {label: float(np.median([np.median(r) for r in rounds])) * 1e3 for label, rounds in per_round.items()}
        print(f"\nbatch {args.batch}, {args.threads} thread(s): median us per call over {args.rounds} rounds")
        width = max(map(len, medians))
        for label, us in medians.items():
            print(f"  {label:{width}s} {us:8.1f}")
        for path in args.models:
            print(f"\n{path.name}: onnxruntime's nodes at batch {args.batch} (profiler, median us per call)")
            for op, name, us in profile(path, args.threads, x):
                print(f"  {us:7.1f}  {op:20s} {name}")
    return 0


def call_paths(path: Path, threads: int, x: np.ndarray) -> dict:
    import onnxruntime as ort

    model = load_model(path, threads)
    session, value = model.session, ort.OrtValue.ortvalue_from_numpy(x)
    return {
        "run": lambda _: session.run([OUTPUT_NAME], {INPUT_NAME: x}),
        "run_with_ort_values": lambda _: session.run_with_ort_values([OUTPUT_NAME], {INPUT_NAME: value}),
        "io_binding": model.logits,
    }


def empty_model(path: Path) -> Path:
    """The lenet-edge signature around one Gemm (1024 -> 10): a call's fixed cost."""
    weights = numpy_helper.from_array(np.zeros((10, 1024), np.float32), "w")
    nodes = [helper.make_node("Flatten", [INPUT_NAME], ["flat"]),
             helper.make_node("Gemm", ["flat", "w"], [OUTPUT_NAME], transB=1)]
    graph = helper.make_graph(nodes, "empty", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                                                              ["N", 1, 32, 32])],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, ModelContract("lenet5-modern", MODERN_PREPROCESSING).to_metadata())
    onnx.save(model, str(path))
    return path


def profile(path: Path, threads: int, x: np.ndarray, calls: int = 2000) -> list[tuple[str, str, float]]:
    import onnxruntime as ort

    options = session_options(threads)
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(calls):
            session.run([OUTPUT_NAME], {INPUT_NAME: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[(e["args"].get("op_name", "?"), e["name"].removesuffix("_kernel_time"))].append(e["dur"])
    return [(op, name, float(np.median(d))) for (op, name), d in per_node.items()]


if __name__ == "__main__":
    raise SystemExit(main())
