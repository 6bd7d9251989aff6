"""The ARM64 device job's own steps (run.sh drives them):

    check.py pngs --data-dir DIR OUT       write test digits as PNG files, as a camera or scanner would give them
    check.py cpuinfo                       print /proc/cpuinfo for the emulated CPU (runs under the emulator)
    check.py compare HOST DEVICE...        fail on any difference between the host's results and each device's
    check.py probe INT8 OUT                the int8 model's onnxruntime graph with every value an output (host)
    check.py layers PROBE --data-dir DIR OUT   every value of PROBE on the first test images (host and device)

A results directory (written by `lenet-edge` commands in run.sh) holds, for MODEL in fp32 and int8:
MODEL.eval.json (evaluate --json), MODEL.logits.npy (evaluate --logits), MODEL.labels.csv (run on the
PNG files); bench.json (bench); a device's also compare.json (compare -o of the host's and its bench.json);
int8.layers.npz (layers: every value of the int8 graph on the first test images), with which a difference
in the int8 logits is traced to the first layer that differs.

`cpuinfo` imports nothing beyond the standard library: it runs before onnxruntime can be imported.
"""

from __future__ import annotations

import argparse
import csv
import json
import struct
import sys
from pathlib import Path

MODELS = ("fp32", "int8")
FP32_TOLERANCE = 1e-4  # max |logit difference| between two CPUs' float kernels (summation order, FMA)
PNG_COUNT = 24
LAYERS_FILE = "int8.layers.npz"  # `layers` output in a results directory: names the first layer that differs
LAYER_IMAGES = 1000  # images `layers` keeps every value of (a mismatch past them is reported as such)
LAYERS_KEY = "lenet_edge.layers"  # probe metadata: [[value, layer], ...] in graph order


class Mismatch(Exception):
    """A device's result differs from the host's."""


# ----------------------------------------------------------------------------- compare

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise Mismatch(f"{path}: missing or not JSON ({exc})") from exc


