"""Where MNIST comes from: --data-dir, else $LENET_EDGE_DATA, else a verified download into
the cache. Downloads are served by a local http.server on 127.0.0.1; nothing leaves the host."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from lenet_edge import mnist_download as datasource
from lenet_edge.cli import cli
from lenet_edge.errors import DataError
from lenet_edge.mnist import load_mnist
from tests.idx_files import synthetic_digits, write_mnist_dir

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


class _Server:
    """A static file server over `root` that records every requested path."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):  # noqa: N802 (http.server's naming)
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, folder: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{folder}/"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def mirror_root(tmp_path, monkeypatch) -> Path:
    """Folders served over HTTP: good/ holds four small MNIST-style .gz files whose md5s
    replace the published ones; corrupt/ holds the same names with one byte changed."""
    for var in PROXY_VARS:  # loopback requests must never go through a proxy
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "www"
    good = write_mnist_dir(root / "good", train=30, test=20)
    corrupt = root / "corrupt"
    corrupt.mkdir()
    md5 = {}
    for name in datasource.MD5:
        blob = (good / name).read_bytes()
        md5[name] = hashlib.md5(blob).hexdigest()
        (corrupt / name).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    monkeypatch.setattr(datasource, "MD5", md5)
    return root


@pytest.fixture
def server(mirror_root):
    s = _Server(mirror_root)
    yield s
    s.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(datasource.ENV_VAR, raising=False)
    return tmp_path / "xdg" / "lenet-edge" / "mnist"


def _no_download(*_args, **_kwargs):
    raise AssertionError("no download expected")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


# --- resolution order ------------------------------------------------------------------------


def test_data_dir_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(datasource.ENV_VAR, str(tmp_path / "from-env"))
    monkeypatch.setattr(datasource, "download_mnist", _no_download)
    assert datasource.resolve_data_dir(tmp_path / "given") == tmp_path / "given"
    assert datasource.resolve_data_dir(str(tmp_path / "given")) == tmp_path / "given"


def test_environment_wins_over_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(datasource.ENV_VAR, str(tmp_path / "from-env"))
    monkeypatch.setattr(datasource, "download_mnist", _no_download)
    assert datasource.resolve_data_dir(None) == tmp_path / "from-env"


def test_relative_paths_resolve_against_the_working_directory_where_they_are_read(tmp_path, monkeypatch):
    """`make test DATA=../shared/...`: a command started later in another directory must see the same data."""
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.setenv(datasource.ENV_VAR, "../mnist")
    monkeypatch.setattr(datasource, "download_mnist", _no_download)
    assert datasource.resolve_data_dir(None) == tmp_path / "project" / ".." / "mnist"
    assert datasource.resolve_data_dir("given").is_absolute()


def test_cache_directory_follows_xdg_cache_home_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasource.cache_dir() == tmp_path / "xdg" / "lenet-edge" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasource.cache_dir() == tmp_path / "home" / ".cache" / "lenet-edge" / "mnist"


def test_without_data_dir_or_environment_the_cache_is_filled_by_download(server, cache, mirror_root):
    resolved = datasource.resolve_data_dir(None, mirrors=(server.url("good"),))
    assert resolved == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(datasource.MD5)  # no temporary files
    for name in datasource.MD5:
        assert (cache / name).read_bytes() == (mirror_root / "good" / name).read_bytes()
    images, labels = load_mnist(resolved, "test")
    expected_images, expected_labels = synthetic_digits(20, 2)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    assert sorted(server.requests) == sorted(f"/good/{name}" for name in datasource.MD5)


def test_a_filled_cache_is_not_downloaded_again(server, cache):
    datasource.resolve_data_dir(None, mirrors=(server.url("good"),))
    first = len(server.requests)
    assert datasource.resolve_data_dir(None, mirrors=(server.url("good"),)) == cache
    assert len(server.requests) == first == 4


def test_a_damaged_cached_file_is_fetched_again(server, cache, mirror_root):
    datasource.download_mnist(cache, mirrors=(server.url("good"),))
    damaged = cache / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"half a file")
    server.requests.clear()
    datasource.download_mnist(cache, mirrors=(server.url("good"),))
    assert server.requests == ["/good/t10k-labels-idx1-ubyte.gz"]
    assert damaged.read_bytes() == (mirror_root / "good" / damaged.name).read_bytes()


# --- download failures -------------------------------------------------------------------------


def test_corrupt_download_is_refused_and_leaves_nothing(server, tmp_path):
    target = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        datasource.download_mnist(target, mirrors=(server.url("corrupt"),))
    message = str(info.value)
    first = next(iter(datasource.MD5))
    assert "\n" not in message
    assert f"{server.url('corrupt')}{first}: md5 " in message
    assert f"(expected {datasource.MD5[first]})" in message
    assert datasource.ENV_VAR in message and "--data-dir" in message
    assert not (target / first).exists()
    assert list(target.iterdir()) == []  # no final file, no temporary file


def test_missing_file_names_every_url_tried(server, tmp_path):
    mirrors = (server.url("absent-a"), server.url("absent-b"))
    with pytest.raises(DataError) as info:
        datasource.download_mnist(tmp_path / "cache", mirrors=mirrors)
    message = str(info.value)
    first = next(iter(datasource.MD5))
    assert "\n" not in message
    assert f"{mirrors[0]}{first}: HTTP 404 " in message
    assert f"{mirrors[1]}{first}: HTTP 404 " in message
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("failing", ["absent", "corrupt", "refused"])
def test_a_failing_mirror_falls_through_to_the_next(server, tmp_path, closed_port_url, failing):
    first = closed_port_url if failing == "refused" else server.url(failing)
    target = tmp_path / "cache"
    datasource.download_mnist(target, mirrors=(first, server.url("good")))
    for name, md5 in datasource.MD5.items():
        assert hashlib.md5((target / name).read_bytes()).hexdigest() == md5
    assert _leftovers(target) == []
    good_requests = [r for r in server.requests if r.startswith("/good/")]
    assert sorted(good_requests) == sorted(f"/good/{name}" for name in datasource.MD5)
    if failing != "refused":
        assert len(server.requests) == 8  # every file was asked of the failing mirror first


def test_unreachable_mirror_is_named_in_the_error(tmp_path, closed_port_url):
    with pytest.raises(DataError) as info:
        datasource.download_mnist(tmp_path / "cache", mirrors=(closed_port_url,))
    assert closed_port_url in str(info.value)
    assert "\n" not in str(info.value)


def test_oversized_download_is_refused(server, tmp_path, monkeypatch):
    monkeypatch.setattr(datasource, "MAX_DOWNLOAD_BYTES", 100)
    with pytest.raises(DataError) as info:
        datasource.download_mnist(tmp_path / "cache", mirrors=(server.url("good"),))
    assert "larger than 100 bytes" in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_cli_downloads_from_the_mirrors_without_data_dir(server, cache, runner, tmp_path, monkeypatch):
    """`lenet-edge train` with no --data-dir and no environment variable goes to the
    mirrors; a corrupt download ends as one `error:` line and exit code 3 (data)."""
    monkeypatch.setattr(datasource, "MIRRORS", (server.url("corrupt"),))
    result = runner.invoke(cli, ["train", "--epochs", "1", "-o", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "md5" in result.stderr and server.url("corrupt") in result.stderr
    assert server.requests == ["/corrupt/train-images-idx3-ubyte.gz"]
    assert not (tmp_path / "m.safetensors").exists()
    assert list(cache.iterdir()) == []
