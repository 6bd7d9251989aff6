"""The ARM64 device job's comparison (devices/arm64/check.py): identical results pass, and every
kind of difference from the host is refused. Hermetic: synthetic results in tmp_path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from lenet_edge.bench.compare import compare
from lenet_edge.bench.records import BenchReport
from tests.bench_reports import bench_report, bench_row

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("device_check", ROOT / "devices" / "arm64" / "check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

EMULATED = {"kind": "emulated", "evidence": ["process runs aarch64 code on a x86_64 kernel (/proc/sys/kernel/arch)"]}


def _bench_report(execution: dict, architecture: str) -> dict:
    report = bench_report([bench_row("fp32", 1, 1, 2.0), bench_row("int8", 1, 1, 1.0)])
    report["environment"]["execution"] = execution
    report["environment"]["cpu"]["architecture"] = architecture
    return report


def _write_results(out: Path, logits: dict, execution: dict, architecture: str, host_bench: dict | None) -> None:
    out.mkdir()
    for model, values in logits.items():
        confusion = np.zeros((10, 10), int)
        np.add.at(confusion, (np.arange(len(values)) % 10, values.argmax(1)), 1)
        evaluation = {"images": len(values), "accuracy": float(np.trace(confusion)) / len(values),
                      "confusion_matrix": confusion.tolist()}
        (out / f"{model}.eval.json").write_text(json.dumps(evaluation))
        np.save(out / f"{model}.logits.npy", values)
        rows = "".join(f"{out}/pngs/digit{i:02d}.png,{k},0.9\n" for i, k in enumerate(values[:5].argmax(1)))
        (out / f"{model}.labels.csv").write_text("input,label,probability\n" + rows)
    bench = _bench_report(execution, architecture)
    (out / "bench.json").write_text(json.dumps(bench))
    if host_bench is not None:  # a device: the real compare of the host's report with its own
        reports = [BenchReport.from_json(r, name) for r, name in ((host_bench, "host"), (bench, out.name))]
        (out / "compare.json").write_text(json.dumps(compare(reports, ["host", out.name]).to_json()))


@pytest.fixture
def results(tmp_path):
    """(host dir, device dir) with identical results; the device's bench report says emulated."""
    rng = np.random.default_rng(0)
    logits = {model: rng.normal(size=(40, 10)).astype(np.float32) for model in ("fp32", "int8")}
    host = tmp_path / "host"
    _write_results(host, logits, {"kind": "virtualised", "evidence": ["CPU flag hypervisor"]}, "x86_64", None)
    host_bench = json.loads((host / "bench.json").read_text())
    _write_results(tmp_path / "cortex-a72", logits, EMULATED, "aarch64", host_bench)
    return host, tmp_path / "cortex-a72"


def test_identical_results_pass(results, capsys):
    host, device = results
    found = check.check_device(host, device)
    assert found["models"]["int8"]["bit_mismatches"] == 0 and found["models"]["fp32"]["max_abs_diff"] == 0
    assert found["execution"]["kind"] == "emulated"
    assert check.compare_command(host, [device]) == 0
    out = capsys.readouterr().out
    assert "cortex-a72 (Test CPU) int8: accuracy" in out and "0 prediction differences" in out
    assert "detected as emulated (process runs aarch64 code on a x86_64 kernel" in out


def test_fp32_within_the_tolerance_passes(results):
    host, device = results
    logits = np.load(device / "fp32.logits.npy")
    np.save(device / "fp32.logits.npy", logits + np.float32(5e-5))
    assert 4e-5 < check.check_device(host, device)["models"]["fp32"]["max_abs_diff"] < 6e-5


def _flip_one_bit(device: Path) -> None:
    logits = np.load(device / "int8.logits.npy")
    logits.view(np.uint32)[3, 4] ^= 1  # one ulp on one logit of one image
    np.save(device / "int8.logits.npy", logits)


def _shift_fp32(device: Path) -> None:
    np.save(device / "fp32.logits.npy", np.load(device / "fp32.logits.npy") + np.float32(2e-4))


def _edit_json(name: str, change):
    def edit(device: Path) -> None:
        data = json.loads((device / name).read_text())
        change(data)
        (device / name).write_text(json.dumps(data))
    return edit


def _move_one_prediction(data: dict) -> None:
    data["confusion_matrix"][0][0] -= 1
    data["confusion_matrix"][0][1] += 1


def _relabel_png(device: Path) -> None:
    text = (device / "int8.labels.csv").read_text().splitlines()
    name, label, prob = text[1].split(",")
    text[1] = f"{name},{(int(label) + 1) % 10},{prob}"
    (device / "int8.labels.csv").write_text("\n".join(text) + "\n")


def _rank_emulated(data: dict) -> None:
    data["rows"][0]["ratios"][1] = 0.5


