"""The browser as a device: a static site that runs the models with onnxruntime-web (WebAssembly).

`build_site` writes the page, its scripts, the models, onnxruntime-web's runtime files and the
self-check (official test digits with the logits native onnxruntime gives them); `serve` serves a
built site with the headers the threaded WebAssembly build needs. numpy + onnxruntime only.
"""

from .serve import SiteServer, start_server
from .site import SITE_FILE, build_site

__all__ = ["SITE_FILE", "SiteServer", "build_site", "start_server"]
