"""profile: the trace parser, the layer mapping, the call-overhead arithmetic, the report and the command,
on hermetic models (random weights: a LeNet-5 exported by the export stage and quantized two ways, and the
band models of runtime_models); no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lenet_edge.bench.graph_layers import layer_map, named_layer
from lenet_edge.bench.peak import cpu_peak
from lenet_edge.bench.profile import profile, summarise
from lenet_edge.bench.profile_report import OVERHEAD, ProfileReport, format_markdown
from lenet_edge.bench.trace import NodeEvent, TraceRun, read_trace
from lenet_edge.cli import cli
from lenet_edge.contract import LAYERS
from lenet_edge.errors import DataError, ModelError, ValidationError
from tests.idx_files import write_mnist_dir
from tests.runtime_models import band_model

FAST = dict(runs=4, warmup=1, rounds=2, min_turn_ms=0)  # exactly `runs` calls per row
INSERTED_OPS = {"Transpose", "ReorderInput", "ReorderOutput"}  # layout conversions onnxruntime adds


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> dict[str, Path]:
    """lenet5-modern with random weights: fp32 as exported, int8 by the default recipe and by the
    kernel-friendly rewrite quantize --auto ships for x86."""
    import onnx
    import torch

    from lenet_edge.export.exporter import export_checkpoint
    from lenet_edge.quantize.rewrite import kernel_friendly
    from lenet_edge.quantize.settings import QuantSettings
    from lenet_edge.quantize.stage import quantize_model
    from lenet_edge.train.checkpoint import save_checkpoint
    from lenet_edge.train.models import build_model

    d = tmp_path_factory.mktemp("lenet")
    data = write_mnist_dir(d / "mnist", train=40, test=70)
    torch.manual_seed(0)
    save_checkpoint(d / "m.safetensors", build_model("lenet5-modern"), {"test_accuracy": None})
    export_checkpoint(d / "m.safetensors", d / "fp32.onnx", data_dir=data)
    settings = QuantSettings(calibration_count=40)
    quantize_model(d / "fp32.onnx", d / "int8.onnx", data_dir=data, settings=settings, max_accuracy_drop=100)
    rewritten, _ = kernel_friendly(onnx.load(str(d / "fp32.onnx")))
    onnx.save(rewritten, str(d / "friendly.onnx"))
    quantize_model(d / "friendly.onnx", d / "auto.onnx", data_dir=data, settings=settings, max_accuracy_drop=100)
    torch.manual_seed(0)
    save_checkpoint(d / "c.safetensors", build_model("lenet5"), {"test_accuracy": None})
    export_checkpoint(d / "c.safetensors", d / "classic.onnx", data_dir=data)
    quantize_model(d / "classic.onnx", d / "classic.int8.onnx", data_dir=data, settings=settings, max_accuracy_drop=100)
    return {"fp32": d / "fp32.onnx", "int8": d / "int8.onnx", "auto": d / "auto.onnx", "data": data,
            "classic": d / "classic.onnx", "classic_int8": d / "classic.int8.onnx"}


@pytest.fixture(scope="module")
def lenet_report(lenet) -> ProfileReport:
    models = {k: lenet[k] for k in ("fp32", "int8", "auto")}
    return profile(models, [1, 3], [1], data_dir=lenet["data"], **FAST)


# ---------------------------------------------------------------- the layer mapping
def test_every_node_of_the_exported_and_quantized_graphs_has_its_layer(lenet):
    for name in ("fp32", "int8", "auto"):
        mapping = layer_map(lenet[name].read_bytes(), name)
        assert None not in mapping.nodes.values(), (name, mapping.nodes)
    fp32 = layer_map(lenet["fp32"].read_bytes(), "fp32").nodes
    assert fp32["node_conv2d"] == "C1" and fp32["node_max_pool2d"] == "S2" and fp32["node_conv2d_2"] == "C5"
    assert fp32["node_linear"] == "F6" and fp32["node_linear_1"] == "OUTPUT"
    int8 = layer_map(lenet["int8"].read_bytes(), "int8").nodes
    assert int8["image_QuantizeLinear"] == "C1" and int8["max_pool2d_1_QuantizeLinear"] == "S4"
    assert int8["C3.0.weight_DequantizeLinear"] == "C3" and int8["logits_DequantizeLinear"] == "OUTPUT"
    auto = layer_map(lenet["auto"].read_bytes(), "auto").nodes
    assert auto["fold.c1.pool"] == "S2" and auto["fold.c5.gemm"] == "C5" and auto["fold.c3.act_nhwc/Transpose"] == "C3"


@pytest.mark.parametrize("model", ["fp32", "int8", "auto"])
def test_the_nodes_onnxruntime_runs_map_back_to_every_layer(lenet_report, model):
    for row in (r for r in lenet_report.rows if r.model == model):
        assert [entry.layer for entry in row.layers][:len(LAYERS)] == list(LAYERS)
        assert row.layers[-1].layer == OVERHEAD
        # only the layout conversions onnxruntime inserts fall under their own name
        unmapped = {n.op for n in row.nodes if n.layer not in LAYERS}
        assert unmapped <= INSERTED_OPS, [n for n in row.nodes if n.layer not in LAYERS]
        ops = {n.layer: n.op for n in row.nodes if "Conv" in n.op or "Gemm" in n.op}
        heavy = {"fp32": {"C1", "C3", "C5", "F6", "OUTPUT"}, "int8": {"C1", "C3", "C5", "F6", "OUTPUT"},
                 "auto": {"C1", "C3", "C5", "F6", "OUTPUT"}}[model]
        assert set(ops) == heavy
        if model != "fp32":  # the int8 kernels, not float ones, run each weighted layer
            assert all(op.startswith(("QLinear", "QGemm")) for op in ops.values()), ops


def test_a_quantized_graph_without_scopes_borrows_them_from_its_fp32_model(lenet):
    """Quantizing the classic lenet5 rebuilds its graph without the exporter's scopes: alone, its nodes map to
    no layer; beside the fp32 model of the same checkpoint, every one but the inserted layout nodes does."""
    def unmapped(models):
        report = profile(models, [2], [1], data_dir=lenet["data"], **FAST)
        return {r.model: {n.op for n in r.nodes if n.layer not in LAYERS} for r in report.rows}

    assert "QLinearConv" in unmapped({"int8": lenet["classic_int8"]})["int8"]
    both = unmapped({"fp32": lenet["classic"], "int8": lenet["classic_int8"]})
    assert both["fp32"] <= INSERTED_OPS and both["int8"] <= INSERTED_OPS, both


@pytest.mark.parametrize(("name", "op", "layer"), [
    ("C1.0.weight_DequantizeLinear", "DequantizeLinear", "C1"),
    ("fold.c5.gemm", "QGemm", "C5"),
    ("fold.c1.pool", "MaxPool", "S2"),  # a pool named after C1 is S2
    ("fold.c3.pool", "Conv", "S4"),  # the rewrite's averaging conv stands for S4
    ("fold.c1.pooled_view_nhwc/Transpose", "Transpose", "S2"),
    ("node_conv2d_1", "Conv", None),  # only the model's scopes know this one
    ("discs2", "Conv", None),  # a layer name inside a word is not a layer
])
def test_a_layer_named_in_a_node_name(name, op, layer):
    assert named_layer(name, op) == layer


def test_an_unknown_node_falls_under_its_own_name(lenet):
    mapping = layer_map(lenet["fp32"].read_bytes(), "fp32")
    assert mapping.layer_of("MysteryKernel_token_3", "Mystery") == "MysteryKernel_token_3"
    assert mapping.layer_of("relu_1_nchwc", "Conv") == "C3"  # a fused Conv+Relu named after the Relu's output
    assert mapping.layer_of("fused node_linear", "FusedGemm") == "F6"
    assert mapping.layer_of("image_q", "QuantizeLinear") == "C1"  # the graph input: the layer it feeds
    assert mapping.layer_of("relu_3_QuantizeLinear", "QuantizeLinear") == "F6"  # named after its tensor
    assert mapping.layer_of("node_linear_1/MatMulScaleFusion//MatMulScaleFusion/", "FusedMatMul") == "OUTPUT"


def test_a_model_the_layer_map_cannot_read_is_refused():
    with pytest.raises(ModelError, match=r"bad.onnx: not a loadable ONNX model \(malformed protobuf"):
        layer_map(b"\x3a\xff\xff\xff\xff\x0f", "bad.onnx")
    with pytest.raises(ModelError, match=r"m.ort: an ORT-format model \(expected an .onnx model"):
        layer_map(b"\x14\x00\x00\x00ORTM" + bytes(32), "m.ort")


# ---------------------------------------------------------------- the trace parser
def _event(name: str, ts: float, dur: float, op: str | None = None) -> dict:
    if op is None:
        return {"cat": "Session", "name": name, "ts": ts, "dur": dur, "ph": "X", "args": {}}
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "ph": "X", "args": {"op_name": op}}


def _planted(tmp_path: Path, events) -> Path:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(events))
    return path


PLANTED = [
    _event("model_loading_uri", 0, 50),
    _event("session_initialization", 60, 300),
    _event("relu_nchwc", 1005, 10, "Conv"),
    {**_event("", 1004, 0, "Conv"), "name": "relu_nchwc_fence_before"},  # times no kernel: not a node's time
    _event("MysteryKernel_token_3", 1016, 4, "Mystery"),
    _event("model_run", 1000, 30),
    _event("relu_nchwc", 2003, 12, "Conv"),
    _event("MysteryKernel_token_3", 2016, 6, "Mystery"),
    _event("model_run", 2000, 40),
]


def test_the_trace_parser_reads_a_planted_trace(tmp_path):
    runs = read_trace(_planted(tmp_path, PLANTED), 2)
    assert runs == [TraceRun(30.0, (NodeEvent("relu_nchwc", "Conv", 10.0), NodeEvent("MysteryKernel_token_3", "Mystery",
                                                                                         4.0))),
                    TraceRun(40.0, (NodeEvent("relu_nchwc", "Conv", 12.0), NodeEvent("MysteryKernel_token_3", "Mystery",
                                                                                         6.0)))]


@pytest.mark.parametrize(("events", "message"), [
    (PLANTED[:-1], r"1 model_run events \(expected 2, one per call"),  # the profiler lost the last run
    ([e for e in PLANTED if e["name"] != "relu_nchwc_kernel_time" and "Mystery" not in e["name"]] ,
     r"model_run 1 of 2 has no node events"),
    (PLANTED + [_event("late", 9000, 1, "Conv")], r"node event 'late' at 9000.0 us lies outside every model_run"),
    ([{**PLANTED[2], "args": {}}] + PLANTED[3:], r"has no args.op_name"),
    ([{**PLANTED[5], "dur": "30"}] + PLANTED[6:], r"has ts 1000 and dur '30' \(expected non-negative numbers"),
    ({"traceEvents": []}, r"a JSON dict \(expected onnxruntime's list of trace events\)"),
])
def test_the_trace_parser_refuses_a_trace_missing_events(tmp_path, events, message):
    with pytest.raises(ValidationError, match=message):
        read_trace(_planted(tmp_path, events), 2)


def test_the_trace_parser_refuses_what_is_not_json(tmp_path):
    path = tmp_path / "trace.json"
    path.write_text("[{")
    with pytest.raises(ValidationError, match="trace.json: not a readable onnxruntime profile"):
        read_trace(path, 1)


# ---------------------------------------------------------------- the arithmetic
def test_call_overhead_is_each_call_minus_its_nodes_and_shares_add_up(tmp_path):
    runs = read_trace(_planted(tmp_path, PLANTED + [_event("relu_nchwc", 3001, 20, "Conv"),
                                                    _event("MysteryKernel_token_3", 3030, 10, "Mystery"),
                                                    _event("model_run", 3000, 45)]), 3)
    row = summarise("m", 1, 1, [50.0, 60.0, 100.0], runs, lambda name, op: "C1" if op == "Conv" else name,
                    [20.0, 22.0, 21.0])
    c1, mystery, overhead = row.layers
    assert (c1.layer, c1.nodes, c1.ops, c1.median_us) == ("C1", 1, ("Conv",), 12.0)  # median of 10, 12, 20
    assert (mystery.layer, mystery.median_us) == ("MysteryKernel_token_3", 6.0)
    assert (overhead.layer, overhead.median_us) == (OVERHEAD, 42.0)  # median of 50-14, 60-18, 100-30
    assert overhead.share == pytest.approx(42.0 / 60.0) and sum(e.share for e in row.layers) == pytest.approx(1.0)
    assert (row.call_median_us, row.run_median_us, row.unprofiled_median_us, row.runs) == (60.0, 40.0, 21.0, 3)
    assert [n.name for n in row.nodes] == ["relu_nchwc", "MysteryKernel_token_3"]
    with pytest.raises(ValueError, match="2 timed calls for 3 trace runs"):
        summarise("m", 1, 1, [50.0, 60.0], runs, lambda name, op: name, [1.0])


# ---------------------------------------------------------------- the report
def test_the_report_round_trips_and_says_what_it_measured(lenet_report, lenet):
    obj = json.loads(json.dumps(lenet_report.to_json()))
    assert obj["schema"] == "lenet-edge-profile" and obj["version"] == 1
    assert {"cpu", "versions", "execution", "load_average"} <= set(obj["environment"])
    assert ProfileReport.from_json(obj, "p.json") == lenet_report
    assert [m.precision for m in lenet_report.models] == ["fp32", "int8", "int8"]
    assert len(lenet_report.rows) == 3 * 2 and all(r.runs == 4 for r in lenet_report.rows)
    for row in lenet_report.rows:
        assert sum(e.share for e in row.layers) == pytest.approx(1.0)
        assert 0 < row.run_median_us <= row.call_median_us and row.unprofiled_median_us > 0
    markdown = format_markdown(lenet_report)
    assert "## batch 1, 1 thread" in markdown and "## batch 3, 1 thread" in markdown
    assert "| layer | fp32 us | fp32 share | int8 us | int8 share | auto us | auto share |" in markdown
    assert "| call overhead |" in markdown and "A layer's share of the CPU's peak credits" in markdown
    peak = lenet_report.peak(1)
    assert peak is not None and peak.basis == cpu_peak(1).basis  # the peak the benchmarks use
    if peak.fp32:
        assert "Peak of 1 core(s): fp32" in markdown and "of peak)" in markdown


def test_a_layers_share_of_peak_credits_its_useful_macs():
    from lenet_edge.bench.profile_report import PeakRecord
    from lenet_edge.contract import LAYER_MACS

    peak = PeakRecord(threads=1, fp32=100.0, int8=400.0, basis="planted")
    # C1 of a dense LeNet-5: 117,600 MACs per image; 64 images in 1,000 us = 15.05 GFLOP/s, 15.05 % of 100
    assert LAYER_MACS["lenet5-modern"]["C1"] == 117_600 and LAYER_MACS["lenet5"]["C3"] == 150_000
    assert peak.share(117_600, 64, 1_000.0, "fp32") == pytest.approx(0.150528)
    assert peak.share(117_600, 64, 1_000.0, "int8") == pytest.approx(0.150528 / 4)
    assert PeakRecord(1, None, None, "clock unknown").share(117_600, 64, 1_000.0, "fp32") is None
    assert peak.share(117_600, 64, 0.0, "fp32") is None


def _broken(report: ProfileReport, change) -> dict:
    obj = json.loads(json.dumps(report.to_json()))
    change(obj)
    return obj


@pytest.mark.parametrize(("change", "message"), [
    (lambda o: o.update(schema="lenet-edge-bench"), r"schema 'lenet-edge-bench' \(expected 'lenet-edge-profile'\)"),
    (lambda o: o.update(version=2), r"version 2 \(expected 1\)"),
    (lambda o: o["rows"][0]["layers"][0].update(share=0.9), r"rows\[0\] has layer shares adding up to"),
    (lambda o: o["rows"][0].update(model="other"), r"rows\[0\].model 'other' \(expected one of fp32, int8, auto\)"),
    (lambda o: o["rows"][0].update(runs=True),
     r"rows\[0\]\.runs is bool \(expected int in a lenet-edge-profile report\)"),
    (lambda o: o["rows"][0]["nodes"][0].update(median_us=float("nan")),
     r"rows\[0\]\.nodes\[0\]\.median_us is nan \(expected a finite number"),
    (lambda o: o["rows"][0]["layers"][0].update(ops=["Conv", 3]),
     r"rows\[0\]\.layers\[0\]\.ops holds a value that is not"),
    (lambda o: o["settings"].pop("profiler"), r"settings\.profiler is missing \(expected str"),
    (lambda o: o["settings"].update(timer="perf\x1b[2J"), r"settings\.timer 'perf\\x1b\[2J' holds control characters"),
    (lambda o: o["peaks"][0].update(fp32="fast"), r"peaks\[0\]\.fp32 is str \(expected number"),
    (lambda o: o["peaks"][0].pop("basis"), r"peaks\[0\]\.basis is missing"),
    (lambda o: o["peaks"].__setitem__(0, "fast"), r"peaks\[0\] is str \(expected dict"),
])
def test_a_report_that_is_not_what_it_claims_is_refused(lenet_report, change, message):
    with pytest.raises(DataError, match=message):
        ProfileReport.from_json(_broken(lenet_report, change), "p.json")


# ---------------------------------------------------------------- the command
def test_the_command_writes_its_files_and_needs_force_to_replace_them(runner, tmp_path):
    band, other = band_model(tmp_path / "band.onnx"), band_model(tmp_path / "other.onnx")
    data = write_mnist_dir(tmp_path / "mnist", train=10, test=20)
    out = tmp_path / "out" / "p.json"
    out.parent.mkdir()
    args = ["profile", str(band), str(other), "--data-dir", str(data), "--batch-sizes", "1,2", "--threads", "1",
            "--runs", "4", "--rounds", "2", "--warmup", "1", "--min-turn-ms", "0", "-o", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = ProfileReport.from_json(json.loads(out.read_text()), str(out))
    assert {(r.model, r.batch_size) for r in report.rows} == {(m, b) for m in ("band", "other") for b in (1, 2)}
    assert out.with_suffix(".md").read_text() in result.output
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"chart: {png}" in result.output
    assert not (out.parent / "MANIFEST.sha256").exists()  # the user's files: no manifest beside them
    before = out.read_bytes()
    result = runner.invoke(cli, args)
    assert result.exit_code == 6 and "already exists" in result.output and out.read_bytes() == before
    result = runner.invoke(cli, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["created"] and sorted(p.name for p in out.parent.iterdir()) == [
        "p.json", "p.md", "p.png"]


@pytest.mark.parametrize(("extra", "code", "message"), [
    (["--batch-sizes", "0"], 2, "Invalid value for '--batch-sizes': 0 is not in the range 1<=x<=65536."),
    (["--threads", "0"], 2, "Invalid value for '--threads': 0 is not in the range 1<=x<=1024."),
    (["--runs", "1"], 2, "Invalid value for '--runs': 1 is not in the range 2<=x<=1000000."),
    (["--rounds", "500"], 2, "Invalid value for '--rounds': 500 is more than --runs"),
    (["--inputs", "x.npy"], 2, "give --inputs or --data-dir, not both"),
    (["--label", "a"], 2, "1 labels for 2 models"),
    (["-o", "p.md"], 2, "must not end in .md or .png"),
])
def test_bad_options_are_refused_before_anything_is_written(runner, tmp_path, extra, code, message):
    band, other = band_model(tmp_path / "band.onnx"), band_model(tmp_path / "other.onnx")
    data = write_mnist_dir(tmp_path / "mnist", train=10, test=20)
    out = tmp_path / "p.json"
    result = runner.invoke(cli, ["profile", str(band), str(other), "--data-dir", str(data), "--runs", "4",
                                 "--rounds", "2", "-o", str(out), *extra])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not out.exists() and not out.with_suffix(".md").exists()


def test_a_missing_model_is_a_model_error(runner, tmp_path):
    result = runner.invoke(cli, ["profile", str(tmp_path / "none.onnx"), "-o", str(tmp_path / "p.json")])
    assert result.exit_code == 4 and "no such model file" in result.output
    assert not (tmp_path / "p.json").exists()


# ---------------------------------------------------------------- the trained model
@pytest.mark.integration
def test_every_layer_appears_for_the_trained_fp32_and_int8_models(modern_onnx, modern_int8_onnx, mnist_dir):
    report = profile({"fp32": modern_onnx, "int8": modern_int8_onnx}, [1, 8], [1], data_dir=mnist_dir, **FAST)
    for row in report.rows:
        layers = [entry.layer for entry in row.layers]
        assert layers[:len(LAYERS)] == list(LAYERS) and layers[-1] == OVERHEAD, (row.model, layers)
        assert all(report.row(row.model, row.batch_size, 1).layer(name).median_us > 0 for name in LAYERS)
    assert np.isfinite([r.call_median_us for r in report.rows]).all()
