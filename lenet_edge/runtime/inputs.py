"""Inputs of `lenet-edge run`: image files, .npy arrays and IDX files, as model inputs.

numpy + pillow only (the device side). The kind of each file is told by its first
bytes, not its name: `\\x93NUMPY` is a .npy array, an IDX header (`00 00 TT NN`, raw
or gzip-compressed) is an IDX file, anything else must be an image Pillow decodes
(PNG, JPEG, BMP, GIF, TIFF, WebP).

Images of any size and mode become a 28x28 MNIST-style digit by the rules MNIST itself
was made with:

1. Grey levels: 8-bit grayscale by ITU-R 601-2 luma (Pillow's `L`); bilevel images map
   to 0/255; 16-bit images are scaled by 255/65535 (32-bit integer images must hold
   16-bit values); palette images use their palette colours. Transparent pixels are
   composited onto a background chosen to contrast with the visible ink: white when
   the visible pixels are dark on average (mean luma < 128), else black. Float images
   are refused. Multi-frame files (GIF, TIFF) use their first frame.
2. Polarity: MNIST digits are light on a dark background. With `--invert auto` the
   image is inverted when its border (the outer 10% on each side) is lighter on average
   than its centre (the middle half), i.e. a dark digit on light paper; `yes` always
   inverts, `no` never does.
3. Background: the background level becomes 0 and the brightest pixel 255; the level is
   the border's median grey plus three times its robust spread (1.4826 x the median
   absolute deviation), so paper texture, sensor noise and uneven lighting vanish while
   a clean black background (MNIST's) stays exactly as it is. An image with less than
   MIN_CONTRAST grey levels above that level holds no digit and is refused.
4. Crop to the digit's bounding box: the pixels brighter than INK_THRESHOLD (a fraction
   of 255), keeping every pixel inside the box.
5. Scale the box so its longer side is 20 pixels, keeping the aspect ratio (Lanczos
   filter, antialiased when shrinking).
6. Place it in a 28x28 field so that its centre of mass is at the field's centre,
   shifted only as far as keeps the box inside the field.

The model's own contract (its metadata) then pads the 28x28 digit to its input size and
normalises it; the 28 and 20 above scale with that input size (side = input_size - 2 * pad).

A picture of several digits (a number) is split into its digits after rule 3 by
lenet_edge.runtime.segment, and each digit goes through rules 4-6 on its own; a picture in which
one digit is found goes through rules 4-6 whole, as above.

Arrays (.npy, header checked, read chunk by chunk and never unpickled) and IDX
files are taken as digits already in MNIST form (light on dark, centred): shape
(28, 28) or (N, 28, 28), any integer or float dtype, finite values in [0, 255]; a float
array whose values all lie in (0, 1] is refused as probably scaled to [0, 1]. A .npy of
shape (N, 1, 32, 32) and dtype float32 is taken as already preprocessed for the model
and passed through unchanged. `--invert yes` inverts raw arrays too (255 - x);
`auto` and `no` leave them as they are.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import tokenize
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..defaults import INVERT_CHOICES
from ..errors import DataError, ModelError, first_line
from ..mnist import Preprocessing, read_idx
from ..reading import check_file
from .segment import Region, find_digits

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
MAX_IMAGE_PIXELS = 50_000_000  # a 50-megapixel photo; more is refused as a decompression bomb
MAX_IMAGE_FILE_BYTES = 64 << 20
MAX_NPY_BYTES = 4 << 30  # read in chunks, so this bounds disk, not memory
MIN_CONTRAST = 8.0  # grey levels between background and the brightest pixel
INK_THRESHOLD = 0.1  # of 255: pixels above it define the digit's bounding box
BORDER_FRACTION = 0.1
LOCAL_MARGIN = 0.5  # of a digit's height: the paper around it that sets its own background level
SCAN_CHUNK = 4096  # records per chunk when checking or converting arrays
NPY_MAGIC = b"\x93NUMPY"
GZIP_MAGIC = b"\x1f\x8b"


# ----------------------------------------------------------------------------- images

def decode_image(path: Path) -> np.ndarray:
    """(H, W) float32 grey levels in [0, 255] of an image file (rule 1)."""
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size > MAX_IMAGE_FILE_BYTES:
        raise DataError(f"{path}: {size} bytes (expected an image file of at most {MAX_IMAGE_FILE_BYTES} bytes)")
    # A corrupt file must give one error line: Pillow's parsers warn through Python's warnings
    # and libtiff prints straight to file descriptor 2, so both are silenced while decoding.
    with warnings.catch_warnings(), _native_stderr_silenced():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=IMAGE_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"{path}: refused as a decompression bomb ({exc})") from exc
        except UnidentifiedImageError as exc:
            raise DataError(f"{path}: not an image, .npy array or IDX file "
                            f"(expected one of {', '.join(IMAGE_FORMATS)}, .npy or IDX)") from exc
        except Exception as exc:  # Pillow's parsers raise OSError, ValueError, struct.error, ... on corrupt headers
            raise DataError(f"{path}: cannot read ({type(exc).__name__}: {first_line(exc)})") from exc
        with image:
            width, height = image.size
            if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: {width}x{height} pixels (expected at least 1 and at most "
                                f"{MAX_IMAGE_PIXELS} pixels; refused as a possible decompression bomb)")
            try:
                image.load()
                return _grey_levels(image, path)
            except DataError:
                raise
            except Exception as exc:  # as above, for the pixel data
                raise DataError(f"{path}: corrupt or truncated {image.format} image "
                                f"({type(exc).__name__}: {first_line(exc)})") from exc


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (C libraries' own messages)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _grey_levels(image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.float32)
    if mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) * (255.0 / 65535.0)
    if mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise DataError(f"{path}: 32-bit integer image with values {values.min()}..{values.max()} "
                            f"(expected 16-bit values 0..65535)")
        return values.astype(np.float32) * (255.0 / 65535.0)
    if mode == "F":
        raise DataError(f"{path}: floating-point image (expected 1-, 8- or 16-bit grey levels or colour)")
    has_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return np.asarray(image.convert("RGB").convert("L"), dtype=np.float32)
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)  # (H, W, 4)
    luma = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
    alpha = rgba[..., 3] / 255.0
    visible = float(alpha.sum())
    ink = float((luma * alpha).sum()) / visible if visible > 0 else 0.0
    background = 255.0 if ink < 128.0 else 0.0  # contrast with the visible ink
    return luma * alpha + background * (1.0 - alpha)


def _border_and_centre(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the outer ring (10% per side, at least 1 px) and of the middle half."""
    h, w = x.shape
    b = max(1, round(BORDER_FRACTION * min(h, w)))
    ring = np.ones_like(x, dtype=bool)
    ring[b:h - b, b:w - b] = False
    centre = x[h // 4:h - h // 4, w // 4:w - w // 4]
    return x[ring], centre if centre.size else x


def light_on_dark(grey: np.ndarray, invert: str) -> np.ndarray:
    """(H, W) grey levels in MNIST's polarity, light ink on a dark background (rule 2)."""
    if invert not in INVERT_CHOICES:
        raise DataError(f"invert must be one of {', '.join(INVERT_CHOICES)} (found {invert!r})")
    x = np.asarray(grey, dtype=np.float32)
    border, centre = _border_and_centre(x)
    return 255.0 - x if invert == "yes" or (invert == "auto" and border.mean() > centre.mean()) else x


def remove_background(x: np.ndarray, path: Path | str = "image") -> np.ndarray:
    """(H, W) light-on-dark grey levels -> ink: the border's level 0, the brightest pixel 255 (rule 3)."""
    border, _ = _border_and_centre(x)
    median = float(np.median(border))
    spread = 1.4826 * float(np.median(np.abs(border - median)))  # robust standard deviation of the paper
    x = np.clip(x - (median + 3.0 * spread), 0.0, None)
    peak = float(x.max())
    if peak < MIN_CONTRAST:
        raise DataError(f"{path}: no digit found (contrast {peak:.1f} grey levels against the background; "
                        f"expected at least {MIN_CONTRAST:.0f}; check --invert)")
    x *= 255.0 / peak
    return x


def centre_digit(x: np.ndarray, side: int = 28, path: Path | str = "image") -> np.ndarray:
    """(H, W) ink scaled to a peak of 255 -> (side, side) float32 digit (rules 4-6)."""
    from PIL import Image

    rows = np.flatnonzero((x > INK_THRESHOLD * 255.0).any(axis=1))
    cols = np.flatnonzero((x > INK_THRESHOLD * 255.0).any(axis=0))
    x = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # the digit's bounding box
    box = round(side * 20 / 28)
    h, w = x.shape
    scale = box / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = Image.fromarray(x, mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=3.0)
    digit = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 255.0)  # (new_h, new_w)
    mass = digit.sum()
    if mass <= 0:
        raise DataError(f"{path}: no digit left after scaling it to {new_w}x{new_h} pixels (expected visible ink)")
    com_r = float((digit.sum(axis=1) * np.arange(new_h)).sum() / mass)
    com_c = float((digit.sum(axis=0) * np.arange(new_w)).sum() / mass)
    centre_px = side / 2  # MNIST puts the centre of mass at pixel index 14 of 28
    top = min(max(round(centre_px - com_r), 0), side - new_h)
    left = min(max(round(centre_px - com_c), 0), side - new_w)
    field = np.zeros((side, side), dtype=np.float32)
    field[top:top + new_h, left:left + new_w] = digit
    return field