@pytest.mark.parametrize("spoil,message", [
    (_flip_one_bit, r"int8 logits of 40 test images: logits differ bit-wise on 1 of 40 images"),
    (_shift_fp32, r"fp32 logits of 40 test images: max abs logit difference 0\.0002 \(tolerance 0\.0001\)"),
    (_edit_json("int8.eval.json", _move_one_prediction), r"int8: confusion_matrix"),
    (_edit_json("fp32.eval.json", lambda d: d.update(accuracy=0.5)), r"fp32: accuracy 0\.5 \(host: "),
    (_relabel_png, r"int8: labels of the PNG files differ from the host's"),
    (lambda d: (d / "fp32.labels.csv").unlink(), r"fp32\.labels\.csv: missing"),
    (_edit_json("bench.json", lambda d: d["environment"].update(execution={"kind": "native", "evidence": []})),
     r"bench report says it ran 'native' \(expected 'emulated'"),
    (_edit_json("bench.json", lambda d: d["environment"]["cpu"].update(architecture="x86_64")),
     r"architecture 'x86_64' \(expected 'aarch64'\)"),
    (_edit_json("compare.json", _rank_emulated), r"compare\.json ranks an emulated run's timings"),
    (_edit_json("compare.json", lambda d: d["runs"][1].update(emulated=False)),
     r"compare\.json ranks an emulated run's timings or does not mark it"),
])
def test_any_difference_fails(results, spoil, message, capsys):
    host, device = results
    spoil(device)
    with pytest.raises(check.Mismatch, match=message):
        check.check_device(host, device)
    assert check.compare_command(host, [device]) == 1
    assert capsys.readouterr().err.startswith("FAIL ")


def test_a_host_report_marked_emulated_fails(results):
    host, device = results
    _edit_json("bench.json", lambda d: d["environment"].update(execution=EMULATED))(host)
    with pytest.raises(check.Mismatch, match="the host's bench report says it ran emulated"):
        check.check_device(host, device)


def test_cpuinfo_lists_the_emulated_cpus_hwcaps():
    # cortex-a76 under qemu: fp asimd ... asimddp (bit 20); HWCAP2 bit 13 is i8mm
    text = check.cpuinfo_text("cortex-a76", (1 << 0) | (1 << 1) | (1 << 20), 1 << 13, cores=2)
    blocks = text.strip().split("\n\n")
    assert len(blocks) == 2 and blocks[1].startswith("processor\t: 1\n")
    assert "Features\t: fp asimd asimddp i8mm\n" in blocks[0] and "CPU part\t: 0xd0b\n" in blocks[0]
    assert check.main(["cpuinfo", "cortex-a99"]) == 2


def _layers(out: Path, values: dict[str, np.ndarray], layers: dict[str, str]) -> None:
    order = [[name, layers[name]] for name in values]
    np.savez_compressed(out / check.LAYERS_FILE, order=np.array(json.dumps(order)),
                        **{f"v{i}": v for i, v in enumerate(values.values())})


def test_differing_int8_logits_name_the_first_layer_that_differs(results):
    host, device = results
    rng = np.random.default_rng(1)
    values = {"conv_out": rng.integers(0, 256, (40, 6, 14, 14)).astype(np.uint8),
              "fc_out": rng.integers(0, 256, (40, 10)).astype(np.uint8),
              "logits": np.load(host / "int8.logits.npy")}
    layers = {"conv_out": "C1", "fc_out": "F6", "logits": "output"}
    _layers(host, values, layers)
    _flip_one_bit(device)  # image 3's logits, and in the device's values: F6 on image 3 and later ones
    with pytest.raises(check.Mismatch, match=rf"on 1 of 40 images .*; no {check.LAYERS_FILE} from both sides"):
        check.check_device(host, device)
    spoiled = {name: v.copy() for name, v in values.items()}
    spoiled["fc_out"][3, [2, 7]] += np.uint8(3)
    spoiled["fc_out"][5:] += np.uint8(1)
    spoiled["logits"] = np.load(device / "int8.logits.npy")
    _layers(device, spoiled, layers)
    with pytest.raises(check.Mismatch, match=r"int8 logits of 40 test images: logits differ bit-wise on 1 of 40 "
                                             r"images .*; first layer that differs on image 3: F6 \(value fc_out\), "
                                             r"2 of 10 uint8 values, by up to 3$"):
        check.check_device(host, device)


def test_probe_and_layers_give_every_value_of_the_int8_graph(tmp_path):
    """The real steps: the probe made on the host, run by onnxruntime alone; its layers named as the graph's."""
    from click.testing import CliRunner

    from lenet_edge.cli import cli
    from tests.idx_files import write_mnist_dir
    from tests.quantize_models import tiny_lenet

    data = write_mnist_dir(tmp_path / "mnist", train=100, test=12)
    fp32 = tiny_lenet(tmp_path / "tiny.onnx")
    result = CliRunner().invoke(cli, ["quantize", str(fp32), "--data-dir", str(data), "--calibration-count", "50",
                                      "--max-accuracy-drop", "100"])
    assert result.exit_code == 0, result.output
    assert check.main(["probe", str(tmp_path / "tiny.int8.onnx"), str(tmp_path / "probe.onnx")]) == 0
    assert check.main(["layers", str(tmp_path / "probe.onnx"), "--data-dir", str(data), "--images", "5",
                       str(tmp_path / "layers.npz")]) == 0
    with np.load(tmp_path / "layers.npz") as saved:
        order = json.loads(str(saved["order"]))
        assert [layer for _, layer in order][-1] == "logits_DequantizeLinear" and order[-1][0] == "logits"
        assert saved[f"v{len(order) - 1}"].shape == (5, 10)
        assert all(len(saved[f"v{i}"]) == 5 for i in range(len(order)))
