"""bench, its report and Markdown, and compare: structure and honesty, on hermetic models."""

from __future__ import annotations

import json
import math
import socket
import sys

import numpy as np
import pytest

from lenet_edge.bench import timing as bench_module
from lenet_edge.bench.compare import compare as compare_reports
from lenet_edge.bench.compare import format_compare_markdown, load_report
from lenet_edge.bench.markdown import format_markdown as format_report
from lenet_edge.bench.markdown import write_bench_outputs
from lenet_edge.bench.ratio import beyond_spread, latency_ratio
from lenet_edge.bench.records import BenchReport
from lenet_edge.bench.timing import bench
from lenet_edge.cli import cli
from lenet_edge.errors import DataError, DependencyError
from tests.bench_reports import bench_report, bench_row
from tests.idx_files import write_mnist_dir
from tests.runtime_models import band_model, random_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = dict(runs=4, warmup=1, rounds=2, min_turn_ms=0)  # exactly `runs` calls per row


def run_bench(*args, **kwargs) -> dict:
    """bench's report in its JSON form: the schema a file holds."""
    return bench(*args, **kwargs).to_json()


def format_markdown(report: dict, baseline: str | None = None) -> str:
    return format_report(BenchReport.from_json(report, "test"), baseline)


def compare(reports: list[dict], names=None):
    return compare_reports([BenchReport.from_json(r, "test") for r in reports], names)


@pytest.fixture
def models(tmp_path):
    return {"band": band_model(tmp_path / "band.onnx"), "noise": random_model(tmp_path / "noise.onnx")}


@pytest.fixture
def data_dir(tmp_path):
    return write_mnist_dir(tmp_path / "mnist", train=10, test=40)


def _check_rows(report: dict, labels: list[str], batch_sizes: list[int], threads: list[int]) -> None:
    keys = [(r["model"], r["batch_size"], r["threads"]) for r in report["rows"]]
    assert sorted(keys) == sorted((m, b, t) for m in labels for b in batch_sizes for t in threads)
    for row in report["rows"]:
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"]
        assert row["throughput_ips"] == pytest.approx(row["batch_size"] * 1000 / lat["mean"])
        spread = row["spread"]
        assert spread["rounds"] == len(spread["round_means_ms"]) == report["settings"]["rounds"]
        # the overall mean is the run-weighted mean of the round means
        assert min(spread["round_means_ms"]) <= lat["mean"] <= max(spread["round_means_ms"])
        assert spread["round_cv"] >= 0 and spread["p90_over_p50"] >= 1
        assert len(spread["round_p50s_ms"]) == spread["rounds"]  # each round's median lies among the timings
        assert all(lat["min"] <= p50 <= lat["max"] for p50 in spread["round_p50s_ms"])
        assert row["runs"] >= report["settings"]["runs"]  # more where turns of min_turn_ms need them
        if report["settings"]["min_turn_ms"] == 0:
            assert row["runs"] == report["settings"]["runs"]


def test_bench_report_structure(models, data_dir):
    calls = []
    report = run_bench(models, [1, 3], [1, 2], data_dir=data_dir, progress=lambda *a: calls.append(a), **FAST)
    assert report["schema"] == "lenet-edge-bench" and report["version"] == 1
    _check_rows(report, ["band", "noise"], [1, 3], [1, 2])
    assert [m["label"] for m in report["models"]] == ["band", "noise"]
    band, noise = report["models"]
    assert band["check"] == {"images": 40, "accuracy": 1.0}  # the band model reads the synthetic digits
    assert band["kind"] == "onnxruntime" and band["precision"] == "fp32" and band["file"] == "band.onnx"
    assert len(band["sha256"]) == 64 and band["bytes"] == models["band"].stat().st_size
    env = report["environment"]
    assert env["cpu"]["model"] and env["cpu"]["logical_cores"] >= 1
    assert set(env["cpu"]["int8_dot_product"]) <= set(env["cpu"]["flags"])
    assert {"python", "numpy", "onnxruntime", "lenet-edge"} <= set(env["versions"])
    assert "torch" not in env["versions"]
    assert report["settings"]["batch_sizes"] == [1, 3] and report["settings"]["threads"] == [1, 2]
    # progress: one step per (threads, batch, round, model), ending at total
    total = 2 * 2 * 2 * 2
    assert calls[-1][:2] == (total, total) and [c[0] for c in calls[:-1]] == list(range(total))
    assert socket.gethostname() not in json.dumps(report)


