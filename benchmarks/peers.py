"""lenet-edge's int8 model against other CPU runtimes, in one run: onnxruntime (fp32, lenet-edge's
`quantize --auto` int8, the standard static int8 recipe), OpenVINO (fp32, NNCF int8), ExecuTorch
with XNNPACK (fp32, pt2e int8), LiteRT (fp32, pt2e int8) and PyTorch eager, all from one
lenet5-modern checkpoint and its ONNX models. It prints a table; it is not a test.

    python benchmarks/peers.py --checkpoint C.safetensors --onnx M.onnx --int8 M.int8.onnx \\
        [--int8-standard M.std.int8.onnx] [--only openvino-fp32 litert-int8 ...]

The peers come with the `peers` extra (pip install -e '.[dev,peers]'); a runtime whose package is
missing, or whose conversion fails, is left out with a one-line reason.

What each row runs:
- onnxruntime rows: the given .onnx files, each in a CPU session with lenet-edge's SessionOptions
  (intra-op threads = threads, inter-op 1, default graph optimisation), as `lenet-edge bench` runs them.
  A model not given is built as the pipeline builds it: `export`, `quantize --auto`, plain `quantize`.
- OpenVINO: the fp32 .onnx read by OpenVINO, its batch made static per row (as OpenVINO advises), on the
  CPU plugin with INFERENCE_PRECISION_HINT f32 (on CPUs with AMX or AVX512-BF16 the plugin's default is
  bf16, which moved the logits by 0.011), INFERENCE_NUM_THREADS = threads, the LATENCY hint, and CPU
  pinning off (no other runtime here pins its threads). int8: NNCF post-training quantization (its
  default preset) of that model.
- ExecuTorch: the checkpoint through torch.export, lowered to XNNPACK, one program per batch size; int8:
  pt2e with XNNPACKQuantizer (symmetric, per-channel weights). Threads: the runtime's one global pool.
- LiteRT: the checkpoint converted by litert-torch (no TensorFlow), one model per batch size (LiteRT
  models have a static batch), run by ai-edge-litert's Interpreter (its default XNNPACK delegate,
  num_threads = threads); int8: pt2e with litert-torch's PT2EQuantizer (symmetric, per-channel). The
  converter gives the int8 model int8 inputs and logits: the timed call quantizes the input and
  dequantizes the logits in numpy, the work the other int8 models do inside the runtime.
- PyTorch eager: the checkpoint under torch.inference_mode(), torch.set_num_threads(threads).
Every int8 peer calibrates on the training images `lenet-edge quantize` calibrates on (the same seeded
1,000), preprocessed by the model's contract, never on test images.

Method. Inputs: the official MNIST test set (--data-dir or $LENET_EDGE_DATA), preprocessed once by the
ONNX model's contract (lenet_edge.mnist.Preprocessing), the same array for every runtime; rows time the
first `batch` test images. Accuracy: each runtime on all 10,000 test images, with its model of the
largest batch size (the last batch padded; padding is not scored). Timing: lenet_edge.bench.timing's
timer (time_interleaved) with the same thread count for all, rows of (threads, batch size): the runtimes
take turns in interleaved rounds in a rotated order, each turn at least 50 ms, one call per timing
(time.perf_counter_ns), after a warm-up. Figures are per-call medians over all timed calls (µs per call,
whatever the batch); "vs onnxruntime fp32" is the ratio of medians (< 1: faster than onnxruntime
fp32), with the [min-max] of the round-by-round ratios of medians: on a shared 2-core machine a
pooled median can hide rounds that disagree.

The limit: achieved GOP/s = 2 x the multiply-accumulates of the fp32 model's Conv and Gemm layers
(416,520 MACs per image for LeNet-5; what the int8 graphs execute beyond that is not credited) x batch
/ median call time, against this CPU's fp32 peak (fp32 rows) or int8 peak (int8 rows), as headline.py
counts them (lenet_edge.bench.peak): cores x 2 FMA units (an assumption) x SIMD lanes x 2 x the nominal clock. The
int8 peak is VNNI's; on a CPU without VNNI (AVX2 only, like the AMD EPYC this was written on) it is 32
MACs per cycle per core, twice the fp32 peak: 32 products take a VPMADDUBSW and a VPMADDWD, and both issue
to the same two vector integer-multiply pipes (lenet_edge.bench.peak gives the sources; counting
VPMADDUBSW alone at two per cycle, as this script did, gave 64 and halved every int8 share). At batch 1 every row is
far from either peak: the layers are too small to fill the vector units, and the call overhead of each
runtime's Python binding is part of what is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from peak import count_macs, cpu_peak, format_peak

from lenet_edge.bench.environment import environment, load_average
from lenet_edge.bench.markdown import describe_environment, describe_execution
from lenet_edge.bench.timing import time_interleaved
from lenet_edge.contract import INPUT_NAME, OUTPUT_NAME
from lenet_edge.defaults import DEFAULT_MIN_TURN_MS, DEFAULT_WARMUP
from lenet_edge.errors import DataError, LenetEdgeError, first_line
from lenet_edge.mnist import load_mnist
from lenet_edge.mnist_download import resolve_data_dir
from lenet_edge.runtime.session import load_model

BASELINE = "ort-fp32"
CALIBRATION_BATCH = 100  # images per pt2e calibration call
EXTRA_HINT = "pip install -e '.[peers]'"
# Distributions whose versions the report names, when installed.
PEER_DISTRIBUTIONS = ("torch", "torchao", "openvino", "nncf", "executorch", "litert-torch", "ai-edge-litert")

Run = Callable[[np.ndarray], np.ndarray]  # preprocessed batch (B, 1, 32, 32) float32 -> logits (B, 10)
Factory = Callable[[int, int], Run]  # (batch size, threads) -> a ready Run


@dataclass(frozen=True)
class Runtime:
    key: str  # --only name
    label: str  # the table's row
    precision: str  # "fp32" | "int8": the peak its rate is held against
    modules: tuple[str, ...]  # what must be importable
    needs_checkpoint: bool
    build: Callable[[Context], Factory]  # slow work (conversion, quantization) once, then sessions per row


class Context:
    """What the builders share: the models, the calibration images and the batch sizes."""

    def __init__(self, args, preprocessing):
        self.args, self.preprocessing = args, preprocessing
        self.size = preprocessing.input_size
        self._torch_model = self._calibration = None

    def torch_model(self):
        if self._torch_model is None:
            from lenet_edge.train.checkpoint import load_checkpoint

            self._torch_model = load_checkpoint(self.args.checkpoint)[0]
        return self._torch_model

    def calibration(self) -> np.ndarray:
        """(1000, 1, 32, 32) float32: the training images lenet-edge's own static quantization calibrates on."""
        if self._calibration is None:
            from lenet_edge.quantize.settings import QuantSettings
            from lenet_edge.quantize.stage import training_images

            defaults = QuantSettings()  # plain `lenet-edge quantize`: its count and seed pick the images
            images = training_images(self.args.data_dir, defaults.calibration_count, defaults.calibration_seed)
            self._calibration = self.preprocessing(images)
        return self._calibration

    def zeros(self, batch: int) -> np.ndarray:  # a static batch's example input, for tracing
        return np.zeros((batch, 1, self.size, self.size), np.float32)


