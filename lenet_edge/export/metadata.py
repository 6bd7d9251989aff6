"""The preprocessing contract and provenance written into the model's metadata_props."""

from __future__ import annotations

from pathlib import Path

from ..contract import ModelContract
from ..errors import ModelError
from ..mnist import CLASS_LABELS, Preprocessing


def export_versions(checkpoint_versions: dict) -> dict:
    """The checkpoint's training versions (python, torch, numpy) plus the export toolchain's."""
    import torch

    from ..bench.environment import library_versions

    toolchain = library_versions(modules=("onnx", "onnxscript"))
    return {**checkpoint_versions, "export_torch": torch.__version__,
            **{k: toolchain[k] for k in ("onnx", "onnxscript", "onnxruntime", "lenet-edge")}}


def build_contract(meta: dict, checkpoint_sha256: str, test_accuracy: float | None = None) -> ModelContract:
    """The contract of a checkpoint (its JSON metadata as load_checkpoint returns it)."""
    return ModelContract(
        variant=meta["variant"],
        preprocessing=Preprocessing.from_dict(meta["preprocessing"]),
        class_labels=CLASS_LABELS,
        checkpoint_sha256=checkpoint_sha256,
        versions=export_versions(meta.get("versions", {})),
        test_accuracy=test_accuracy,
    )


def attach_contract(proto, contract: ModelContract) -> None:
    """Write the contract into the model's metadata_props (graph.set_metadata, the one writer: the exporter
    adds no props of its own, so the file holds the contract's and nothing else)."""
    from ..graph import set_metadata

    set_metadata(proto, contract.to_metadata())
    size = contract.preprocessing.input_size
    proto.doc_string = (f"LeNet-5 ({contract.variant}) exported by lenet-edge; input (N, 1, {size}, {size}) "
                        "preprocessed as its lenet_edge.preprocessing metadata says")


def read_contract(path: str | Path) -> ModelContract:
    """The contract stored in an ONNX file, read with onnx (host side; devices use the runtime)."""
    from ..graph import load, metadata

    path = Path(path)
    try:
        proto = load(path)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc
    return ModelContract.from_metadata(metadata(proto), str(path))