# ----------------------------------------------------------------------------- arrays

def _npy_header(path: Path, f) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran_order, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as exc:  # numpy tokenizes the header
        raise DataError(f"{path}: malformed .npy header ({exc})") from exc
    return tuple(shape), bool(fortran_order), np.dtype(dtype), f.tell()


class NpyRecords:
    """The records of a C-order .npy array, read from the file on demand: records[i:j] is an
    ndarray of records i..j-1 (shape (j - i, *shape[1:])).

    Why not a memory map: every page a map touches stays in the process's resident set until
    the map is closed, so reading a 300 MB array through once adds 300 MB to the peak memory;
    reading chunk by chunk keeps it at one chunk whatever the file's size.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int):
        self.path, self.shape, self.dtype, self.offset = path, shape, dtype, offset
        self.ndim = len(shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or not self.shape:
            raise TypeError("NpyRecords supports slices of records only")
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise TypeError("NpyRecords supports contiguous slices only")
        count = max(0, stop - start)
        per_record = int(np.prod(self.shape[1:], dtype=np.int64))
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * per_record * self.dtype.itemsize)
            data = np.fromfile(f, self.dtype, count * per_record)
        if data.size != count * per_record:
            raise DataError(f"{self.path}: ended after {data.size} of {count * per_record} values "
                            f"(changed while being read?)")
        return data.reshape((count, *self.shape[1:]))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole array (for small ones, e.g. one (28, 28) digit)."""
        whole = self[:] if self.shape else np.fromfile(self.path, self.dtype, 1, offset=self.offset).reshape(())
        return whole if dtype is None else whole.astype(dtype)


