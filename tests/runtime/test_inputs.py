"""Input loading: the image rules, image modes and formats, .npy and IDX checks, batching."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from lenet_edge.errors import DataError
from lenet_edge.mnist import MODERN_PREPROCESSING
from lenet_edge.runtime import inputs
from lenet_edge.runtime.inputs import (
    INK_THRESHOLD,
    iter_batches,
    open_input,
    read_npy,
)
from tests.idx_files import write_idx
from tests.pictures import image_digit, one_digit

PREP = MODERN_PREPROCESSING


def drawn_digit(width: int = 60, height: int = 90, ink: int = 0, paper: int = 255) -> np.ndarray:
    """(height, width) uint8: a bilevel '7' drawn with thick strokes, off-centre."""
    image = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(image)
    w, h = width, height
    stroke = max(2, min(w, h) // 10)
    draw.line([(0.2 * w, 0.15 * h), (0.85 * w, 0.15 * h), (0.45 * w, 0.9 * h)], fill=ink, width=stroke)
    return np.asarray(image)


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(x.shape)
    return float((rows * x).sum() / x.sum()), float((cols * x).sum() / x.sum())


def extent(x: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(x.any(axis=1)), np.flatnonzero(x.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


# ----------------------------------------------------------------------------- the rules


def test_digit_follows_mnist_rules():
    digit = one_digit(drawn_digit(300, 450).astype(np.float32), "auto")
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert digit.min() == 0.0 and digit.max() == pytest.approx(255.0, abs=1.0)
    assert max(extent(digit)) == 20  # longer side scaled to 20 px
    r, c = centre_of_mass(digit)
    assert abs(r - 14) <= 0.5 and abs(c - 14) <= 0.5  # centred by mass at MNIST's pixel 14
    assert digit[:2].sum() == 0 and digit[:, :2].sum() == 0  # background is black: polarity flipped


def test_aspect_ratio_is_kept():
    wide = np.zeros((10, 40), np.float32)
    wide[3:7, :] = 255  # a 4 x 40 bar
    digit = one_digit(wide, "no")
    assert extent(digit) == (2, 20)


def test_mnist_digit_round_trips():
    """An MNIST-form digit (light on dark, 20 px box, centred by mass) comes back nearly unchanged."""
    first = one_digit(drawn_digit(), "auto")
    again = one_digit(first, "auto")
    assert np.abs(again - first).mean() < 1.0


def test_invert_auto_sees_polarity():
    dark_on_light = drawn_digit(ink=20, paper=235).astype(np.float32)
    light_on_dark = 255.0 - dark_on_light
    auto_a = one_digit(dark_on_light, "auto")
    auto_b = one_digit(light_on_dark, "auto")
    np.testing.assert_allclose(auto_a, auto_b, atol=1e-3)
    np.testing.assert_allclose(one_digit(dark_on_light, "yes"), auto_a, atol=1e-3)
    np.testing.assert_allclose(one_digit(light_on_dark, "no"), auto_a, atol=1e-3)
    # forcing the wrong polarity leaves nothing brighter than the (now light) background
    with pytest.raises(DataError, match="no digit found .* check --invert"):
        one_digit(dark_on_light, "no")


def test_photo_like_background_is_removed():
    rng = np.random.default_rng(0)
    clean = drawn_digit(200, 300, ink=40, paper=200).astype(np.float32)
    gradient = np.linspace(-15, 15, clean.shape[1])[None, :]  # uneven lighting
    photo = np.clip(clean + gradient + rng.normal(0, 4, clean.shape), 0, 255)
    digit = one_digit(photo, "auto")
    reference = one_digit(clean, "auto")
    assert np.abs(digit - reference).mean() < 12
    assert (digit > 0).sum() <= 1.2 * (reference > 0).sum()  # no paper leaks in as ink


def test_blank_image_is_refused():
    with pytest.raises(DataError, match=r"blank\.png: no digit found"):
        one_digit(np.full((50, 50), 128.0), "auto", path="blank.png")


def test_unknown_invert_is_refused():
    with pytest.raises(DataError, match="invert must be one of"):
        one_digit(drawn_digit().astype(np.float32), "sometimes")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(8, 400), height=st.integers(8, 400), x0=st.floats(0, 1), y0=st.floats(0, 1),
       w=st.floats(0, 1), h=st.floats(0, 1), light=st.booleans())
def test_any_size_gives_a_centred_28x28_digit(width, height, x0, y0, w, h, light):
    """A filled rectangle of ink anywhere in the middle half of a page of any size, either polarity: the
    digit comes out light on dark, its ink filling its box, longer side 20 px, centred by mass at pixel 14."""
    background, ink = (0.0, 255.0) if light else (255.0, 0.0)
    x = np.full((height, width), background, np.float32)
    (top, bottom), (left, right) = (height // 4, height - height // 4), (width // 4, width - width // 4)
    rows, cols = max(1, round(h * (bottom - top))), max(1, round(w * (right - left)))
    r0, c0 = top + round(y0 * (bottom - top - rows)), left + round(x0 * (right - left - cols))
    x[r0:r0 + rows, c0:c0 + cols] = ink
    digit = one_digit(x, "auto")
    assert digit.shape == (28, 28) and digit.min() == 0 and digit.max() <= 255
    assert digit[[0, 0, -1, -1], [0, -1, 0, -1]].sum() == 0  # light on dark: the corners are background
    inked = np.argwhere(digit > INK_THRESHOLD * 255)
    (r_min, c_min), (r_max, c_max) = inked.min(0), inked.max(0)
    box = digit[r_min:r_max + 1, c_min:c_max + 1]
    assert box.mean() >= 0.5 * digit.max()  # the rectangle itself is the ink, not the paper around it
    assert max(box.shape) in (20, 21)  # the longer side scaled to 20 px (resampling may light one more)
    r, c = centre_of_mass(digit)
    assert abs(r - 14) <= 0.75 and abs(c - 14) <= 0.75  # centred by mass at MNIST's pixel 14


# ----------------------------------------------------------------------------- modes and formats


@pytest.fixture
def reference_digit():
    return one_digit(drawn_digit().astype(np.float32), "auto")


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "1", "CMYK", "LA", "RGBA"])
def test_modes_give_the_same_digit(tmp_path, reference_digit, mode):
    image = Image.fromarray(drawn_digit()).convert(mode)
    suffix = ".tif" if mode == "CMYK" else ".png"
    digit = image_digit(_save(image, tmp_path / f"d{suffix}"), "auto")
    np.testing.assert_allclose(digit, reference_digit, atol=0.5)


def test_16_bit_png_is_scaled(tmp_path, reference_digit):
    sixteen = drawn_digit().astype(np.uint16) * 257  # 0..65535
    path = _save(Image.fromarray(sixteen), tmp_path / "d16.png")
    assert Image.open(path).mode.startswith("I;16")
    np.testing.assert_allclose(image_digit(path), reference_digit, atol=0.5)


def test_32_bit_integer_image(tmp_path, reference_digit):
    values = drawn_digit().astype(np.int32) * 257
    np.testing.assert_allclose(image_digit(_save(Image.fromarray(values, "I"), tmp_path / "d.tif")),
                               reference_digit, atol=0.5)
    with pytest.raises(DataError, match=r"big\.tif: 32-bit integer image with values 70000\.\.70000"):
        image_digit(_save(Image.fromarray(np.full((8, 8), 70000, np.int32), "I"), tmp_path / "big.tif"))


def test_float_image_is_refused(tmp_path):
    path = _save(Image.fromarray(drawn_digit().astype(np.float32)), tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f\.tif: floating-point image"):
        image_digit(path)


@pytest.mark.parametrize("ink", [0, 255])
def test_transparent_background_contrasts_with_the_ink(tmp_path, reference_digit, ink):
    """Ink drawn on a transparent canvas (whose hidden colour is black) reads the same, dark or light ink."""
    mask = drawn_digit() == 0
    rgba = np.zeros(mask.shape + (4,), np.uint8)  # transparent black everywhere
    rgba[mask] = (ink, ink, ink, 255)
    digit = image_digit(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "t.png"))
    np.testing.assert_allclose(digit, reference_digit, atol=0.5)


def test_palette_with_transparency(tmp_path, reference_digit):
    image = Image.fromarray(drawn_digit()).convert("P")
    path = _save(image, tmp_path / "p.png", transparency=255)  # the paper's palette entry is transparent
    assert "transparency" in Image.open(path).info
    np.testing.assert_allclose(image_digit(path), reference_digit, atol=0.5)


@pytest.mark.parametrize("fmt,suffix,kwargs,tolerance", [
    ("JPEG", ".jpg", {"quality": 90}, 12.0),
    ("BMP", ".bmp", {}, 0.5),
    ("GIF", ".gif", {}, 0.5),
    ("TIFF", ".tiff", {}, 0.5),
    ("WEBP", ".webp", {"lossless": True}, 0.5),
])
def test_formats(tmp_path, reference_digit, fmt, suffix, kwargs, tolerance):
    path = _save(Image.fromarray(drawn_digit()).convert("RGB"), tmp_path / f"d{suffix}", format=fmt, **kwargs)
    assert np.abs(image_digit(path) - reference_digit).mean() < tolerance


def test_file_kind_comes_from_content_not_name(tmp_path, reference_digit):
    path = _save(Image.fromarray(drawn_digit()), tmp_path / "digit.npy", format="PNG")
    np.testing.assert_allclose(open_input(path, PREP).data[0], reference_digit, atol=0.5)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a digit\n")
    with pytest.raises(DataError, match=r"notes\.txt: not an image, \.npy array or IDX file"):
        open_input(path, PREP)


def test_truncated_image(tmp_path):
    full = _save(Image.fromarray(drawn_digit(300, 300)), tmp_path / "full.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(full[:len(full) // 2])
    with pytest.raises(DataError, match=r"cut\.png: corrupt or truncated PNG image"):
        image_digit(path)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height 1-bit pixels, with a tiny payload."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width,height", [(10_000, 10_000), (100_000, 100_000)])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, width, height):
    # 100 Mpx passes Pillow's own limit and is stopped by ours; 10 Gpx is stopped by Pillow's
    path = _png_header_only(tmp_path / "bomb.png", width, height)
    with pytest.raises(DataError, match=r"bomb\.png: .*decompression bomb"):
        image_digit(path)


def test_huge_image_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_IMAGE_FILE_BYTES", 100)
    path = _save(Image.fromarray(drawn_digit()), tmp_path / "d.png")
    with pytest.raises(DataError, match=r"d\.png: \d+ bytes \(expected an image file of at most 100 bytes\)"):
        image_digit(path)


def test_first_frame_of_an_animation(tmp_path, reference_digit):
    frames = [Image.fromarray(drawn_digit()).convert("P"), Image.new("P", (60, 90), 0)]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    np.testing.assert_allclose(image_digit(path), reference_digit, atol=0.5)


# ----------------------------------------------------------------------------- .npy and IDX


def test_npy_shapes_and_dtypes(tmp_path):
    digits = np.stack([one_digit(drawn_digit(40 + 10 * i, 60), "auto") for i in range(3)])
    for name, array in {"one.npy": digits[0].astype(np.uint8), "many.npy": digits,
                        "f64.npy": digits.astype(np.float64), "i32.npy": digits.astype(np.int32)}.items():
        np.save(tmp_path / name, array)
        source = open_input(tmp_path / name, PREP)
        assert source.kind == "raw" and source.records == (1 if array.ndim == 2 else 3)
        assert source.name(0) == str(tmp_path / name) if array.ndim == 2 else f"{tmp_path / name}[0]"
    prepared = PREP(digits)
    np.save(tmp_path / "prepared.npy", prepared)
    source = open_input(tmp_path / "prepared.npy", PREP)
    assert source.kind == "prepared"
    (refs, x), = list(iter_batches([source], PREP))
    np.testing.assert_array_equal(x, prepared)


def test_npy_is_read_one_chunk_at_a_time(tmp_path):
    """Records come from the file per slice (a memory map would keep every page it touched resident)."""
    from lenet_edge.runtime.inputs import NpyRecords

    array = np.arange(10 * 28 * 28, dtype=">u2").reshape(10, 28, 28) % 256
    np.save(tmp_path / "a.npy", array)
    records = read_npy(tmp_path / "a.npy")
    assert isinstance(records, NpyRecords) and (records.shape, records.ndim, len(records)) == ((10, 28, 28), 3, 10)
    np.testing.assert_array_equal(records[3:5], array[3:5])
    np.testing.assert_array_equal(records[8:100], array[8:])
    np.testing.assert_array_equal(np.asarray(records), array)
    np.save(tmp_path / "f.npy", np.asfortranarray(array))  # records not contiguous: memory-mapped instead
    np.testing.assert_array_equal(read_npy(tmp_path / "f.npy")[3:5], array[3:5])


class _Trap:
    """Unpickling this would create a file: proof that .npy objects are never unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("array,message", [
    (np.zeros((27, 28), np.uint8), r"uint8 array of shape \(27, 28\) \(expected \(28, 28\) or \(N, 28, 28\)"),
    (np.zeros((2, 28, 28, 1), np.uint8), r"shape \(2, 28, 28, 1\)"),
    (np.zeros((2, 1, 32, 32), np.float64), r"float64 array of shape \(2, 1, 32, 32\)"),
    (np.zeros((0, 28, 28), np.uint8), r"empty array of shape \(0, 28, 28\)"),
    (np.zeros((28, 28), np.complex64), r"holds dtype complex64"),
    (np.zeros((28, 28), bool), r"holds dtype bool"),
    (np.zeros((28, 28), [("a", "u1"), ("b", "u1")]), r"holds dtype"),
    (np.full((28, 28), 256, np.int32), r"pixel values 256\.\.256 \(expected values in \[0, 255\]\)"),
    (np.full((28, 28), -1.0, np.float32), r"pixel values -1\.\.-1"),
    (np.full((28, 28), 0.5, np.float32), r"float pixel values all in \[0, 0.5\]"),
])
def test_bad_npy_is_refused(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError, match=r"bad\.npy: .*" + message):
        open_input(tmp_path / "bad.npy", PREP)


