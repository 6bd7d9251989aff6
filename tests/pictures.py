"""Photo-like pictures of numbers built from MNIST digits, for the integration tests of `run`."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def number_photo(digits: np.ndarray, rng: np.random.Generator, scale: int = 4, gap: tuple[int, int] = (6, 30),
                 overlap: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the (n, 28, 28) light-on-dark digits, left to right, enlarged `scale` times
    (nearest neighbour), `gap` pixels apart between their ink boxes (or, with `overlap`, their
    boxes overlapping by that many pixels, so that they touch), in dark ink on tinted paper
    under uneven light with sensor noise."""
    crops = []
    for digit in digits:
        rows, cols = np.nonzero(digit)
        crop = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1].astype(np.float32) / 255.0
        crops.append(np.kron(crop, np.ones((scale, scale), np.float32)))  # (h, w) ink box, enlarged
    margin = 20 * scale
    height = max(c.shape[0] for c in crops) + 2 * margin
    steps = [(c.shape[1] - overlap if overlap is not None else c.shape[1] + int(rng.integers(*gap))) for c in crops]
    ink = np.zeros((height, margin * 2 + sum(steps) + crops[-1].shape[1]), np.float32)
    left = margin
    for crop, step in zip(crops, steps, strict=True):
        top = margin + int(rng.integers(0, height - 2 * margin - crop.shape[0] + 1))
        region = ink[top:top + crop.shape[0], left:left + crop.shape[1]]
        np.maximum(region, crop, out=region)
        left += step
    h, w = ink.shape
    paper = 210 + np.linspace(-20, 20, w)[None, :] + rng.normal(0, 5, (h, w))  # (H, W)
    grey = paper * (1 - ink) + 35 * ink
    return np.stack([grey, grey * 0.97, grey * 0.9], axis=-1).clip(0, 255).astype(np.uint8)


def one_digit(grey: np.ndarray, invert: str = "auto", path: str = "image") -> np.ndarray:
    """The (28, 28) float32 digit `run` makes of a picture that holds one digit
    (lenet_edge.runtime.inputs.picture_digits)."""
    from lenet_edge.runtime.inputs import picture_digits

    digits, _ = picture_digits(np.asarray(grey, np.float32), invert, path=path)
    assert len(digits) == 1, f"{len(digits)} digits found in a picture of one"
    return digits[0]


def image_digit(path, invert: str = "auto") -> np.ndarray:
    """one_digit of an image file, decoded as `run` decodes it."""
    from lenet_edge.runtime.inputs import decode_image

    return one_digit(decode_image(path), invert, path=str(path))


def ink(grey: np.ndarray, invert: str = "auto") -> np.ndarray:
    """A picture's ink as segmentation sees it: light on dark, background 0, brightest pixel 255."""
    from lenet_edge.runtime.inputs import light_on_dark, remove_background

    return remove_background(light_on_dark(grey, invert))


def draw(strokes: list[tuple], size: tuple[int, int] = (400, 160), ink: int = 30, paper: int = 220) -> np.ndarray:
    """(H, W) uint8 dark ink on light paper: ("line", [x0, y0, x1, y1, ...]) or ("ellipse", box),
    9 pixels wide unless a third item gives the width."""
    image = Image.new("L", size, paper)
    pen = ImageDraw.Draw(image)
    for kind, points, *width in strokes:
        if kind == "line":
            pen.line(points, fill=ink, width=width[0] if width else 9)
        else:
            pen.ellipse(points, outline=ink, width=width[0] if width else 9)
    return np.asarray(image)


# strokes of a drawn number, left to right (draw's default canvas)
ONE = [("line", [60, 30, 60, 130])]
ZERO = [("ellipse", [120, 30, 180, 130])]
SEVEN = [("line", [230, 30, 290, 30, 250, 130])]
