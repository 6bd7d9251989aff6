#!/usr/bin/env bash
# The ARM64 device job: the device install (the project's wheel with its base dependencies only,
# aarch64 wheels of numpy, onnxruntime, pillow and click) in a Debian 12 arm64 userland under
# qemu-user, for a Raspberry Pi 4 CPU (cortex-a72) and a Pi 5 CPU (cortex-a76). The real
# `lenet-edge evaluate`, `run`, `bench` and `compare` run there on models the host built, and
# check.py fails the job on any difference from the same commands on the host: accuracy and
# confusion matrix identical, int8 logits bit-identical, fp32 logits within 1e-4, identical labels
# for PNG files, the bench report marked emulated and compare giving it no ratio.
#
# Usage, as root on Debian 12 (apt-get installs qemu-user-static and mmdebstrap when missing):
#   devices/arm64/run.sh MNIST_DIR [WORK_DIR]
# The host side uses the project's virtual environment ($VENV, default .venv, as `make setup` makes it).
#
# Why these choices (measured on 2 cores):
# - mmdebstrap --variant=extract unpacks the arm64 packages without running anything under
#   emulation: ~25 s, 75 MB. pip installs the aarch64 wheels with --platform into the rootfs.
# - QEMU_CPU names the Pi's CPU: qemu's default `max` CPU (SVE, SME) is ~10x slower to emulate.
# - Debian 12's qemu 7.2 shows an emulated program the host's x86 /proc/cpuinfo, and onnxruntime
#   crashes parsing it at import; qemu opens <prefix>/proc/cpuinfo first, so each CPU model gets a
#   cpuinfo written from the hwcaps the emulator gives that CPU (check.py cpuinfo).
# - Every command runs with one thread, the two CPU models side by side: the full 10,000-image
#   test set is evaluated, no subset needed. Both CPU models' emulated commands together took
#   369 s of CPU (about 3 min of wall time on 2 idle cores); the host's side (rootfs, wheels,
#   train, export, quantize --auto, its own commands) 171 s of CPU plus downloads.
# - The host trains for one epoch (~97 % accuracy): the check is that the device computes what
#   the host computes, and one epoch gives real weights as well as eight.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
DATA="$(cd "${1:?usage: devices/arm64/run.sh MNIST_DIR [WORK_DIR]}" && pwd)"
WORK="${2:-$(mktemp -d)}"
mkdir -p "$WORK" && WORK="$(cd "$WORK" && pwd)"
VENV="${VENV:-$REPO/.venv}"
HOST_PY="$VENV/bin/python"
CPUS=(cortex-a72 cortex-a76)
CHECK="$REPO/devices/arm64/check.py"
SECONDS=0
# Each step shows the wall time so far and the CPU time (user, system) the finished commands took.
step() {
    times >"$WORK/times"
    echo "arm64 [${SECONDS}s wall, CPU $(tail -1 "$WORK/times")] $*" >&2
}

step "tools"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v mmdebstrap >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user-static mmdebstrap >/dev/null
fi
qemu-aarch64-static --version | head -1 >&2

step "arm64 rootfs (Debian 12, python3.11)"
ROOTFS="$WORK/rootfs"
rm -rf "$ROOTFS"
mmdebstrap --quiet --mode=root --variant=extract --architectures=arm64 \
    --include=python3.11,libstdc++6,libgcc-s1 bookworm "$ROOTFS"

step "the project's wheel and its base dependencies for aarch64 (onnxruntime and numpy as on the host)"
rm -rf "$WORK/wheel"
"$HOST_PY" -m pip wheel --quiet --no-deps -w "$WORK/wheel" "$REPO"
PINS=$("$HOST_PY" -c 'import numpy, onnxruntime; print(f"numpy=={numpy.__version__} onnxruntime=={onnxruntime.__version__}")')
# shellcheck disable=SC2086  # PINS is two requirement words
"$HOST_PY" -m pip install --quiet --target "$ROOTFS/opt/site" --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    "$WORK"/wheel/lenet_edge-*.whl $PINS
echo "device: $(ls "$ROOTFS/opt/site" | grep -E '^(numpy|onnxruntime|pillow|click)-.*dist-info$' | tr '\n' ' ')" >&2

