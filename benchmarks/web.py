"""The browser against this host, in one session: `lenet-edge bench` natively, then the page of `lenet-edge web`
in headless chromium (its self-check and its bench), both on the same models, batch sizes and thread counts.
It prints figures; it is not a test.

    python benchmarks/web.py MODEL.int8.onnx MODEL.onnx [--out DIR] [--runs 200]

Both benches time the packaged official test digits at batch 1 and 64, with 1 thread and 2 (the page's
second thread count is min(4, navigator.hardwareConcurrency) when it is cross-origin isolated); the models
are labelled int8 and fp32 in both reports. Printed: the self-check's figures, each row's p50 and mean in
both places, int8/fp32 in each, browser/native per row, and `lenet-edge compare`'s table. DIR keeps
host.json, browser.json and the site (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import PAGE_TIMEOUT_MS, chromium, open_page  # noqa: E402  (the tests' own browser set-up)

LABELS = ("int8", "fp32")


def lenet_edge(*args: str) -> str:
    command = [sys.executable, "-c", "from lenet_edge.cli import main; main()", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"lenet-edge {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def page_bench(site: Path) -> tuple[dict, dict]:
    from lenet_edge.web.serve import start_server

    with start_server(site, port=0) as server, chromium() as browser:
        page = open_page(browser, server.url)
        check = page.evaluate("window.lenetEdge.selfCheck")
        page.click("#bench")
        page.wait_for_function("window.lenetEdge.benchReport || window.lenetEdge.message", timeout=10 * PAGE_TIMEOUT_MS)
        if page.evaluate("window.lenetEdge.message"):
            sys.exit(f"the page's bench failed: {page.evaluate('window.lenetEdge.message')}")
        return check, page.evaluate("window.lenetEdge.benchReport")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("int8", type=Path)
    parser.add_argument("fp32", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="lenet-edge-web-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    host_json, browser_json, site = out / "host.json", out / "browser.json", out / "site"

    print(f"native: lenet-edge bench -> {host_json}", flush=True)
    lenet_edge("bench", str(args.int8), str(args.fp32), "--label", LABELS[0], "--label", LABELS[1],
               "--batch-sizes", "1,64", "--threads", "1,2", "--runs", str(args.runs), "-o", str(host_json), "--force")
    print(f"browser: lenet-edge web -> {site}, headless chromium", flush=True)
    lenet_edge("web", str(args.int8), str(args.fp32), "--label", LABELS[0], "--label", LABELS[1],
               "-o", str(site), "--force")
    check, report = page_bench(site)
    browser_json.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nself-check: {'passed' if check['passed'] else 'FAILED'} on {check['images']} official test digits")
    for m in check["models"]:
        print(f"  {m['label']:5} ({m['rule']}): {m['bit_identical']}/{check['images']} bit-identical, "
              f"max |diff| {m['max_abs_diff']:.2e}, argmax {m['argmax_agree']}/{check['images']}, "
              f"accuracy {m['accuracy']:.2%}")
    host = json.loads(host_json.read_text())
    rows = {(where, r["model"], r["batch_size"], r["threads"]): r["latency_ms"]
            for where, rep in (("native", host), ("browser", report)) for r in rep["rows"]}
    print(f"\n{report['environment']['versions']['browser']}; "
          + "; ".join(report["environment"]["execution"]["evidence"][1:]))
    native = host["environment"]
    print(f"native: {native['cpu']['model']}, onnxruntime {native['versions']['onnxruntime']}")
    print("\np50 ms per call (mean)       native            browser          int8/fp32 native  browser"
          "   browser/native")
    for threads in sorted({t for (_, _, _, t) in rows}):
        for batch in (1, 64):
            for label in LABELS:
                n, b = rows.get(("native", label, batch, threads)), rows.get(("browser", label, batch, threads))
                if n is None or b is None:
                    continue
                ratio = ""
                if label == "int8":
                    nf, bf = rows[("native", "fp32", batch, threads)], rows[("browser", "fp32", batch, threads)]
                    ratio = f"{n['p50'] / nf['p50']:.2f}  {b['p50'] / bf['p50']:.2f}"
                print(f"{label:5} batch {batch:>2} {threads} thr   {n['p50']:8.4f} ({n['mean']:.4f})  "
                      f"{b['p50']:8.4f} ({b['mean']:.4f})   {ratio:>16}   {b['p50'] / n['p50']:6.2f}x")
    print("\n" + lenet_edge("compare", str(host_json), str(browser_json)))


if __name__ == "__main__":
    main()