def _labels(path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [(Path(row["input"]).name, row["label"]) for row in csv.DictReader(f)]
    except (OSError, KeyError) as exc:
        raise Mismatch(f"{path}: missing or not a predictions CSV ({exc})") from exc


def _logits(path: Path):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise Mismatch(f"{path}: missing or not a .npy array ({exc})") from exc


def check_device(host: Path, device: Path) -> dict:
    """Every figure of `device` against `host`; raises Mismatch naming the first difference.

    Returns {model: {"accuracy", "prediction_differences", "max_abs_diff", "bit_mismatches"}} and
    the device's execution record."""
    from lenet_edge.errors import ValidationError
    from lenet_edge.parity import require_bit_identical, require_close

    figures = {}
    for model in MODELS:
        want, got = _read_json(host / f"{model}.eval.json"), _read_json(device / f"{model}.eval.json")
        for key in ("images", "accuracy", "confusion_matrix"):
            if want.get(key) != got.get(key):
                raise Mismatch(f"{device.name} {model}: {key} {got.get(key)} (host: {want.get(key)})")
        expected, found = _logits(host / f"{model}.logits.npy"), _logits(device / f"{model}.logits.npy")
        what = f"{device.name} {model} logits of {len(expected)} test images"
        try:
            if model == "int8":  # onnxruntime's integer arithmetic, float32 requantization: exact everywhere
                result = require_bit_identical(expected, found, what)
            else:
                result = require_close(expected, found, FP32_TOLERANCE, what)
        except ValidationError as exc:
            where = f"; {first_differing_layer(host, device, expected, found)}" if model == "int8" else ""
            raise Mismatch(f"{exc}{where}") from exc
        want_labels, got_labels = _labels(host / f"{model}.labels.csv"), _labels(device / f"{model}.labels.csv")
        if not want_labels or want_labels != got_labels:
            differ = [w for w, g in zip(want_labels, got_labels, strict=False) if w != g]
            raise Mismatch(f"{device.name} {model}: labels of the PNG files differ from the host's: {differ[:3]} "
                           f"({len(got_labels)} labels, host {len(want_labels)})")
        figures[model] = {"accuracy": got["accuracy"], "prediction_differences": result.argmax_mismatches,
                          "max_abs_diff": result.max_abs_diff, "bit_mismatches": result.bit_mismatches,
                          "images": result.images,
                          "png_labels": len(got_labels)}
    host_env = _read_json(host / "bench.json").get("environment", {})
    env = _read_json(device / "bench.json").get("environment", {})
    execution = env.get("execution") or {}
    if execution.get("kind") != "emulated":
        raise Mismatch(f"{device.name}: bench report says it ran {execution.get('kind')!r} (expected 'emulated' "
                       f"under qemu-user; evidence {execution.get('evidence')})")
    if (host_env.get("execution") or {}).get("kind") == "emulated":
        raise Mismatch(f"{host.name}: the host's bench report says it ran emulated (expected native or virtualised)")
    if env.get("cpu", {}).get("architecture") != "aarch64":
        raise Mismatch(f"{device.name}: bench report architecture {env.get('cpu', {}).get('architecture')!r} "
                       f"(expected 'aarch64')")
    compared = _read_json(device / "compare.json")  # compare -o compare.md writes its record beside the table
    runs, rows = compared.get("runs") or [{}, {}], compared.get("rows") or []
    ranked = [row for row in rows if row.get("ratios", [None, None])[1] is not None]
    if compared.get("schema") != "lenet-edge-compare" or not runs[1].get("emulated") or not rows or ranked:
        raise Mismatch(f"{device.name}/compare.json ranks an emulated run's timings or does not mark it: "
                       f"run {runs[1]}, {len(ranked)} of {len(rows)} rows with a ratio")
    return {"models": figures, "execution": execution, "cpu": env.get("cpu", {}).get("model")}


def first_differing_layer(host: Path, device: Path, expected, found) -> str:
    """The first layer (in the order onnxruntime runs them) whose value differs between the host's and the
    device's LAYERS_FILE, on the first image whose int8 logits differ, and by how much."""
    import numpy as np

    from lenet_edge.compile.locate import first_differing_image, value_difference

    image = first_differing_image(expected, found)
    if not (host / LAYERS_FILE).is_file() or not (device / LAYERS_FILE).is_file():
        return f"no {LAYERS_FILE} from both sides to name the layer that differs"
    with np.load(host / LAYERS_FILE) as want, np.load(device / LAYERS_FILE) as got:
        order = json.loads(str(want["order"]))
        if json.loads(str(got["order"])) != order:
            return f"{LAYERS_FILE}: the host's and the device's hold different values (not the same probe model)"
        count = len(want["v0"]) if order else 0
        if image >= count:
            return f"image {image} is past the {count} images of {LAYERS_FILE}"
        for i, (value, layer) in enumerate(order):
            a, b = want[f"v{i}"][image], got[f"v{i}"][image]
            differing, gap = value_difference(a, b)
            if differing:
                by = f"{gap:.3g}" if a.dtype == np.float32 else f"{gap:.0f}"
                return (f"first layer that differs on image {image}: {layer} (value {value}), {differing:,} of "
                        f"{a.size:,} {a.dtype.name} values, by up to {by}")
    return f"no value of {LAYERS_FILE} differs on image {image}"


def compare_command(host: Path, devices: list[Path]) -> int:
    failures = 0
    for device in devices:
        try:
            found = check_device(host, device)
        except Mismatch as exc:
            print(f"FAIL {exc}", file=sys.stderr)
            failures += 1
            continue
        for model, f in found["models"].items():
            print(f"{device.name} ({found['cpu']}) {model}: accuracy {f['accuracy']:.2%} as on the host, "
                  f"confusion matrix identical, {f['prediction_differences']} prediction differences, "
                  f"max |logit difference| {f['max_abs_diff']:.3g}, {f['bit_mismatches']} of {f['images']} rows not "
                  f"bit-identical, {f['png_labels']} PNG labels identical")
        print(f"{device.name}: detected as {found['execution']['kind']} ({'; '.join(found['execution']['evidence'])})")
    return 1 if failures else 0


# ----------------------------------------------------------------------------- per-layer values

def probe_command(model: Path, out: Path) -> int:
    """The graph onnxruntime runs for `model` with every value a graph output, and which layer computes each
    (the host makes it: it needs onnx; the device runs it with onnxruntime alone)."""
    import onnx

    from lenet_edge.compile.layers import node_layers
    from lenet_edge.compile.runtime_graph import optimized_model, probe_model
    from lenet_edge.graph import GraphIndex

    graph_model = optimized_model(model.read_bytes(), model)
    graph = GraphIndex(graph_model)
    layer_of = node_layers(graph, onnx.load(str(model)))
    order = [[name, layer_of[node.name]] for node in graph.nodes for name in node.output if name]
    probe = probe_model(graph_model)
    probe.metadata_props.add(key=LAYERS_KEY, value=json.dumps(order))
    onnx.save(probe, str(out))
    return 0


def layers_command(probe: Path, data_dir: Path, out: Path, images: int = LAYER_IMAGES) -> int:
    """Every value of the probe model on the first `images` test images, as onnxruntime computes them here
    (numpy and onnxruntime only: this runs on the device)."""
    import numpy as np

    from lenet_edge.contract import INPUT_NAME, ModelContract
    from lenet_edge.mnist import load_mnist
    from lenet_edge.sessions import open_session, session_options

    session = open_session(probe, probe, session_options(threads=1, optimization="none"))  # already optimised
    metadata = session.get_modelmeta().custom_metadata_map
    order = json.loads(metadata[LAYERS_KEY])
    digits = load_mnist(data_dir, "test")[0][:images]
    inputs = ModelContract.from_metadata(metadata, str(probe)).preprocessing(digits)
    values = session.run([name for name, _ in order], {INPUT_NAME: inputs})
    np.savez_compressed(out, order=np.array(json.dumps(order)), **{f"v{i}": v for i, v in enumerate(values)})
    return 0


# ----------------------------------------------------------------------------- PNG digits

def pngs_command(data_dir: Path, out: Path) -> int:
    """Official test digits as a user's files: dark ink on light paper, larger, some in colour or with
    alpha, so `run` exercises Pillow's decoding and resampling on the device as on the host."""
    from PIL import Image

    from lenet_edge.mnist import load_mnist

    images, _ = load_mnist(data_dir, "test")
    out.mkdir(parents=True, exist_ok=True)
    for i in range(PNG_COUNT):
        paper = Image.fromarray(255 - images[i]).resize((84, 84), Image.Resampling.BICUBIC)
        image = {0: paper, 1: paper.convert("RGB"), 2: paper.convert("RGBA")}[i % 3]
        if i % 3 == 2:  # transparent paper: the ink alone is opaque
            image.putalpha(paper.point(lambda v: 255 - v))
        image.save(out / f"digit{i:02d}.png")
    return 0


# ----------------------------------------------------------------------------- cpuinfo

# AT_HWCAP bits of arm64 Linux (arch/arm64/include/uapi/asm/hwcap.h), in order from bit 0.
HWCAP_NAMES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
               "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2_NAMES = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm "
                "svebf16 i8mm bf16 dgh rng bti").split()
