"""Checkpoints: safetensors weights plus a JSON file of metadata; loading never unpickles.

`NAME.safetensors` holds the model's tensors, `NAME.json` what they are (variant,
preprocessing, recipe, history, data checksums, library versions) and the weights'
sha256, `NAME.resume.safetensors` the optimizer's momentum for `train --resume`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import DataError, ModelError
from ..fileio import sha256_file, uninterrupted, write_bytes, write_json
from ..mnist import Preprocessing
from ..reading import check_file, read_json
from .models import build_model

FORMAT = "lenet-edge-checkpoint"
FORMAT_VERSION = 1


def meta_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def resume_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".resume.safetensors")


def library_versions() -> dict:
    """The training machine's versions (python, numpy, torch, ...) for the checkpoint's metadata."""
    from ..bench.environment import library_versions as gather

    return gather(modules=("torch",))


def checkpoint_paths(weights: Path) -> list[Path]:
    """Every file a checkpoint at `weights` consists of (train checks them all before it starts)."""
    return [Path(weights), meta_path(weights), resume_path(weights)]


def save_checkpoint(weights: Path, model: torch.nn.Module, meta: dict, optimizer_state: dict | None = None, *,
                    replace: bool = True) -> None:
    """Write weights, then metadata naming the weights' sha256; each file atomically, and
    Ctrl-C held back until all of them are written, so the three always belong together.
    Without `replace` an existing file is not replaced (a run's first checkpoint, without --force)."""
    with uninterrupted():
        _write_checkpoint(Path(weights), model, meta, optimizer_state, replace)


def _write_checkpoint(weights: Path, model: torch.nn.Module, meta: dict, optimizer_state: dict | None,
                      replace: bool) -> None:
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    # safetensors' save_file would create its files with mode 0600; serialise to bytes instead
    # One header key only: safetensors writes its metadata map in hash order, which differs from
    # process to process, and a seeded run must give a byte-identical file (the variant is in the JSON).
    write_bytes(weights, save(tensors, metadata={"format": FORMAT}), replace=replace)
    if optimizer_state is not None:
        write_bytes(resume_path(weights), save({k: v.contiguous() for k, v in optimizer_state.items()}),
                    replace=replace)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "variant": model.variant,
        "preprocessing": model.preprocessing.to_dict(),
        **meta,
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
        "versions": library_versions(),
    }
    write_json(meta_path(weights), meta, replace=replace)


def read_meta(weights: Path) -> dict:
    path = meta_path(weights)
    expected = f"the checkpoint's JSON metadata beside {Path(weights).name}"
    check_file(path, ModelError, expected, missing="missing")
    meta = read_json(path, ModelError, expected)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not a lenet-edge checkpoint (expected \"format\": \"{FORMAT}\")")
    _check_fields(meta, path)
    return meta


_NUMBER = (int, float)
_EPOCH_FIELDS = {"epoch": int, "train_loss": _NUMBER, "train_accuracy": _NUMBER, "seconds": _NUMBER}


def _check_fields(meta: dict, path: Path) -> None:
    """The fields export, bench and --resume read, checked once here: the JSON beside the weights is
    untrusted (its weights_sha256 can be made to match any weights)."""
    def wrong(field: str, expected: str):
        return ModelError(f"{path}: {field} is {type(meta.get(field)).__name__} (expected {expected})")

    if not isinstance(meta.get("variant"), str):
        raise wrong("variant", "the variant's name")
    for field, kind, what in (("versions", dict, "an object"), ("recipe", dict, "an object"),
                              ("history", list, "a list of epochs")):
        if field in meta and not isinstance(meta[field], kind):
            raise wrong(field, what)
    accuracy = meta.get("test_accuracy")
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, _NUMBER)):
        raise wrong("test_accuracy", "a number")
    for i, epoch in enumerate(meta.get("history", [])):
        if not isinstance(epoch, dict) or not all(isinstance(epoch.get(k), t) and not isinstance(epoch.get(k), bool)
                                                  for k, t in _EPOCH_FIELDS.items()):
            raise ModelError(f"{path}: history[{i}] is {str(epoch)[:60]} (expected an epoch record with "
                             f"{', '.join(_EPOCH_FIELDS)})")


def load_checkpoint(weights: str | Path, variant: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The model (in eval mode) and its metadata; every tensor must match the variant."""
    weights = Path(weights)
    check_file(weights, ModelError, "a .safetensors file from lenet-edge train", missing="no such checkpoint")
    meta = read_meta(weights)
    found = sha256_file(weights)
    if meta.get("weights_sha256") != found:
        raise ModelError(f"{weights}: sha256 {found[:12]}… does not match {meta_path(weights).name} "
                         f"({str(meta.get('weights_sha256'))[:12]}…); the weights were changed or replaced")
    if variant is not None and meta.get("variant") != variant:
        raise ModelError(f"{weights}: a {meta.get('variant')} checkpoint (expected {variant})")
    variant = meta.get("variant")
    model = build_model(variant)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights}: not a readable safetensors file ({exc}){_pickle_hint(weights)}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelError(f"{weights}: tensors do not match variant {variant} "
                         f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'})")
    for name, t in tensors.items():
        if t.shape != expected[name].shape or t.dtype != expected[name].dtype:
            raise ModelError(f"{weights}: tensor {name} is {t.dtype} {tuple(t.shape)} "
                             f"(expected {expected[name].dtype} {tuple(expected[name].shape)} for {variant})")
        if not torch.isfinite(t).all():
            raise ModelError(f"{weights}: tensor {name} holds NaN or Inf values")
    model.load_state_dict(tensors)
    model.eval()
    try:
        meta["preprocessing"] = Preprocessing.from_dict(meta.get("preprocessing", {})).to_dict()
    except DataError as exc:  # a checkpoint problem, not a data problem: exit code 4
        raise ModelError(f"{meta_path(weights)}: {exc}") from exc
    return model, meta


def _pickle_hint(path: Path) -> str:
    """Name what a non-safetensors file is when it is the usual suspect: torch.save or pickle output."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"PK":
        return "; it is a zip archive as torch.save writes, refused: checkpoints are never unpickled"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "; it is a Python pickle, refused: checkpoints are never unpickled"
    return ""


def load_optimizer_state(weights: Path) -> dict | None:
    path = resume_path(weights)
    if not path.exists():
        return None
    check_file(path, ModelError, "the optimizer state written by lenet-edge train")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable safetensors file ({exc}); "
                         "delete it to resume without the optimizer's momentum") from exc
