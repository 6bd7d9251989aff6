"""ORT-format conversion for minimal onnxruntime builds (mobile and embedded devices).

Uses onnxruntime's own converter (onnxruntime.tools.convert_onnx_models_to_ort) with its
defaults: 'Fixed' optimisation style at level 'all', the x86-only NCHWc layout excluded,
so the .ort file runs on ARM as well. Beside it goes the required-operators configuration
that a minimal build takes through `build.sh --minimal_build --include_ops_by_config`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ValidationError, first_line

CONFIG_SUFFIX = ".required_operators.config"


@dataclass(frozen=True)
class OrtArtefacts:
    model: bytes  # the .ort flatbuffer
    config: str  # the required-operators configuration, one line per opset domain and version


def ort_paths(onnx_path: Path) -> tuple[Path, Path]:
    """model.onnx -> (model.ort, model.required_operators.config), as onnxruntime's converter names them."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_suffix(".ort"), onnx_path.with_suffix(CONFIG_SUFFIX)


def convert_to_ort(onnx_path: Path, workdir: Path, source: str, final_name: str) -> tuple[OrtArtefacts, Path]:
    """Convert a validated .onnx file; returns the artefacts and the .ort file's path in workdir.

    final_name is the .ort file's name once written, for the config's 'generated from' header.
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # it logs each config at INFO
    out_dir = Path(tempfile.mkdtemp(prefix="ort.", dir=workdir))
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # the converter prints its progress
            convert_onnx_models_to_ort(Path(onnx_path), output_dir=out_dir,
                                       optimization_styles=[OptimizationStyle.Fixed])
    except Exception as exc:  # onnxruntime raises untyped errors
        raise ValidationError(f"{source}: ORT-format conversion failed ({first_line(exc)}); "
                              "nothing was written") from exc
    ort_file, config_file = ort_paths(out_dir / Path(onnx_path).name)
    if not ort_file.is_file() or not config_file.is_file():
        raise ValidationError(f"{source}: onnxruntime's converter wrote {sorted(p.name for p in out_dir.iterdir())} "
                              f"(expected {ort_file.name} and {config_file.name}); nothing was written")
    # The header names the converted file by its temporary path; name the file that ships instead.
    config = "".join(f"# - {final_name}\n" if line.startswith("# - ") else line
                     for line in config_file.read_text("utf-8").splitlines(keepends=True))
    return OrtArtefacts(ort_file.read_bytes(), config), ort_file
