# Every target sets up its own virtual environment first, so each one works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
DATA ?= ../shared/datasets/mnist
OUT ?= runs/pipeline
BIN := $(VENV)/bin

.PHONY: setup pipeline test bench bench-mcu train-time lint arm64

$(BIN)/lenet-edge: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# onnxruntime-web's runtime files for lenet-edge web, exactly as web/package-lock.json pins them (no install scripts run).
web/node_modules/onnxruntime-web/package.json: web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

setup: $(BIN)/lenet-edge web/node_modules/onnxruntime-web/package.json

# The main job: train -> export -> quantize -> evaluate -> bench -> report, into $(OUT).
pipeline: setup
	$(BIN)/lenet-edge pipeline --data-dir $(DATA) --out $(OUT) --force

# Two workers (this project's machines have 2 cores), each test file on one of them, so that a file's own
# fixtures are built once; the trained models are shared between the workers (tests/conftest.py).
JOBS ?= 2
test: setup
	LENET_EDGE_DATA=$(DATA) $(BIN)/pytest -q -n $(JOBS) --dist loadfile

bench: setup
	LENET_EDGE_DATA=$(DATA) $(BIN)/python benchmarks/headline.py

# Time to reach each variant's accuracy target over a grid of epoch counts and seeds (~15 min on 2 cores).
train-time: setup
	LENET_EDGE_DATA=$(DATA) $(BIN)/python benchmarks/train_time.py

# Every test image through the generated C on the host and on emulated Cortex-M4F and M0+ cores, bit for bit,
# then flash, RAM and instructions per inference (MODEL: an int8 model from lenet-edge quantize).
MODEL ?= $(OUT)/model.int8.onnx
bench-mcu: setup
	LENET_EDGE_DATA=$(DATA) $(BIN)/python benchmarks/mcu.py $(MODEL)

lint: setup
	$(BIN)/ruff check lenet_edge tests benchmarks scripts devices

# The ARM64 device job: the device install under qemu-user (cortex-a72, cortex-a76) against this host; needs root on Debian 12.
arm64: setup
	VENV=$(abspath $(VENV)) devices/arm64/run.sh $(DATA)
