"""--annotate: each picture with its digits' boxes and labels drawn on it, as a PNG.

pillow only (the device side). The picture is drawn in the grey levels `run` read it
with (lenet_edge.runtime.inputs.decode_image), so what the user sees is what was classified;
pictures smaller than MIN_SIDE pixels are enlarged (nearest neighbour) so that labels
stay legible on a 28x28 scan.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..fileio import check_writable, ensure_directory, write_bytes
from .inputs import decode_image

MIN_SIDE = 256  # pixels: a 28x28 digit is drawn 10x
SURE, UNSURE = (0, 160, 0), (220, 0, 0)  # box colours: green read, red for unsure


def annotation_targets(inputs: list[Path], directory: Path, force: bool) -> dict[str, Path]:
    """Input path (as the records name it) -> DIR/STEM.png, checked before anything is written:
    two inputs may not share a target, an existing one is replaced only with force, and a
    missing DIR must be creatable in an existing directory."""
    targets: dict[str, Path] = {}
    owners: dict[Path, Path] = {}
    for path in map(Path, inputs):
        target = Path(directory) / f"{path.stem}.png"
        if target in owners and owners[target] != path:
            raise OutputError(f"{target}: would annotate both {owners[target]} and {path} "
                              f"(expected inputs with distinct file names)")
        owners[target] = path
        targets[str(path)] = target
    if Path(directory).is_dir():
        for target in owners:
            check_writable(target, force)
    else:  # created with the first picture, so that a run refused later leaves nothing behind
        check_writable(Path(directory), force)
    return targets


def write_annotation(record: dict, target: Path, replace: bool = False) -> None:
    """Draw the record's digits on its picture: box and label, green, or red with "?" when unsure."""
    from PIL import Image, ImageDraw, ImageFont

    grey = decode_image(Path(record["input"])).clip(0, 255).round().astype(np.uint8)  # (H, W)
    scale = max(1, math.ceil(MIN_SIDE / min(grey.shape)))
    image = Image.fromarray(grey).convert("RGB")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    line = max(2, round(min(image.size) / 150))
    for digit in record["digits"]:
        left, top, right, bottom = (v * scale for v in digit["box"])
        colour = UNSURE if digit["unsure"] else SURE
        draw.rectangle((left - line, top - line, right - 1 + line, bottom - 1 + line), outline=colour, width=line)
        font = ImageFont.load_default(size=max(12, round((bottom - top) / 4)))
        text = digit["label"] + ("?" if digit["unsure"] else "")
        x, y = left - line, top - line
        width, height = draw.textbbox((0, 0), text, font=font)[2:]
        y = y - height - line if y - height - line >= 0 else bottom + line  # above the box, else below
        draw.rectangle((x, y, x + width + 2 * line, y + height + line), fill=colour)
        draw.text((x + line, y), text, fill=(255, 255, 255), font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    ensure_directory(target)
    # the user's pictures: no manifest beside them
    write_bytes(target, buffer.getvalue(), record=False, replace=replace)