def read_npy(path: Path) -> NpyRecords | np.ndarray:
    """A .npy array, checked from its header and read chunk by chunk; never unpickled.

    C-order arrays (what np.save writes for ordinary arrays) come back as NpyRecords;
    a Fortran-order array, whose records are not contiguous in the file, memory-mapped.
    """
    with open(path, "rb") as f:
        shape, fortran_order, dtype, offset = _npy_header(path, f)
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "uif":
        what = "Python objects (refused: .npy files are never unpickled)" if dtype.hasobject else f"dtype {dtype}"
        raise DataError(f"{path}: holds {what} (expected an integer or float array)")
    count = int(np.prod(shape, dtype=np.int64))
    expected = offset + count * dtype.itemsize
    size = path.stat().st_size
    if count * dtype.itemsize > MAX_NPY_BYTES:
        raise DataError(f"{path}: {count * dtype.itemsize} bytes of data (expected at most {MAX_NPY_BYTES})")
    if size != expected:
        raise DataError(f"{path}: {size} bytes (expected {expected} for a {dtype} array of shape {shape}); "
                        f"truncated or trailing data")
    if count == 0:
        raise DataError(f"{path}: empty array of shape {shape} (expected at least one image)")
    if not fortran_order or len(shape) < 2:
        return NpyRecords(path, shape, dtype, offset)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a loadable .npy array ({exc})") from exc


def _check_raw_values(path: Path, arr: np.ndarray) -> None:
    """Finite pixel values in [0, 255], scanned in chunks (bounded memory)."""
    low, high = np.inf, -np.inf
    for i in range(0, len(arr), SCAN_CHUNK):
        chunk = np.asarray(arr[i:i + SCAN_CHUNK])
        if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
            bad = i + int(np.argmax(~np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)))
            raise DataError(f"{path}: NaN or Inf in image {bad} (expected finite pixel values in [0, 255])")
        low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
    if low < 0 or high > 255:
        raise DataError(f"{path}: pixel values {low:g}..{high:g} (expected values in [0, 255])")
    if arr.dtype.kind == "f" and 0 < high <= 1.0:
        raise DataError(f"{path}: float pixel values all in [0, {high:g}] (expected [0, 255]; "
                        f"multiply a [0, 1]-scaled array by 255)")