# MIDR part numbers of the CPU models the job emulates (Arm's technical reference manuals).
PARTS = {"cortex-a53": "0xd03", "cortex-a55": "0xd05", "cortex-a57": "0xd07", "cortex-a72": "0xd08",
         "cortex-a76": "0xd0b", "neoverse-n1": "0xd0c"}
AT_HWCAP, AT_HWCAP2 = 16, 26


def cpuinfo_text(cpu: str, hwcap: int, hwcap2: int, cores: int) -> str:
    """An arm64 /proc/cpuinfo, as Linux writes it, for `cores` cores of `cpu` with these hwcaps."""
    features = [n for b, n in enumerate(HWCAP_NAMES) if hwcap >> b & 1]
    features += [n for b, n in enumerate(HWCAP2_NAMES) if hwcap2 >> b & 1]
    block = ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: " + " ".join(features) +
             "\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: " + PARTS[cpu] +
             "\nCPU revision\t: 0\n")
    return "\n".join(block.format(i=i) for i in range(cores)) + "\n"


def cpuinfo_command(cpu: str, cores: int) -> int:
    """The emulated CPU's hwcaps, as the emulator gives them in the auxiliary vector, as cpuinfo text.

    Why: qemu-user 7.2 shows an emulated program the host's x86 /proc/cpuinfo, and onnxruntime
    1.32 crashes parsing it at import; qemu opens a file of that name under its prefix first."""
    if cpu not in PARTS:
        print(f"error: CPU model {cpu!r} (expected one of {', '.join(PARTS)})", file=sys.stderr)
        return 2
    auxv = Path("/proc/self/auxv").read_bytes()
    pairs = dict(struct.iter_unpack("<QQ", auxv[: len(auxv) // 16 * 16]))
    sys.stdout.write(cpuinfo_text(cpu, pairs.get(AT_HWCAP, 0), pairs.get(AT_HWCAP2, 0), cores))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pngs")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("out", type=Path)
    p = sub.add_parser("cpuinfo")
    p.add_argument("cpu")
    p.add_argument("--cores", type=int, default=1)
    p = sub.add_parser("compare")
    p.add_argument("host", type=Path)
    p.add_argument("devices", type=Path, nargs="+")
    p = sub.add_parser("probe")
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("layers")
    p.add_argument("probe", type=Path)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--images", type=int, default=LAYER_IMAGES)
    p.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pngs":
        return pngs_command(args.data_dir, args.out)
    if args.command == "probe":
        return probe_command(args.model, args.out)
    if args.command == "layers":
        return layers_command(args.probe, args.data_dir, args.out, args.images)
    if args.command == "cpuinfo":
        return cpuinfo_command(args.cpu, args.cores)
    return compare_command(args.host, args.devices)


if __name__ == "__main__":
    sys.exit(main())
