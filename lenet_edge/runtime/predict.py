"""Classify input files with an ONNX model, streaming batches; write table, JSON or CSV.

numpy + onnxruntime (+ pillow for images) only. All inputs are opened and checked
before the first prediction, so a bad file fails the run before any output is written.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from ..inputs import iter_batches, open_input
from .session import DEFAULT_BATCH, LoadedModel, check_batch_size, load_model, softmax

FORMATS = ("table", "json", "csv")


def classify(model: LoadedModel | str | Path, inputs: Iterable[str | Path], invert: str = "auto",
             batch_size: int = DEFAULT_BATCH, threads: int | None = None) -> Iterator[dict]:
    """{"input", "label", "probability"} per record of every input file, in order.

    The model and every input are loaded and checked when this is called; the returned
    iterator then predicts one batch at a time.

    Records are named by their file, or file[i] for the i-th image of an array or IDX file;
    probability is the softmax of the logits at the predicted class.
    """
    check_batch_size(batch_size)
    if not isinstance(model, LoadedModel):
        model = load_model(model, threads)
    prep = model.contract.preprocessing
    labels = model.contract.class_labels
    sources = [open_input(path, prep, invert) for path in inputs]  # checked now, before any output

    def records() -> Iterator[dict]:
        for names, x in iter_batches(sources, prep, invert, batch_size):
            probs = softmax(model.predict(x, batch_size))  # (n, 10)
            best = probs.argmax(axis=1)
            for name, k, p in zip(names, best, probs, strict=True):
                yield {"input": name, "label": labels[k], "probability": float(p[k])}

    return records()


def write_predictions(records: Iterable[dict], fmt: str, stream: TextIO) -> int:
    """Stream the records to `stream` as a table, a JSON list or CSV; returns the count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(stream, fieldnames=["input", "label", "probability"], lineterminator="\n")
        writer.writeheader()
    elif fmt == "json":
        stream.write("[")
    else:
        stream.write(f"{'label':>5}  {'probability':>11}  input\n")
    for record in records:
        count += 1
        if fmt == "csv":
            writer.writerow({**record, "probability": f"{record['probability']:.6f}"})
        elif fmt == "json":
            stream.write(("," if count > 1 else "") + "\n  " + json.dumps(record))
        else:
            stream.write(f"{record['label']:>5}  {record['probability']:>11.4f}  {record['input']}\n")
    if fmt == "json":
        stream.write("\n]\n" if count else "]\n")
    return count
