"""Exact folds of the classic LeNet-5's constant scales and shifts into the layers next to them.

Why. The paper's network (lenet5) exports as ~38 small nodes: its squashing function
1.7159 tanh(2a/3) is Mul -> Tanh -> Mul, each subsampling layer is AveragePool -> Mul(4) ->
Mul(coefficient) -> Add(bias), and the RBF output is Mul, ReduceSum, Mul, MatMul, Sub, Add, Div.
Quantized as it stands, every one of them is an int8 node with its own rounding, and onnxruntime's
standard int8 model was 1.6x slower than fp32 at batch 1 (AVX2, 1 thread). Folded, the same
function is the plain chain conv -> tanh -> pool-conv -> tanh -> ... -> Gemm -> tanh -> RBF, which
the kernel-friendly rewrites (rewrite.py) then take like lenet5-tanh's:

    scale or shift after a layer    Conv/Gemm -> Mul(c) or Add(c), c a scalar or per output channel:
                                    W, b -> c W, c b, or b -> b + c
    scale before a layer            Mul(x, c) -> pools/reshapes -> Conv/Gemm, c a scalar: W -> c W
    weighted subsampling            AveragePool 2x2 -> Mul/Add per map: a depthwise 2x2 stride-2 conv
                                    of weights 1/4 (the folds above then carry the coefficient and bias)
    RBF output                      (sum x^2 - k x.P + c) / d as Gemm(x, -k P / d, c / d) + sum x^2 / d,
                                    the squashing's 1.7159 folded into both (x = 1.7159 t)

All folds match by structure and keep the function (float rounding aside): `verify_rewrite`
proves the whole rewrite on the test set before anything is quantized.
"""

from __future__ import annotations

import numpy as np

from ..errors import require
from ..graph import (
    add_initializer,
    attribute,
    consumers,
    initializer,
    initializer_array,
    is_private_initializer,
    producer,
    replace_nodes,
    set_initializer,
    static_shape,
)

onnx = require("onnx", "quantize")
from onnx import helper  # noqa: E402

LAYERS = ("Conv", "Gemm")
THROUGH = ("AveragePool", "Reshape", "Flatten")  # linear in their input: a scale passes through them


def fold_affine(m: onnx.ModelProto) -> list[str]:
    """Apply the folds of the module docstring until none applies; the ids of those that did."""
    g = m.graph
    applied = []
    if _subsampling_as_depthwise_convs(m):
        applied.append("subsampling-as-depthwise-conv")
    folded = 0
    while _fold_one_scale_or_shift(g):
        folded += 1
    if folded:
        applied.append("constant-scales-and-shifts-into-layers")
    if _rbf_as_gemm(g):
        applied.append("rbf-as-gemm")
    return applied


def _constant(g, node) -> tuple[int, np.ndarray] | None:
    """(index of the other input, its value) for a Mul/Add of one tensor and one float constant."""
    for i in (0, 1):
        other = node.input[1 - i]
        if initializer(g, other) is not None and initializer(g, node.input[i]) is None:
            value = initializer_array(g, other)
            return (i, value) if value.dtype == np.float32 else None
    return None


def _per_channel(value: np.ndarray, channels: int, layer) -> np.ndarray | None:
    """`value` as one number per output channel of `layer`, or None when it is not broadcast that way."""
    if value.size == 1:
        return np.full(channels, value.item(), np.float32)
    squeezed = value.reshape(-1) if value.size == channels else None
    conv_shaped = value.ndim >= 3 and value.shape[-2:] == (1, 1) and value.shape[-3] == channels
    gemm_shaped = layer.op_type == "Gemm" and value.ndim == 1
    return squeezed if squeezed is not None and (conv_shaped or gemm_shaped) else None


def _layer_weights(g, layer) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, b) of a Conv/Gemm whose weight and bias are its own constants (a missing bias made zero), else None."""
    if layer.op_type == "Gemm" and (attribute(layer, "transA", 0) or attribute(layer, "alpha", 1.0) != 1.0
                                    or attribute(layer, "beta", 1.0) != 1.0):
        return None
    if not is_private_initializer(g, layer.input[1]):
        return None
    w = initializer_array(g, layer.input[1])
    out = w.shape[0] if layer.op_type == "Conv" or attribute(layer, "transB", 0) else w.shape[1]
    if len(layer.input) < 3:
        layer.input.append(add_initializer(g, f"{layer.name}.bias", np.zeros(out, np.float32)))
    elif not is_private_initializer(g, layer.input[2]):
        return None
    return w, initializer_array(g, layer.input[2])


def _fold_one_scale_or_shift(g) -> bool:
    for node in g.node:
        if node.op_type not in ("Mul", "Add") or (found := _constant(g, node)) is None:
            continue
        index, c = found
        x = node.input[index]
        before = producer(g, x)
        if before is not None and before.op_type in LAYERS and len(consumers(g, x)) == 1:
            if _fold_after(g, before, node, c):
                return True
        if node.op_type == "Mul" and c.size == 1 and _fold_before(g, node, x, float(c.item())):
            return True
    return False


def _fold_after(g, layer, node, c: np.ndarray) -> bool:
    """layer -> Mul(c)/Add(c): into the layer's weight and bias."""
    weights = _layer_weights(g, layer)
    if weights is None:
        return False
    w, b = weights
    per_channel = _per_channel(c, len(b), layer)
    if per_channel is None:
        return False
    if node.op_type == "Mul":
        scale = per_channel.reshape(-1, *([1] * (w.ndim - 1))) if layer.op_type == "Conv" or \
            attribute(layer, "transB", 0) else per_channel  # per output: rows of (out, ...) or columns of (in, out)
        set_initializer(g, layer.input[1], w * scale)
        set_initializer(g, layer.input[2], b * per_channel)
    else:
        set_initializer(g, layer.input[2], b + per_channel)
    layer.output[0] = node.output[0]
    g.node.remove(node)
    return True