def _check_prepared_values(path: Path, arr: np.ndarray) -> None:
    for i in range(0, len(arr), SCAN_CHUNK):
        chunk = np.asarray(arr[i:i + SCAN_CHUNK])
        if not np.isfinite(chunk).all():
            bad = i + int(np.argmax(~np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)))
            raise DataError(f"{path}: NaN or Inf in input {bad} (expected finite preprocessed values)")


# ----------------------------------------------------------------------------- input files

@dataclass
class InputFile:
    """One checked input file: `records` images, already decoded (images) or mapped (arrays).

    kind is "image" (its digits, left to right, (N, side, side) in model polarity), "raw"
    ((N, side, side) pixels in [0, 255]), "prepared" ((N, 1, size, size) float32 model
    inputs) or "error" (a file that could not be read: no records, `error` says why).
    """

    path: Path
    kind: str
    data: np.ndarray | NpyRecords  # sliced one chunk of records at a time
    single: bool  # one record named by the path alone, not path[i]
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # images: each digit's box
    doubts: list[tuple[str, ...]] = field(default_factory=list)  # images: each digit's "wide", "small"
    error: str = ""

    @property
    def records(self) -> int:
        return len(self.data)

    def name(self, i: int) -> str:
        return str(self.path) if self.single else f"{self.path}[{i}]"


