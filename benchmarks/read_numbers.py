"""Reading numbers: photo-like pictures of 2 to 6 official MNIST test digits, read by `run`'s
own path (decode, segment, classify) with each model given. It prints; it is not a test.

    python benchmarks/read_numbers.py model.onnx model.int8.onnx [--pictures 400] [--data-dir D]

Each picture: n distinct test digits (each cropped to its ink), a height of 40-120 px per
picture and +-15 % per digit, gaps of 0.1-0.5 x the height between the digits' boxes, a
vertical wobble of +-8 %, blue-black ink on tinted paper under uneven light (a linear
gradient of up to 30 % and sensor noise), Gaussian blur of 0.3-1.2 px, JPEG quality 60-90.

Per number of digits n and model it prints
- digit acc.: the model's accuracy on the same digits as MNIST gives them (28x28, no picture);
- bound: digit acc.^n, the whole-number accuracy of a perfect segmenter (the issue's figure);
- perfect: the share of pictures whose n digits the model reads right from MNIST's own 28x28
  images (the same bound, measured on these pictures rather than from the formula);
- read: the share of digits read right in place (a picture read with the wrong count of digits
  counts its digits as wrong where they do not line up);
- number: the share of pictures read as exactly the right number, and its distance to bound;
- found n: the share of pictures in which exactly n digits were found;
- wrong flagged / right flagged: the share of wrongly read numbers marked unsure (caught),
  and of rightly read ones (the cost);
- pictures/s: pictures read per second through lenet_edge.runtime.predict.classify, JPEG
  decoding included, one process, onnxruntime's default threads (all models do the same
  work except the network itself).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from lenet_edge.bench.environment import cpu_info
from lenet_edge.mnist import load_mnist
from lenet_edge.mnist_download import resolve_data_dir
from lenet_edge.runtime.predict import classify
from lenet_edge.runtime.session import load_model, softmax

DIGIT_COUNTS = (2, 3, 4, 5, 6)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--pictures", type=int, default=400, help="pictures per number of digits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST directory (default: $LENET_EDGE_DATA)")
    args = p.parse_args(argv)
    images, labels = load_mnist(resolve_data_dir(args.data_dir), "test")
    rng = np.random.default_rng(args.seed)
    cpu = cpu_info()
    print(f"{args.pictures} pictures per digit count from the official test set, seed {args.seed}; "
          f"CPU: {cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} logical cores (native)")
    models = {path: load_model(path) for path in args.models}
    print(f"{'model':<18} {'n':>2} {'digit acc.':>10} {'bound':>7} {'perfect':>7} {'read':>7} {'number':>7} "
          f"{'-bound':>7} {'found n':>7} {'wrong flagged':>14} {'right flagged':>14} {'pictures/s':>10}")
    with tempfile.TemporaryDirectory(prefix="lenet-edge-numbers-") as tmp:
        for n in DIGIT_COUNTS:
            picks = [rng.choice(len(images), n, replace=False) for _ in range(args.pictures)]
            files = []
            for k, pick in enumerate(picks):
                files.append(Path(tmp) / f"n{n}-{k}.jpg")
                files[-1].write_bytes(photo_of_number(images[pick], rng))
            for path, model in models.items():
                print(score(path.name, n, model, files, picks, images, labels), flush=True)
    return 0


def photo_of_number(digits: np.ndarray, rng: np.random.Generator) -> bytes:
    """JPEG bytes of a photo-like picture of the (n, 28, 28) MNIST digits, left to right."""
    height = rng.uniform(40, 120)
    inks, lefts, tops = [], [], []
    x = int(rng.uniform(0.5, 1.0) * height)
    for digit in digits:
        rows, cols = np.nonzero(digit)
        crop = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]  # the digit's ink box
        h = height * rng.uniform(0.85, 1.15)
        w = max(1, round(crop.shape[1] * h / crop.shape[0]))
        inks.append(np.asarray(Image.fromarray(crop).resize((w, round(h)), Image.Resampling.BICUBIC),
                               np.float32) / 255.0)
        lefts.append(x)
        tops.append(int(height * (0.6 + rng.uniform(-0.08, 0.08))))
        x += w + int(rng.uniform(0.1, 0.5) * height)
    canvas_h, canvas_w = int(height * 2.4), x + int(rng.uniform(0.5, 1.0) * height)
    ink = np.zeros((canvas_h, canvas_w), np.float32)
    for a, left, top in zip(inks, lefts, tops, strict=True):
        ink[top:top + a.shape[0], left:left + a.shape[1]] = np.maximum(ink[top:top + a.shape[0],
                                                                           left:left + a.shape[1]], a)
    tint = np.array([rng.uniform(210, 245), rng.uniform(200, 235), rng.uniform(170, 220)], np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    rr, cc = np.mgrid[0:canvas_h, 0:canvas_w] / max(canvas_h, canvas_w)
    slope = np.cos(angle) * cc + np.sin(angle) * rr
    light = 1.0 - rng.uniform(0, 0.3) * (slope - slope.min()) / np.ptp(slope)  # (H, W): 1 down to 0.7
    paper = tint * light[..., None] + rng.normal(0, 4, (canvas_h, canvas_w, 1))
    pen = np.array([rng.uniform(20, 60), rng.uniform(20, 60), rng.uniform(50, 110)], np.float32)
    rgb = paper * (1 - ink[..., None]) + pen * ink[..., None]  # (H, W, 3)
    picture = Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.3,
                                                                                                              1.2)))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=int(rng.integers(60, 91)))
    return buffer.getvalue()


def score(name: str, n: int, model, files: list[Path], picks: list[np.ndarray], images, labels) -> str:
    used = np.concatenate(picks)
    isolated = softmax(model.predict(model.contract.preprocessing(images[used]))).argmax(axis=1) == labels[used]
    digit_acc = isolated.mean()
    perfect = isolated.reshape(len(picks), n).all(axis=1).mean()
    start = time.perf_counter()
    records = list(classify(model, files))
    seconds = time.perf_counter() - start
    truths = ["".join(str(labels[i]) for i in pick) for pick in picks]
    read = [r.get("label", "") for r in records]
    right = np.array([r == t for r, t in zip(read, truths, strict=True)])
    unsure = np.array([bool(r.get("unsure", True)) for r in records])
    lined_up = (a == b for r, t in zip(read, truths, strict=True) for a, b in zip(r, t, strict=False))  # may differ
    in_place = sum(lined_up) / (n * len(picks))
    found_n = np.mean([len(r) == n for r in read])
    bound = digit_acc ** n
    return (f"{name:<18} {n:>2} {digit_acc:>10.2%} {bound:>7.2%} {perfect:>7.2%} {in_place:>7.2%} {right.mean():>7.2%} "
            f"{100 * (right.mean() - bound):>+7.2f} {found_n:>7.1%} {fraction(unsure, ~right):>14} "
            f"{fraction(unsure, right):>14} {len(files) / seconds:>10.1f}")


def fraction(flagged: np.ndarray, among: np.ndarray) -> str:
    n = int(among.sum())
    return f"{int((flagged & among).sum())}/{n}" if n else "-"


if __name__ == "__main__":
    raise SystemExit(main())
