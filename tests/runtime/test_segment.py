"""Finding the digits of a picture: components, pieces of one digit, noise, touching digits."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lenet_edge.mnist import MODERN_PREPROCESSING
from lenet_edge.runtime.inputs import INK_THRESHOLD, decode_image, open_input
from lenet_edge.runtime.segment import find_digits, label_components
from tests.pictures import ONE, SEVEN, ZERO, draw, ink, one_digit

THRESHOLD = INK_THRESHOLD * 255.0


FIVE_BROKEN = [("line", [180, 30, 230, 30]), ("line", [185, 45, 182, 75]), ("ellipse", [175, 70, 230, 130])]


def regions_of(grey: np.ndarray):
    return find_digits(ink(grey.astype(np.float32)), THRESHOLD)


def _flood_fill_labels(mask: np.ndarray) -> list[set]:
    """Reference: 8-connected components by breadth-first search, as sets of pixels."""
    seen = np.zeros_like(mask)
    components = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        queue, pixels = deque([start]), set()
        while queue:
            r, c = queue.popleft()
            pixels.add((int(r), int(c)))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        queue.append((rr, cc))
        components.append(pixels)
    return components


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 24), st.integers(1, 24), st.floats(0.1, 0.7), st.integers(0, 2**32 - 1))
def test_components_match_a_flood_fill(h, w, density, seed):
    mask = np.random.default_rng(seed).random((h, w)) < density
    labels, boxes, areas = label_components(mask)
    found = [set(zip(*map(lambda a: a.tolist(), np.nonzero(labels == k + 1)), strict=True)) for k in range(len(areas))]
    assert sorted(map(sorted, found)) == sorted(map(sorted, _flood_fill_labels(mask)))
    assert (labels > 0).sum() == mask.sum() and sum(areas) == mask.sum()
    for k, (left, top, right, bottom) in enumerate(boxes):
        rows, cols = np.nonzero(labels == k + 1)
        assert (left, top, right, bottom) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_digits_are_found_left_to_right():
    regions = regions_of(draw(SEVEN + ONE + ZERO))
    assert len(regions) == 3
    lefts = [r.box[0] for r in regions]
    assert lefts == sorted(lefts)
    for region, (x0, x1) in zip(regions, [(60, 60), (120, 180), (230, 290)], strict=True):
        left, top, right, bottom = region.box
        assert left - 6 <= x0 and x1 <= right + 6 and abs(top - 30) <= 6 and abs(bottom - 131) <= 6
        assert region.ink.shape == (bottom - top, right - left) and region.ink.max() == pytest.approx(255.0)
        assert not region.wide and not region.small


def test_pieces_stacked_above_each_other_are_one_digit():
    regions = regions_of(draw(ONE + FIVE_BROKEN))
    assert len(regions) == 2  # the 5's detached bar and its body are one digit
    assert regions[1].box[1] <= 32 and regions[1].box[3] >= 128


def test_neighbours_ink_is_blanked_out_of_a_digit():
    """A 7 whose bar reaches over the next digit's box: the 0 keeps only its own ink."""
    grey = draw([("line", [40, 24, 126, 24, 60, 130]), ("ellipse", [120, 20, 180, 130])])
    x = ink(grey.astype(np.float32))
    regions = find_digits(x, THRESHOLD)
    assert len(regions) == 2
    left, top, right, bottom = regions[1].box
    assert x[top + 1:top + 7, left:left + 6].min() > THRESHOLD  # the bar's end is inside the 0's box
    assert regions[1].ink[1:7, :6].max() == 0.0  # and blanked out of the 0's ink


def test_specks_and_dots_are_not_digits():
    grey = draw(ONE + ZERO + [("line", [200, 125, 203, 128])])  # a decimal point
    grey = grey.copy()
    grey[5, 390] = grey[150, 10] = 0  # dust
    assert len(regions_of(grey)) == 2


def test_touching_digits_are_flagged_wide():
    touching = draw([("ellipse", [100, 40, 170, 130]), ("ellipse", [165, 40, 235, 130])])
    regions = regions_of(touching)
    assert len(regions) == 1 and regions[0].wide
    assert not regions_of(draw(ZERO))[0].wide  # one digit, however wide its strokes, is not


def test_a_stray_mark_beside_a_digit_is_flagged_small():
    regions = regions_of(draw(ZERO + [("line", [200, 60, 200, 105], 3)]))
    assert len(regions) == 2 and regions[1].small and not regions[0].small
    regions = regions_of(draw(ONE + ZERO))  # a 1 beside a 0 is a digit, not a mark
    assert not any(r.small for r in regions)


def test_one_digit_picture_is_read_exactly_as_before(tmp_path):
    """A picture with one digit (and some dust) goes through the one-digit rules on the whole picture."""
    grey = draw(SEVEN).copy()
    grey[3, 3] = 0
    Image.fromarray(grey).save(tmp_path / "seven.png")
    source = open_input(tmp_path / "seven.png", MODERN_PREPROCESSING)
    assert source.records == 1 and len(source.boxes) == 1 and source.doubts == [()]
    np.testing.assert_array_equal(source.data[0], one_digit(decode_image(tmp_path / "seven.png")))


def test_each_digit_of_a_number_follows_the_mnist_rules(tmp_path):
    Image.fromarray(draw(ONE + ZERO + SEVEN)).save(tmp_path / "number.png")
    source = open_input(tmp_path / "number.png", MODERN_PREPROCESSING)
    assert source.data.shape == (3, 28, 28) and source.records == 3 and source.name(0) == str(tmp_path / "number.png")
    for digit in source.data:
        rows, cols = np.nonzero(digit > THRESHOLD)
        assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)
