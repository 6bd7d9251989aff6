"""Serve a built site on loopback with the headers that make the page cross-origin isolated.

WebAssembly threads need SharedArrayBuffer, which a browser gives only to a cross-origin isolated
page: COOP same-origin and COEP require-corp on the page, CORP on what it loads. Browsers also grant
it only in a secure context (https, or http://localhost / 127.0.0.1), so a phone that opens the site
over the network runs on one thread. The server answers GET and HEAD for the site's own files only
(no directory listings, nothing outside the folder), from a bounded pool of threads.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..errors import DataError, OutputError

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CONTENT_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                 ".json": "application/json", ".onnx": "application/octet-stream", ".css": "text/css",
                 ".html": "text/html; charset=utf-8"}
LOOPBACK = "127.0.0.1"
MAX_CONNECTIONS = 16  # requests served at once; more wait in the listen queue


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = CONTENT_TYPES

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")  # a rebuilt site is seen at once
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def list_directory(self, path):  # the site's files only, never a listing
        self.send_error(404, "Not found")
        return None

    def log_message(self, format, *args) -> None:  # quiet: the terminal shows the address, not every request
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, handler):
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        self._slots.acquire()
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


@dataclass
class SiteServer:
    """A running server: `url` to open, `stop()` to end it (also a context manager)."""

    directory: Path
    host: str
    port: int
    _server: _Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        host = LOOPBACK if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}/"

    def wait(self, seconds: float | None = None) -> None:
        self._thread.join(seconds)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> SiteServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(directory: str | Path, host: str = LOOPBACK, port: int = 8000) -> SiteServer:
    """Serve `directory` (a site from build_site) in a background thread; port 0 takes a free port."""
    from .site import SITE_FILE

    directory = Path(directory)
    if not (directory / SITE_FILE).is_file():
        raise DataError(f"{directory}: no {SITE_FILE} (expected a site written by lenet-edge web -o)")
    if not 0 <= port <= 65535:
        raise DataError(f"port {port} (expected 0-65535)")
    try:
        server = _Server((host, port), partial(_SiteHandler, directory=str(directory.resolve())))
    except OSError as exc:
        raise OutputError(f"cannot serve on {host}:{port} ({exc.strerror})") from exc
    thread = threading.Thread(target=server.serve_forever, name="lenet-edge-web", daemon=True)
    thread.start()
    return SiteServer(directory, host, server.server_address[1], server, thread)
