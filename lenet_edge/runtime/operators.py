"""The operators a lenet-edge model may contain: what export, quantize (every recipe, static and
dynamic, QDQ and QOperator) and onnxruntime's own pre-processing put into a LeNet-5, with the
arithmetic and shape operators around them. Anything else is refused when a model is loaded,
above all control flow (Loop, Scan, If, SequenceMap), with which a model of the right signature
can compute for ever.

(domain, op_type); the default ONNX domain is "".
"""

_ONNX = {
    # layers
    "Conv", "ConvInteger", "QLinearConv", "Gemm", "MatMul", "MatMulInteger", "QLinearMatMul",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "BatchNormalization", "Dropout",
    # activations and arithmetic
    "Relu", "LeakyRelu", "PRelu", "Tanh", "Sigmoid", "HardSigmoid", "Softmax", "LogSoftmax", "Clip", "Erf",
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Abs", "Neg", "Reciprocal", "Min", "Max", "Sum",
    "Mean", "Floor", "Ceil", "Round", "Sign",
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL2", "ArgMax",
    # quantization
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    # shapes and constants
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather", "Pad",
    "Shape", "Size", "Expand", "Tile", "Identity", "Cast", "CastLike", "Constant", "ConstantOfShape",
    "DepthToSpace", "SpaceToDepth",
}
_MICROSOFT = {
    "QGemm", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearReduceMean", "QLinearConv",
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
    "FusedConv", "FusedGemm", "FusedMatMul", "NhwcMaxPool",
}
ALLOWED = frozenset({("", op) for op in _ONNX} | {("com.microsoft", op) for op in _MICROSOFT})
