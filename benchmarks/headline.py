"""Headline figures in one run: fp32 ONNX vs int8 ONNX (`quantize --auto`) vs PyTorch eager,
at batch 1 and 64 with 1 and 2 threads, side by side, with the achieved GFLOP/s of each
against this CPU's peak. It prints ratios; it is not a test.

    python benchmarks/headline.py                      # train (default recipe), export, quantize --auto, bench
    python benchmarks/headline.py --checkpoint C.safetensors [--onnx M.onnx] [--int8 M.int8.onnx]

Timing is lenet_edge.bench.timing.bench: the three models take turns in interleaved rounds
on the same test images with the same onnxruntime SessionOptions (default graph
optimisation), and it records the machine. Ratios are bench's (lenet_edge/bench/ratio.py: the
median over rounds of the per-round ratio of median calls). For int8/fp32 it also prints the range
of the round-by-round ratios and in how many rounds int8 was the faster: at batch 1 a call takes
~0.05 ms, and a claim of "no slower" should hold round after round, not only in the pooled median.

Work counted: the multiply-accumulates of the fp32 model's Conv and Gemm layers for one
image (what LeNet-5 computes; pooling and activations are left out), 2 operations per MAC
for fp32 and int8 alike. The int8 model of the kernel-friendly recipe executes more MACs
than that (zero filters that pad C1 to 8 maps, zero taps of the regrouped kernels); they
are printed but not credited. Peak: cores used x FMA units x SIMD lanes x 2 x clock. The
clock is /proc/cpuinfo's "cpu MHz" (nominal under a hypervisor; turbo unknown); 2 FMA units
per core is an assumption (true of most AVX-512 server cores, not all). The int8 peak is
that of AVX-512 VNNI (VPDPBUSD: 4 u8*s8 MACs per 32-bit lane); where AMX is present and
onnxruntime uses it for int8 GEMMs the real ceiling is far higher.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from peak import count_macs, cpu_peak, format_peak  # the work and peak counting, shared with peers.py

from lenet_edge.bench.markdown import describe_environment
from lenet_edge.bench.records import BenchReport, RowKey
from lenet_edge.bench.timing import TORCH_LABEL, bench
from lenet_edge.errors import LenetEdgeError
from lenet_edge.mnist_download import resolve_data_dir

BATCH_SIZES = (1, 64)
THREADS = (1, 2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data_dir = resolve_data_dir(args.data_dir)  # once, here: the stages below take a directory
    with tempfile.TemporaryDirectory(prefix="lenet-edge-headline-") as tmp:
        checkpoint, fp32, int8 = prepare(args, Path(tmp))
        print(f"timing fp32 {fp32.name}, int8 {int8.name}" + (f", PyTorch eager {checkpoint.name}" if checkpoint else
                                                                 " (no checkpoint: no PyTorch eager rows)"), flush=True)
        report = bench({"fp32": fp32, "int8": int8}, batch_sizes=BATCH_SIZES, threads=THREADS, runs=args.runs,
                       rounds=args.rounds, checkpoint=checkpoint, data_dir=args.data_dir)
        macs = {"useful": count_macs(fp32), "int8 executes": count_macs(int8)}
        print(headline(report, macs, fp32, int8))
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="trained checkpoint (.safetensors); default: train one")
    p.add_argument("--onnx", type=Path, help="fp32 model; default: export the checkpoint")
    p.add_argument("--int8", type=Path, help="int8 model; default: lenet-edge quantize --auto of the fp32 model")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST directory (default: $LENET_EDGE_DATA)")
    p.add_argument("--variant", default="lenet5-modern", choices=("lenet5-modern", "lenet5"))
    p.add_argument("--runs", type=int, default=2000,
                   help="timed runs per model and row, at least: a turn lasts >= 50 ms, so batch 1 gets ~10x more")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds the runs are split into")
    return p.parse_args(argv)


def prepare(args, work: Path) -> tuple[Path | None, Path, Path]:
    """(checkpoint or None, fp32 model, int8 model): the given ones, the rest built as the pipeline builds them."""
    data = args.data_dir
    checkpoint = args.checkpoint
    if checkpoint is None and args.onnx is None:
        from lenet_edge.train.recipes import default_recipe
        from lenet_edge.train.trainer import train

        checkpoint = work / f"{args.variant}.safetensors"
        print(f"training {args.variant} with its default recipe ...", flush=True)
        train(data, checkpoint, default_recipe(args.variant))
    fp32 = args.onnx
    if fp32 is None:
        from lenet_edge.export.exporter import export_checkpoint

        fp32 = work / "model.onnx"
        print("exporting to ONNX ...", flush=True)
        export_checkpoint(checkpoint, fp32, data_dir=data)
    int8 = args.int8
    if int8 is None:
        from lenet_edge.quantize.search import auto_quantize, format_search

        int8 = work / "model.int8.onnx"
        print("quantize --auto ...", flush=True)
        result = auto_quantize(fp32, int8, data_dir=data)
        print(format_search(result.search), flush=True)
    return checkpoint, Path(fp32), Path(int8)


def headline(report: BenchReport, macs: dict, fp32: Path, int8: Path) -> str:
    rows = report.by_key
    torch = TORCH_LABEL in report.labels
    useful = macs["useful"]
    sizes = {m.label: m.bytes for m in report.models}
    checks = {m.label: m.check.accuracy for m in report.models}
    load = report.environment.get("load_average") or {}
    executed = f"{macs['int8 executes']:,} MACs, zeros included" if macs["int8 executes"] else "uncounted MACs"
    checked = report.models[0].check.images
    lines = [
        "",
        f"machine: {describe_environment(report.environment)}",
        f"load average at start {load.get('start')}, at end {load.get('end')}; runs per row "
        + ", ".join(f"{r.runs} at {r.threads}t_b{r.batch_size}" for r in report.rows if r.model == "fp32")
        + f", in {report.settings['rounds']} interleaved rounds of >= {report.settings['min_turn_ms']:g} ms "
        f"per model; {report.duration_s:.0f} s",
        f"models: fp32 {fp32.name} {sizes['fp32'] / 1024:.1f} KiB, int8 {int8.name} {sizes['int8'] / 1024:.1f} KiB "
        f"({sizes['fp32'] / sizes['int8']:.2f}x smaller); accuracy on the first {checked} test images: "
        + ", ".join(f"{k} {v:.2%}" for k, v in checks.items()),
        f"work per image: {useful:,} MACs = {2 * useful / 1e6:.3f} MFLOP (the int8 graph executes {executed}; "
        "only the useful ones are credited)",
        "",
        "p50 latency per call (ms); ratios as bench gives them: the median over rounds of the per-round ratio of "
        "median calls (< 1: the first is faster); int8/fp32 also gives [min-max of the per-round ratios] and the "
        "rounds in which int8 was faster",
        f"{'threads':>7} {'batch':>5} | {'fp32':>8} {'int8':>8} {'torch':>8} | {'int8/fp32':>28} "
        f"{'fp32/torch':>10} {'int8/torch':>10} | achieved GFLOP/s (% of peak): fp32, int8, torch",
    ]
    for t in THREADS:
        peak = cpu_peak(t)
        for b in BATCH_SIZES:
            f, q = rows[RowKey("fp32", b, t)], rows[RowKey("int8", b, t)]
            e = rows.get(RowKey(TORCH_LABEL, b, t))
            p50 = {k: r.latency_ms.p50 for k, r in (("fp32", f), ("int8", q), ("torch", e)) if r}
            per_round = np.asarray(q.spread.round_p50s_ms) / np.asarray(f.spread.round_p50s_ms)
            ratio = (f"{report.ratio(q, 'fp32'):.2f} [{per_round.min():.2f}-{per_round.max():.2f}] "
                     f"{int((per_round < 1).sum())}/{len(per_round)}")
            vs_torch = (f"{report.ratio(f, TORCH_LABEL):>10.2f} {report.ratio(q, TORCH_LABEL):>10.2f}" if torch
                        else f"{'-':>10} {'-':>10}")
            rates = [_rate(useful, b, p50[k], peak["fp32" if k != "int8" else "int8"]) for k in ("fp32", "int8")]
            rates.append(_rate(useful, b, p50["torch"], peak["fp32"]) if torch else "-")
            lines.append(f"{t:>7} {b:>5} | {p50['fp32']:>8.3f} {p50['int8']:>8.3f} "
                         f"{p50['torch'] if torch else float('nan'):>8.3f} | {ratio:>28} {vs_torch} | "
                         + ", ".join(rates))
    peaks = "; ".join(f"{t} thread(s): fp32 {format_peak(cpu_peak(t)['fp32'])} GFLOP/s, "
                      f"int8 {format_peak(cpu_peak(t)['int8'])} GOP/s" for t in THREADS)
    lines += ["", "peak per thread count: " + peaks,
              f"peak basis: {cpu_peak(max(THREADS))['basis']}"]
    return "\n".join(lines)


def _rate(macs: int | None, batch: int, ms: float, peak: float | None) -> str:
    if not macs:
        return "?"
    gflops = 2 * macs * batch / (ms / 1e3) / 1e9
    return f"{gflops:.2f} ({100 * gflops / peak:.2f}%)" if peak else f"{gflops:.2f} (peak ?)"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LenetEdgeError as exc:  # bad input: one line, as the CLI gives it
        sys.exit(f"error: {exc}")