def _fold_before(g, node, x: str, c: float) -> bool:
    """Mul(x, c) -> pools/reshapes -> one Conv/Gemm: c into that layer's weight."""
    path, tensor = [], node.output[0]
    while True:
        users = consumers(g, tensor)
        if len(users) != 1:
            return False
        nxt = users[0]
        if nxt.op_type in LAYERS and nxt.input[0] == tensor:
            break
        if nxt.op_type not in THROUGH + (("MaxPool",) if c > 0 else ()):
            return False
        path.append(nxt)
        tensor = nxt.output[0]
    if _layer_weights(g, nxt) is None:
        return False
    set_initializer(g, nxt.input[1], c * initializer_array(g, nxt.input[1]))
    for user in consumers(g, node.output[0]):
        user.input[:] = [x if name == node.output[0] else name for name in user.input]
    g.node.remove(node)
    return True


def _subsampling_as_depthwise_convs(m: onnx.ModelProto) -> int:
    """Each unpadded 2x2 stride-2 AveragePool that feeds a Mul or Add of constants: a depthwise conv of
    weights 1/4 and zero bias, so that the scale and shift after it can be folded in."""
    g = m.graph
    count = 0
    for pool in [n for n in g.node if n.op_type == "AveragePool"]:
        users = consumers(g, pool.output[0])
        shape = static_shape(m, pool.input[0])  # (N, C, H, W)
        if (len(users) != 1 or users[0].op_type not in ("Mul", "Add") or _constant(g, users[0]) is None
                or attribute(pool, "kernel_shape") != [2, 2] or attribute(pool, "strides") != [2, 2]
                or any(attribute(pool, "pads", [])) or attribute(pool, "ceil_mode", 0)
                or shape is None or len(shape) != 4 or shape[1] is None):
            continue
        channels = shape[1]
        w = add_initializer(g, f"{pool.name}.weight", np.full((channels, 1, 2, 2), 0.25, np.float32))
        b = add_initializer(g, f"{pool.name}.bias", np.zeros(channels, np.float32))
        conv = helper.make_node("Conv", [pool.input[0], w, b], list(pool.output), name=pool.name,
                                group=channels, kernel_shape=[2, 2], strides=[2, 2])
        replace_nodes(g, [pool], [conv])
        count += 1
    return count


def _rbf_as_gemm(g) -> bool:
    """(ReduceSum(x*x) - MatMul(k*x, P) + c) / d, x = A*t, as Gemm(t, -k A P / d, c / d) + (A^2 / d) sum t^2."""
    out = producer(g, g.output[0].name)
    if out is None or out.op_type != "Div" or (divisor := _constant(g, out)) is None or divisor[0] != 0:
        return False
    add = producer(g, out.input[0])
    found = _constant(g, add) if add is not None and add.op_type == "Add" else None
    sub = producer(g, add.input[found[0]]) if found else None
    if sub is None or sub.op_type != "Sub":
        return False
    square_sum, matmul = producer(g, sub.input[0]), producer(g, sub.input[1])
    if (square_sum is None or square_sum.op_type != "ReduceSum" or matmul is None or matmul.op_type != "MatMul"
            or initializer(g, matmul.input[1]) is None):
        return False
    square, scaled = producer(g, square_sum.input[0]), producer(g, matmul.input[0])
    scale = _constant(g, scaled) if scaled is not None and scaled.op_type == "Mul" else None
    if (square is None or square.op_type != "Mul" or square.input[0] != square.input[1] or scale is None
            or scaled.input[scale[0]] != square.input[0] or scale[1].size != 1
            or list(initializer_array(g, square_sum.input[1])) not in ([1], [-1])):
        return False
    x, k, d = square.input[0], float(scale[1].item()), float(divisor[1].item())
    t, a = x, 1.0
    squash = producer(g, x)
    if squash is not None and squash.op_type == "Mul" and (amp := _constant(g, squash)) and amp[1].size == 1:
        t, a = squash.input[amp[0]], float(amp[1].item())  # x = A t: A goes into the weights
    p = initializer_array(g, matmul.input[1])  # (84, 10)
    tag = "rbf"
    w = add_initializer(g, f"{tag}.weight", (-k * a / d * p).astype(np.float32))
    b = add_initializer(g, f"{tag}.bias", (found[1].reshape(-1) / d).astype(np.float32))
    q = add_initializer(g, f"{tag}.square_scale", np.array(a * a / d, np.float32))
    axes = add_initializer(g, f"{tag}.axes", np.array([1], np.int64))
    new = [  # ReduceSum of a Mul, not ReduceSumSquare: onnxruntime's quantization shape inference fails on that
        helper.make_node("Gemm", [t, w, b], [f"{tag}.linear"], name=f"{tag}.gemm"),  # (N, 10)
        helper.make_node("Mul", [t, t], [f"{tag}.square"], name=f"{tag}.square"),  # (N, 84)
        helper.make_node("ReduceSum", [f"{tag}.square", axes], [f"{tag}.square_sum"], name=f"{tag}.square_sum",
                         keepdims=1),  # (N, 1)
        helper.make_node("Mul", [f"{tag}.square_sum", q], [f"{tag}.square_term"], name=f"{tag}.square_term"),
        helper.make_node("Add", [f"{tag}.linear", f"{tag}.square_term"], [out.output[0]], name=f"{tag}.logits"),
    ]
    old = [n for n in (squash if t != x else None, square, square_sum, scaled, matmul, sub, add, out) if n is not None]
    replace_nodes(g, old, new)
    return True