step "host: models (train one epoch, export, quantize --auto as the pipeline does)"
MODELS="$WORK/models"
mkdir -p "$MODELS"
"$VENV/bin/lenet-edge" train --data-dir "$DATA" --epochs 1 --seed 0 -o "$MODELS/lenet.safetensors" --force
"$VENV/bin/lenet-edge" export "$MODELS/lenet.safetensors" -o "$MODELS/fp32.onnx" --data-dir "$DATA" --force
"$VENV/bin/lenet-edge" quantize "$MODELS/fp32.onnx" -o "$MODELS/int8.onnx" --auto --data-dir "$DATA" --force
"$HOST_PY" "$CHECK" pngs --data-dir "$DATA" "$WORK/pngs"
"$HOST_PY" "$CHECK" probe "$MODELS/int8.onnx" "$MODELS/int8.probe.onnx"  # to name a differing layer

# results OUT DEVICE_LABEL LENET_EDGE...: the commands whose outputs check.py compares.
results() {
    local out="$1" label="$2"
    shift 2
    rm -rf "$out" && mkdir -p "$out"
    for model in fp32 int8; do
        "$@" evaluate "$MODELS/$model.onnx" --data-dir "$DATA" --threads 1 --json \
            --logits "$out/$model.logits.npy" >"$out/$model.eval.json"
        "$@" run "$MODELS/$model.onnx" "$WORK"/pngs/*.png --threads 1 --format csv -o "$out/$model.labels.csv"
    done
    # No --data-dir: the official test digits carried in the package, as on a device without network.
    # Few, small calls: emulated timings mean nothing (check.py only checks how they are reported).
    "$@" bench "$MODELS/fp32.onnx" "$MODELS/int8.onnx" --device "$label" --batch-sizes 1,8 --threads 1 \
        --runs 6 --warmup 2 --rounds 2 --min-turn-ms 0 -o "$out/bench.json" >/dev/null
}

step "host: evaluate, run, bench"
results "$WORK/host" host "$VENV/bin/lenet-edge"
"$HOST_PY" "$CHECK" layers "$MODELS/int8.probe.onnx" --data-dir "$DATA" "$WORK/host/int8.layers.npz"

# device CPU: the same commands in the arm64 userland, then compare of the host's report with its own.
device() {
    local cpu="$1" prefix="$WORK/prefix-$1"
    rm -rf "$prefix" && cp -al "$ROOTFS" "$prefix"  # hard links: one rootfs, a cpuinfo per CPU model
    local emulate=(env QEMU_LD_PREFIX="$prefix" QEMU_CPU="$cpu" PYTHONPATH="$prefix/opt/site"
        qemu-aarch64-static "$prefix/usr/bin/python3.11")
    "${emulate[@]}" "$CHECK" cpuinfo "$cpu" --cores "$(nproc)" >"$WORK/cpuinfo-$cpu"
    mkdir -p "$prefix/proc" && mv "$WORK/cpuinfo-$cpu" "$prefix/proc/cpuinfo"
    results "$WORK/$cpu" "qemu-$cpu" "${emulate[@]}" "$prefix/opt/site/bin/lenet-edge"
    "${emulate[@]}" "$CHECK" layers "$MODELS/int8.probe.onnx" --data-dir "$DATA" "$WORK/$cpu/int8.layers.npz"
    "${emulate[@]}" "$prefix/opt/site/bin/lenet-edge" compare "$WORK/host/bench.json" "$WORK/$cpu/bench.json" \
        -o "$WORK/$cpu/compare.md" >/dev/null
}

step "devices under qemu-user: ${CPUS[*]} side by side"
pids=()
for cpu in "${CPUS[@]}"; do
    device "$cpu" >"$WORK/$cpu.log" 2>&1 &
    pids+=($!)
done
failed=0
for i in "${!CPUS[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "arm64: ${CPUS[$i]} failed:" >&2 && cat "$WORK/${CPUS[$i]}.log" >&2
        failed=1
    fi
done
[ "$failed" = 0 ] || exit 1

step "compare the devices with the host"
"$HOST_PY" "$CHECK" compare "$WORK/host" "${CPUS[@]/#/$WORK/}"
step "done"
