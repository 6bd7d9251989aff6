"""Loading an ONNX model into an onnxruntime session, with its preprocessing contract.

numpy + onnxruntime only: this is what a device runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAME, OUTPUT_NAME, ModelContract
from ..defaults import DEFAULT_BATCH, MAX_BATCH
from ..errors import DataError, ModelError, first_line
from ..sessions import open_session, session_options
from .interrupts import run_options
from .model_file import MAX_MODEL_BYTES, read_model_bytes  # noqa: F401  (MAX_MODEL_BYTES: the cap, for callers)


@dataclass
class LoadedModel:
    path: Path
    session: object  # onnxruntime.InferenceSession
    contract: ModelContract

    def __post_init__(self):
        self._binding = self.session.io_binding()
        self._run_options = run_options()  # terminated by Ctrl-C or SIGTERM (runtime/interrupts.py)
        self._out = np.empty((0, len(self.contract.class_labels)), np.float32)  # bound once per batch size

    def predict(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Logits (N, 10) of preprocessed inputs (N, 1, 32, 32), run in chunks."""
        chunks = list(self.predict_chunks(x, batch_size))
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.contract.class_labels)), np.float32)

    def predict_chunks(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> Iterator[np.ndarray]:
        check_batch_size(batch_size)
        size = self.contract.preprocessing.input_size
        if x.ndim != 4 or x.shape[1:] != (1, size, size) or x.dtype != np.float32:
            raise DataError(f"model input must be float32 (N, 1, {size}, {size}), found {x.dtype} {x.shape}")
        for i in range(0, len(x), batch_size):
            yield self.logits(np.ascontiguousarray(x[i:i + batch_size]))

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, 10) of one batch of preprocessed, C-contiguous inputs (N, 1, 32, 32), unchecked: the
        call bench times. onnxruntime's cheapest call from Python, the same for every model: I/O binding
        reads the input in place and writes the logits into an array bound once per batch size, copied
        out so that every call's result is its own. Measured at batch 1 (1 thread, AVX2), median of 25
        rounds: 9.0 us per call of a near-empty model against 11.5 for session.run; binding the output
        anew each call cost 18.0."""
        if len(x) != len(self._out):
            self._out = np.empty((len(x), self._out.shape[1]), np.float32)
            self._binding.bind_output(OUTPUT_NAME, "cpu", 0, np.float32, self._out.shape, self._out.ctypes.data)
        self._binding.bind_cpu_input(INPUT_NAME, x)
        try:
            self.session.run_with_iobinding(self._binding, self._run_options)
        except Exception as exc:  # onnxruntime's own untyped error, e.g. an output of another shape
            if self._run_options.terminate:  # ended by a signal, whose handler raises next
                raise KeyboardInterrupt from None
            raise ModelError(f"{self.path}: output {OUTPUT_NAME} is not float32 {self._out.shape} as expected "
                             f"(onnxruntime: {first_line(exc)})") from exc
        return self._out.copy()


def check_batch_size(batch_size: int) -> None:
    is_int = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
    if not is_int or not 1 <= batch_size <= MAX_BATCH:
        raise DataError(f"batch size must be an integer between 1 and {MAX_BATCH} (found {batch_size!r})")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (N, 10) of logits (N, 10), computed stably; NaN where a logit is not finite
    (quietly: the caller reports such a prediction as unsure)."""
    with np.errstate(invalid="ignore", over="ignore"):
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def load_model(path: str | Path, threads: int | None = None, contract: ModelContract | None = None,
               profile_prefix: Path | None = None) -> LoadedModel:
    """An onnxruntime CPU session for a lenet-edge ONNX model, its contract checked; a given `contract`
    stands in for the file's own (a model being built, whose metadata is written last); with
    `profile_prefix`, onnxruntime's profiler on (session.end_profiling() writes the trace)."""
    path = Path(path)
    options = session_options(threads, profile_prefix=profile_prefix)
    data = read_model_bytes(path)  # size cap; external data refused before onnxruntime could open it
    session = open_session(data, path, options)
    try:
        contract = contract or ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
        _check_signature(path, session, contract)
    except UnicodeDecodeError as exc:  # onnxruntime hands strings over as they are in the file
        raise ModelError(f"{path}: metadata or names that are not UTF-8 text (expected a lenet-edge model; "
                         f"{exc.reason} at byte {exc.start})") from exc
    return LoadedModel(path, session, contract)


def _check_signature(path: Path, session, contract: ModelContract) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    size = contract.preprocessing.input_size
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise ModelError(f"{path}: inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]} "
                         f"(expected ['{INPUT_NAME}'] and ['{OUTPUT_NAME}'])")
    classes = outputs[0].shape[-1] if outputs[0].shape else None
    if isinstance(classes, int) and classes != len(contract.class_labels):
        raise ModelError(f"{path}: output {OUTPUT_NAME} has {classes} classes and its metadata "
                         f"{len(contract.class_labels)} class labels (expected one label per class)")
    shape = inputs[0].shape
    if len(shape) != 4 or list(shape[1:]) != [1, size, size] or inputs[0].type != "tensor(float)":
        raise ModelError(f"{path}: input {INPUT_NAME} is {inputs[0].type} {shape} "
                         f"(expected tensor(float) [N, 1, {size}, {size}])")
