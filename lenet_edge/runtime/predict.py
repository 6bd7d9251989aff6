"""Classify input files with an ONNX model, streaming batches; write table, JSON or CSV.

numpy + onnxruntime (+ pillow for images) only. Every input is opened and checked before
the first prediction. A file that cannot be read, or holds no digit, becomes an error
record in its place and the others are classified; with fail_fast the first such file
stops everything before any output, as a single bad input always did.

A picture gives one record: its digits read left to right as a number (lenet_edge.runtime.segment),
with each digit's box, label and probability. A prediction is `unsure` when its probability
is below UNSURE_BELOW, or for a picture, when any digit is unsure, wide (probably touching
digits) or small (probably not a digit).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from ..defaults import DEFAULT_BATCH, PREDICTION_FORMATS
from ..errors import DataError
from .inputs import InputFile, failed_input, iter_batches, open_input
from .session import LoadedModel, check_batch_size, load_model, softmax

CSV_FIELDS = ["input", "label", "probability", "unsure", "error"]
# The highest probability threshold that flags fewer than 2 % of right answers on the official
# MNIST test set (benchmarks/unsure.py, lenet5-modern, default recipe): below 0.95 it catches
# 57 of 75 wrong answers (76.0 %) and flags 191 of 9,925 right ones (1.9 %) with the fp32
# model; 56 of 75 (74.7 %) and 192 (1.9 %) with int8. At 0.9: 65 % caught, 1.3 % flagged; a
# threshold on the margin between the two best classes does no better at equal cost.
UNSURE_BELOW = 0.95


def classify(model: LoadedModel | str | Path, inputs: Iterable[str | Path], invert: str = "auto",
             batch_size: int = DEFAULT_BATCH, threads: int | None = None, fail_fast: bool = False) -> Iterator[dict]:
    """One record per image file and per record of an array or IDX file, in order:
    {"input", "label", "probability", "unsure"}, plus "digits" (each digit's "box", "label",
    "probability", "unsure" and "doubts") for images, or {"input", "error"} for a file that
    could not be read.

    The model and every input are loaded and checked when this is called (a bad input
    raises here with fail_fast); the returned iterator then predicts one batch at a time.

    Records are named by their file, or file[i] for the i-th image of an array or IDX file;
    probability is the softmax of the logits at the predicted class; a number's probability
    is the product of its digits' (the chance that every digit is right).
    """
    check_batch_size(batch_size)
    if not isinstance(model, LoadedModel):
        model = load_model(model, threads)
    prep = model.contract.preprocessing
    labels = model.contract.class_labels
    sources = [_open(path, prep, invert, fail_fast) for path in inputs]  # checked now, before any output

    def records() -> Iterator[dict]:
        emitted = 0  # sources before this one have all been given their record(s)
        digits: list[dict] = []  # the current picture's digits so far
        for refs, x in iter_batches(sources, prep, invert, batch_size):
            probs = softmax(model.predict(x, batch_size))  # (n, 10)
            for (s, i), p in zip(refs, probs, strict=True):
                yield from (_error_record(f) for f in sources[emitted:s] if f.kind == "error")
                emitted = s
                source, k = sources[s], int(p.argmax())
                if source.kind != "image":
                    yield {"input": source.name(i), "label": labels[k], "probability": float(p[k]),
                           "unsure": not sure(float(p[k]))}
                    continue
                digits.append(_digit_record(source, i, labels[k], float(p[k])))
                if len(digits) == source.records:
                    yield _number_record(source, digits)
                    digits = []
        yield from (_error_record(f) for f in sources[emitted:] if f.kind == "error")

    return records()


def sure(probability: float) -> bool:
    """At least UNSURE_BELOW; a probability that is not a number (NaN logits) is never sure."""
    return probability >= UNSURE_BELOW


def _open(path: str | Path, prep, invert: str, fail_fast: bool) -> InputFile:
    try:
        return open_input(path, prep, invert)
    except DataError as exc:
        if fail_fast:
            raise
        return failed_input(path, exc)


def _digit_record(source: InputFile, i: int, label: str, probability: float) -> dict:
    doubts = (() if sure(probability) else ("low probability",)) + source.doubts[i]
    return {"box": list(source.boxes[i]), "label": label, "probability": probability, "unsure": bool(doubts),
            "doubts": list(doubts)}


def _number_record(source: InputFile, digits: list[dict]) -> dict:
    probability = 1.0
    for digit in digits:
        probability *= digit["probability"]
    return {"input": source.name(0), "label": "".join(d["label"] for d in digits), "probability": probability,
            "unsure": any(d["unsure"] for d in digits), "digits": digits}


def _error_record(source: InputFile) -> dict:
    return {"input": str(source.path), "error": source.error}


def _json_ready(record: dict) -> dict:
    """NaN is not JSON (jq and browsers refuse it): a probability that is not a number becomes null."""
    ready = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    if "digits" in record:
        ready["digits"] = [_json_ready(d) for d in record["digits"]]
    return ready


def write_predictions(records: Iterable[dict], fmt: str, stream: TextIO) -> dict[str, int]:
    """Stream the records to `stream` as a table, a JSON list or CSV; returns the counts
    {"predictions", "unsure", "failed"}."""
    if fmt not in PREDICTION_FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(PREDICTION_FORMATS)})")
    counts = {"predictions": 0, "unsure": 0, "failed": 0}
    if fmt == "csv":
        writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
    elif fmt == "json":
        stream.write("[")
    else:
        stream.write(f"{'label':>5}  {'probability':>11}  {'note':<6}  input\n")
    for n, record in enumerate(records):
        failed = "error" in record
        counts["failed" if failed else "predictions"] += 1
        counts["unsure"] += bool(record.get("unsure"))
        if fmt == "csv":
            writer.writerow(record if failed else {**record, "probability": f"{record['probability']:.6f}",
                                                   "unsure": str(record["unsure"]).lower()})
        elif fmt == "json":
            stream.write(("," if n else "") + "\n  " + json.dumps(_json_ready(record), allow_nan=False))
        elif failed:
            stream.write(f"{'-':>5}  {'-':>11}  {'error':<6}  {record['input']}\n")
        else:
            note = "unsure" if record["unsure"] else ""
            stream.write(f"{record['label']:>5}  {record['probability']:>11.4f}  {note:<6}  {record['input']}\n")
    if fmt == "json":
        stream.write("\n]\n" if counts["predictions"] + counts["failed"] else "]\n")
    return counts
