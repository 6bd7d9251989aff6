"""The separate digits of a picture, left to right: a number is read digit by digit.

numpy only (the device side). The picture's ink is what the first rules leave (lenet_edge.runtime.inputs:
light_on_dark, then remove_background: polarity, background at 0, brightest pixel at 255); then

1. ink pixels are those above the threshold that also bounds one digit's box;
2. ink pixels that touch (8-neighbourhood) form a component;
3. components smaller than SPECK_AREA of the largest one are dropped (dust, JPEG noise);
4. components whose column ranges overlap by at least MERGE_OVERLAP of the narrower one
   are pieces of one digit: handwriting runs left to right, so a 5's detached bar or a
   broken stroke sits above or below the rest of its digit, while the next digit sits
   beside it;
5. a digit shorter than MIN_HEIGHT of the tallest is dropped (a decimal point, a dash);
6. a digit wider than WIDE_ASPECT times its height is probably two or more touching
   digits: it is read as one digit and flagged `wide`, never split by guesswork;
7. a digit with less ink than SMALL_INK of the inkiest digit's is probably a stray mark
   or a detached stroke beside a digit rather than a digit: it is read and flagged `small`.

Boxes are (left, top, right, bottom) pixel coordinates of the picture, right and bottom
exclusive (Pillow's crop box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_MARGIN = 0.1  # of a digit's height: room around its box for strokes too faint to be found
SPECK_AREA = 0.02  # of the largest component's ink pixels
MERGE_OVERLAP = 0.5  # of the narrower piece's width
MIN_HEIGHT = 0.4  # of the tallest digit's height: handwriting varies digit sizes by less than 2.5x
# On the official MNIST test set, 143 of 10,000 single digits are wider than 1.3 x their
# height (311 at 1.2, 39 at 1.5), while 74 % of 2,000 random pairs of test digits are when
# their boxes touch at equal height, overlapping by 0-2 px of 20 (87 % of pairs without a 1;
# 50 % at 1.5): 1.3 flags few single digits and most pairs.
WIDE_ASPECT = 1.3
# A 1 has the least ink of any digit (median 77 ink pixels in a 20-pixel-high digit, 5th
# percentile 53; a 0's median is 180); 0.2 stays below the lightest 1 beside the heaviest 0
# at the same height, and flags 13 of the 19 official test digits that hold a detached
# stroke or mark beside the digit (the only test digits that fall into two pieces).
SMALL_INK = 0.2


@dataclass(frozen=True)
class Region:
    """One digit of a picture: its box and its ink (the picture's other digits blanked out)."""

    box: tuple[int, int, int, int]  # (left, top, right, bottom), right/bottom exclusive
    ink: np.ndarray  # (bottom - top, right - left) float32, peak 255
    frame: tuple[int, int, int, int]  # the box widened by FRAME_MARGIN x its height (within the picture)
    others: np.ndarray  # (frame height, frame width) bool: the other digits' ink in the frame
    wide: bool  # wider than WIDE_ASPECT x its height: probably touching digits
    small: bool  # less ink than SMALL_INK x the inkiest digit's: probably not a digit


def find_digits(x: np.ndarray, threshold: float) -> list[Region]:
    """The digits in (H, W) ink levels (background 0, peak 255), left to right; at least one
    whenever any pixel is above `threshold`."""
    labels, boxes, areas = label_components(x > threshold)
    if not areas:
        return []
    keep = [i for i, a in enumerate(areas) if a >= SPECK_AREA * max(areas)]
    groups = _merge_overlapping([boxes[i] for i in keep])
    group_boxes = [_union([boxes[keep[i]] for i in g]) for g in groups]
    tallest = max(b[3] - b[1] for b in group_boxes)
    digits = [(g, b) for g, b in zip(groups, group_boxes, strict=True) if b[3] - b[1] >= MIN_HEIGHT * tallest]
    ink_pixels = [sum(areas[keep[i]] for i in g) for g, _ in digits]
    regions = []
    for (group, (left, top, right, bottom)), pixels in zip(digits, ink_pixels, strict=True):
        m = round(FRAME_MARGIN * (bottom - top))
        frame = (max(0, left - m), max(0, top - m), min(x.shape[1], right + m), min(x.shape[0], bottom + m))
        in_frame = labels[frame[1]:frame[3], frame[0]:frame[2]]
        other = (in_frame > 0) & ~np.isin(in_frame, [keep[i] + 1 for i in group])  # the other digits' ink
        inner = (slice(top - frame[1], bottom - frame[1]), slice(left - frame[0], right - frame[0]))
        ink = np.where(other[inner], 0.0, x[top:bottom, left:right]).astype(np.float32)
        ink *= 255.0 / float(ink.max())  # each digit's brightest pixel at 255, as MNIST's
        regions.append(Region((left, top, right, bottom), ink, frame, other,
                              wide=right - left > WIDE_ASPECT * (bottom - top),
                              small=pixels < SMALL_INK * max(ink_pixels)))
    return sorted(regions, key=lambda r: r.box[0])


def label_components(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]], list[int]]:
    """8-connected components of a boolean (H, W) mask: labels (H, W) int32 (0 = background,
    k + 1 = component k), each component's box and its pixel count.

    Components are joined run by run (horizontal runs of ink in each row, union-find over
    runs that touch in neighbouring rows): a 12-megapixel photo of a number holds some 10^4
    runs, which pure Python joins in milliseconds, where a pixel-by-pixel flood fill would
    take seconds.
    """
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)  # (H, W + 1)
    run_rows, run_starts = np.nonzero(edges == 1)
    _, run_ends = np.nonzero(edges == -1)  # exclusive; row-major order pairs them with the starts
    parent = list(range(len(run_rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(run_rows, np.arange(h + 1))  # runs of row r: row_first[r]:row_first[r + 1]
    starts, ends = run_starts.tolist(), run_ends.tolist()
    for r in range(1, h):
        a, a_end = int(row_first[r - 1]), int(row_first[r])
        b, b_end = a_end, int(row_first[r + 1])
        while a < a_end and b < b_end:  # two sorted lists of runs: one sweep finds every touching pair
            if starts[a] <= ends[b] and starts[b] <= ends[a]:  # overlap or diagonal contact
                parent[root(a)] = root(b)
            if ends[a] < ends[b]:
                a += 1
            else:
                b += 1
    roots = [root(i) for i in range(len(parent))]
    ids = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    labels = np.zeros((h, w), np.int32)
    boxes: list[list[int]] = [[w, h, 0, 0] for _ in ids]
    areas = [0] * len(ids)
    for row, start, end, r in zip(run_rows.tolist(), starts, ends, roots, strict=True):
        k = ids[r]
        labels[row, start:end] = k + 1
        box = boxes[k]
        box[0], box[1], box[2], box[3] = min(box[0], start), min(box[1], row), max(box[2], end), max(box[3], row + 1)
        areas[k] += end - start
    return labels, [tuple(b) for b in boxes], areas


def _merge_overlapping(boxes: list[tuple[int, int, int, int]]) -> list[list[int]]:
    """Indices of boxes grouped by column overlap (rule 4), transitively."""
    group = list(range(len(boxes)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, (li, _, ri, _) in enumerate(boxes):
        for j in range(i):
            lj, _, rj, _ = boxes[j]
            if min(ri, rj) - max(li, lj) >= MERGE_OVERLAP * min(ri - li, rj - lj):
                group[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        members.setdefault(root(i), []).append(i)
    return list(members.values())


def _union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
