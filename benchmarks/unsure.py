"""Where to put `run`'s "unsure" flag: for each threshold on the softmax probability (and, for
comparison, on the margin between the two most probable classes), the share of the official
MNIST test set's wrong answers it flags (caught) and the share of its right answers it flags
(the cost), for every model given. It prints; it is not a test.

    python benchmarks/unsure.py model.onnx model.int8.onnx [--data-dir D]

The flag's threshold is lenet_edge.runtime.predict.UNSURE_BELOW. The test set is the only
held-out data on hand (the training images are what the model fit, so its errors there are
too rare to choose from); the sweep is printed so the choice and its figures can be checked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lenet_edge.mnist import load_mnist
from lenet_edge.mnist_download import resolve_data_dir
from lenet_edge.runtime.predict import UNSURE_BELOW
from lenet_edge.runtime.session import load_model, softmax

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST directory (default: $LENET_EDGE_DATA)")
    args = p.parse_args(argv)
    images, labels = load_mnist(resolve_data_dir(args.data_dir), "test")
    print(f"official MNIST test set, {len(images)} images; run flags unsure below p = {UNSURE_BELOW}")
    for path in args.models:
        model = load_model(path)
        probs = softmax(model.predict(model.contract.preprocessing(images)))  # (10000, 10)
        top2 = np.sort(probs, axis=1)[:, -2:]  # (10000, 2): second, first
        wrong = probs.argmax(axis=1) != labels
        print(f"\n{path.name}: accuracy {1 - wrong.mean():.2%}, {wrong.sum()} wrong answers")
        print(f"{'threshold':>9}  {'p: errors caught':>16}  {'right flagged':>13}  "
              f"{'margin: errors caught':>21}  {'right flagged':>13}")
        for t in THRESHOLDS:
            by_p, by_margin = top2[:, 1] < t, top2[:, 1] - top2[:, 0] < t
            mark = "  <- run" if t == UNSURE_BELOW else ""
            print(f"{t:>9}  {share(by_p, wrong):>16}  {share(by_p, ~wrong):>13}  "
                  f"{share(by_margin, wrong):>21}  {share(by_margin, ~wrong):>13}{mark}")
    return 0


def share(flagged: np.ndarray, among: np.ndarray) -> str:
    n = int(among.sum())
    k = int((flagged & among).sum())
    return f"{k}/{n} = {k / n:.1%}" if n else "-"


if __name__ == "__main__":
    raise SystemExit(main())