def test_bench_repeats_images_for_a_batch_larger_than_the_test_set(models, data_dir):
    report = run_bench({"band": models["band"]}, [100], [1], data_dir=data_dir, **FAST)
    assert report["settings"]["inputs"]["images"] == 100 and report["settings"]["inputs"]["distinct_images"] == 40
    _check_rows(report, ["band"], [100], [1])


def test_bench_uses_each_models_own_preprocessing(tmp_path, data_dir):
    from lenet_edge.mnist import CLASSIC_PREPROCESSING

    models = {"modern": band_model(tmp_path / "m.onnx"),
              "classic": band_model(tmp_path / "c.onnx", CLASSIC_PREPROCESSING, variant="lenet5")}
    report = run_bench(models, [2], [1], data_dir=data_dir, **FAST)
    assert [m["check"]["accuracy"] for m in report["models"]] == [1.0, 1.0]


@pytest.mark.parametrize("kwargs,message", [
    (dict(batch_sizes=[0]), "batch size must be an integer between 1 and 65536 (found 0)"),
    (dict(batch_sizes=[-3]), "found -3"),
    (dict(batch_sizes=[100_000]), "found 100000"),
    (dict(batch_sizes=[]), "no batch sizes given"),
    (dict(batch_sizes=[4, 4]), "list a value twice"),
    (dict(threads=[0]), "threads must be an integer between 1 and 1024 (found 0)"),
    (dict(runs=1), "runs must be between 2 and"),
    (dict(rounds=1), "rounds must be between 2 and runs=4"),
    (dict(rounds=5), "rounds must be between 2 and runs=4"),
    (dict(warmup=-1), "warmup must be between 0 and"),
    (dict(min_turn_ms=-1), "min_turn_ms must be between 0 and 60000 (found -1)"),
    (dict(min_turn_ms=float("nan")), "min_turn_ms must be between 0 and 60000 (found nan)"),
])
def test_bench_refuses_bad_settings(models, data_dir, kwargs, message):
    settings = dict(batch_sizes=[1], threads=[1], data_dir=data_dir, **FAST) | kwargs
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bench(models, **settings)


def test_bench_with_a_checkpoint_adds_pytorch_eager_rows(models, data_dir, tmp_path):
    torch = pytest.importorskip("torch")  # host side: torch is installed with the dev extra
    from lenet_edge.train.checkpoint import save_checkpoint
    from lenet_edge.train.models import LeNet5Modern

    torch.manual_seed(0)
    weights = tmp_path / "random.safetensors"
    save_checkpoint(weights, LeNet5Modern(), {"epoch": 0})
    threads_before = torch.get_num_threads()
    report = run_bench({"band": models["band"]}, [2], [1], checkpoint=weights, data_dir=data_dir, **FAST)
    _check_rows(report, ["band", "pytorch-eager"], [2], [1])
    eager = report["models"][1]
    assert eager["kind"] == "pytorch-eager" and eager["file"] == "random.safetensors"
    assert report["environment"]["versions"]["torch"] == torch.__version__
    assert torch.get_num_threads() == threads_before  # restored


