"""What bench and profile time: each model as a runner (an onnxruntime session, or PyTorch eager from a
checkpoint, torch imported only then), and the digits every model is fed, with the record of where they came
from. numpy + onnxruntime only, as the rest of bench."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import sha256_file
from ..mnist import MODERN_PREPROCESSING, Preprocessing, load_mnist
from ..runtime.session import load_model


class Runner:
    """One model, callable on a prepared batch; sessions are made per thread count."""

    def __init__(self, label: str, info: dict, preprocessing: Preprocessing):
        self.label, self.info, self.preprocessing = label, info, preprocessing

    def configure(self, threads: int) -> None:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OrtRunner(Runner):
    def __init__(self, label: str, path: Path):
        model = load_model(path)
        contract = model.contract
        info = {"label": label, "kind": "onnxruntime", "file": path.name, "sha256": sha256_file(path),
                "bytes": path.stat().st_size, "variant": contract.variant,
                "precision": "int8" if contract.quantization else "fp32"}
        super().__init__(label, info, contract.preprocessing)
        self.path, self.model = path, model

    def configure(self, threads: int) -> None:
        self.model = load_model(self.path, threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.model.logits(x)


class TorchRunner(Runner):
    def __init__(self, label: str, checkpoint: Path):
        from ..errors import require

        self.torch = require("torch", "train")
        require("safetensors", "train")
        from ..train.checkpoint import load_checkpoint

        self.model, meta = load_checkpoint(checkpoint)
        info = {"label": label, "kind": "pytorch-eager", "file": checkpoint.name, "sha256": sha256_file(checkpoint),
                "bytes": checkpoint.stat().st_size, "variant": meta["variant"], "precision": "fp32"}
        super().__init__(label, info, Preprocessing.from_dict(meta["preprocessing"]))
        self.saved_threads = self.torch.get_num_threads()

    def configure(self, threads: int) -> None:
        self.torch.set_num_threads(threads)

    def restore(self) -> None:
        self.torch.set_num_threads(self.saved_threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(x)).numpy()


def bench_inputs(data_dir, inputs, count: int) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """`count` digits (N, 28, 28) and their labels (None for a user's file), repeated if there are
    fewer, and the record of where they came from: {kind, source, distinct_images}.

    From `inputs` (a user's IDX, .npy or image file of MNIST-style digits), else the official
    test set in `data_dir`, else the test digits carried in the package: bench never downloads,
    so a device without network can run it."""
    from ..mnist import load_bench_digits, split_paths

    if inputs is not None:
        from ..runtime.inputs import open_input

        source = open_input(inputs, MODERN_PREPROCESSING, invert="no")  # 28x28 digits as they are
        if source.kind == "prepared":
            raise DataError(f"{inputs}: already preprocessed model inputs (expected MNIST-style digits (N, 28, 28) "
                            f"in [0, 255]: each model preprocesses them by its own contract)")
        images, labels = np.asarray(source.data[:count], dtype=np.float32), None
        record = {"kind": "file", "source": f"{Path(inputs).name} ({source.kind}, sha256 {sha256_file(inputs)})",
                  "distinct_images": len(images)}
    elif data_dir is not None:
        images, labels = load_mnist(Path(data_dir), "test")
        name = split_paths(Path(data_dir), "test")[0].name
        record = {"kind": "mnist-test-set", "source": f"MNIST official test set ({name})",
                  "distinct_images": len(images)}
    else:
        images, labels, source = load_bench_digits()
        record = {"kind": "packaged", "source": source, "distinct_images": len(images)}
    if count > len(images):
        repeats = -(-count // len(images))
        images = np.tile(images, (repeats, 1, 1))
        labels = None if labels is None else np.tile(labels, repeats)
    return images[:count], None if labels is None else labels[:count], record
