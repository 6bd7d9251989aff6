"""Write the static site: page, scripts, models, onnxruntime-web's runtime files and the self-check.

The page cannot read a model's metadata_props (onnxruntime-web exposes only input and output
names), so each model's contract is read here with ModelContract and written into site.json,
beside the constants of the picture rules and of `run`'s unsure flag: one place for each rule,
the page reads them from there. The self-check is the packaged official test digits with the
logits native onnxruntime gives them, as float32 bit patterns (base64): the page must match the
int8 model's bit for bit and the fp32 model's within FP32_TOLERANCE with the same argmax.
"""

from __future__ import annotations

import base64
import shutil
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .. import __version__
from ..bench.records import SCHEMA, VERSION
from ..defaults import DEFAULT_MIN_TURN_MS, DEFAULT_RUNS, DEFAULT_WARMUP
from ..errors import DataError, ModelError, OutputError
from ..fileio import sha256_file, staged_directory, write_json
from ..mnist import load_bench_digits
from ..runtime import inputs, segment
from ..runtime.predict import UNSURE_BELOW
from ..runtime.session import LoadedModel, load_model
from .runtime_files import OrtWeb, find_runtime

SITE_SCHEMA = "lenet-edge-web"
SITE_VERSION = 1
SITE_FILE = "site.json"
SELFCHECK_FILE = "selfcheck.json"
STATIC_FILES = ("index.html", "app.js", "picture.js", "bench.js", "bench-worker.js", "session.js", "style.css")
FP32_TOLERANCE = 1e-4  # max |logit difference| of the fp32 model; int8 must be bit-identical
BENCH_BATCH_SIZES = (1, 64)
BENCH_ROUNDS = 5


@dataclass(frozen=True)
class SiteModel:
    """A model as the page sees it (site.json's models[])."""

    label: str  # its name in the page and the bench report (default: the file's stem, as bench names it)
    file: str  # models/NAME.onnx
    sha256: str
    bytes: int
    variant: str
    precision: str  # "int8" | "fp32"
    preprocessing: dict  # the contract's Preprocessing
    class_labels: list[str]


def build_site(int8_model: str | Path, out: str | Path, fp32_model: str | Path | None = None,
               runtime_folder: str | Path | None = None, force: bool = False,
               labels: tuple[str, ...] | None = None) -> dict:
    """Check the models and the runtime files, then write the site to `out` as one directory (built beside it,
    then renamed into place). `labels` name the models in the page and its bench report (default: the files'
    stems, as `lenet-edge bench` names them). Returns {"out", "models", "selfcheck_images", "onnxruntime_web"}."""
    out = Path(out)
    _check_out(out, force)
    runtime = find_runtime(runtime_folder)
    paths = [Path(int8_model)] + ([Path(fp32_model)] if fp32_model is not None else [])
    loaded = [load_model(p) for p in paths]
    _check_models(loaded)
    names = _labels(paths, labels)
    images, digit_labels, source = load_bench_digits()
    models = [_site_model(m, name) for m, name in zip(loaded, names, strict=True)]
    expected = {m.label: _logits(model, images) for m, model in zip(models, loaded, strict=True)}
    with staged_directory(out, replace=force) as staging:  # as readable as its files, for a web server
        _copy_static(staging)
        (staging / "models").mkdir()
        (staging / "ort").mkdir()
        for model, path in zip(models, paths, strict=True):
            shutil.copyfile(path, staging / model.file)
        for path in runtime.files():
            shutil.copyfile(path, staging / "ort" / path.name)
        write_json(staging / SITE_FILE, _site_record(models, runtime), record=False)
        write_json(staging / SELFCHECK_FILE, _selfcheck_record(images, digit_labels, source, expected), record=False)
    return {"out": out, "models": [m.label for m in models], "selfcheck_images": len(images),
            "onnxruntime_web": runtime.version}


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file (expected a directory for the site)")
    if out.exists() and not force:
        raise OutputError(f"{out}: already exists (expected a new directory); pass --force to replace it")
    if not out.parent.is_dir():
        raise OutputError(f"{out}: directory {out.parent} does not exist (expected an existing directory)")


