"""Quantization stage: fp32 ONNX -> int8 ONNX with onnxruntime's quantization tooling, validated.

Read in this order: settings.py (what decides an int8 model), calibration.py (the images its
ranges come from), recipes.py (settings + graph choice + op types + a step after), rewrite.py
(the kernel-friendly rewrite of a ReLU/max-pool LeNet-5), build.py (one builder for every
recipe), structure.py / validation.py / reference.py (the checks), steps.py (inputs, judging,
the final file), search.py (the stage: one recipe untimed, or `--auto`'s timed search),
quantizer.py (a plain `quantize`), layer_report.py, commands.py (the CLI).
Modules here import onnx at import time: import them inside functions (see commands.py).
"""
