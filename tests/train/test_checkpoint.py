"""Checkpoints: safetensors weights + JSON metadata, checked on load, never unpickled
(hermetic: random-weight models in tmp_path)."""

from __future__ import annotations

import json
import os
import pickle
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

from lenet_edge.errors import ModelError
from lenet_edge.fileio import sha256_file
from lenet_edge.train.checkpoint import (
    load_checkpoint,
    load_optimizer_state,
    meta_path,
    resume_path,
    save_checkpoint,
)
from lenet_edge.train.models import build_model


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch):
    """Every test here fails if anything reaches for pickle or torch.load."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a checkpoint was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


@pytest.fixture(params=["lenet5", "lenet5-modern", "lenet5-tanh"])
def variant(request) -> str:
    return request.param


EPOCH = {"epoch": 1, "train_loss": 2.3, "train_accuracy": 0.1, "seconds": 1.5}  # the fields train writes, at least


def _saved(tmp_path, variant: str, seed: int = 0, optimizer_state=None):
    torch.manual_seed(seed)
    model = build_model(variant)
    path = tmp_path / f"{variant}.safetensors"
    save_checkpoint(path, model, {"epoch": 3, "history": [EPOCH], "test_accuracy": 0.5}, optimizer_state)
    return path, model


def _rewrite_weights(path, tensors: dict) -> None:
    """Replace the weights and make the JSON's sha256 agree, so that only the check under
    test can catch the change."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    _edit_meta(path, weights_sha256=sha256_file(path))


def _edit_meta(path, **changes) -> None:
    meta = json.loads(meta_path(path).read_text())
    meta.update(changes)
    meta_path(path).write_text(json.dumps(meta))