def sniff(path: Path) -> str:
    """'npy', 'idx' or 'image', from the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(2)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip file ({exc}; expected a gzip-compressed IDX file)") from exc
        if inner != b"\0\0":
            raise DataError(f"{path}: gzip file that is not IDX (expected a gzip-compressed IDX file)")
        return "idx"
    if head.startswith(b"\0\0") and len(head) >= 4:
        return "idx"
    return "image"


def open_input(path: str | Path, preprocessing: Preprocessing, invert: str = "auto") -> InputFile:
    """Read and check one input file; images are converted to digits right away."""
    path = Path(path)
    check_file(path, DataError, "an image, .npy or IDX file")
    side = preprocessing.input_size - 2 * preprocessing.pad
    kind = sniff(path)
    if kind == "image":
        return _image_input(path, preprocessing, invert, side)
    arr = read_npy(path) if kind == "npy" else read_idx(path)
    size = preprocessing.input_size
    if kind == "npy" and arr.ndim == 4 and arr.shape[1:] == (1, size, size) and arr.dtype == np.float32:
        if invert == "yes":
            raise DataError(f"{path}: already preprocessed (N, 1, {size}, {size}) float32 input "
                            f"cannot be inverted (expected --invert auto or no)")
        _check_prepared_values(path, arr)
        return InputFile(path, "prepared", arr, single=False)
    if arr.shape == (side, side):
        arr, single = np.asarray(arr)[None], True
    elif arr.ndim == 3 and arr.shape[1:] == (side, side) and len(arr) > 0:
        single = False
    else:
        also = f" or (N, 1, {size}, {size}) float32" if kind == "npy" else ""
        raise DataError(f"{path}: {arr.dtype} array of shape {arr.shape} "
                        f"(expected ({side}, {side}) or (N, {side}, {side}) pixels{also})")
    if arr.dtype.kind not in "uif":
        raise DataError(f"{path}: dtype {arr.dtype} (expected integer or float pixels)")
    _check_raw_values(path, arr)
    return InputFile(path, "raw", arr, single)


def picture_digits(grey: np.ndarray, invert: str, side: int = 28,
                   path: Path | str = "image") -> tuple[np.ndarray, list[Region]]:
    """(H, W) grey levels -> every digit of the picture as (digits, side, side) float32 MNIST-style digits
    (rules 2-6), left to right, and where each was found (lenet_edge.runtime.segment); a picture of one digit is
    taken whole. The one chain from a picture to digits: `run` reads pictures through it."""
    light = light_on_dark(grey, invert)  # (H, W)
    x = remove_background(light, path)
    regions = find_digits(x, INK_THRESHOLD * 255.0)
    if len(regions) == 1:
        return centre_digit(x, side, path)[None], regions
    return np.stack([centre_digit(_local_ink(light, r, path), side, path) for r in regions]), regions


def _image_input(path: Path, preprocessing: Preprocessing, invert: str, side: int) -> InputFile:
    digits, regions = picture_digits(decode_image(path), invert, side, path)  # (digits, side, side)
    doubts = [tuple(name for name, flag in (("wide", r.wide), ("small", r.small)) if flag) for r in regions]
    return InputFile(path, "image", to_model_polarity(digits, preprocessing), single=True,
                     boxes=[r.box for r in regions], doubts=doubts)


def _local_ink(light: np.ndarray, region: Region, path: Path) -> np.ndarray:
    """A digit's ink against the paper around it: rule 3 on a window LOCAL_MARGIN x its height
    wider than its box on each side, cut to its frame (the box with room for strokes too faint
    to have been found), its neighbours' ink blanked out.

    Why: the light changes across a picture of several digits, and one background level for
    all of it thins and cuts the strokes of the digits on the darker side. On 250 photo-like
    pictures of 3 test digits under a light gradient of up to 30 % (as benchmarks/read_numbers.py
    builds them), the int8 model read 98.53 % of the digits right with the picture's level,
    98.80 % with each digit's own, and 99.20 % with no gradient at all. A margin of 0.3 gave
    98.67 %; a frame of 0.2 x the height took in neighbours' strokes (98.40 %).
    """
    left, top, right, bottom = region.frame
    margin = round(LOCAL_MARGIN * (region.box[3] - region.box[1]))
    window_top, window_left = max(0, top - margin), max(0, left - margin)
    window = light[window_top:bottom + margin, window_left:right + margin]
    try:
        local = remove_background(window, path)
    except DataError:  # no contrast left around it: keep the picture's level
        return region.ink
    ink = np.where(region.others, 0.0, local[top - window_top:bottom - window_top,
                                             left - window_left:right - window_left])
    peak = float(ink.max())
    return ink * (255.0 / peak) if peak >= MIN_CONTRAST else region.ink


def failed_input(path: str | Path, error: DataError) -> InputFile:
    """A file that could not be read, kept in its place among the inputs."""
    return InputFile(Path(path), "error", np.zeros((0, 0, 0), np.float32), single=True, error=str(error))


def to_model_polarity(digit: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """Light-on-dark digits as the model's contract wants them."""
    if preprocessing.polarity == "light-on-dark":
        return digit
    if preprocessing.polarity == "dark-on-light":
        return 255.0 - digit
    raise ModelError(f"model contract polarity {preprocessing.polarity!r} "
                     f"(expected 'light-on-dark' or 'dark-on-light')")


def _file_chunks(index: int, source: InputFile, preprocessing: Preprocessing, invert: str,
                 chunk: int) -> Iterator[tuple[list[tuple[int, int]], np.ndarray]]:
    for i in range(0, source.records, chunk):
        part = np.asarray(source.data[i:i + chunk])
        if source.kind != "prepared":
            part = part.astype(np.float32)
            if source.kind == "raw" and invert == "yes":
                part = 255.0 - part
            part = preprocessing(part)  # (n, 1, size, size)
        yield [(index, j) for j in range(i, i + len(part))], part


def iter_batches(sources: list[InputFile], preprocessing: Preprocessing, invert: str = "auto",
                 batch_size: int = 1000) -> Iterator[tuple[list[tuple[int, int]], np.ndarray]]:
    """(refs, model inputs (n, 1, size, size) float32) batches of at most batch_size records;
    refs[k] = (index of the source, index of the record in it) of input k.

    Records of consecutive files share batches, so many small images run together, and a
    large array is converted one batch at a time (bounded memory).
    """
    names: list[str] = []
    parts: list[np.ndarray] = []
    pending = 0
    for index, source in enumerate(sources):
        for chunk_names, x in _file_chunks(index, source, preprocessing, invert, batch_size):
            while len(x):
                take = min(batch_size - pending, len(x))
                names += chunk_names[:take]
                parts.append(x[:take])
                pending += take
                chunk_names, x = chunk_names[take:], x[take:]
                if pending == batch_size:
                    yield names, np.concatenate(parts)
                    names, parts, pending = [], [], 0
    if pending:
        yield names, np.concatenate(parts)
