"""lenet-edge: LeNet-5 from PyTorch to a device, through ONNX and int8."""

__version__ = "0.1.0"