# --- onnxruntime ---------------------------------------------------------------------------------------------------

def onnxruntime_model(attr: str) -> Callable[[Context], Factory]:
    def build(ctx: Context) -> Factory:
        path = getattr(ctx.args, attr)

        def make(batch: int, threads: int) -> Run:
            session = load_model(path, threads).session  # lenet-edge's SessionOptions, as `bench` uses them
            return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        return make
    return build


# --- OpenVINO ------------------------------------------------------------------------------------------------------

def openvino_fp32(ctx: Context) -> Factory:
    import openvino as ov

    core = ov.Core()
    return _openvino(ctx, core, core.read_model(str(ctx.args.onnx)))


def openvino_int8(ctx: Context) -> Factory:
    import nncf
    import openvino as ov

    core = ov.Core()
    calibration = ctx.calibration()
    dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])  # one image per item
    quantized = nncf.quantize(core.read_model(str(ctx.args.onnx)), dataset, subset_size=len(calibration))
    return _openvino(ctx, core, quantized)


def _openvino(ctx: Context, core, model) -> Factory:
    import openvino as ov

    def make(batch: int, threads: int) -> Run:
        static = model.clone()
        static.reshape({0: [batch, 1, ctx.size, ctx.size]})  # a static shape compiles leaner kernels
        config = {
            "INFERENCE_PRECISION_HINT": "f32",  # else bf16 where the CPU has it: other logits than fp32's
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,  # like the other runtimes: on a shared machine a pinned thread waits
        }
        request = core.compile_model(static, "CPU", config).create_infer_request()

        def run(x: np.ndarray) -> np.ndarray:
            # The leanest documented per-call path: the input wrapped without a copy, the logits a view (valid
            # until the next call). request.infer({0: x}, share_inputs=True, ...) costs ~35 µs more per call.
            request.set_input_tensor(ov.Tensor(x, shared_memory=True))
            request.infer()
            return request.get_output_tensor().data
        return run
    return make


