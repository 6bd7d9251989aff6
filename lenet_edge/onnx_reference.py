"""onnx.reference (the ONNX specification's numpy interpreter) for quantized models, onnxruntime's
contrib operators included: `reference_evaluator(model)` runs any int8 model lenet-edge writes.

Two gaps of onnx.reference are bridged:
- DequantizeLinear has no implementation below opset 19; later opsets only add types (float8, int4)
  and attributes whose defaults keep the opset-13 meaning, so the newest one stands in for 8-bit integers;
- QOperator models hold onnxruntime's own quantized operators (com.microsoft): QGemm, QLinearSigmoid
  (the tanh LeNet-5's kernel-friendly rewrite), QLinearAdd, QLinearMul and QLinearAveragePool (the
  classic LeNet-5). They are not ONNX standard operators; the classes below follow their contrib-op
  specifications, as dequantize -> the float operator of the reference implementation -> quantize.

Used by the quantize stage's reference check (quantize/checks.py) and by the tests that run an int8
file in the reference implementation; any reader of an int8 model (export's onnx.reference check,
compile's emulated checks) can take it in place of a bare ReferenceEvaluator. Needs onnx.
"""

from __future__ import annotations

import numpy as np

from .errors import require

onnx = require("onnx", "quantize")
from onnx.reference import ReferenceEvaluator  # noqa: E402
from onnx.reference.op_run import OpRun  # noqa: E402
from onnx.reference.ops.op_average_pool import AveragePool_19  # noqa: E402
from onnx.reference.ops.op_dequantize_linear import DequantizeLinear_23  # noqa: E402


class DequantizeLinear(DequantizeLinear_23):
    """DequantizeLinear of opsets 13-18 on (u)int8, which the opset-23 definition covers."""

    op_domain = ""


class QGemm(OpRun):
    """com.microsoft QGemm: Y = alpha * a_scale * b_scale * ((A - a_zp)(B - b_zp) + C), requantized
    to y_scale/y_zero_point when given, else float. C is int32 in the scale a_scale * b_scale."""

    op_domain = "com.microsoft"

    def _run(self, A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None, y_zero_point=None,
             alpha=1.0, transA=0, transB=0):
        a = A.T if transA else A  # (M, K)
        b = B.T if transB else B  # (K, N); per-column b_scale/b_zero_point are (N,)
        a = a.astype(np.int64) - a_zero_point.astype(np.int64)
        b = b.astype(np.int64) - b_zero_point.astype(np.int64)
        acc = a @ b  # (M, N) exact integer accumulation
        if C is not None:
            acc = acc + C.astype(np.int64)
        y = (alpha * a_scale * b_scale).astype(np.float32) * acc.astype(np.float32)  # (M, N)
        return (y.astype(np.float32) if y_scale is None else _quantize(y, y_scale, y_zero_point),)


def _dequantize(x, scale, zero_point) -> np.ndarray:
    zero = 0 if zero_point is None else zero_point.astype(np.float32)
    return (x.astype(np.float32) - zero) * scale


def _quantize(y, scale, zero_point) -> np.ndarray:
    info = np.iinfo(zero_point.dtype)
    q = np.rint(y / scale) + zero_point.astype(np.float32)  # round half to even, as QuantizeLinear
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


class QLinearAdd(OpRun):
    op_domain = "com.microsoft"

    def _run(self, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point):
        return (_quantize(_dequantize(A, A_scale, A_zero_point) + _dequantize(B, B_scale, B_zero_point),
                          C_scale, C_zero_point),)


class QLinearMul(OpRun):
    op_domain = "com.microsoft"

    def _run(self, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point):
        return (_quantize(_dequantize(A, A_scale, A_zero_point) * _dequantize(B, B_scale, B_zero_point),
                          C_scale, C_zero_point),)


class QLinearSigmoid(OpRun):
    op_domain = "com.microsoft"

    def _run(self, X, X_scale, X_zero_point, Y_scale, Y_zero_point):
        x = _dequantize(X, X_scale, X_zero_point)
        return (_quantize(1 / (1 + np.exp(-x)), Y_scale, Y_zero_point),)


class QLinearAveragePool(AveragePool_19):
    op_domain = "com.microsoft"

    def _run(self, X, x_scale, x_zero_point, y_scale, y_zero_point, auto_pad=None, ceil_mode=None,
             count_include_pad=None, kernel_shape=None, pads=None, strides=None, channels_last=0):
        if channels_last:
            raise NotImplementedError("QLinearAveragePool with channels_last=1")
        (y,) = super()._run(_dequantize(X, x_scale, x_zero_point), auto_pad=auto_pad, ceil_mode=ceil_mode,
                            kernel_shape=kernel_shape, pads=pads, strides=strides,
                            count_include_pad=count_include_pad)
        return (_quantize(y, y_scale, y_zero_point),)


def reference_evaluator(model: onnx.ModelProto) -> ReferenceEvaluator:
    """A ReferenceEvaluator of `model` with the operators above (DequantizeLinear only below opset 19)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    new_ops = [QGemm, QLinearAdd, QLinearMul, QLinearSigmoid, QLinearAveragePool]
    new_ops += [DequantizeLinear] if opset < 19 else []
    return ReferenceEvaluator(model, new_ops=new_ops)