@pytest.mark.parametrize("value,what", [(np.nan, "image 3"), (np.inf, "image 3")])
def test_non_finite_npy_is_refused(tmp_path, value, what):
    array = np.zeros((5, 28, 28), np.float32)
    array[3, 4, 5] = value
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(DataError, match=rf"x\.npy: NaN or Inf in {what}"):
        open_input(tmp_path / "x.npy", PREP)
    prepared = np.zeros((5, 1, 32, 32), np.float32)
    prepared[2, 0, 1, 1] = value
    np.save(tmp_path / "p.npy", prepared)
    with pytest.raises(DataError, match=r"p\.npy: NaN or Inf in input 2"):
        open_input(tmp_path / "p.npy", PREP)


def test_object_npy_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    array = np.empty(2, dtype=object)
    array[0], array[1] = _Trap(marker), 1
    np.save(tmp_path / "obj.npy", array, allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy: holds Python objects \(refused"):
        open_input(tmp_path / "obj.npy", PREP)
    assert not marker.exists()


def test_truncated_and_padded_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 28, 28), np.uint8))
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[:-10])
    (tmp_path / "long.npy").write_bytes(data + b"\0")
    (tmp_path / "header.npy").write_bytes(data[:12])
    with pytest.raises(DataError, match=r"short\.npy: \d+ bytes \(expected \d+ .*truncated"):
        open_input(tmp_path / "short.npy", PREP)
    with pytest.raises(DataError, match=r"long\.npy: .*trailing data"):
        open_input(tmp_path / "long.npy", PREP)
    with pytest.raises(DataError, match=r"header\.npy: malformed \.npy header"):
        open_input(tmp_path / "header.npy", PREP)