# --- ExecuTorch ----------------------------------------------------------------------------------------------------

def executorch_fp32(ctx: Context) -> Factory:
    return _executorch(ctx, ctx.torch_model())


def executorch_int8(ctx: Context) -> Factory:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    return _executorch(ctx, pt2e_quantize(ctx, quantizer))


def _executorch(ctx: Context, module) -> Factory:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime as ExecuTorchRuntime

    programs = {}  # batch -> .pte bytes: one static-shape program per batch size
    for batch in ctx.args.batch_sizes:
        exported = torch.export.export(module, (torch.from_numpy(ctx.zeros(batch)),))
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        programs[batch] = lowered.to_executorch().buffer
    runtime = ExecuTorchRuntime.get()

    def make(batch: int, threads: int) -> Run:
        _executorch_threads(threads)
        return _ExecuTorchRun(runtime, programs[batch], torch.from_numpy)
    return make


class _ExecuTorchRun:
    """A loaded method. It holds the .pte bytes as well as the program: the runtime reads the program from
    the buffer it was given, and a freed buffer leaves the method reading garbage."""

    def __init__(self, runtime, buffer: bytes, from_numpy):
        self.buffer, self.from_numpy = buffer, from_numpy
        self.program = runtime.load_program(buffer)
        self.method = self.program.load_method("forward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.method.execute([self.from_numpy(x)])[0].numpy()


def _executorch_threads(threads: int) -> None:
    """Size ExecuTorch's global thread pool. A loaded XNNPACK method keeps a pointer to the pool, and a
    reset frees it (use after free: segfaults, glibc's tpp.c assertion): so resize only between rows,
    when every method of the previous row is gone, and before loading the next ones."""
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)


# --- LiteRT --------------------------------------------------------------------------------------------------------

def litert_fp32(ctx: Context) -> Factory:
    return _litert(ctx, ctx.torch_model(), None)


def litert_int8(ctx: Context) -> Factory:
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    # fold_quantize=False as litert-torch's own tests convert: weights stay float + quantize/dequantize pairs,
    # which its converter turns into int8 tensors with their scales
    module = pt2e_quantize(ctx, quantizer, fold_quantize=False)
    return _litert(ctx, module, QuantConfig(pt2e_quantizer=quantizer))


