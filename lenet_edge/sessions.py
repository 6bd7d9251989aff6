"""Every onnxruntime session lenet-edge opens is made here: one set of options, one thread check, one
reader of the graph onnxruntime actually runs.

numpy + onnxruntime only (onnx is imported inside `optimized_graph`, which only the host calls): this is
what a device runs.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from .defaults import MAX_THREADS
from .errors import DataError, ModelError, first_line
from .scratch import scratch_directory

# onnxruntime's graph optimisation levels by the names lenet-edge uses. "extended" is the last level whose
# saved graph holds only portable operators (QDQ groups fused into QLinearConv, QGemm, uint8 MaxPool, ...);
# "all" adds the CPU's layout rewrites and is what every session that runs a model uses (onnxruntime's default).
OPTIMIZATION_LEVELS = ("none", "basic", "extended", "all")


def check_threads(threads: object, what: str = "threads") -> int:
    """A thread count as onnxruntime takes it: an integer from 1 to MAX_THREADS."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise DataError(f"{what} must be an integer between 1 and {MAX_THREADS} (found {threads!r})")
    return int(threads)


def session_options(threads: int | None = None, optimization: str = "all", optimized_path: Path | None = None,
                    profile_prefix: Path | None = None):
    """The options of every session: CPU only, quiet, `threads` intra-op threads and one inter-op thread
    (a LeNet is one chain of nodes), an optimisation level, and optionally the optimised graph saved or
    onnxruntime's per-node profiler on."""
    import onnxruntime as ort

    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization must be one of {OPTIMIZATION_LEVELS} (found {optimization!r})")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = check_threads(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxruntime's warnings are not the user's business
    options.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return options


def new_session(model: bytes | str | Path, options=None):
    """An onnxruntime CPU session, or onnxruntime's own (untyped) error for a caller that explains it."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    # onnxruntime print()s an "EP Error ... Falling back" banner on stdout, where predictions go
    with contextlib.redirect_stdout(io.StringIO()):
        session = ort.InferenceSession(source, options or session_options(), providers=["CPUExecutionProvider"])
    session.disable_fallback()  # CPU only: nothing to fall back to, and no banner from run()
    return session


def open_session(model: bytes | str | Path, source: str | Path, options=None):
    """`new_session`, with a malformed model as a one-line ModelError naming `source`."""
    try:
        return new_session(model, options)
    except Exception as exc:  # onnxruntime raises its own untyped errors for malformed files
        raise ModelError(f"{source}: not a loadable ONNX model ({first_line(exc)})") from exc


def optimized_graph(model: bytes | str | Path, source: str | Path, optimization: str = "extended"):
    """The graph onnxruntime's CPU provider runs for a model (an onnx.ModelProto), at `optimization`:
    what quantize counts int8 kernels in and what compile generates C from."""
    import onnx

    with scratch_directory("optimized") as tmp:  # a killed run's is removed by the next
        saved = tmp / "optimized.onnx"
        open_session(model, source, session_options(optimization=optimization, optimized_path=saved))
        return onnx.load(str(saved))
