"""Export stage: a training checkpoint -> a validated ONNX model carrying its preprocessing contract.

Needs torch and onnx (the host extras); `exporter.export_checkpoint` is the entry point.
"""
