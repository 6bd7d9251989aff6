"""lenet-edge web without a browser: what the site holds, what it refuses, and the server's headers."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lenet_edge.cli import cli
from lenet_edge.errors import DataError, OutputError
from lenet_edge.mnist import load_bench_digits
from lenet_edge.runtime import inputs, segment
from lenet_edge.runtime.predict import UNSURE_BELOW
from lenet_edge.runtime.session import load_model
from lenet_edge.web.runtime_files import ENV_VAR, RUNTIME_FILES, find_runtime
from lenet_edge.web.serve import ISOLATION_HEADERS, start_server

from ..browser import require_runtime
from ..web_models import tiny_pair


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_pair(tmp_path_factory.mktemp("web-models"))


@pytest.fixture(scope="module")
def site(models, tmp_path_factory) -> Path:
    require_runtime()
    out = tmp_path_factory.mktemp("web-site") / "site"
    result = _web(models[0], models[1], "-o", out)
    assert result.exit_code == 0, result.output
    return out


def _web(*args, env=None):
    from click.testing import CliRunner

    return CliRunner(env=env).invoke(cli, ["web", *map(str, args)])


def test_site_holds_page_models_runtime_and_the_host_logits(site, models):
    assert sorted(p.name for p in (site / "ort").iterdir()) == sorted(RUNTIME_FILES)
    assert sorted(p.name for p in (site / "models").iterdir()) == ["tiny.int8.onnx", "tiny.onnx"]
    assert (site / "index.html").read_text().count('type="module"') == 1
    record = json.loads((site / "site.json").read_text())
    assert [(m["label"], m["precision"]) for m in record["models"]] == [("tiny.int8", "int8"), ("tiny", "fp32")]
    assert record["rules"] == {"unsure_below": UNSURE_BELOW, "max_image_file_bytes": inputs.MAX_IMAGE_FILE_BYTES,
                               "max_image_pixels": inputs.MAX_IMAGE_PIXELS, "min_contrast": inputs.MIN_CONTRAST,
                               "ink_threshold": inputs.INK_THRESHOLD, "border_fraction": inputs.BORDER_FRACTION,
                               "wide_aspect": segment.WIDE_ASPECT}
    check = json.loads((site / "selfcheck.json").read_text())
    images, labels, _ = load_bench_digits()
    assert check["count"] == len(images) >= 512 and check["labels"] == labels.tolist()
    assert np.array_equal(np.frombuffer(base64.b64decode(check["images"]), np.uint8).reshape(images.shape), images)
    for path in models:
        model = load_model(path)
        expected = model.predict(model.contract.preprocessing(images))
        got = np.frombuffer(base64.b64decode(check["logits"][path.stem]), "<f4").reshape(expected.shape)
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_an_existing_site_is_replaced_only_with_force(site, models):
    before = (site / "site.json").read_bytes()
    result = _web(models[0], "-o", site)
    assert result.exit_code == 6 and "already exists" in result.output and "--force" in result.output
    assert (site / "models" / "tiny.onnx").is_file()  # untouched
    result = _web(models[0], "-o", site, "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (site / "models").iterdir()) == ["tiny.int8.onnx"]
    assert json.loads((site / "site.json").read_text())["models"][0]["label"] == "tiny.int8"
    assert (site / "site.json").read_bytes() != before
    assert not [p for p in site.parent.iterdir() if p.name.startswith(".")]  # no staging left beside it


@pytest.mark.parametrize("order, message", [
    ("fp32-first", "an fp32 model (expected the int8 model"),
    ("int8-second", "an int8 model (expected the fp32 model"),
])
def test_models_in_the_wrong_roles_are_refused_before_writing(models, tmp_path, order, message):
    require_runtime()
    args = (models[1],) if order == "fp32-first" else (models[0], models[0])
    result = _web(*args, "-o", tmp_path / "site")
    assert result.exit_code == 4 and message in result.output
    assert not (tmp_path / "site").exists()


def test_not_a_model_is_refused(tmp_path):
    require_runtime()
    bad = tmp_path / "bad.int8.onnx"
    bad.write_bytes(b"not onnx")
    result = _web(bad, "-o", tmp_path / "site")
    assert result.exit_code == 4 and result.output.count("\n") == 1
    assert not (tmp_path / "site").exists()


def test_output_that_is_a_file_or_in_a_missing_directory_is_refused(models, tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is a file" in _web(models[0], "-o", tmp_path / "file").output
    result = _web(models[0], "-o", tmp_path / "no" / "site")
    assert result.exit_code == 6 and "does not exist" in result.output


def test_missing_runtime_files_are_one_dependency_error_saying_how_to_get_them(models, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, env in (((models[0], "-o", tmp_path / "s", "--onnxruntime-web", empty), None),
                      ((models[0], "-o", tmp_path / "s"), {ENV_VAR: str(empty)})):
        result = _web(*args, env=env)
        assert result.exit_code == 7, result.output
        assert result.output.count("\n") == 1 and "npm ci" in result.output and "ort.wasm.min.mjs" in result.output
        assert not (tmp_path / "s").exists()


def test_runtime_folder_may_be_the_package_or_its_dist(tmp_path):
    require_runtime()
    dist = find_runtime().dist
    package = tmp_path / "onnxruntime-web"
    (package / "dist").mkdir(parents=True)
    for name in RUNTIME_FILES:
        (package / "dist" / name).symlink_to(dist / name)
    (package / "package.json").write_text(json.dumps({"name": "onnxruntime-web", "version": "9.9.9"}))
    assert find_runtime(package).version == find_runtime(package / "dist").version == "9.9.9"
    (package / "dist" / RUNTIME_FILES[2]).unlink()
    with pytest.raises(Exception, match="ort-wasm-simd-threaded.wasm"):
        find_runtime(package)


def test_web_without_models_or_serve_is_a_usage_error(tmp_path, models):
    assert _web().exit_code == 2
    assert _web(models[0]).exit_code == 2  # no -o
    assert _web(models[0], models[1], models[1], "-o", tmp_path / "s").exit_code == 2


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, response.read()  # names case-insensitive
    except urllib.error.HTTPError as error:
        return error.code, error.headers, b""


def test_server_sends_isolation_headers_and_only_the_sites_files(site):
    with start_server(site, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, headers, body = _get(server.url)
        assert status == 200 and b"lenet-edge" in body
        for name, value in ISOLATION_HEADERS.items():
            assert headers[name] == value
        status, headers, body = _get(server.url + "ort/ort-wasm-simd-threaded.wasm")
        assert status == 200 and headers["Content-Type"] == "application/wasm" and body[:4] == b"\0asm"
        assert _get(server.url + "ort/ort.wasm.min.mjs")[1]["Content-Type"] == "text/javascript"
        assert _get(server.url + "models/")[0] == 404  # no listing
        assert _get(server.url + "%2e%2e/%2e%2e/etc/passwd")[0] == 404
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)


def test_server_refuses_a_folder_that_is_not_a_site_a_bad_port_and_a_taken_one(tmp_path, site):
    with pytest.raises(DataError, match="no site.json"):
        start_server(tmp_path, port=0)
    with pytest.raises(DataError, match="port 70000"):
        start_server(site, port=70000)
    with start_server(site, port=0) as first:
        with pytest.raises(OutputError, match=f"cannot serve on 127.0.0.1:{first.port}"):
            start_server(site, port=first.port)


def test_serving_to_the_network_warns_in_one_line(site):
    process = subprocess.Popen([sys.executable, "-c", "from lenet_edge.cli import main; main()", "web", "--serve",
                                str(site), "--host", "0.0.0.0", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        warning = process.stderr.readline()
        serving = process.stdout.readline()
    finally:
        process.terminate()  # SIGTERM stops it as Ctrl-C does
        process.wait(timeout=10)
    assert process.returncode == 0 and process.stdout.read() == "stopped\n"
    assert warning.startswith("warning: serving to the network on 0.0.0.0:")
    assert "serving" in serving and "http://127.0.0.1:" in serving


def test_labels_name_the_models_as_a_bench_report_does(models, tmp_path):
    require_runtime()
    result = _web(*models, "-o", tmp_path / "s", "--label", "int8", "--label", "fp32")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "s" / "site.json").read_text())
    assert [m["label"] for m in record["models"]] == ["int8", "fp32"]
    assert set(json.loads((tmp_path / "s" / "selfcheck.json").read_text())["logits"]) == {"int8", "fp32"}
    for labels in (("int8",), ("same", "same"), ("", "fp32")):
        result = _web(*models, "-o", tmp_path / "t", *[a for label in labels for a in ("--label", label)])
        assert result.exit_code == 3 and "label" in result.output and not (tmp_path / "t").exists()


def test_a_missing_browser_fails_under_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    from .. import browser

    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-chromium not found.*CI=true"):
        with browser.chromium():
            pass
    monkeypatch.setenv(ENV_VAR, str(tmp_path))  # no runtime files there
    with pytest.raises(pytest.fail.Exception, match="runtime files missing"):
        browser.require_runtime()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-chromium not found"):
        with browser.chromium():
            pass


def test_two_models_of_one_file_name_are_refused(models, tmp_path):
    require_runtime()
    (tmp_path / "other").mkdir()
    same_name = shutil.copyfile(models[1], tmp_path / "other" / models[0].name)  # the fp32 model, the int8's name
    result = _web(models[0], same_name, "-o", tmp_path / "s")
    assert result.exit_code == 4 and "same file name" in result.output
    assert not (tmp_path / "s").exists()
