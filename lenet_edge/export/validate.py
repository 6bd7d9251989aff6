"""Checks an exported model must pass before it is written: onnx.checker, parity with the
PyTorch model at several batch sizes, and agreement of onnx.reference with onnxruntime.

Every failure raises ValidationError naming the model and the measured difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ValidationError

PARITY_ATOL = 1e-4  # max |logit difference| allowed between onnxruntime and PyTorch
PARITY_BATCH_SIZES = (1, 2, 7, 64, 1000)  # 7: a size that leaves a ragged last batch
SMALL_BATCH_IMAGES = 1000  # batch sizes below the largest run over this many images, the largest over all
REFERENCE_IMAGES = 16  # onnx.reference is a slow numpy interpreter: a sample is enough


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error from a library that raises long, untyped messages."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


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


def compare(expected: np.ndarray, found: np.ndarray) -> dict:
    """Max |difference| and how many rows' argmax differ, between two (N, 10) logit arrays."""
    return {
        "images": len(expected),
        "max_abs_diff": float(np.abs(expected - found).max()) if len(expected) else 0.0,
        "argmax_mismatches": int((expected.argmax(1) != found.argmax(1)).sum()),
    }


def check_parity(model, loaded, x: np.ndarray, source: str, atol: float = PARITY_ATOL,
                 batch_sizes=PARITY_BATCH_SIZES) -> list[dict]:
    """onnxruntime (`loaded`, a runtime LoadedModel) against PyTorch at each batch size.

    The largest batch size runs over all of x, the others over its first SMALL_BATCH_IMAGES.
    Returns one record per batch size, with both models' logits of the largest run under
    key "logits" (PyTorch, onnxruntime) for the accuracy that follows.
    """
    records = []
    largest = max(batch_sizes)
    for b in batch_sizes:
        xs = x if b == largest else x[:SMALL_BATCH_IMAGES]
        expected, found = torch_logits(model, xs, b), loaded.predict(xs, b)
        record = {"batch_size": b, **compare(expected, found)}
        if record["max_abs_diff"] > atol or record["argmax_mismatches"] or not np.isfinite(found).all():
            raise ValidationError(
                f"{source}: onnxruntime differs from PyTorch at batch size {b}: max abs logit difference "
                f"{record['max_abs_diff']:.3g} (tolerance {atol:g}), argmax differs on {record['argmax_mismatches']} "
                f"of {len(xs)} test images; nothing was written")
        if b == largest:
            record["logits"] = (expected, found)
        records.append(record)
    return records


def check_reference(path: Path, loaded, x: np.ndarray, source: str, atol: float = PARITY_ATOL) -> dict:
    """onnx.reference (the ONNX specification's interpreter) against onnxruntime on a sample."""
    from onnx.reference import ReferenceEvaluator

    from ..contract import INPUT_NAME, OUTPUT_NAME

    sample = x[:REFERENCE_IMAGES]
    try:
        expected = ReferenceEvaluator(str(path)).run([OUTPUT_NAME], {INPUT_NAME: sample})[0]
    except Exception as exc:  # the interpreter raises plain RuntimeError/NotImplementedError
        raise ValidationError(f"{source}: onnx.reference cannot run the model ({first_line(exc)}); "
                              "nothing was written") from exc
    record = compare(expected, loaded.predict(sample, len(sample)))
    if record["max_abs_diff"] > atol or record["argmax_mismatches"]:
        raise ValidationError(
            f"{source}: onnx.reference and onnxruntime disagree: max abs logit difference "
            f"{record['max_abs_diff']:.3g} (tolerance {atol:g}), argmax differs on {record['argmax_mismatches']} "
            f"of {len(sample)} test images; nothing was written")
    return record