def _litert(ctx: Context, module, quant_config) -> Factory:
    import litert_torch
    import torch
    from ai_edge_litert.interpreter import Interpreter

    litert_torch.config.show_progress = False
    models = {batch: litert_torch.convert(module, (torch.from_numpy(ctx.zeros(batch)),),
                                          quant_config=quant_config).model_content()
              for batch in ctx.args.batch_sizes}  # the batch is static: one model per batch size

    def make(batch: int, threads: int) -> Run:
        interpreter = Interpreter(model_content=models[batch], num_threads=threads)
        interpreter.allocate_tensors()
        return _litert_run(interpreter)
    return make


def _litert_run(interpreter) -> Run:
    """Float in, float logits out, whatever the model's own input and output types."""
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    (in_scale, in_zero), (out_scale, out_zero) = inp["quantization"], out["quantization"]
    if inp["dtype"] == np.float32 and out["dtype"] == np.float32:
        def run(x: np.ndarray) -> np.ndarray:
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(out["index"])
        return run
    info = np.iinfo(inp["dtype"])

    def run_quantized(x: np.ndarray) -> np.ndarray:
        q = np.clip(np.rint(x / in_scale) + in_zero, info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], q)
        interpreter.invoke()
        return (interpreter.get_tensor(out["index"]).astype(np.float32) - out_zero) * out_scale
    return run_quantized


# --- PyTorch -------------------------------------------------------------------------------------------------------