def _check_models(loaded: list[LoadedModel]) -> None:
    int8 = loaded[0]
    if int8.contract.quantization is None:
        raise ModelError(f"{int8.path}: an fp32 model (expected the int8 model from lenet-edge quantize first)")
    if len(loaded) == 2:
        fp32 = loaded[1]
        if fp32.contract.quantization is not None:
            raise ModelError(f"{fp32.path}: an int8 model (expected the fp32 model from lenet-edge export second)")
        if fp32.path.name == int8.path.name:
            raise ModelError(f"{fp32.path}: same file name as {int8.path} (expected two names: the site keeps "
                             f"both in its models/ folder)")
        # both see a 28x28 digit: the contract refuses any other (contract.py), so one picture serves both


def _labels(paths: list[Path], labels: tuple[str, ...] | None) -> list[str]:
    names = [p.stem for p in paths] if not labels else list(labels)
    if len(names) != len(paths):
        raise DataError(f"{len(names)} labels for {len(paths)} models (expected one label per model)")
    if len(set(names)) != len(names) or not all(names):
        raise DataError(f"model labels {names} (expected distinct, non-empty labels; give them with --label)")
    return names


def _site_model(model: LoadedModel, label: str) -> SiteModel:
    contract = model.contract
    return SiteModel(label=label, file=f"models/{model.path.name}", sha256=sha256_file(model.path),
                     bytes=model.path.stat().st_size, variant=contract.variant,
                     precision="int8" if contract.quantization else "fp32",
                     preprocessing=contract.preprocessing.to_dict(), class_labels=list(contract.class_labels))


def _logits(model: LoadedModel, images: np.ndarray) -> np.ndarray:
    """Native onnxruntime's logits (N, 10) float32 of 28x28 digits, preprocessed by the model's contract."""
    return model.predict(model.contract.preprocessing(images)).astype(np.float32)


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _site_record(models: list[SiteModel], runtime: OrtWeb) -> dict:
    return {
        "schema": SITE_SCHEMA, "version": SITE_VERSION, "lenet_edge": __version__,
        "onnxruntime_web": runtime.version,
        "models": [asdict(m) for m in models],
        # the picture rules of lenet_edge.runtime.inputs and run's unsure flag, read by picture.js and app.js
        "rules": {"unsure_below": UNSURE_BELOW, "max_image_file_bytes": inputs.MAX_IMAGE_FILE_BYTES,
                  "max_image_pixels": inputs.MAX_IMAGE_PIXELS, "min_contrast": inputs.MIN_CONTRAST,
                  "ink_threshold": inputs.INK_THRESHOLD, "border_fraction": inputs.BORDER_FRACTION,
                  "wide_aspect": segment.WIDE_ASPECT},
        "selfcheck": {"file": SELFCHECK_FILE, "fp32_tolerance": FP32_TOLERANCE},
        "bench": {"schema": SCHEMA, "version": VERSION, "batch_sizes": list(BENCH_BATCH_SIZES),
                  "runs": DEFAULT_RUNS, "warmup": DEFAULT_WARMUP, "rounds": BENCH_ROUNDS,
                  "min_turn_ms": DEFAULT_MIN_TURN_MS},
    }


def _selfcheck_record(images: np.ndarray, labels: np.ndarray, source: str, expected: dict) -> dict:
    return {"source": source, "count": len(images), "side": images.shape[1],
            "images": _b64(images, "u1"), "labels": [int(v) for v in labels],
            "logits": {label: _b64(logits, "<f4") for label, logits in expected.items()},
            "computed_by": "native onnxruntime (lenet_edge.runtime.session.load_model(...).predict)"}


def _copy_static(staging: Path) -> None:
    static = resources.files(__package__).joinpath("static")
    for name in STATIC_FILES:
        (staging / name).write_bytes(static.joinpath(name).read_bytes())
