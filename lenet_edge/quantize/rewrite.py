"""Exact graph rewrites of a LeNet-5 that let onnxruntime's x86 int8 kernels run fast.

Why: MLAS's fast int8 convolution wants input channels in multiples of 4 and many output channels;
C1 has one input channel and 6 maps, so its QLinearConv falls back to a per-image im2col and ran ~4x
slower than the fp32 conv. The rewrites give every layer a shape those kernels like, with the same
weights rearranged and zeros added: tanh as 2 sigmoid(2x) - 1 (onnxruntime has an int8 Sigmoid, no
int8 Tanh), C1 + activation + 2x2 pool over the image viewed as NHWC 4-column groups, C3 over column
pairs, C5 as a Gemm in NHWC order; the classic LeNet-5 is first folded into plain layers. Transposes
around each Reshape cancel in onnxruntime's NHWC layout pass. The rewritten fp32 model computes the
same function (float rounding aside), and `verify_rewrite` proves it on real inputs before it is
used; the rewrites match by structure, not by node names, and a model of another structure raises
NotRewritable naming what differs. After quantization `lean_file` gives the kernel-friendly
recipes float logits. Channel layouts, folds and measurements: docs/quantize.md, "The
kernel-friendly rewrite".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError, require
from ..graph import (
    add_initializer,
    attribute,
    bypass,
    constant_operand,
    consumers,
    drop_identity_reshapes,
    drop_unused_initializers,
    initializer,
    initializer_array,
    is_plain_conv,
    is_plain_gemm,
    is_plain_pool,
    is_private_initializer,
    merge_reshapes,
    producer,
    replace_nodes,
    set_initializer,
    set_ints,
    single_consumer,
    static_shape,
)
from ..parity import require_close
from ..runtime.session import load_model
from .checks import check_model_file

onnx = require("onnx", "quantize")
from onnx import helper  # noqa: E402

EXACT_ATOL = 1e-4  # max |logit difference| between the rewritten and the original fp32 model, plus
EXACT_RTOL = 1e-6  # this much of the largest |logit|: float32 sums in another order round differently
PAD_MAPS_TO = 8  # C1's maps padded to a multiple of this before a max-pool: 8-byte NHWC pixels run 2x faster there
ACTIVATIONS = ("Relu", "Sigmoid")  # elementwise, with fast int8 kernels; Tanh is turned into Sigmoid first
POOLS = ("MaxPool", "AveragePool")
LAYERS = ("Conv", "Gemm")
THROUGH = ("AveragePool", "Reshape", "Flatten")  # linear in their input: a scale passes through them
AVERAGING_CONVS = ("fold.c1.pool", "fold.c3.pool")  # the convs that stand for average pools, not layers


class NotRewritable(ModelError):
    """The model lacks the structure the rewrites assume (they would not compute the same function)."""


def kernel_friendly(model: onnx.ModelProto, source: str = "model") -> tuple[onnx.ModelProto, list[str]]:
    """A copy of a LeNet-5 (Conv -> Relu/Tanh -> max/average pool, twice, then C5, F6 and a linear output)
    with the rewrites of docs/quantize.md applied, and the ids of those applied, in order."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    applied = fold_affine(m)  # the classic LeNet-5's scales, subsampling and RBF; nothing for the others
    applied += ["tanh-as-sigmoid"] if tanh_as_sigmoid(m, source) else []
    # look the convs up again after each rewrite: rebuilding the node list copies the protos
    (c1, a1), (c3, _), _ = lenet_convs(m, source)
    applied.append(fold_first_conv_and_pool(m, c1, a1, next_conv=c3, source=source))
    _, (c3, a3), _ = lenet_convs(m, source)
    applied.append(fold_column_pairs(m, c3, a3, source=source))
    _, _, (c5, a5) = lenet_convs(m, source)
    applied.append(last_conv_as_nhwc_gemm(m, c5, a5, source=source))
    merge_reshapes(m.graph)  # at batch 1 a call costs ~0.04 ms, so one node less is worth having
    drop_identity_reshapes(m)
    drop_unused_initializers(m.graph)  # e.g. the shape of the Reshape that flattened C5's output
    del m.graph.value_info[:]
    check_model_file(m, source, "the kernel-friendly rewrite is not a valid model")
    return m, applied


