"""The preprocessing contract and provenance written into the model's metadata_props."""

from __future__ import annotations

from pathlib import Path

from ..contract import ModelContract
from ..data import CLASS_LABELS, Preprocessing
from ..errors import ModelError


def export_versions(checkpoint_versions: dict) -> dict:
    """The checkpoint's training versions (python, torch, numpy) plus the export toolchain's."""
    import torch

    from ..runtime.environment import library_versions

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
    """Replace the model's metadata_props with the contract's (the exporter adds none of its own)."""
    del proto.metadata_props[:]
    for key, value in contract.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    size = contract.preprocessing.input_size
    proto.doc_string = (f"LeNet-5 ({contract.variant}) exported by lenet-edge; input (N, 1, {size}, {size}) "
                        "preprocessed as its lenet_edge.preprocessing metadata says")


def read_contract(path: str | Path) -> ModelContract:
    """The contract stored in an ONNX file, read with onnx (host side; devices use the runtime)."""
    import onnx

    path = Path(path)
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc
    return ModelContract.from_metadata({p.key: p.value for p in proto.metadata_props}, str(path))
