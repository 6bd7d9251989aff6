"""export_checkpoint: a training checkpoint -> model.onnx (+ model.ort), validated before anything is written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import ModelError, OutputError, ValidationError
from ..fileio import check_writable, uninterrupted, write_bytes, write_text
from ..graph import op_counts
from ..mnist import Preprocessing, load_mnist
from ..scratch import scratch_directory
from .metadata import attach_contract, build_contract
from .opsets import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from .ort_format import convert_to_ort, ort_paths
from .tracing import to_onnx
from .validate import PARITY_ATOL, check_graph, check_ort, check_parity, check_reference


def output_paths(out: Path, ort_format: bool) -> list[Path]:
    """Every file an export writes: the .onnx, and with ort_format the .ort and its operator config."""
    out = Path(out)
    if not ort_format:
        return [out]
    if out.suffix != ".onnx":
        raise OutputError(f"{out}: ORT-format export needs an output name ending in .onnx "
                          f"(the .ort and .required_operators.config files are named after it)")
    return [out, *ort_paths(out)]


def export_checkpoint(checkpoint: Path, out: Path, *, data_dir: Path, opset: int = DEFAULT_OPSET,
                      force: bool = False, ort_format: bool = False, atol: float = PARITY_ATOL) -> dict:
    """Export a checkpoint of either variant to ONNX, validate it, and write it with its contract.

    Validation (all before any file is written): onnx.checker full check; onnxruntime vs
    PyTorch logits on the test images of data_dir at batch sizes 1, 2, 7, 64 and 1000 (max
    abs difference <= atol, identical argmax); onnx.reference vs onnxruntime on a sample;
    with ort_format, the .ort model vs the .onnx model. Any failure raises ValidationError.

    Returns {"checkpoint", "checkpoint_sha256", "variant", "opset", "op_types", "tolerance",
    "parity": [{"batch_size", "images", "max_abs_diff", "argmax_mismatches", "bit_mismatches", "tolerance"}],
    "max_abs_diff",
    "test_images", "accuracy": {"pytorch", "onnxruntime", "checkpoint"}, "reference": {...},
    "ort_format": {...} or None, "written": [paths], "sizes": {path: bytes}}.
    """
    import onnx

    from ..runtime.session import load_model
    from ..train.checkpoint import load_checkpoint

    checkpoint, out = Path(checkpoint), Path(out)
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelError(f"opset {opset!r} is not supported (expected {MIN_OPSET}..{MAX_OPSET}, "
                         f"default {DEFAULT_OPSET})")
    if not 0 <= atol <= PARITY_ATOL:
        raise ValidationError(f"parity tolerance {atol!r} is looser than {PARITY_ATOL:g} (expected 0..{PARITY_ATOL:g})")
    paths = output_paths(out, ort_format)
    for path in paths:
        check_writable(path, force)

    model, meta = load_checkpoint(checkpoint)  # checks sha256 and that every tensor fits the variant
    if Preprocessing.from_dict(meta["preprocessing"]) != model.preprocessing:
        raise ModelError(f"{checkpoint}: preprocessing {meta['preprocessing']} in its JSON differs from "
                         f"{model.variant}'s {model.preprocessing.to_dict()} (expected the one it was trained with)")
    images, labels = load_mnist(data_dir, "test")
    x = model.preprocessing(images)  # (N, 1, 32, 32) float32

    proto = to_onnx(model, opset, model.preprocessing.input_size)
    contract = build_contract(meta, meta["weights_sha256"])
    attach_contract(proto, contract)
    check_graph(proto, str(out))

    with scratch_directory("export") as work:
        candidate = Path(work) / "model.onnx"
        onnx.save_model(proto, str(candidate))
        loaded = load_model(candidate, threads=1)  # the runtime's loader: contract and signature checked too
        parity, (expected, found) = check_parity(model, loaded, x, str(out), atol)  # (N, 10) each, all N test images
        accuracy = {
            "pytorch": float((expected.argmax(1) == labels).mean()),
            "onnxruntime": float((found.argmax(1) == labels).mean()),
            "checkpoint": meta.get("test_accuracy"),
        }
        reference = check_reference(candidate, loaded, x, str(out), atol)

        # The measured accuracy joins the contract; metadata does not change the computation.
        attach_contract(proto, replace(contract, test_accuracy=accuracy["onnxruntime"]))
        data = proto.SerializeToString()
        candidate.write_bytes(data)

        ort_record, ort_artefacts = None, None
        if ort_format:
            ort_artefacts, ort_file = convert_to_ort(candidate, Path(work), str(out), paths[1].name)
            ort_record = check_ort(load_model(ort_file, threads=1), load_model(candidate, threads=1), x,
                                   str(paths[1]), atol)

    with uninterrupted():  # the .onnx and its .ort are written as a set, never one without the other
        write_bytes(out, data, replace=force)
        if ort_artefacts is not None:
            write_bytes(paths[1], ort_artefacts.model, replace=force)
            write_text(paths[2], ort_artefacts.config, replace=force)
    return {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": meta["weights_sha256"],
        "variant": meta["variant"],
        "opset": opset,
        "op_types": op_counts(proto.graph),
        "tolerance": atol,
        "parity": parity,
        "max_abs_diff": max(r["max_abs_diff"] for r in parity),
        "test_images": len(x),
        "accuracy": accuracy,
        "reference": reference,
        "ort_format": ort_record,
        "written": [str(p) for p in paths],
        "sizes": {str(p): p.stat().st_size for p in paths},
    }