def test_invert_yes_on_arrays(tmp_path):
    digits = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    np.save(tmp_path / "d.npy", digits)
    (_, x), = list(iter_batches([open_input(tmp_path / "d.npy", PREP, "yes")], PREP, "yes"))
    np.testing.assert_allclose(x, PREP(255 - digits.astype(np.float32)), atol=1e-6)
    (_, x), = list(iter_batches([open_input(tmp_path / "d.npy", PREP, "auto")], PREP, "auto"))
    np.testing.assert_allclose(x, PREP(digits), atol=1e-6)
    np.save(tmp_path / "p.npy", PREP(digits))
    with pytest.raises(DataError, match=r"p\.npy: already preprocessed .* cannot be inverted"):
        open_input(tmp_path / "p.npy", PREP, "yes")


def test_idx_files(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28)).astype(np.uint8)
    for gz in (True, False):
        path = write_idx(tmp_path / f"images{gz}.idx", images, gz=gz)
        source = open_input(path, PREP)
        assert source.kind == "raw" and source.records == 7
        (refs, x), = list(iter_batches([source], PREP))
        assert refs == [(0, i) for i in range(7)] and source.name(6) == f"{path}[6]"
        np.testing.assert_allclose(x, PREP(images))
    labels = write_idx(tmp_path / "labels.idx", np.arange(7, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels\.idx: uint8 array of shape \(7,\) \(expected \(28, 28\)"):
        open_input(labels, PREP)


def test_gzip_that_is_not_idx(tmp_path):
    import gzip

    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"hello world"))
    with pytest.raises(DataError, match=r"x\.gz: gzip file that is not IDX"):
        open_input(path, PREP)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nothing\.png: no such file"):
        open_input(tmp_path / "nothing.png", PREP)


# ----------------------------------------------------------------------------- batching


def test_batches_span_files_in_order(tmp_path):
    Image.fromarray(drawn_digit()).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "c.idx", np.full((4, 28, 28), 9, np.uint8))
    sources = [open_input(tmp_path / n, PREP) for n in ("a.png", "b.npy", "c.idx")]
    batches = list(iter_batches(sources, PREP, batch_size=4))
    assert [len(n) for n, _ in batches] == [4, 4, 2]
    refs = [ref for r, _ in batches for ref in r]
    assert refs == [(0, 0)] + [(1, i) for i in range(5)] + [(2, i) for i in range(4)]
    x = np.concatenate([x for _, x in batches])
    assert x.shape == (10, 1, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[-4:], PREP(np.full((4, 28, 28), 9.0)))


def test_large_array_is_converted_one_batch_at_a_time(tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((10_000, 28, 28), np.uint8))
    source = open_input(tmp_path / "big.npy", PREP)
    sizes = [len(x) for _, x in iter_batches([source], PREP, batch_size=3000)]
    assert sizes == [3000, 3000, 3000, 1000]


def test_model_polarity_from_the_contract(tmp_path):
    from dataclasses import replace

    Image.fromarray(drawn_digit()).save(tmp_path / "a.png")
    dark = replace(PREP, polarity="dark-on-light")
    light_digit = open_input(tmp_path / "a.png", PREP).data[0]
    np.testing.assert_allclose(open_input(tmp_path / "a.png", dark).data[0], 255 - light_digit)
    from lenet_edge.errors import ModelError

    with pytest.raises(ModelError, match="polarity 'sideways'"):
        open_input(tmp_path / "a.png", replace(PREP, polarity="sideways"))
