"""Benchmarking (numpy + onnxruntime only, as the runtime): time models side by side, per layer too, record the
machine, compare reports across runs and devices, with one latency ratio."""