def pt2e_quantize(ctx: Context, quantizer, **convert_options):
    """The checkpoint's model quantized by a pt2e `quantizer`, calibrated on ctx.calibration(). Exported with
    a dynamic batch, so calibration runs in batches of 100; the result is exported again per batch size."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    images = torch.from_numpy(ctx.calibration())
    batch = torch.export.Dim("batch", min=1, max=len(images))
    graph = torch.export.export(ctx.torch_model(), (images[:CALIBRATION_BATCH],), dynamic_shapes=({0: batch},))
    prepared = prepare_pt2e(graph.module(), quantizer)
    for i in range(0, len(images), CALIBRATION_BATCH):
        prepared(images[i:i + CALIBRATION_BATCH])
    return convert_pt2e(prepared, **convert_options)


def pytorch_eager(ctx: Context) -> Factory:
    import torch

    model = ctx.torch_model()

    def make(batch: int, threads: int) -> Run:
        torch.set_num_threads(threads)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()
        return run
    return make


RUNTIMES = (
    Runtime(BASELINE, "onnxruntime fp32", "fp32", (), False, onnxruntime_model("onnx")),
    Runtime("lenet-edge-int8", "lenet-edge int8", "int8", (), False, onnxruntime_model("int8")),
    Runtime("ort-int8-standard", "onnxruntime int8 standard", "int8", (), False, onnxruntime_model("int8_standard")),
    Runtime("openvino-fp32", "OpenVINO fp32", "fp32", ("openvino",), False, openvino_fp32),
    Runtime("openvino-int8", "OpenVINO int8 (NNCF)", "int8", ("openvino", "nncf"), False, openvino_int8),
    Runtime("executorch-fp32", "ExecuTorch XNNPACK fp32", "fp32", ("torch", "executorch"), True, executorch_fp32),
    Runtime("executorch-int8", "ExecuTorch XNNPACK int8", "int8", ("torch", "executorch", "torchao"), True,
            executorch_int8),
    Runtime("litert-fp32", "LiteRT fp32", "fp32", ("torch", "litert_torch", "ai_edge_litert"), True, litert_fp32),
    Runtime("litert-int8", "LiteRT int8", "int8", ("torch", "litert_torch", "ai_edge_litert", "torchao"), True,
            litert_int8),
    Runtime("pytorch", "PyTorch eager", "fp32", ("torch", "safetensors"), True, pytorch_eager),
)


# --- the run -------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data_dir = resolve_data_dir(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="lenet-edge-peers-") as tmp:
        prepare_models(args, Path(tmp))
        contract = load_model(args.onnx).contract
        check_checkpoint(args, contract)
        images, labels = load_mnist(args.data_dir, "test")
        x = contract.preprocessing(images)  # (10000, 1, 32, 32): every runtime gets this same array
        ctx = Context(args, contract.preprocessing)
        load_start = load_average()
        built = build_all(selected(args), ctx)
        accuracy = measure_accuracy(built, x, labels, args)
        started = time.perf_counter()
        rows = time_rows(built, x, args)
        seconds = time.perf_counter() - started
        env = environment({d: v for d in PEER_DISTRIBUTIONS if (v := _version(d))})
        env["load_average"] = {"start": load_start, "end": load_average()}
        print(report(built, accuracy, rows, env, args, seconds))  # inside: it reads the models built in `tmp`
    return 0


def parse_args(argv):
    names = [r.key for r in RUNTIMES]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="trained lenet5-modern checkpoint (.safetensors); the ExecuTorch,\n"
                   "LiteRT and PyTorch rows convert it (without it they are left out)")
    p.add_argument("--onnx", type=Path, help="its fp32 ONNX model; default: lenet-edge export of the checkpoint")
    p.add_argument("--int8", type=Path, help="lenet-edge int8 model; default: lenet-edge quantize --auto")
    p.add_argument("--int8-standard", type=Path, help="standard static int8 model; default: lenet-edge quantize")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST directory (default: $LENET_EDGE_DATA)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts, the same for all runtimes")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="batch sizes (one call = one batch)")
    p.add_argument("--runs", type=int, default=1000, help="timed calls per runtime and row, at least: a turn lasts\n"
                   f">= {DEFAULT_MIN_TURN_MS:g} ms, so fast rows get more")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds the runs are split into")
    p.add_argument("--only", nargs="+", choices=names, metavar="RUNTIME",
                   help=f"time only these (onnxruntime fp32, the baseline, always runs): {', '.join(names)}")
    args = p.parse_args(argv)
    if args.checkpoint is None and args.onnx is None:
        p.error("give --checkpoint (and optionally its models), or at least --onnx")
    if min(args.threads) < 1 or min(args.batch_sizes) < 1 or not 2 <= args.rounds <= args.runs:
        p.error("threads and batch sizes must be >= 1, and 2 <= rounds <= runs")
    args.threads, args.batch_sizes = sorted(set(args.threads)), sorted(set(args.batch_sizes))
    return args


def prepare_models(args, work: Path) -> None:
    """Fill in the ONNX models not given, built as the pipeline builds them."""
    if args.onnx is None:
        from lenet_edge.export.exporter import export_checkpoint

        args.onnx = work / "model.onnx"
        print("exporting the checkpoint to ONNX ...", flush=True)
        export_checkpoint(args.checkpoint, args.onnx, data_dir=args.data_dir)
    if args.int8 is None:
        from lenet_edge.quantize.search import auto_quantize

        args.int8 = work / "model.int8.onnx"
        print("lenet-edge quantize --auto ...", flush=True)
        auto_quantize(args.onnx, args.int8, data_dir=args.data_dir)
    if args.int8_standard is None:
        from lenet_edge.quantize.stage import quantize_model

        args.int8_standard = work / "model.standard.int8.onnx"
        print("lenet-edge quantize (the standard static recipe) ...", flush=True)
        quantize_model(args.onnx, args.int8_standard, data_dir=args.data_dir)


def check_checkpoint(args, contract) -> None:
    """The checkpoint and the ONNX model must be the same network, preprocessed the same way."""
    if args.checkpoint is None:
        return
    from lenet_edge.train.checkpoint import read_meta

    meta = read_meta(args.checkpoint)
    if meta["variant"] != contract.variant or meta["preprocessing"] != contract.preprocessing.to_dict():
        raise DataError(f"{args.checkpoint} ({meta['variant']}) and {args.onnx} ({contract.variant}) differ in "
                        f"variant or preprocessing (expected the checkpoint the model was exported from)")


def selected(args) -> list[Runtime]:
    keys = set(args.only or [r.key for r in RUNTIMES]) | {BASELINE}
    return [r for r in RUNTIMES if r.key in keys]


def build_all(runtimes: list[Runtime], ctx: Context) -> dict[Runtime, Factory]:
    """Each runtime's factory; one that cannot be built is left out with a printed reason."""
    built = {}
    for r in runtimes:
        missing = [m for m in r.modules if importlib.util.find_spec(m) is None]
        if missing:
            print(f"skipped {r.label}: {', '.join(missing)} not installed ({EXTRA_HINT})", flush=True)
            continue
        if r.needs_checkpoint and ctx.args.checkpoint is None:
            print(f"skipped {r.label}: no --checkpoint to convert", flush=True)
            continue
        started = time.perf_counter()
        try:
            with quiet():
                built[r] = r.build(ctx)
        except Exception as exc:  # a converter's own error, whatever its type: the row is left out, not faked
            print(f"skipped {r.label}: {type(exc).__name__}: {first_line(exc)}", flush=True)
            continue
        print(f"built {r.label} in {time.perf_counter() - started:.1f} s", flush=True)
    return built


