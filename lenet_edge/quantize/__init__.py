"""Quantization stage: fp32 ONNX -> int8 ONNX with onnxruntime's quantization tooling, validated.

One candidate is one `QuantSettings`; `build.build_candidate` turns it into a model file and
`validation.measure` / `structure.check_structure` judge a candidate against the fp32
model, so a search over candidates reuses them. `quantizer.quantize_model` is the stage.
Modules here import onnx at import time: import them inside functions (see commands.py).
"""
