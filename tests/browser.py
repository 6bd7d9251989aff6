"""Debian's chromium, headless, driven by Playwright for Python, for the tests of lenet-edge web's page.

Missing chromium, Playwright or onnxruntime-web's runtime files fail the tests under CI=true and skip
them elsewhere with one line saying what to install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lenet_edge.errors import DependencyError
from lenet_edge.web.runtime_files import find_runtime

CHROMIUM = os.environ.get("LENET_EDGE_CHROMIUM", "/usr/bin/chromium")
# Without the networking flags chromium keeps trying to reach its services; on a closed network they are refused.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAGE_TIMEOUT_MS = 120_000


def missing(what: str) -> None:
    """Fail under CI (a browser test must never be skipped there), else skip with one clear line."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} (CI=true: the browser tests must run)")
    pytest.skip(what)


def require_runtime() -> None:
    try:
        find_runtime()
    except DependencyError as exc:
        missing(str(exc))


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless chromium (a Playwright Browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed: pip install -e '.[dev]'")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing(f"{CHROMIUM} not found: apt-get install chromium (or set LENET_EDGE_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str):
    """A new page at `url`, its page errors collected in page.errors, once the page has checked itself."""
    page = browser.new_page(viewport={"width": 1000, "height": 1400})
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(url)
    page.wait_for_function("window.lenetEdge && (window.lenetEdge.selfCheck || window.lenetEdge.failed)",
                           timeout=PAGE_TIMEOUT_MS)
    assert page.evaluate("window.lenetEdge.failed") is None
    return page