def _model_error(path, *match: str, **kwargs) -> str:
    with pytest.raises(ModelError) as info:
        load_checkpoint(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    for text in match:
        assert text in message, message
    return message


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_restores_every_tensor_and_the_metadata(tmp_path, variant):
    path, model = _saved(tmp_path, variant)
    loaded, meta = load_checkpoint(path)
    assert type(loaded) is type(model) and not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x = torch.randn(3, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert meta["format"] == "lenet-edge-checkpoint" and meta["format_version"] == 1
    assert meta["variant"] == variant
    assert meta["preprocessing"] == model.preprocessing.to_dict()
    assert meta["weights_file"] == path.name
    assert meta["weights_sha256"] == sha256_file(path)
    assert set(meta["versions"]) >= {"python", "torch", "numpy"}
    assert (meta["epoch"], meta["history"], meta["test_accuracy"]) == (3, [EPOCH], 0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["MANIFEST.sha256", f"{variant}.json", f"{variant}.safetensors"])


def test_loading_with_the_right_variant_named(tmp_path, variant):
    path, _ = _saved(tmp_path, variant)
    assert load_checkpoint(path, variant=variant)[1]["variant"] == variant


def test_weights_file_is_plain_safetensors_with_one_header_key(tmp_path):
    path, model = _saved(tmp_path, "lenet5")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "lenet-edge-checkpoint"}
        assert set(f.keys()) == set(model.state_dict())


def test_optimizer_state_round_trips_beside_the_weights(tmp_path):
    state = {"0.0": torch.randn(6, 1, 5, 5), "0.1": torch.randn(6)}
    path, _ = _saved(tmp_path, "lenet5-modern", optimizer_state=state)
    assert resume_path(path).name == "lenet5-modern.resume.safetensors"
    loaded = load_optimizer_state(path)
    assert loaded.keys() == state.keys()
    for k in state:
        assert torch.equal(loaded[k], state[k])
    resume_path(path).unlink()
    assert load_optimizer_state(path) is None


def test_checkpoint_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path, _ = _saved(tmp_path, "lenet5", optimizer_state={"0.0": torch.zeros(3)})
    finally:
        os.umask(old)
    for p in (path, meta_path(path), resume_path(path)):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name


def test_saving_again_replaces_the_checkpoint_atomically(tmp_path):
    path, _ = _saved(tmp_path, "lenet5-modern", seed=0)
    first = sha256_file(path)
    _saved(tmp_path, "lenet5-modern", seed=1)
    assert sha256_file(path) != first
    assert load_checkpoint(path)[1]["weights_sha256"] == sha256_file(path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- refused checkpoints ------------------------------------------------------------------------


def test_weights_changed_after_saving_fail_the_sha256_check(tmp_path):
    path, _ = _saved(tmp_path, "lenet5-modern")
    tensors = load_file(str(path))
    tensors["OUTPUT.bias"][0] += 1.0  # still a valid file of the right shapes
    save_file(tensors, str(path))
    _model_error(path, "sha256", "does not match lenet5-modern.json", "changed or replaced")


def test_missing_tensor_is_named(tmp_path):
    path, model = _saved(tmp_path, "lenet5-modern")
    tensors = dict(model.state_dict())
    del tensors["C3.0.weight"]
    _rewrite_weights(path, tensors)
    _model_error(path, "missing: C3.0.weight", "unexpected: none", "lenet5-modern")


def test_unexpected_tensor_is_named(tmp_path):
    path, model = _saved(tmp_path, "lenet5")
    _rewrite_weights(path, {**model.state_dict(), "F7.weight": torch.zeros(3)})
    _model_error(path, "missing: none", "unexpected: F7.weight")


@pytest.mark.parametrize(
    "name, bad, found",
    [
        ("C1.weight", torch.zeros(6, 1, 3, 3), "(6, 1, 3, 3)"),
        ("C3.weight", torch.zeros(2400), "(2400,)"),
        ("OUTPUT.weight", torch.zeros(84, 10), "(84, 10)"),
        ("F6.bias", torch.zeros(84, dtype=torch.float64), "torch.float64"),
    ],
)
def test_wrong_shape_or_dtype_is_named(tmp_path, name, bad, found):
    path, model = _saved(tmp_path, "lenet5")
    _rewrite_weights(path, {**model.state_dict(), name: bad})
    _model_error(path, f"tensor {name}", found, "expected", "for lenet5")


def test_asking_for_another_variant_is_refused(tmp_path):
    path, _ = _saved(tmp_path, "lenet5-modern")
    _model_error(path, "a lenet5-modern checkpoint (expected lenet5)", variant="lenet5")


def test_weights_of_another_variant_are_refused(tmp_path):
    """JSON that says lenet5 beside lenet5-modern weights (with a matching sha256)."""
    path, _ = _saved(tmp_path, "lenet5-modern")
    _edit_meta(path, variant="lenet5")
    _model_error(path, "do not match variant lenet5", "missing: ", "C3.bias", "unexpected: ", "C1.0.weight")


def test_unknown_variant_in_the_metadata_is_refused(tmp_path):
    path, _ = _saved(tmp_path, "lenet5")
    _edit_meta(path, variant="alexnet")
    _model_error(path, "unknown variant 'alexnet'")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_tensors_are_refused(tmp_path, value):
    torch.manual_seed(0)
    model = build_model("lenet5-modern")
    with torch.no_grad():
        model.F6[0].weight[5, 7] = value
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, {})
    _model_error(path, "tensor F6.0.weight holds NaN or Inf")


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    path, _ = _saved(tmp_path, "lenet5")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    _edit_meta(path, weights_sha256=sha256_file(path))
    _model_error(path, "not a readable safetensors file")


class _Payload:
    """Unpickling this creates a marker file: proof that code ran on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_a_pickle_is_refused_and_never_executed(tmp_path, how):
    path, model = _saved(tmp_path, "lenet5-modern")
    marker = tmp_path / "pwned"
    state = {**model.state_dict(), "evil": _Payload(marker)}
    if how == "pickle":
        path.write_bytes(pickle.dumps(state))
    else:
        torch.save(state, path)
    _edit_meta(path, weights_sha256=sha256_file(path))
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_json_is_refused(tmp_path):
    path, _ = _saved(tmp_path, "lenet5")
    meta_path(path).unlink()
    _model_error(path, "lenet5.json: missing", "expected the checkpoint's JSON metadata beside lenet5.safetensors")


@pytest.mark.parametrize(
    "text, match",
    [("{not json", "not valid JSON"), ("[1, 2]", "not a lenet-edge checkpoint"),
     ('{"format": "onnx"}', "not a lenet-edge checkpoint"), ("\udcff", "not valid JSON")],
    ids=["syntax", "list", "other-format", "not-utf8"],
)
def test_unreadable_json_is_refused(tmp_path, text, match):
    path, _ = _saved(tmp_path, "lenet5")
    meta_path(path).write_bytes(text.encode("utf-8", "surrogateescape"))
    _model_error(path, "lenet5.json", match)


def test_json_without_preprocessing_is_a_model_error(tmp_path):
    path, _ = _saved(tmp_path, "lenet5")
    _edit_meta(path, preprocessing={"mean": 0.1})
    _model_error(path, "lenet5.json", "preprocessing record without")


def test_missing_weights_file_is_refused(tmp_path):
    _model_error(tmp_path / "absent.safetensors", "absent.safetensors: no such checkpoint")


def test_corrupt_optimizer_state_is_a_model_error(tmp_path):
    path, _ = _saved(tmp_path, "lenet5-modern", optimizer_state={"0.0": torch.zeros(3)})
    resume_path(path).write_bytes(b"garbage")
    with pytest.raises(ModelError, match="resume.safetensors: not a readable safetensors file"):
        load_optimizer_state(path)

