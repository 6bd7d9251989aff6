"""lenet-edge web's page in a real browser (Debian's chromium, headless): the self-check, a digit read as `run`
reads it, the bench report in compare, bad input. A small model quantized here; the trained model in the
integration test at the end."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lenet_edge.bench.compare import compare, load_report
from lenet_edge.cli import cli
from lenet_edge.mnist import load_bench_digits
from lenet_edge.runtime.inputs import MAX_IMAGE_FILE_BYTES
from lenet_edge.web.serve import start_server
from lenet_edge.web.site import build_site

from ..browser import chromium, open_page, require_runtime
from ..pictures import image_digit, number_photo
from ..web_models import tiny_pair

GREY_LEVEL_TOLERANCE = 1.0  # page vs run, per pixel of the 28x28 digit
SCREENSHOT_ENV = "LENET_EDGE_WEB_SCREENSHOT"  # also save the page's screenshot there (the README's docs/web.png)


@pytest.fixture(scope="module")
def browser():
    require_runtime()
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_pair(tmp_path_factory.mktemp("web-browser-models"))


@pytest.fixture(scope="module")
def tiny_site(tiny, tmp_path_factory, browser) -> Path:
    out = tmp_path_factory.mktemp("web-browser") / "site"
    build_site(tiny[0], out, tiny[1])
    return out


@pytest.fixture(scope="module")
def served(tiny_site):
    with start_server(tiny_site, port=0) as server:
        yield server


def _run_reading(model: Path, picture: Path) -> dict:
    """`lenet-edge run --format json`'s record of one picture."""
    result = CliRunner().invoke(cli, ["run", str(model), str(picture), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]


def _run_label(model: Path, picture: Path) -> str:
    return _run_reading(model, picture)["label"]


def _pictures(directory: Path) -> list[Path]:
    """Test digits as a user would photograph or save them: photo-like RGB (small and large enough for
    Pillow's reduce before Lanczos), an 8-bit grey PNG of the raw digit, a transparent PNG of ink only."""
    images, _, _ = load_bench_digits()
    rng = np.random.default_rng(5)
    paths = []
    for k, (index, scale) in enumerate([(0, 4), (1, 12), (2, 7), (7, 3)]):
        path = directory / f"photo{k}.png"
        Image.fromarray(number_photo(images[index:index + 1], rng, scale=scale)).save(path)
        paths.append(path)
    Image.fromarray(images[3]).save(directory / "grey.png")
    rgba = np.zeros((28 * 5, 28 * 5, 4), np.uint8)
    rgba[..., 3] = np.kron(images[4], np.ones((5, 5), np.uint8))  # black ink, alpha = the digit
    Image.fromarray(rgba, "RGBA").save(directory / "transparent.png")
    # two touching digits: one piece of ink, which run reads as one digit flagged wide, and so does the page
    Image.fromarray(number_photo(images[[3, 10]], rng, scale=4, overlap=8)).save(directory / "touching.png")  # 0 0
    return paths + [directory / "grey.png", directory / "transparent.png", directory / "touching.png"]


def _page_reading(page, picture: Path) -> dict:
    page.evaluate("window.lenetEdge.result = null")
    page.set_input_files("#open", str(picture))
    page.wait_for_function("window.lenetEdge.result || window.lenetEdge.message", timeout=30_000)
    assert page.evaluate("window.lenetEdge.message") == ""
    return page.evaluate("window.lenetEdge.result")


def test_self_check_passes_on_512_digits_int8_bit_identical(browser, served):
    page = open_page(browser, served.url)
    check = page.evaluate("window.lenetEdge.selfCheck")
    assert check["passed"] and check["images"] >= 512
    int8, fp32 = check["models"]
    assert (int8["precision"], int8["bit_identical"], int8["max_abs_diff"]) == ("int8", check["images"], 0)
    assert fp32["precision"] == "fp32" and fp32["max_abs_diff"] <= 1e-4 and fp32["argmax_agree"] == check["images"]
    assert page.evaluate("crossOriginIsolated") is True
    assert "passed" in page.inner_text("#selfcheck") and not page.errors


def test_one_ulp_off_in_one_expected_logit_fails_the_self_check(browser, tiny_site, tmp_path):
    planted = tmp_path / "site"
    shutil.copytree(tiny_site, planted)
    check = json.loads((planted / "selfcheck.json").read_text())
    logits = np.frombuffer(base64.b64decode(check["logits"]["tiny.int8"]), "<f4").copy()
    k = 10 * 37 + 4  # digit 37, class 4
    logits[k] = np.nextafter(logits[k], np.float32(np.inf))  # one ulp up
    check["logits"]["tiny.int8"] = base64.b64encode(logits.tobytes()).decode()
    (planted / "selfcheck.json").write_text(json.dumps(check))
    with start_server(planted, port=0) as server:
        page = open_page(browser, server.url)
        result = page.evaluate("window.lenetEdge.selfCheck")
    assert result["passed"] is False
    int8, fp32 = result["models"]
    assert (int8["passed"], int8["bit_identical"], int8["first_mismatch"]) == (False, result["images"] - 1, 37)
    assert fp32["passed"] is True
    assert "FAILED" in page.inner_text("#selfcheck")


def test_pictures_give_the_digit_and_label_run_gives(browser, served, tiny, tmp_path):
    page = open_page(browser, served.url)
    worst = 0.0
    for picture in _pictures(tmp_path):
        reading = _page_reading(page, picture)
        digit = np.asarray(reading["digit"], np.float32).reshape(28, 28)
        expected = image_digit(picture)
        worst = max(worst, float(np.abs(digit - expected).max()))
        assert np.abs(digit - expected).max() <= GREY_LEVEL_TOLERANCE, picture.name
        expected_reading = _run_reading(tiny[0], picture)
        assert (reading["label"], reading["unsure"]) == (expected_reading["label"], expected_reading["unsure"])
        assert ("wide" in reading["doubts"]) == (picture.name == "touching.png"), picture.name
        assert [m["label"] for m in reading["models"]] == ["tiny.int8", "tiny"]
    print(f"largest page-vs-run difference: {worst:.2e} grey levels")  # shown with -s
    assert not page.errors


def test_a_digit_drawn_with_the_pointer_reads_as_run_reads_the_drawing(browser, served, tiny, tmp_path):
    page = open_page(browser, served.url)
    box = page.locator("#pad").bounding_box()
    stroke = [(0.55, 0.15), (0.5, 0.4), (0.47, 0.6), (0.45, 0.85)]  # a slanted 1
    page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
    page.mouse.down()
    for x, y in stroke[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8)
    page.mouse.up()
    page.wait_for_function("window.lenetEdge.result", timeout=30_000)
    reading = page.evaluate("window.lenetEdge.result")
    drawing = tmp_path / "drawing.png"
    drawing.write_bytes(base64.b64decode(page.evaluate("window.lenetEdge.canvasPNG()").split(",", 1)[1]))
    assert np.abs(np.asarray(reading["digit"], np.float32).reshape(28, 28) - image_digit(drawing)).max() <= 1.0
    assert reading["label"] == _run_label(tiny[0], drawing)
    assert page.inner_text("#label") == reading["label"] and not page.errors


def test_bad_input_gives_a_message_and_the_page_keeps_working(browser, served, tmp_path):
    page = open_page(browser, served.url)
    page.click("#read")  # nothing drawn yet
    assert "canvas is empty" in page.inner_text("#message")
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    page.set_input_files("#open", str(text))
    page.wait_for_function("window.lenetEdge.message.includes('not an image')", timeout=30_000)
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: one byte over run's limit
        f.truncate(MAX_IMAGE_FILE_BYTES + 1)
    page.set_input_files("#open", str(huge))
    page.wait_for_function("window.lenetEdge.message.includes('at most')", timeout=30_000)
    assert f"{MAX_IMAGE_FILE_BYTES + 1} bytes" in page.inner_text("#message")
    blank = tmp_path / "blank.png"
    Image.new("L", (60, 60), 255).save(blank)
    page.set_input_files("#open", str(blank))
    page.wait_for_function("window.lenetEdge.message.includes('no digit found')", timeout=30_000)
    assert page.evaluate("window.lenetEdge.result") is None
    picture = _pictures(tmp_path)[0]
    assert _page_reading(page, picture)["label"] in "0123456789"  # still reads
    assert not page.is_hidden("#result") and page.is_hidden("#message")
    assert not page.errors


def test_a_picture_over_the_pixel_limit_is_refused_by_the_page(browser, tiny_site, tmp_path):
    planted = tmp_path / "site"  # run's limit of 50 megapixels, planted as 1,000 so that the test stays small
    shutil.copytree(tiny_site, planted)
    record = json.loads((planted / "site.json").read_text())
    record["rules"]["max_image_pixels"] = 1000
    (planted / "site.json").write_text(json.dumps(record))
    picture = tmp_path / "big.png"
    Image.new("L", (40, 26), 0).save(picture)  # 1,040 pixels
    with start_server(planted, port=0) as server:
        page = open_page(browser, server.url)
        page.set_input_files("#open", str(picture))
        page.wait_for_function("window.lenetEdge.message.includes('pixels')", timeout=30_000)
        assert "big.png: 40x26 pixels (expected at most 1000 pixels)" in page.inner_text("#message")
        assert not page.errors


def test_bench_report_has_the_bench_schema_and_compare_ranks_it(browser, served, tiny, tmp_path):
    page = open_page(browser, served.url)
    page.click("#bench")
    page.wait_for_function("window.lenetEdge.benchReport || window.lenetEdge.message", timeout=300_000)
    assert page.evaluate("window.lenetEdge.message") == ""
    with page.expect_download() as download:
        page.click("#bench-download")
    browser_json = tmp_path / "browser.json"
    download.value.save_as(browser_json)
    host_json = tmp_path / "host.json"
    result = CliRunner().invoke(cli, ["bench", str(tiny[0]), str(tiny[1]), "--batch-sizes", "1,64", "--threads", "1",
                                      "--runs", "20", "--warmup", "2", "--rounds", "2", "--min-turn-ms", "0",
                                      "-o", str(host_json)])
    assert result.exit_code == 0, result.output
    comparison = compare([load_report(host_json), load_report(browser_json)], ["host", "browser"]).to_json()
    host, web = json.loads(host_json.read_text()), json.loads(browser_json.read_text())  # both as the files hold them
    for key in ("settings", "environment"):
        assert set(host[key]) <= set(web[key]), key
    assert set(host["models"][0]) <= set(web["models"][0]) and set(host["rows"][0]) == set(web["rows"][0])
    assert set(host["rows"][0]["latency_ms"]) == set(web["rows"][0]["latency_ms"])
    assert set(host["rows"][0]["spread"]) == set(web["rows"][0]["spread"])
    assert web["environment"]["execution"]["kind"] == "browser"
    assert web["environment"]["browser"]["wasm_simd"] is True and web["environment"]["browser"]["wasm_threads"]
    threads = web["settings"]["threads"]
    assert threads[0] == 1 and len(threads) == (2 if (os.cpu_count() or 1) > 1 else 1)
    assert {(r["model"], r["batch_size"], r["threads"]) for r in web["rows"]} == {
        (m, b, t) for m in ("tiny.int8", "tiny") for b in (1, 64) for t in threads}
    for model in web["models"]:
        assert model["check"]["images"] == 512 and 0 <= model["check"]["accuracy"] <= 1
    ranked = [row for row in comparison["rows"] if row["threads"] == 1]
    assert len(ranked) == 4 and all(row["ratios"][1] is not None and row["ratios"][1] > 0 for row in ranked)
    shown = CliRunner().invoke(cli, ["compare", str(host_json), str(browser_json)])
    assert shown.exit_code == 0 and "browser" in shown.output and "†" not in shown.output
    assert not page.errors


@pytest.mark.integration
def test_trained_model_in_the_browser(browser, modern_int8_onnx, modern_onnx, tmp_path):
    site = tmp_path / "site"
    build_site(modern_int8_onnx, site, modern_onnx)
    images, labels, _ = load_bench_digits()
    with start_server(site, port=0) as server:
        page = open_page(browser, server.url)
        check = page.evaluate("window.lenetEdge.selfCheck")
        assert check["passed"] and check["images"] >= 512, check
        assert check["models"][0]["accuracy"] > 0.98
        rng = np.random.default_rng(3)
        for index in (0, 11, 18):  # 7, 6, 3
            picture = tmp_path / f"digit{index}.png"
            Image.fromarray(number_photo(images[index:index + 1], rng, scale=6)).save(picture)
            reading = _page_reading(page, picture)
            assert reading["label"] == _run_label(modern_int8_onnx, picture) == str(labels[index])
        page.locator("#result").scroll_into_view_if_needed()
        shot = tmp_path / "web.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])
        assert not page.errors
