"""The ONNX opsets export writes; pure Python, so the export command's --help imports nothing heavy.

DEFAULT_OPSET = 20 because, with torch 2.13, onnx 1.23 and onnxruntime 1.31:
- 20 is the torch 2.13 exporter's own default (torch.onnx's ONNX_DEFAULT_OPSET): its
  ATen->ONNX library is written at opset 18 and onnxscript's version converter carries
  it up to 23 (ONNX_MAX_OPSET); below 18 the exporter falls back to onnx's C++ converter
  and warns that the conversion may fail, above 23 it has no tested path;
- onnxruntime >= 1.17 (early 2024) runs opset 20, so devices with an older wheel load the model;
- onnx.reference runs both the fp32 graph and the QDQ int8 graph that
  onnxruntime.quantization.quantize_static builds from it (per-tensor and per-channel):
  at opset 18 the reference interpreter has no DequantizeLinear for that opset and
  refuses the int8 model, so 18 would break the int8 reference check;
- opset 21 adds nothing these graphs use (its Q/DQ int4/int16 types only).
MIN_OPSET..MAX_OPSET is that supported range; every opset in it exports both variants.
"""

DEFAULT_OPSET = 20
MIN_OPSET, MAX_OPSET = 18, 23
