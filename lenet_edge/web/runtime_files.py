"""Where onnxruntime-web's runtime files are: the npm package, pinned in the repository's web/package.json.

A folder named by the user (--onnxruntime-web), else $LENET_EDGE_ORT_WEB, else the repository's own
`web/node_modules/onnxruntime-web/dist` (made by `npm ci` in `web/`). Either the package folder or its
`dist` folder will do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DependencyError

ENV_VAR = "LENET_EDGE_ORT_WEB"
# The WASM-only bundle (ort.min.mjs would load the JSEP build, which is not copied) and the build it loads.
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
REPOSITORY_DIST = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "onnxruntime-web" / "dist"
HOW_TO_GET = ("run `npm ci` in the repository's web/ folder, or `npm install onnxruntime-web@1.31.1` anywhere "
              f"and pass its folder with --onnxruntime-web or ${ENV_VAR}")


@dataclass(frozen=True)
class OrtWeb:
    """The folder holding RUNTIME_FILES and the package version (\"unknown\" without its package.json)."""

    dist: Path
    version: str

    def files(self) -> list[Path]:
        return [self.dist / name for name in RUNTIME_FILES]


def find_runtime(folder: str | Path | None = None) -> OrtWeb:
    """The runtime files, or a DependencyError saying where they were looked for and how to get them."""
    if folder is not None:
        where, origin = Path(folder), "--onnxruntime-web"
    elif os.environ.get(ENV_VAR):
        where, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        where, origin = REPOSITORY_DIST, "the repository's web/node_modules"
    dist = where / "dist" if (where / "dist" / RUNTIME_FILES[0]).is_file() else where
    missing = [name for name in RUNTIME_FILES if not (dist / name).is_file()]
    if missing:
        raise DependencyError(f"{dist}: onnxruntime-web runtime files missing ({', '.join(missing)}; looked in "
                              f"{origin}); {HOW_TO_GET}")
    return OrtWeb(dist, _version(dist.parent / "package.json"))


def _version(package_json: Path) -> str:
    try:
        package = json.loads(package_json.read_text("utf-8"))
    except (OSError, ValueError):
        return "unknown"
    return str(package.get("version", "unknown")) if package.get("name") == "onnxruntime-web" else "unknown"