def lenet_convs(m: onnx.ModelProto, source: str) -> list[tuple]:
    """The three convs of a LeNet-5 in graph order, each with the activation it feeds: [(conv, act)] x3."""
    g = m.graph
    convs = []
    for node in g.node:
        if node.op_type != "Conv" or node.name in AVERAGING_CONVS or _is_pool_conv(g, node):
            continue
        users = consumers(g, node.output[0])
        if len(users) != 1 or users[0].op_type not in ACTIVATIONS:
            found = ", ".join(u.op_type for u in users) or "nothing"
            raise NotRewritable(f"{source}: conv {node.name} feeds {found} (expected a single Relu, Tanh or Sigmoid)")
        if len(node.input) != 3 or not all(is_private_initializer(g, name) for name in node.input[1:]):
            raise NotRewritable(f"{source}: conv {node.name} needs its own constant weight and bias "
                                f"(expected initializers used by no other node)")
        convs.append((node, users[0]))
    if len(convs) != 3:
        raise NotRewritable(f"{source}: {len(convs)} Conv nodes (expected 3: C1, C3, C5)")
    return convs


# ---------------------------------------------------------------- tanh as sigmoid
def tanh_as_sigmoid(m: onnx.ModelProto, source: str) -> int:
    """Every Tanh after a Conv/Gemm whose output reaches one linear layer as 2 sigmoid(2x) - 1 (see
    docs/quantize.md); returns how many. The next layer may be reached through pools and reshapes, which
    commute with 2y - 1; a tanh read by more than one node (the classic LeNet-5's before its RBF output)
    stays a Tanh."""
    g = m.graph
    converted = 0
    for tanh in [n for n in g.node if n.op_type == "Tanh"]:
        before = producer(g, tanh.input[0])
        if before is None or before.op_type not in ("Conv", "Gemm") or len(consumers(g, tanh.input[0])) != 1:
            raise NotRewritable(f"{source}: Tanh {tanh.name} does not follow a Conv or Gemm of its own "
                                f"(expected each tanh to squash one linear layer)")
        after = _next_linear_layer(g, tanh, source)
        if after is None:
            continue
        for name in before.input[1:]:
            _require_private(g, before, name, source)
            set_initializer(g, name, 2 * initializer_array(g, name))
        w, b = (initializer_array(g, name) for name in after.input[1:3])
        set_initializer(g, after.input[1], 2 * w)  # W (2y - 1) + b = 2W y + (b - W 1)
        set_initializer(g, after.input[2], b - _sum_over_inputs(after, w))
        tanh.op_type = "Sigmoid"
        converted += 1
    return converted


def _next_linear_layer(g, tanh, source: str):
    """The Conv or Gemm that reads `tanh`'s output through unpadded pools and reshapes, all single-use;
    None where the path forks or ends."""
    node = tanh
    while True:
        users = consumers(g, node.output[0])
        if len(users) != 1 or any(o.name == node.output[0] for o in g.output):
            return None
        node = users[0]
        if node.op_type in ("Conv", "Gemm"):
            break
        if node.op_type not in ("MaxPool", "AveragePool", "Reshape", "Flatten") or any(attribute(node, "pads", [])):
            raise NotRewritable(f"{source}: Tanh {tanh.name} reaches {node.op_type} {node.name} "
                                f"(expected only unpadded pools and reshapes before the next Conv or Gemm)")
    plain = is_plain_gemm(node) or (node.op_type == "Conv" and not any(attribute(node, "pads", [])))
    if not plain or len(node.input) != 3:
        raise NotRewritable(f"{source}: {node.op_type} {node.name} after Tanh {tanh.name} is padded, scaled or "
                            f"has no bias (expected a plain layer to take the sigmoid's affine)")
    for name in node.input[1:]:
        _require_private(g, node, name, source)
    return node


def _sum_over_inputs(layer, w: np.ndarray) -> np.ndarray:
    """Per output: the sum of its weights over every input it reads (W 1)."""
    if layer.op_type == "Conv":
        return w.sum(axis=(1, 2, 3))  # (C_out, C_in, K, K)
    return w.sum(axis=1) if attribute(layer, "transB", 0) else w.sum(axis=0)  # Gemm: (out, in) or (in, out)


def _require_private(g, node, name: str, source: str) -> None:
    if not is_private_initializer(g, name):
        raise NotRewritable(f"{source}: {node.op_type} {node.name} needs its own constant weight and bias "
                            f"(expected initializers used by no other node)")