def measure_accuracy(built: dict[Runtime, Factory], x: np.ndarray, labels: np.ndarray, args) -> dict[str, float]:
    """Top-1 accuracy of each runtime on every test image, run with its model of the largest batch size."""
    batch, accuracy = args.batch_sizes[-1], {}
    for r, make in built.items():
        with quiet():
            run = make(batch, args.threads[0])
        hits = 0
        for i in range(0, len(x), batch):
            chunk, n = x[i:i + batch], min(batch, len(x) - i)
            if n < batch:  # static-batch models: pad the last batch, score only the real images
                chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
            hits += int((np.asarray(run(chunk))[:n].argmax(axis=1) == labels[i:i + n]).sum())
        accuracy[r.key] = hits / len(x)
        del run
        gc.collect()  # ExecuTorch: no method may outlive its thread count (see _executorch_threads)
    return accuracy


def time_rows(built: dict[Runtime, Factory], x: np.ndarray, args) -> dict[tuple[str, int, int], list[list[float]]]:
    """(runtime key, threads, batch) -> the ms of every timed call, one list per round."""
    rounds, runs = args.rounds, args.runs
    shares = [runs // rounds + (1 if k < runs % rounds else 0) for k in range(rounds)]
    timings = {}
    for threads in args.threads:
        for batch in args.batch_sizes:
            print(f"timing {len(built)} runtimes at {threads} thread(s), batch {batch} ...", flush=True)
            with quiet():
                calls = {r.key: (make(batch, threads), x[:batch]) for r, make in built.items()}
            per_round = time_interleaved(calls, shares, DEFAULT_WARMUP, DEFAULT_MIN_TURN_MS)
            timings.update({(key, threads, batch): part for key, part in per_round.items()})
            del calls
            gc.collect()  # every session gone before the next row's are made
    return timings


@contextlib.contextmanager
def quiet():
    """Silence what converters and runtimes print: Python warnings, progress bars, and the logs of their C++
    parts, which write to file descriptors 1 and 2 directly, past sys.stdout and sys.stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in zip((1, 2), saved, strict=True):
                os.dup2(original, fd)
                os.close(original)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


# --- the table -----------------------------------------------------------------------------------------------------

def report(built, accuracy, timings, env, args, seconds: float) -> str:
    median = {k: float(np.median(np.concatenate(v))) * 1e3 for k, v in timings.items()}  # µs per call
    round_medians = {k: np.array([np.median(r) for r in v]) for k, v in timings.items()}
    runs = {k: sum(len(r) for r in v) for k, v in timings.items()}
    load = env["load_average"]
    lines = [
        "",
        f"machine: {describe_environment(env)}",
        f"where: {describe_execution(env)}; load average at start {load['start']}, at end {load['end']}",
        f"models: fp32 {args.onnx.name}, lenet-edge int8 {args.int8.name}, standard int8 {args.int8_standard.name}"
        + (f", checkpoint {args.checkpoint.name}" if args.checkpoint else ""),
        f"timing: {len(built)} runtimes in {args.rounds} interleaved rounds, turns >= {DEFAULT_MIN_TURN_MS:g} ms, "
        f"{seconds:.0f} s; timed calls per runtime: " + ", ".join(
            f"{t}t b{b} {min(runs[(r.key, t, b)] for r in built)}-{max(runs[(r.key, t, b)] for r in built)}"
            for t in args.threads for b in args.batch_sizes),
        "accuracy: all 10,000 MNIST test images; times: median µs per call; vs onnxruntime fp32: ratio of medians "
        "(< 1: faster) [min-max of the per-round ratios]",
    ]
    for t in args.threads:
        lines += ["", f"{t} thread(s)", "", _header(args.batch_sizes), _rule(args.batch_sizes)]
        for r in built:
            cells = [r.label, f"{accuracy[r.key]:.2%}"]
            for b in args.batch_sizes:
                key, base = (r.key, t, b), (BASELINE, t, b)
                ratio = median[key] / median[base]
                per_round = round_medians[key] / round_medians[base]
                cells += [_us(median[key]), "1.00" if r.key == BASELINE else
                          f"{ratio:.2f} [{per_round.min():.2f}-{per_round.max():.2f}]"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += limit_table(built, median, args)
    return "\n".join(lines)


def limit_table(built, median, args) -> list[str]:
    """Achieved GOP/s of each row and its share of this CPU's fp32 or int8 peak."""
    macs = count_macs(args.onnx)
    executed = count_macs(args.int8) if any(r.key == "lenet-edge-int8" for r in built) else None
    peaks = {t: cpu_peak(t) for t in args.threads}
    cols = [(t, b) for t in args.threads for b in args.batch_sizes]
    lines = ["", f"the limit: achieved GOP/s (% of peak); work = 2 x {macs:,} useful MACs per image (the fp32 "
             "model's Conv/Gemm)" + (f"; lenet-edge int8 executes {executed:,}, zeros included, not credited"
                                      if executed and executed != macs else "")
             + "; fp32 rows against the fp32 peak, int8 rows against the int8 peak", "",
             "| runtime | peak | " + " | ".join(f"{t}t batch {b}" for t, b in cols) + " |",
             "|---|---|" + "---:|" * len(cols)]
    for r in built:
        cells = []
        for t, b in cols:
            gops = 2 * macs * b / (median[(r.key, t, b)] / 1e6) / 1e9
            peak = peaks[t][r.precision]
            cells.append(f"{gops:.2f} ({100 * gops / peak:.1f}%)" if peak else f"{gops:.2f} (peak ?)")
        lines.append(f"| {r.label} | {r.precision} | " + " | ".join(cells) + " |")
    lines += ["", "peak: " + "; ".join(f"{t} thread(s) fp32 {format_peak(peaks[t]['fp32'])} GFLOP/s, int8 "
                                       f"{format_peak(peaks[t]['int8'])} GOP/s" for t in args.threads),
              f"peak basis: {peaks[args.threads[-1]]['basis']}"]
    return lines


def _header(batch_sizes) -> str:
    cells = ["runtime", "test accuracy"]
    for b in batch_sizes:
        cells += [f"batch {b} (µs)" if b == 1 else f"batch {b} (µs per call)", "vs onnxruntime fp32"]
    return "| " + " | ".join(cells) + " |"


def _rule(batch_sizes) -> str:
    return "|---|---:|" + "---:|---:|" * len(batch_sizes)


def _us(value: float) -> str:
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LenetEdgeError as exc:  # bad input: one line, as the CLI gives it
        sys.exit(f"error: {exc}")
