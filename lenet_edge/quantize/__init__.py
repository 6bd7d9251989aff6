"""Quantization stage: fp32 ONNX -> int8 ONNX with onnxruntime's quantization tooling, validated.

Two entry points: `stage.quantize_model` (one recipe, the user's settings) and `search.auto_quantize`
(`--auto`: candidates, timed side by side, a stated rule); they share stage.py's steps.

Read in this order: settings.py (what decides an int8 model: settings, recipes, the quantization
record), rewrite.py (the exact graph rewrites: the kernel-friendly LeNet-5, the classic network's
folds, float logits), stage.py (`quantize_model` and the shared steps: inputs and calibration, one
builder for every recipe, judging, the shipped file), checks.py (every check of a candidate),
search.py (`auto_quantize`: candidates, timing, the rule, its table), layer_report.py (per-layer
error, only with --report), commands.py (the CLI). Derivations and measurements: docs/quantize.md.
Modules here but settings.py import onnx at import time: import them inside functions (see commands.py).
"""
