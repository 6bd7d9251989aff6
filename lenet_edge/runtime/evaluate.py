"""Accuracy, per-class accuracy and the confusion matrix on the official MNIST test set.

numpy + onnxruntime only. The test images are preprocessed by the model's own contract
and run in batches, so memory stays bounded by the batch size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..defaults import DEFAULT_BATCH
from ..errors import ModelError
from ..mnist import NUM_CLASSES, load_mnist, split_paths
from ..progress import Progress
from .session import check_batch_size, load_model

SCHEMA = "lenet-edge-evaluation"
VERSION = 1


def evaluate(model_path: str | Path, data_dir: str | Path, batch_size: int = DEFAULT_BATCH,
             threads: int | None = None, progress: Progress | None = None) -> dict:
    """The evaluation record of evaluate_with_logits, without the logits."""
    return evaluate_with_logits(model_path, data_dir, batch_size, threads, progress)[0]


def evaluate_with_logits(model_path: str | Path, data_dir: str | Path, batch_size: int = DEFAULT_BATCH,
                         threads: int | None = None, progress: Progress | None = None) -> tuple[dict, np.ndarray]:
    """Evaluate an ONNX model on the 10,000 official test images.

    Returns {"schema", "version", "model", "variant", "precision", "data", "images",
    "correct", "accuracy", "exported_accuracy", "class_labels", "per_class": [{"label",
    "images", "correct", "accuracy"}], "confusion_matrix": [[count]] with rows the true
    class and columns the predicted class}, and the logits (N, 10) float32 of every test image, in
    order (what a device is compared with, bit for bit). data_dir is a directory of MNIST IDX files (the
    CLI resolves --data-dir, $LENET_EDGE_DATA or the download cache into one).
    """
    check_batch_size(batch_size)
    model = load_model(model_path, threads)
    labels_of_model = model.contract.class_labels
    if len(labels_of_model) != NUM_CLASSES:
        raise ModelError(f"{model.path}: {len(labels_of_model)} class labels (expected {NUM_CLASSES} for MNIST)")
    images, labels = load_mnist(data_dir, "test")
    prep = model.contract.preprocessing
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)  # (true, predicted)
    logits = np.empty((len(images), NUM_CLASSES), np.float32)  # (N, 10)
    for i in range(0, len(images), batch_size):
        logits[i:i + batch_size] = model.predict(prep(images[i:i + batch_size]), batch_size)  # (b, 10)
        np.add.at(confusion, (labels[i:i + batch_size], logits[i:i + batch_size].argmax(axis=1)), 1)
        if progress:
            progress(min(i + batch_size, len(images)), len(images), "test images")
    per_class_images = confusion.sum(axis=1)
    per_class_correct = np.diag(confusion)
    correct = int(per_class_correct.sum())
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "model": str(model.path),
        "variant": model.contract.variant,
        "precision": "int8" if model.contract.quantization else "fp32",
        "data": {"split": "test", "images_file": split_paths(Path(data_dir), "test")[0].name},
        "images": int(len(images)),
        "correct": correct,
        "accuracy": correct / len(images),
        "exported_accuracy": model.contract.test_accuracy,
        "class_labels": list(labels_of_model),
        "per_class": [
            {"label": labels_of_model[k], "images": int(per_class_images[k]), "correct": int(per_class_correct[k]),
             "accuracy": float(per_class_correct[k] / per_class_images[k]) if per_class_images[k] else None}
            for k in range(NUM_CLASSES)
        ],
        "confusion_matrix": confusion.tolist(),
    }, logits


def format_evaluation(result: dict) -> str:
    """Plain-text report: accuracy, per-class accuracy, and the confusion matrix."""
    labels = result["class_labels"]
    lines = [
        f"{result['model']}: {result['variant']} {result['precision']}, accuracy {result['accuracy']:.2%} "
        f"({result['correct']}/{result['images']} official test images, {result['images'] - result['correct']} errors)",
    ]
    if result.get("exported_accuracy") is not None:
        lines.append(f"accuracy recorded at export: {result['exported_accuracy']:.2%}")
    lines += ["", "class  images  correct  accuracy"]
    for row in result["per_class"]:
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.2%}"
        lines.append(f"{row['label']:>5}  {row['images']:>6}  {row['correct']:>7}  {acc:>8}")
    width = max(5, max(len(str(v)) for r in result["confusion_matrix"] for v in r) + 1)
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
              "true\\pred" + "".join(f"{lbl:>{width}}" for lbl in labels)]
    for lbl, row in zip(labels, result["confusion_matrix"], strict=True):
        lines.append(f"{lbl:>9}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)