def test_bench_checkpoint_without_torch_is_a_dependency_error(models, data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(DependencyError, match=r"torch is not installed .*lenet-edge\[train\]"):
        bench(models, [1], [1], checkpoint=tmp_path / "x.safetensors", data_dir=data_dir, **FAST)


# ----------------------------------------------------------------------------- report


def test_beyond_spread():
    assert beyond_spread(1.5, 0.05, 0.05)  # ln 1.5 = 0.41 > 2 * 0.071
    assert not beyond_spread(1.1, 0.05, 0.05)  # ln 1.1 = 0.095 < 0.141
    assert beyond_spread(1 / 1.5, 0.05, 0.05)  # symmetric
    assert not beyond_spread(1.5, 0.2, 0.2)  # noisy rows: not told apart from noise


def test_markdown_ratios_against_the_baseline():
    report = bench_report([bench_row("fp32", 1, 1, 2.0), bench_row("int8", 1, 1, 1.0), bench_row("fp32", 8, 1, 4.0),
                      bench_row("int8", 8, 1, 3.9, cv=0.2)])
    lines = format_markdown(report).splitlines()
    table = [line for line in lines if line.startswith("| ")][1:]
    assert table[0].endswith("| 1.00 (baseline) |") and table[1].endswith("| 0.50* |")
    assert table[3].endswith("| 0.97 |")  # within the spread: no mark
    assert "the median over rounds of the ratio of the two models' median calls in each round" in "\n".join(lines)
    flipped = [line for line in format_markdown(report, "int8").splitlines() if line.startswith("| fp32 | 1 ")]
    assert flipped[0].endswith("| 2.00* |")
    with pytest.raises(DataError, match="baseline 'fp16' is not a model of this report"):
        format_markdown(report, "fp16")


def test_markdown_missing_baseline_row():
    report = bench_report([bench_row("fp32", 1, 1, 2.0), bench_row("int8", 8, 1, 1.0)])
    assert format_markdown(report).splitlines()[-1].endswith("| – |")


def test_write_bench_outputs(tmp_path):
    report = bench_report([bench_row("fp32", 1, 1, 2.0), bench_row("int8", 1, 1, 1.0)])
    written = write_bench_outputs(BenchReport.from_json(report, "test"), tmp_path / "b.json", tmp_path / "b.md",
                                  tmp_path / "b.png")
    assert json.loads((tmp_path / "b.json").read_text()) == report  # the record writes back what it read
    assert (tmp_path / "b.md").read_text() == written.markdown and written.markdown.startswith("# lenet-edge bench")
    assert written.png == tmp_path / "b.png" and (tmp_path / "b.png").read_bytes().startswith(PNG_MAGIC)


# ----------------------------------------------------------------------------- compare


def test_compare_lines_up_rows():
    a = bench_report([bench_row("fp32", 1, 1, 2.0, 0.02), bench_row("int8", 1, 1, 1.0, 0.02),
                      bench_row("fp32", 8, 1, 8.0)])
    b = bench_report([bench_row("int8", 1, 1, 1.03, 0.02), bench_row("fp32", 1, 1, 3.0, 0.02),
                      bench_row("int8", 8, 1, 4.0)], cpu="Other CPU")
    comparison = compare([a, b], ["laptop", "pi"])
    result = comparison.to_json()
    rows = {(r["model"], r["batch_size"], r["threads"]): r for r in result["rows"]}
    assert list(rows) == [("fp32", 1, 1), ("int8", 1, 1), ("fp32", 8, 1), ("int8", 8, 1)]
    assert rows[("fp32", 1, 1)]["ratios"] == [1.0, 1.5] and rows[("fp32", 1, 1)]["exceeds_spread"] == [False, True]
    assert rows[("int8", 1, 1)]["ratios"][1] == pytest.approx(1.03)
    assert rows[("int8", 1, 1)]["exceeds_spread"] == [False, False]  # 3% is within the measured spread
    assert rows[("fp32", 8, 1)]["p50_ms"] == [8.0, None] and rows[("fp32", 8, 1)]["ratios"] == [1.0, None]
    assert rows[("int8", 8, 1)]["ratios"] == [None, None]
    assert [r["cpu"] for r in result["runs"]] == ["Test CPU", "Other CPU"]
    markdown = format_compare_markdown(comparison)
    assert "| fp32 | 1 | 1 | 2.000 ±2% | 3.000 ±2% (1.50*) |" in markdown
    assert "| int8 | 1 | 1 | 1.000 ±2% | 1.030 ±2% (1.03) |" in markdown
    assert "| fp32 | 8 | 1 | 8.000 ±1% | – |" in markdown


def test_compare_needs_two_reports():
    with pytest.raises(DataError, match=r"1 report\(s\) given \(expected two or more"):
        compare([bench_report([bench_row("fp32", 1, 1, 1.0)])])


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(schema="something-else"), "schema 'something-else' \\(expected 'lenet-edge-bench'"),
    (lambda r: r.update(version=2), "lenet-edge-bench version 2 \\(expected 1"),
    (lambda r: r.update(rows=[]), "no rows"),
    (lambda r: r["rows"][0].pop("threads"),
     "rows\\[0\\].threads is missing \\(expected int in a lenet-edge-bench report\\)"),
    (lambda r: r["rows"][0]["latency_ms"].update(p90=float("nan")),
     "rows\\[0\\].latency_ms.p90 is nan \\(expected a finite"),
    (lambda r: r["rows"][0]["latency_ms"].update(mean="fast"), "rows\\[0\\].latency_ms.mean is str"),
    (lambda r: r["rows"][0]["latency_ms"].update(mean=-1.0), "rows\\[0\\] has mean -1.0 ms"),
    (lambda r: r["rows"][0]["spread"].pop("round_cv"), "rows\\[0\\].spread.round_cv is missing \\(expected number"),
])
def test_load_report_refusals(tmp_path, change, message):
    report = bench_report([bench_row("fp32", 1, 1, 1.0)])
    change(report)
    (tmp_path / "r.json").write_text(json.dumps(report))
    with pytest.raises(DataError, match=r"r\.json: " + message):
        load_report(tmp_path / "r.json")


