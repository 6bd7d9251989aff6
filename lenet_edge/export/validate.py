"""Checks an exported model must pass before it is written: onnx.checker, parity with the
PyTorch model at several batch sizes, agreement of onnx.reference with onnxruntime, and
the ORT-format model against the .onnx one.

Every failure raises ValidationError naming the model and the measured difference
(lenet_edge.parity); nothing has been written when one is raised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ValidationError, first_line
from ..parity import require_close

PARITY_ATOL = 1e-4  # max |logit difference| allowed between onnxruntime and PyTorch
PARITY_BATCH_SIZES = (1, 2, 7, 64, 1000)  # 7: a size that leaves a ragged last batch
SMALL_BATCH_IMAGES = 1000  # batch sizes below the largest run over this many images, the largest over all
REFERENCE_IMAGES = 16  # onnx.reference is a slow numpy interpreter: a sample is enough


def check_graph(proto, source: str) -> None:
    """onnx.checker with full_check (strict shape inference), as one ValidationError line."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ValidationError(f"{source}: onnx.checker rejects the exported model ({first_line(exc, 240)}); "
                              "nothing was written") from exc


def torch_logits(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """PyTorch logits (N, 10) of preprocessed inputs (N, 1, 32, 32), in batches of batch_size.

    One thread: on a busy machine, small batches on several threads spend ~10x longer spinning.
    """
    import torch

    model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            return np.concatenate([model(torch.from_numpy(x[i:i + batch_size])).numpy()
                                   for i in range(0, len(x), batch_size)])
    finally:
        torch.set_num_threads(threads)


def check_parity(model, loaded, x: np.ndarray, source: str, atol: float = PARITY_ATOL,
                 batch_sizes=PARITY_BATCH_SIZES) -> tuple[list[dict], tuple[np.ndarray, np.ndarray]]:
    """onnxruntime (`loaded`, a runtime LoadedModel) against PyTorch at each batch size.

    The largest batch size runs over all of x, the others over its first SMALL_BATCH_IMAGES.
    Returns one record per batch size, and both models' logits (PyTorch, onnxruntime) of the
    largest run, (N, 10) each, for the accuracy that follows.
    """
    records = []
    largest = max(batch_sizes)
    for b in batch_sizes:
        xs = x if b == largest else x[:SMALL_BATCH_IMAGES]
        expected, found = torch_logits(model, xs, b), loaded.predict(xs, b)
        result = require_close(expected, found, atol, f"{source}: onnxruntime differs from PyTorch at batch size {b}")
        records.append({"batch_size": b, **result.to_record()})
        if b == largest:
            logits = (expected, found)
    return records, logits


def check_reference(path: Path, loaded, x: np.ndarray, source: str, atol: float = PARITY_ATOL) -> dict:
    """onnx.reference (the ONNX specification's interpreter) running `path` against onnxruntime
    running `loaded`, on a sample of x."""
    from onnx.reference import ReferenceEvaluator

    from ..contract import INPUT_NAME, OUTPUT_NAME

    sample = x[:REFERENCE_IMAGES]
    try:
        expected = ReferenceEvaluator(str(path)).run([OUTPUT_NAME], {INPUT_NAME: sample})[0]
    except Exception as exc:  # the interpreter raises plain RuntimeError/NotImplementedError
        raise ValidationError(f"{source}: onnx.reference cannot run the model ({first_line(exc)}); "
                              "nothing was written") from exc
    found = loaded.predict(sample, len(sample))
    return require_close(expected, found, atol, f"{source}: onnx.reference and onnxruntime disagree").to_record()


def check_ort(ort_model, onnx_model, x: np.ndarray, source: str, atol: float = PARITY_ATOL) -> dict:
    """The ORT-format model (a runtime LoadedModel) must give the .onnx model's logits."""
    sample = x[:SMALL_BATCH_IMAGES]
    return require_close(onnx_model.predict(sample), ort_model.predict(sample), atol,
                         f"{source}: the ORT-format model differs from the .onnx model").to_record()
