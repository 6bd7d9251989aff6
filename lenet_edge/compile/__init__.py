"""Compile stage: an int8 ONNX model -> self-contained C99 for microcontrollers and hosts, checked bit for bit
against onnxruntime on the host and on emulated Cortex-M cores (needs onnx; the checks need the `mcu` extra)."""