# ---------------------------------------------------------------- the three layer rewrites
def fold_first_conv_and_pool(m: onnx.ModelProto, conv, act, *, next_conv, source: str, group: int = 4) -> str:
    """C1 (1 -> C maps, KxK) + activation + 2x2/2 pool over an image viewed as NHWC (N, H, W/group, group)."""
    g = m.graph
    pool = _plain_pool(g, act, "C1", source)
    _check_plain_conv(conv, source)
    _, cin, H, W = _shape(m, conv.input[0], source)
    if cin != 1:
        raise NotRewritable(f"{source}: first conv {conv.name} has {cin} input channels (expected 1)")
    # padding pays in the MaxPool only; an averaging conv would carry the zero maps' weights (the tanh
    # model's int8 file then missed 3x smaller by 2 KB)
    w, b = _pad_maps(g, conv, next_conv, PAD_MAPS_TO if pool.op_type == "MaxPool" else 1)  # (C, 1, K, K2), (C,)
    C, _, K, K2 = w.shape
    Ho, Wo = H - K + 1, W - K2 + 1
    kw = (group - 1 + K2 - 1) // group + 1  # column groups one output group reads
    if Ho % 2 or Wo % group or W % group or W // group - kw + 1 != Wo // group:
        raise NotRewritable(f"{source}: {conv.name} maps {H}x{W} -> {Ho}x{Wo}, which cannot be folded in "
                            f"column groups of {group} (expected an even height and widths divisible by {group})")
    half = group // 2
    # (64, 4, 6, 2) for LeNet-5: row phase a and column phase s inside the pool window, pool window q of the
    # column group; the row phase shifts the kernel down one row
    w2 = np.concatenate([np.pad(_column_groups(w, group, 2 * q + s, kw), ((0, 0), (0, 0), (a, 1 - a), (0, 0)))
                         for a, s, q in np.ndindex(2, 2, half)])
    set_initializer(g, conv.input[1], w2)
    set_initializer(g, conv.input[2], np.tile(b, 4 * half).astype(np.float32))
    set_ints(conv, "kernel_shape", [K + 1, kw])
    set_ints(conv, "strides", [2, 1])
    rows, groups = Ho // 2, Wo // group
    tag = "fold.c1"
    shape_in = _add_shape(g, f"{tag}.image_as_column_groups", [-1, H, W // group, group])
    shape_out = _add_shape(g, f"{tag}.pooled", [-1, rows, groups * half, C])
    x, out, old = conv.input[0], pool.output[0], []
    conv.input[0] = f"{tag}.input"
    act.output[0] = f"{tag}.act"
    before = [  # one channel: NCHW memory is NHWC memory, so the Reshape alone folds the columns
        _node("Reshape", [x, shape_in], f"{tag}.input_nhwc"),
        _transpose(f"{tag}.input_nhwc", conv.input[0], to_nhwc=False),
    ]
    if pool.op_type == "MaxPool":  # the max over the 4 (a, s) phases: a (1, 4) pool over an NHWC view
        shape_view = _add_shape(g, f"{tag}.pool_view", [-1, rows * groups, 4, half * C])
        pooling = [
            _transpose(act.output[0], f"{tag}.act_nhwc", to_nhwc=True),  # (N, 14, 7, 64)
            _node("Reshape", [f"{tag}.act_nhwc", shape_view], f"{tag}.pool_view_nhwc"),  # (N, 98, 4, 16)
            _transpose(f"{tag}.pool_view_nhwc", f"{tag}.pool_view", to_nhwc=False),
            helper.make_node("MaxPool", [f"{tag}.pool_view"], [f"{tag}.pooled_view"], name=f"{tag}.pool",
                             kernel_shape=[1, 4], strides=[1, 4]),
            _transpose(f"{tag}.pooled_view", f"{tag}.pooled_view_nhwc", to_nhwc=True),  # (N, 98, 1, 16)
        ]
    else:  # the mean (or the classic subsampling's weighted sum) of the 4 (a, s) phases: a 1x1 conv 64 -> 16,
        # channel q*C + c = column 2j+q of map c
        taps, bias = _pool_taps(g, pool, C)  # (C, 2, 2), (C,)
        mean = np.zeros((half * C, 4 * half * C, 1, 1), np.float32)
        for a, s, q, c in np.ndindex(2, 2, half, C):
            mean[q * C + c, ((a * 2 + s) * half + q) * C + c] = taps[c, a, s]
        pooling = [_conv(f"{tag}.pool", act.output[0], f"{tag}.pooled_pairs", g, mean, np.tile(bias, half))]
        if pool.op_type == "Conv":  # its activation moves before the views: elementwise, it commutes with them
            act2 = _single_consumer(g, pool, ACTIVATIONS, source)
            out, old = act2.output[0], [act2]
            act2.input[0], act2.output[0] = f"{tag}.pooled_pairs", f"{tag}.pooled_pairs_act"
            pooling.append(act2)
        pooling.append(_transpose(pooling[-1].output[0], f"{tag}.pooled_view_nhwc", to_nhwc=True))  # (N, 14, 7, 16)
    after = pooling + [
        _node("Reshape", [f"{tag}.pooled_view_nhwc", shape_out], f"{tag}.pooled_nhwc"),  # (N, 14, 14, 8)
        _transpose(f"{tag}.pooled_nhwc", out, to_nhwc=False),
    ]
    replace_nodes(g, [conv, act, pool, *old], before + [conv, act] + after)
    return f"c1-{_short(act)}-{_short(pool)}-as-4-column-conv"


def fold_column_pairs(m: onnx.ModelProto, conv, act, *, source: str, group: int = 2) -> str:
    """A KxK conv (Cin -> C) reading its input as NHWC (N, H, W/group, group*Cin); output channel
    p*C + c is column group*j + p of map c, so its NHWC output (N, Ho, Wo/group, group*C) is the
    original NHWC output (N, Ho, Wo, C). An average pool after it becomes a conv over the column pairs."""
    g = m.graph
    _check_plain_conv(conv, source)
    _, cin, H, W = _shape(m, conv.input[0], source)
    w = initializer_array(g, conv.input[1])  # (C, Cin, K, K2)
    b = initializer_array(g, conv.input[2])  # (C,)
    C, _, K, K2 = w.shape
    Ho, Wo = H - K + 1, W - K2 + 1
    kw = (group - 1 + K2 - 1) // group + 1
    if W % group or Wo % group or W // group - kw + 1 != Wo // group:
        raise NotRewritable(f"{source}: {conv.name} maps width {W} -> {Wo}, which cannot be folded in "
                            f"column groups of {group}")
    w2 = np.concatenate([_column_groups(w, group, p, kw) for p in range(group)])  # (32, 16, 5, 3) for LeNet-5
    set_initializer(g, conv.input[1], w2)
    set_initializer(g, conv.input[2], np.tile(b, group).astype(np.float32))
    set_ints(conv, "kernel_shape", [K, kw])
    tag = "fold.c3"
    shape_in = _add_shape(g, f"{tag}.column_pairs", [-1, H, W // group, group * cin])
    x = conv.input[0]
    conv.input[0] = f"{tag}.input"
    before = [
        _transpose(x, f"{tag}.input_nhwc", to_nhwc=True),  # (N, 14, 14, 8)
        _node("Reshape", [f"{tag}.input_nhwc", shape_in], f"{tag}.input_pairs_nhwc"),  # (N, 14, 7, 16)
        _transpose(f"{tag}.input_pairs_nhwc", conv.input[0], to_nhwc=False),
    ]
    users = consumers(g, act.output[0])
    averaging = len(users) == 1 and (users[0].op_type == "AveragePool" or _is_pool_conv(g, users[0]))
    if averaging and group == 2 and Ho % 2 == 0:
        pool = _plain_pool(g, act, "C3", source)  # the mean of rows 2i, 2i+1 and both column phases
        taps, bias = _pool_taps(g, pool, C)  # (C, 2, 2): row phase, column phase
        mean = np.zeros((C, group * C, 2, 1), np.float32)
        for p, c, r in np.ndindex(group, C, 2):
            mean[c, p * C + c, r, 0] = taps[c, r, p]
        act.output[0] = f"{tag}.act"
        pooling = _conv(f"{tag}.pool", act.output[0], pool.output[0], g, mean, bias, strides=[2, 1])  # (N,16,5,5)
        replace_nodes(g, [conv, act, pool], before + [conv, act, pooling])
        return f"c3-{_short(act)}-{_short(pool)}-over-column-pairs"
    shape_out = _add_shape(g, f"{tag}.unfolded", [-1, Ho, Wo, C])
    out = act.output[0]
    act.output[0] = f"{tag}.act"
    after = [
        _transpose(act.output[0], f"{tag}.act_nhwc", to_nhwc=True),  # (N, 10, 5, 32)
        _node("Reshape", [f"{tag}.act_nhwc", shape_out], f"{tag}.output_nhwc"),  # (N, 10, 10, 16)
        _transpose(f"{tag}.output_nhwc", out, to_nhwc=False),
    ]
    replace_nodes(g, [conv, act], before + [conv, act] + after)
    return "c3-over-column-pairs"


def last_conv_as_nhwc_gemm(m: onnx.ModelProto, conv, act, *, source: str) -> str:
    """A conv whose kernel covers its whole input, then its activation and Flatten/Reshape to (N, C): a
    Gemm over the input flattened in NHWC order, the weights permuted to match."""
    g = m.graph
    _check_plain_conv(conv, source)
    _, _, H, W = _shape(m, conv.input[0], source)
    w = initializer_array(g, conv.input[1])  # (C, Cin, H, W)
    if w.shape[2:] != (H, W):
        raise NotRewritable(f"{source}: last conv {conv.name} has a {w.shape[2]}x{w.shape[3]} kernel over a "
                            f"{H}x{W} input (expected the kernel to cover the input)")
    flat = _single_consumer(g, act, ("Flatten", "Reshape"), source)
    if _shape(m, flat.output[0], source)[1:] != [w.shape[0]]:
        raise NotRewritable(f"{source}: {flat.name} does not flatten C5's output to (N, {w.shape[0]})")
    set_initializer(g, conv.input[1], w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1))  # (C, H*W*Cin)
    tag = "fold.c5"
    gemm = helper.make_node("Gemm", [f"{tag}.input_flat", conv.input[1], conv.input[2]], [conv.output[0]],
                            name=f"{tag}.gemm", transB=1)
    act.output[0] = flat.output[0]  # the activation now yields (N, C) directly
    new = [
        _transpose(conv.input[0], f"{tag}.input_nhwc", to_nhwc=True),  # (N, 5, 5, 16)
        helper.make_node("Flatten", [f"{tag}.input_nhwc"], [f"{tag}.input_flat"], name=f"{tag}.flatten", axis=1),
        gemm,
        act,
    ]
    replace_nodes(g, [conv, act, flat], new)
    return "c5-as-nhwc-gemm"


# ---------------------------------------------------------------- the classic LeNet-5's folds
def fold_affine(m: onnx.ModelProto) -> list[str]:
    """Apply the classic LeNet-5's folds (docs/quantize.md) until none applies; the ids of those that did."""
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
    if layer.op_type == "Gemm" and not is_plain_gemm(layer):
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
        if node.op_type not in ("Mul", "Add") or (found := constant_operand(g, node)) is None:
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
    tensor = node.output[0]
    while True:
        users = consumers(g, tensor)
        if len(users) != 1:
            return False
        nxt = users[0]
        if nxt.op_type in LAYERS and nxt.input[0] == tensor:
            break
        if nxt.op_type not in THROUGH + (("MaxPool",) if c > 0 else ()):
            return False
        tensor = nxt.output[0]
    if _layer_weights(g, nxt) is None:
        return False
    set_initializer(g, nxt.input[1], c * initializer_array(g, nxt.input[1]))
    bypass(g, node, x)
    return True


def _subsampling_as_depthwise_convs(m: onnx.ModelProto) -> int:
    """Each unpadded 2x2 stride-2 AveragePool that feeds a Mul or Add of constants: a depthwise conv of
    weights 1/4 and zero bias, so that the scale and shift after it can be folded in."""
    g = m.graph
    count = 0
    for pool in [n for n in g.node if n.op_type == "AveragePool"]:
        users = consumers(g, pool.output[0])
        shape = static_shape(m, pool.input[0])  # (N, C, H, W)
        if (len(users) != 1 or users[0].op_type not in ("Mul", "Add") or constant_operand(g, users[0]) is None
                or not is_plain_pool(pool) or shape is None or len(shape) != 4 or shape[1] is None):
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
    if out is None or out.op_type != "Div" or (divisor := constant_operand(g, out)) is None or divisor[0] != 0:
        return False
    add = producer(g, out.input[0])
    found = constant_operand(g, add) if add is not None and add.op_type == "Add" else None
    sub = producer(g, add.input[found[0]]) if found else None
    if sub is None or sub.op_type != "Sub":
        return False
    square_sum, matmul = producer(g, sub.input[0]), producer(g, sub.input[1])
    if (square_sum is None or square_sum.op_type != "ReduceSum" or matmul is None or matmul.op_type != "MatMul"
            or initializer(g, matmul.input[1]) is None):
        return False
    square, scaled = producer(g, square_sum.input[0]), producer(g, matmul.input[0])
    scale = constant_operand(g, scaled) if scaled is not None and scaled.op_type == "Mul" else None
    if (square is None or square.op_type != "Mul" or square.input[0] != square.input[1] or scale is None
            or scaled.input[scale[0]] != square.input[0] or scale[1].size != 1
            or list(initializer_array(g, square_sum.input[1])) not in ([1], [-1])):
        return False
    x, k, d = square.input[0], float(scale[1].item()), float(divisor[1].item())
    t, a = x, 1.0
    squash = producer(g, x)
    if squash is not None and squash.op_type == "Mul" and (amp := constant_operand(g, squash)) and amp[1].size == 1:
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


# ---------------------------------------------------------------- after quantization
def float_logits(model: onnx.ModelProto) -> bool:
    """Graph output DQ(Q(Gemm)) -> Gemm: the logits are not rounded to 8 bits, and onnxruntime fuses
    the last layer into one QGemm with float output (one node less). Returns whether it applied."""
    g = model.graph
    applied = False
    for output in g.output:
        dq = producer(g, output.name)
        q = producer(g, dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        src = producer(g, q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        if src is None or src.op_type != "Gemm" or len(consumers(g, q.input[0])) != 1:
            continue
        src.output[list(src.output).index(q.input[0])] = output.name
        g.node.remove(q)
        g.node.remove(dq)
        applied = True
    drop_unused_initializers(g)
    return applied


def lean_file(model: onnx.ModelProto) -> None:
    """The kernel-friendly recipes' step on the int8 graph: float logits and no shape annotations
    (onnxruntime infers them again), so the file stays >= 3x smaller than fp32."""
    float_logits(model)
    del model.graph.value_info[:]


# ---------------------------------------------------------------- proof
def verify_rewrite(original: Path, rewritten: Path, inputs: np.ndarray, source: str) -> dict:
    """Both fp32 models in onnxruntime on `inputs` (N, 1, 32, 32): logits within EXACT_ATOL + EXACT_RTOL *
    max |logit| and the same argmax, else ValidationError. Returns the comparison's record."""
    expected = load_model(original).predict(inputs)  # (N, 10)
    found = load_model(rewritten).predict(inputs)  # (N, 10): the rewrite keeps the model's contract
    tolerance = EXACT_ATOL + EXACT_RTOL * float(np.abs(expected).max())
    return require_close(expected, found, tolerance, f"{source}: the kernel-friendly rewrite").to_record()


# ---------------------------------------------------------------- LeNet-specific checks and pieces
def _single_consumer(g, node, op_types: tuple[str, ...], source: str):
    user = single_consumer(g, node, op_types)
    if user is None:
        found = ", ".join(u.op_type for u in consumers(g, node.output[0])) or "nothing"
        raise NotRewritable(f"{source}: {node.name} feeds {found} (expected a single {' or '.join(op_types)})")
    return user


def _plain_pool(g, act, layer: str, source: str):
    """The 2x2 stride-2 pool, unpadded, that `act` alone feeds: max, average, or a pool conv."""
    pool = _single_consumer(g, act, POOLS + ("Conv",), source)
    if pool.op_type == "Conv" and not _is_pool_conv(g, pool):
        raise NotRewritable(f"{source}: {pool.name} is a conv, not a 2x2 stride-2 depthwise pool (expected a pool "
                            f"after {layer})")
    if not is_plain_pool(pool):
        raise NotRewritable(f"{source}: {pool.name} is not a plain 2x2 stride-2 pool (expected one after {layer})")
    return pool


def _is_pool_conv(g, node) -> bool:
    """A depthwise 2x2 stride-2 conv of its own weights: the classic LeNet-5's subsampling (fold_affine)."""
    if node.op_type != "Conv" or initializer(g, node.input[1]) is None or len(node.input) != 3:
        return False
    w = initializer_array(g, node.input[1])
    return (w.ndim == 4 and w.shape[1:] == (1, 2, 2) and attribute(node, "group", 1) == w.shape[0] > 1
            and attribute(node, "strides") == [2, 2] and not any(attribute(node, "pads", [])))


def _pool_taps(g, pool, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per map the weights of its 2x2 window (channels, 2, 2) and its bias: 1/4 and 0 for an AveragePool."""
    if pool.op_type == "AveragePool":
        return np.full((channels, 2, 2), 0.25, np.float32), np.zeros(channels, np.float32)
    return initializer_array(g, pool.input[1])[:, 0], initializer_array(g, pool.input[2])


def _conv(name: str, x: str, y: str, g, weight: np.ndarray, bias: np.ndarray, strides=(1, 1)):
    """A conv of constant `weight` and `bias` (the convs that stand for average pools and subsampling)."""
    w = add_initializer(g, f"{name}.weight", weight)
    b = add_initializer(g, f"{name}.bias", np.asarray(bias, np.float32))
    return helper.make_node("Conv", [x, w, b], [y], name=name, kernel_shape=list(weight.shape[2:]),
                            strides=list(strides))


def _short(node) -> str:
    return {"Relu": "relu", "Sigmoid": "sigmoid", "MaxPool": "max-pool", "AveragePool": "average-pool",
            "Conv": "subsampling"}[node.op_type]


def _column_groups(w: np.ndarray, group: int, phase: int, kw: int) -> np.ndarray:
    """A conv's weights (C, Cin, K, K2) over its input's columns taken `group` at a time as channels, for
    output column `phase` of a group: (C, group*Cin, K, kw), where input channel b*Cin + i of column group j
    meets kernel column group*j + b - phase."""
    C, cin, K, K2 = w.shape
    out = np.zeros((C, group * cin, K, kw), np.float32)
    for j, b in np.ndindex(kw, group):
        if 0 <= (v := group * j + b - phase) < K2:
            out[:, b * cin:(b + 1) * cin, :, j] = w[:, :, :, v]
    return out


def _check_plain_conv(conv, source: str) -> None:
    """The convs whose columns can be regrouped."""
    if not is_plain_conv(conv):
        raise NotRewritable(f"{source}: conv {conv.name} is strided, padded, dilated or grouped "
                            f"(expected stride 1, no padding, one group)")


def _pad_maps(g, conv, next_conv, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """C1's weights (C, 1, K, K) and bias with zero maps added up to a multiple of `multiple`; the
    next conv gets zero input weights for them, so the function is unchanged."""
    w, b = initializer_array(g, conv.input[1]), initializer_array(g, conv.input[2])
    extra = -len(w) % multiple
    if extra:
        w = np.concatenate([w, np.zeros((extra, *w.shape[1:]), w.dtype)])
        b = np.concatenate([b, np.zeros(extra, b.dtype)])
        nw = initializer_array(g, next_conv.input[1])  # (C3, C, K, K)
        nw = np.concatenate([nw, np.zeros((nw.shape[0], extra, *nw.shape[2:]), nw.dtype)], axis=1)
        set_initializer(g, next_conv.input[1], nw)
    return w, b


def _shape(m: onnx.ModelProto, name: str, source: str) -> list:
    """A tensor's inferred shape, fixed but for the batch (None)."""
    dims = static_shape(m, name)
    if dims is None or len(dims) < 2 or any(d is None for d in dims[1:]):
        raise NotRewritable(f"{source}: no static shape for tensor {name} (expected shapes fixed but for the batch)")
    return dims


def _add_shape(g, name: str, dims: list[int]) -> str:
    return add_initializer(g, name + ".shape", np.array(dims, np.int64))  # a constant, never a tensor's name


def _node(op_type: str, inputs: list[str], output: str):
    return helper.make_node(op_type, inputs, [output], name=f"{output}/{op_type}")


def _transpose(x: str, y: str, *, to_nhwc: bool):
    return helper.make_node("Transpose", [x], [y], name=f"{y}/Transpose",
                            perm=[0, 2, 3, 1] if to_nhwc else [0, 3, 1, 2])