def test_load_report_not_json(tmp_path):
    (tmp_path / "r.json").write_text("{oops")
    with pytest.raises(DataError, match=r"r\.json: not valid JSON"):
        load_report(tmp_path / "r.json")
    with pytest.raises(DataError, match=r"none\.json: no such file"):
        load_report(tmp_path / "none.json")


# ----------------------------------------------------------------------------- CLI


def test_bench_and_compare_commands(runner, models, data_dir, tmp_path):
    args = ["bench", str(models["band"]), str(models["noise"]), "--data-dir", str(data_dir), "--batch-sizes", "2",
            "--threads", "1", "--runs", "4", "--warmup", "1", "--rounds", "2", "--baseline", "noise"]
    for name in ("a", "b"):
        result = runner.invoke(cli, args + ["-o", str(tmp_path / f"{name}.json")])
        assert result.exit_code == 0, result.output
        assert "| vs noise |" in result.stdout and "| noise | 2 | 1 |" in result.stdout
        assert f"report: {tmp_path / f'{name}.json'}" in result.stderr
        for suffix in (".json", ".md", ".png"):
            assert (tmp_path / f"{name}{suffix}").is_file()
        _check_rows(json.loads((tmp_path / f"{name}.json").read_text()), ["band", "noise"], [2], [1])
    result = runner.invoke(cli, args + ["-o", str(tmp_path / "a.json")])
    assert result.exit_code == 6 and "a.json: already exists" in result.stderr

    # without -o the comparison goes to stdout and nothing is written, however often it runs
    reports = [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    before = sorted(tmp_path.iterdir())
    printed = [runner.invoke(cli, ["compare", *reports]) for _ in range(2)]
    assert [r.exit_code for r in printed] == [0, 0] and printed[0].stdout == printed[1].stdout
    assert "| band | 2 | 1 |" in printed[0].stdout and sorted(tmp_path.iterdir()) == before

    out = tmp_path / "cmp" / "cmp.md"  # a directory of the user's: bench's and compare's files, no manifest
    out.parent.mkdir()
    result = runner.invoke(cli, ["compare", *reports, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == printed[0].stdout.rstrip("\n") + "\n" and result.stdout == ""
    assert (tmp_path / "cmp" / "cmp.png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in out.parent.iterdir()) == ["cmp.json", "cmp.md", "cmp.png"]
    assert not (tmp_path / "MANIFEST.sha256").exists()  # nor beside bench's -o
    result = runner.invoke(cli, ["compare", str(tmp_path / "a.json"), "-o", str(tmp_path / "one.md")])
    assert result.exit_code == 3 and "expected two or more" in result.stderr


@pytest.mark.parametrize("extra,code,message", [
    (["--batch-sizes", "0"], 2, "Invalid value for '--batch-sizes': 0 is not in the range 1<=x<=65536."),
    (["--batch-sizes", "1,x"], 2, "Invalid value for '--batch-sizes': '1,x': 'x' is not a valid integer range."),
    (["--batch-sizes", ","], 2, "',' is not a comma-separated list of integers"),
    (["--threads", "-1"], 2, "Invalid value for '--threads': -1 is not in the range 1<=x<=1024."),
    (["--runs", "1"], 2, "Invalid value for '--runs': 1 is not in the range 2<=x<=1000000."),
    (["--runs", "-1"], 2, "Invalid value for '--runs': -1 is not in the range 2<=x<=1000000."),
    (["--rounds", "5"], 2, "Invalid value for '--rounds': 5 is more than --runs 4"),
    (["--min-turn-ms", "nan"], 2, "Invalid value for '--min-turn-ms': nan is not a finite number."),
    (["--baseline", "nope"], 2, "'nope' is not a model label"),
    (["--label", "only-one"], 2, "1 labels for 2 models"),
    (["--label", "x", "--label", "x"], 3, "model labels ['x', 'x'] repeat"),
    (["-o", "report.md"], 2, "must not end in .md or .png"),
])
def test_bench_command_refusals(runner, models, data_dir, tmp_path, extra, code, message):
    args = ["bench", str(models["band"]), str(models["noise"]), "--data-dir", str(data_dir), "--runs", "4",
            "--rounds", "2", "--warmup", "0", "--batch-sizes", "1", "--threads", "1", "-o", str(tmp_path / "r.json")]
    result = runner.invoke(cli, args + extra)
    assert result.exit_code == code, result.output
    assert message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "r.json").exists()


def test_bench_without_matplotlib_skips_the_chart(runner, models, data_dir, tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    result = runner.invoke(cli, ["bench", str(models["band"]), "--data-dir", str(data_dir), "--runs", "4", "--rounds",
                                 "2", "--batch-sizes", "1", "--threads", "1", "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "chart skipped: matplotlib is not installed" in result.stderr
    assert (tmp_path / "r.md").is_file() and not (tmp_path / "r.png").exists()


def test_bench_checkpoint_without_torch_exits_7(runner, models, data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    result = runner.invoke(cli, ["bench", str(models["band"]), "--checkpoint", str(tmp_path / "c.safetensors"),
                                 "--data-dir", str(data_dir), "--runs", "4", "--rounds", "2", "--batch-sizes", "1",
                                 "--threads", "1", "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 7 and "torch is not installed" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_turns_last_min_turn_ms_so_fast_rows_get_more_runs(models, data_dir):
    """A call of the tiny test model takes microseconds: turns of 20 ms need hundreds of calls, in every
    round, and the row says how many it timed; at min_turn_ms=0 a turn is exactly its share of runs."""
    report = run_bench({"band": models["band"]}, [1], [1], data_dir=data_dir, runs=4, warmup=3, rounds=2,
                   min_turn_ms=20)
    row = report["rows"][0]
    assert report["settings"]["min_turn_ms"] == 20 and report["settings"]["runs"] == 4
    assert row["runs"] >= 20  # ~1,000 at ~0.02 ms per call; 20 even if the machine were 50x slower
    assert row["latency_ms"]["mean"] * row["runs"] >= 2 * 20 * 0.25  # two turns of about 20 ms (count estimated)
    exact = run_bench({"band": models["band"]}, [1], [1], data_dir=data_dir, **FAST)
    assert exact["rows"][0]["runs"] == 4 and exact["settings"]["min_turn_ms"] == 0


def test_round_medians_are_kept_beside_the_round_means(models, data_dir, monkeypatch):
    """Each turn times one stalled call in three: the round medians ignore it, the means do not."""
    monkeypatch.setattr(bench_module, "_time_ms", lambda run, x, count: [1.0] * (count - 1) + [100.0] if count else [])
    report = run_bench({"band": models["band"]}, [1], [1], data_dir=data_dir, runs=9, warmup=0, rounds=3, min_turn_ms=0)
    spread = report["rows"][0]["spread"]
    assert spread["round_p50s_ms"] == [1.0, 1.0, 1.0]
    assert spread["round_means_ms"] == [pytest.approx(34.0)] * 3


def test_percentiles_of_a_planted_timing_series(models, data_dir, monkeypatch):
    """Calls take 1, 2, ..., 100 ms in turn: numpy's linear percentiles are known exactly, and each differs
    from its neighbours (p95 would be 95.05, p99 99.01)."""
    planted = iter(float(ms) for ms in range(1, 101))
    monkeypatch.setattr(bench_module, "_time_ms", lambda run, x, count: [next(planted) for _ in range(count)])
    report = run_bench({"band": models["band"]}, [1], [1], data_dir=data_dir, runs=100, warmup=0, rounds=2,
                       min_turn_ms=0)
    latency = report["rows"][0]["latency_ms"]
    assert report["rows"][0]["runs"] == 100
    assert latency == {"mean": pytest.approx(50.5), "std": pytest.approx(29.011, abs=1e-3), "min": 1.0,
                       "p50": pytest.approx(50.5), "p90": pytest.approx(90.1), "p99": pytest.approx(99.01),
                       "max": 100.0}
    assert report["rows"][0]["spread"]["round_p50s_ms"] == [25.5, 75.5]


def test_round_cv_reflects_the_rounds(models, data_dir):
    report = run_bench({"band": models["band"]}, [1], [1], data_dir=data_dir, runs=6, warmup=0, rounds=3, min_turn_ms=0)
    spread = report["rows"][0]["spread"]
    means = np.array(spread["round_means_ms"])
    assert spread["round_cv"] == pytest.approx(means.std(ddof=1) / means.mean())
    assert not math.isnan(spread["round_cv"])


# ----------------------------------------------------------------------------- where a run ran


def _ran(report: dict, kind: str, evidence=("found",)) -> dict:
    report["environment"]["execution"] = {"kind": kind, "evidence": list(evidence)}
    return report


def test_compare_lines_up_an_emulated_run_but_never_ranks_it():
    host = _ran(bench_report([bench_row("fp32", 1, 1, 0.05), bench_row("int8", 1, 1, 0.04)]), "native", ())
    pi = _ran(bench_report([bench_row("fp32", 1, 1, 0.2), bench_row("int8", 1, 1, 0.1)]), "native", ())
    qemu = _ran(bench_report([bench_row("fp32", 1, 1, 12.0), bench_row("int8", 1, 1, 99.6)]), "emulated",
                ["process runs aarch64 code on a x86_64 kernel (/proc/sys/kernel/arch)"])
    comparison = compare([host, pi, qemu], ["host", "pi", "qemu"])
    result = comparison.to_json()
    assert [r["emulated"] for r in result["runs"]] == [False, False, True]
    for row in result["rows"]:
        assert row["ratios"][1] is not None and row["ratios"][2] is None and row["exceeds_spread"][2] is None
        assert row["p50_ms"][2] in (12.0, 99.6)  # lined up all the same
    markdown = format_compare_markdown(comparison)
    assert "| qemu † | Test CPU | 4 | emulated (process runs aarch64 code on a x86_64 kernel" in markdown
    assert "| fp32 | 1 | 1 | 0.050 ±1% | 0.200 ±1% (4.00*) | 12.000 ±1% † |" in markdown
    assert "EMULATED" in markdown and "no ratio is given against an emulated run" in markdown


def test_compare_with_an_emulated_reference_ranks_nothing():
    qemu = _ran(bench_report([bench_row("fp32", 1, 1, 12.0)]), "emulated")
    host = _ran(bench_report([bench_row("fp32", 1, 1, 0.05)]), "virtualised")
    comparison = compare([qemu, host], ["qemu", "host"])
    assert comparison.rows[0].ratios == [None, None]
    assert "(" not in format_compare_markdown(comparison).splitlines()[-1]


def test_compare_of_reports_without_execution_still_ranks():
    old = bench_report([bench_row("fp32", 1, 1, 1.0)])  # written before reports recorded where they ran
    result = compare([old, _ran(bench_report([bench_row("fp32", 1, 1, 2.0)]), "native", ())])
    assert result.rows[0].ratios == [1.0, 2.0] and result.runs[0].where == "not recorded"


def test_bench_markdown_of_an_emulated_run_gives_no_ratios():
    report = _ran(bench_report([bench_row("fp32", 1, 1, 2.0), bench_row("int8", 1, 1, 1.0)]), "emulated",
                  ["process name qemu"])
    report["environment"]["device"] = "qemu-cortex-a72"
    markdown = format_markdown(report)
    assert "- ran: emulated (process name qemu), device qemu-cortex-a72" in markdown
    assert "EMULATED: these timings measure the emulator" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| fp32 |") or line.startswith("| int8 |")]
    assert len(table) == 2 and all(line.endswith("| – (emulated) |") for line in table)


@pytest.mark.parametrize("execution,message", [
    ({"kind": "teleported", "evidence": []}, r"environment\.execution is .* \(expected kind one of native, emulated"),
    ({"kind": "native", "evidence": [3]}, r"environment\.execution is .* and a list of evidence strings\)"),
    ({"kind": "native", "evidence": "none"}, r"environment\.execution\.evidence is str \(expected list"),
    ("emulated", r"environment\.execution is str \(expected dict"),
])
def test_load_report_refuses_a_malformed_execution_record(tmp_path, execution, message):
    report = bench_report([bench_row("fp32", 1, 1, 1.0)])
    report["environment"]["execution"] = execution
    (tmp_path / "r.json").write_text(json.dumps(report))
    with pytest.raises(DataError, match=r"r\.json: " + message):
        load_report(tmp_path / "r.json")


def test_bench_records_where_it_ran_and_the_device_label(models, data_dir):
    report = run_bench({"band": models["band"]}, [1], [1], data_dir=data_dir, device="lab-pi5", **FAST)
    env = report["environment"]
    assert env["device"] == "lab-pi5" and env["execution"]["kind"] in ("native", "virtualised", "emulated")
    assert "CPUExecutionProvider" in env["onnxruntime"]["providers"] and env["kernel"]["release"]


# ----------------------------------------------------------------------------- inputs without network


def test_bench_on_a_users_npy_file(models, tmp_path):
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 10:18, 12:16] = 255
    np.save(tmp_path / "digits.npy", digits)
    report = run_bench({"band": models["band"]}, [5], [1], inputs=tmp_path / "digits.npy", **FAST)
    inputs = report["settings"]["inputs"]
    assert inputs["kind"] == "file" and inputs["source"].startswith("digits.npy (raw, sha256 ")
    assert inputs["images"] == 5 and inputs["distinct_images"] == 3  # repeated to fill the batch
    assert report["models"][0]["check"] == {"images": 3, "accuracy": None}  # a user's file has no labels
    assert "3 unlabelled images, no accuracy" in format_markdown(report)


def test_bench_on_an_idx_file(models, data_dir):
    report = run_bench({"band": models["band"]}, [2], [1], inputs=data_dir / "t10k-images-idx3-ubyte.gz", **FAST)
    assert report["settings"]["inputs"]["source"].startswith("t10k-images-idx3-ubyte.gz (raw, sha256 ")


def test_bench_refuses_preprocessed_inputs_and_two_sources(models, data_dir, tmp_path):
    np.save(tmp_path / "prepared.npy", np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(DataError, match=r"prepared\.npy: already preprocessed model inputs \(expected MNIST-style"):
        bench({"band": models["band"]}, [1], [1], inputs=tmp_path / "prepared.npy", **FAST)
    with pytest.raises(DataError, match=r"both an inputs file .* and a data directory .* \(expected one\)"):
        bench({"band": models["band"]}, [1], [1], inputs=tmp_path / "prepared.npy", data_dir=data_dir, **FAST)


def test_bench_without_data_uses_the_packaged_test_digits_and_no_network(models, monkeypatch):
    monkeypatch.delenv("LENET_EDGE_DATA", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("bench reached for the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    report = run_bench({"band": models["band"]}, [300], [1], **FAST)
    inputs = report["settings"]["inputs"]
    assert inputs["kind"] == "packaged" and inputs["distinct_images"] == 300
    assert inputs["source"].startswith("the first 512 official MNIST test images (t10k-images-idx3-ubyte.gz, md5 9fb6")
    assert report["models"][0]["check"]["images"] == 512


def test_packaged_digits_are_the_official_test_images():
    from lenet_edge.mnist import load_bench_digits

    images, labels, _ = load_bench_digits()
    assert images.shape == (512, 28, 28) and images.dtype == np.uint8
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the official test set's first labels


def test_bench_command_inputs_and_device(runner, models, data_dir, tmp_path):
    np.save(tmp_path / "d.npy", np.full((2, 28, 28), 200, np.uint8))
    base = ["bench", str(models["band"]), "--runs", "4", "--rounds", "2", "--warmup", "0", "--batch-sizes", "1",
            "--threads", "1", "--inputs", str(tmp_path / "d.npy")]
    result = runner.invoke(cli, base + ["--device", "my-pi", "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["environment"]["device"] == "my-pi"
    result = runner.invoke(cli, base + ["--data-dir", str(data_dir), "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 2 and "give --inputs or --data-dir, not both" in result.stderr


# ----------------------------------------------------------------------------- the one ratio


def test_latency_ratio_pairs_rounds_within_a_run_and_not_across_runs():
    # round 2 was disturbed for both models (a burst of load): paired, it cancels; the median drops round 3's outlier
    int8, fp32 = [1.0, 3.0, 1.0, 1.0, 5.0], [2.0, 6.0, 2.0, 2.0, 2.0]
    assert latency_ratio(int8, fp32, paired=True) == 0.5
    assert latency_ratio(int8, fp32, paired=False) == 0.5  # medians 1.0 and 2.0
    assert latency_ratio([1.0, 1.0, 9.0], [2.0, 2.0, 2.0], paired=False) == 0.5  # not mean over mean (3.67)
    with pytest.raises(ValueError, match="paired rows need the same rounds"):
        latency_ratio([1.0, 2.0], [1.0], paired=True)


def test_bench_table_ratio_is_the_median_of_per_round_ratios():
    """The int8 row's mean is dragged up by one slow round; the table's ratio is not."""
    fp32, int8 = bench_row("fp32", 1, 1, 2.0), bench_row("int8", 1, 1, 3.0)
    fp32["spread"].update(rounds=3, round_p50s_ms=[2.0, 2.0, 2.0], round_means_ms=[2.0, 2.0, 2.0])
    int8["spread"].update(rounds=3, round_p50s_ms=[1.0, 1.0, 7.0], round_means_ms=[1.0, 1.0, 7.0])
    table = [line for line in format_markdown(bench_report([fp32, int8])).splitlines() if line.startswith("| int8 |")]
    assert table[0].endswith("| 0.50* |")  # mean over mean would say 1.50


@pytest.mark.parametrize("change,message", [
    (lambda r: r["environment"].update(cpu="x86"), r"environment\.cpu is str \(expected dict"),
    (lambda r: r["environment"]["cpu"].update(model=7), r"environment\.cpu\.model is int \(expected str"),
    (lambda r: r["environment"].update(versions=["1.0"]), r"environment\.versions is list \(expected dict"),
    (lambda r: r["environment"]["versions"].update(onnxruntime=1), r"environment\.versions\.onnxruntime is int"),
    (lambda r: r.update(settings=[]), r"settings is list \(expected dict"),
    (lambda r: r["settings"].update(runs="many"), r"settings\.runs is str \(expected int"),
    (lambda r: r["models"][0].update(check=None), r"models\[0\]\.check is NoneType \(expected dict"),
    (lambda r: r["rows"][0]["spread"].update(round_p50s_ms=[1.0]),
     r"rows\[0\]\.spread\.round_p50s_ms has 1 values for 2 rounds"),
    (lambda r: r["rows"][0]["spread"].update(round_p50s_ms=[1.0, "x"]),
     r"rows\[0\]\.spread\.round_p50s_ms holds a value that is not"),
])
def test_load_report_checks_every_field_it_reads(tmp_path, change, message):
    report = bench_report([bench_row("fp32", 1, 1, 1.0)])
    change(report)
    (tmp_path / "r.json").write_text(json.dumps(report))
    with pytest.raises(DataError, match=r"r\.json: " + message):
        load_report(tmp_path / "r.json")


def test_compare_writes_its_record_beside_the_markdown(runner, tmp_path):
    for name, mean in (("a", 1.0), ("b", 2.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps(bench_report([bench_row("fp32", 1, 1, mean)])))
    out = tmp_path / "cmp.md"
    result = runner.invoke(cli, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "cmp.json").read_text())
    assert record["schema"] == "lenet-edge-compare" and record["version"] == 1
    assert record["rows"][0]["ratios"] == [1.0, 2.0] and [r["name"] for r in record["runs"]] == ["a", "b"]
    result = runner.invoke(cli, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(out)])
    assert result.exit_code == 6 and "already exists" in result.stderr
    result = runner.invoke(cli, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o",
                                 str(tmp_path / "c.json")])
    assert result.exit_code == 2 and "must not end in .json or .png" in result.stderr
