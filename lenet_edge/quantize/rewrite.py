"""Exact graph rewrites of a ReLU/max-pool LeNet-5 that let onnxruntime's x86 int8 kernels run fast.

Why. onnxruntime's fast x86 int8 convolution (MLAS's symmetric indirect conv, AVX-512 VNNI)
wants input channels in multiples of 4 and many output channels; C1 has ONE input channel
and 6 maps, so its QLinearConv falls back to a per-image im2col + tiny GEMM and runs ~4x
slower than the fp32 conv, and an int8 NCHW MaxPool is a generic loop. The rewrites below
give every layer a shape those kernels like, with the same weights rearranged and zeros
added: the rewritten fp32 model computes the same function (float rounding aside), so
nothing is retrained and `verify_rewrite` proves it on real inputs before it is used.

    C1 + ReLU + 2x2 MaxPool  image (N,1,32,32) viewed as NHWC (N,32,8,4): 4 neighbouring pixels of a
                             row are 4 input channels. C1 becomes a (6, 2) conv with row stride 2 and
                             4 -> 64 channels: channel ((a*2 + s)*2 + q)*8 + c holds map c at row 2i+a,
                             column 4j+2q+s (maps padded 6 -> 8 with zero filters). The 2x2 pool is then
                             a (1, 4) MaxPool over the NHWC view (N,98,4,16), whose output *is* the
                             pooled NHWC map (N,14,14,8).
    C3                       (N,14,14,8) viewed as (N,14,7,16): column pairs as channels; the 5x5 conv
                             becomes (5, 3) with 16 -> 32 channels; its NHWC output (N,10,5,32) is the
                             NHWC map (N,10,10,16).
    C5                       its 5x5 kernel covers its 5x5 input: a Gemm over the input flattened in
                             NHWC order (weights permuted to match).

Transposes are written around each Reshape so that onnxruntime's NHWC layout pass (graph
optimisation level ORT_ENABLE_ALL, the default) cancels them all; the two views between C1's
pool and C3 are then merged into one Reshape (at batch 1 every node costs). The rewrites match by
structure, not by node names; a model of another structure (the classic LeNet-5: tanh,
subsampling, RBF output) raises NotRewritable naming what differs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError, ValidationError, first_line, require
from ..graph import (
    add_initializer,
    attribute,
    consumers,
    drop_unused_initializers,
    initializer_array,
    is_private_initializer,
    producer,
    replace_nodes,
    set_initializer,
    set_ints,
    static_shape,
)
from ..parity import require_close
from ..runtime.session import load_model

onnx = require("onnx", "quantize")
from onnx import helper  # noqa: E402

EXACT_ATOL = 1e-4  # max |logit difference| between the rewritten and the original fp32 model, plus
EXACT_RTOL = 1e-6  # this much of the largest |logit|: float32 sums in another order round differently
PAD_MAPS_TO = 8  # C1's maps padded to a multiple of this: 8-byte NHWC pixels run 2x faster in the pool
REWRITES = ("c1-relu-pool-as-4-column-conv", "c3-over-column-pairs", "c5-as-nhwc-gemm")  # ids, in order


class NotRewritable(ModelError):
    """The model lacks the structure the rewrites assume (they would not compute the same function)."""


def kernel_friendly(model: onnx.ModelProto, source: str = "model") -> onnx.ModelProto:
    """A copy of a ReLU/max-pool LeNet-5 with the three rewrites applied (see the module docstring)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    # look the convs up again after each rewrite: rebuilding the node list copies the protos
    (c1, r1), (c3, _), _ = lenet_convs(m, source)
    fold_first_conv_and_pool(m, c1, r1, next_conv=c3, source=source)
    _, (c3, r3), _ = lenet_convs(m, source)
    fold_column_pairs(m, c3, r3, source=source)
    _, _, (c5, r5) = lenet_convs(m, source)
    last_conv_as_nhwc_gemm(m, c5, r5, source=source)
    _merge_reshapes(m.graph)
    drop_unused_initializers(m.graph)  # e.g. the shape of the Reshape that flattened C5's output
    del m.graph.value_info[:]
    try:
        onnx.checker.check_model(m, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ValidationError(f"{source}: the kernel-friendly rewrite is not a valid model "
                              f"({first_line(exc)})") from exc
    return m


def lenet_convs(m: onnx.ModelProto, source: str) -> list[tuple]:
    """The three convs of a ReLU/max-pool LeNet-5 in graph order, each with the Relu it feeds: [(conv, relu)] x3."""
    g = m.graph
    convs = []
    for node in g.node:
        if node.op_type != "Conv":
            continue
        users = consumers(g, node.output[0])
        if len(users) != 1 or users[0].op_type != "Relu":
            found = ", ".join(u.op_type for u in users) or "nothing"
            raise NotRewritable(f"{source}: conv {node.name} feeds {found} (expected a single Relu)")
        if len(node.input) != 3 or not all(is_private_initializer(g, name) for name in node.input[1:]):
            raise NotRewritable(f"{source}: conv {node.name} needs its own constant weight and bias "
                                f"(expected initializers used by no other node)")
        convs.append((node, users[0]))
    if len(convs) != 3:
        raise NotRewritable(f"{source}: {len(convs)} Conv nodes (expected 3: C1, C3, C5)")
    return convs


# ---------------------------------------------------------------- the three rewrites
def fold_first_conv_and_pool(m: onnx.ModelProto, conv, relu, *, next_conv, source: str, group: int = 4) -> None:
    """C1 (1 -> C maps, KxK) + ReLU + 2x2/2 MaxPool over an image viewed as NHWC (N, H, W/group, group)."""
    g = m.graph
    pool = _single_consumer(g, relu, "MaxPool", source)
    if (attribute(pool, "kernel_shape") != [2, 2] or attribute(pool, "strides") != [2, 2]
            or any(attribute(pool, "pads", []))
            or attribute(pool, "ceil_mode", 0) or any(d != 1 for d in attribute(pool, "dilations", [1, 1]))
            or len(pool.output) != 1):
        raise NotRewritable(f"{source}: {pool.name} is not a plain 2x2 stride-2 MaxPool (expected one after C1)")
    _check_plain_conv(conv, source)
    _, cin, H, W = _shape(m, conv.input[0], source)
    if cin != 1:
        raise NotRewritable(f"{source}: first conv {conv.name} has {cin} input channels (expected 1)")
    w, b = _pad_maps(g, conv, next_conv)  # (C, 1, K, K2), (C,)
    C, _, K, K2 = w.shape
    Ho, Wo = H - K + 1, W - K2 + 1
    kw = (group - 1 + K2 - 1) // group + 1  # column groups one output group reads
    if Ho % 2 or Wo % group or W % group or W // group - kw + 1 != Wo // group:
        raise NotRewritable(f"{source}: {conv.name} maps {H}x{W} -> {Ho}x{Wo}, which cannot be folded in "
                            f"column groups of {group} (expected an even height and widths divisible by {group})")
    half = group // 2
    w2 = np.zeros((4 * half * C, group, K + 1, kw), np.float32)  # (64, 4, 6, 2) for LeNet-5
    for a in range(2):  # row phase inside the pool window
        for s in range(2):  # column phase inside the pool window
            for q in range(half):  # which pool window of the column group
                lo = ((a * 2 + s) * half + q) * C
                for gi in range(kw):
                    for bi in range(group):
                        v = group * gi + bi - (2 * q + s)  # kernel column this input column meets
                        if 0 <= v < K2:
                            w2[lo:lo + C, bi, a:a + K, gi] = w[:, 0, :, v]
    set_initializer(g, conv.input[1], w2)
    set_initializer(g, conv.input[2], np.tile(b, 4 * half).astype(np.float32))
    set_ints(conv, "kernel_shape", [K + 1, kw])
    set_ints(conv, "strides", [2, 1])
    rows, groups = Ho // 2, Wo // group
    tag = "fold.c1"
    shape_in = _add_shape(g, f"{tag}.image_as_column_groups", [-1, H, W // group, group])
    shape_view = _add_shape(g, f"{tag}.pool_view", [-1, rows * groups, 4, half * C])
    shape_out = _add_shape(g, f"{tag}.pooled", [-1, rows, groups * half, C])
    x, out = conv.input[0], pool.output[0]
    conv.input[0] = f"{tag}.input"
    relu.output[0] = f"{tag}.relu"
    before = [  # one channel: NCHW memory is NHWC memory, so the Reshape alone folds the columns
        _node("Reshape", [x, shape_in], f"{tag}.input_nhwc"),
        _transpose(f"{tag}.input_nhwc", conv.input[0], to_nhwc=False),
    ]
    after = [
        _transpose(relu.output[0], f"{tag}.relu_nhwc", to_nhwc=True),  # (N, 14, 7, 64)
        _node("Reshape", [f"{tag}.relu_nhwc", shape_view], f"{tag}.pool_view_nhwc"),  # (N, 98, 4, 16)
        _transpose(f"{tag}.pool_view_nhwc", f"{tag}.pool_view", to_nhwc=False),
        helper.make_node("MaxPool", [f"{tag}.pool_view"], [f"{tag}.pooled_view"], name=f"{tag}.pool",
                         kernel_shape=[1, 4], strides=[1, 4]),  # max over the 4 (a, s) phases
        _transpose(f"{tag}.pooled_view", f"{tag}.pooled_view_nhwc", to_nhwc=True),  # (N, 98, 1, 16)
        _node("Reshape", [f"{tag}.pooled_view_nhwc", shape_out], f"{tag}.pooled_nhwc"),  # (N, 14, 14, 8)
        _transpose(f"{tag}.pooled_nhwc", out, to_nhwc=False),
    ]
    replace_nodes(g, [conv, relu, pool], before + [conv, relu] + after)


def fold_column_pairs(m: onnx.ModelProto, conv, relu, *, source: str, group: int = 2) -> None:
    """A KxK conv (Cin -> C) reading its input as NHWC (N, H, W/group, group*Cin); output channel
    p*C + c is column group*j + p of map c, so its NHWC output (N, Ho, Wo/group, group*C) is the
    original NHWC output (N, Ho, Wo, C)."""
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
    w2 = np.zeros((group * C, group * cin, K, kw), np.float32)  # (32, 16, 5, 3) for LeNet-5
    for p in range(group):  # output column phase
        for gi in range(kw):
            for bi in range(group):
                v = group * gi + bi - p
                if 0 <= v < K2:
                    w2[p * C:(p + 1) * C, bi * cin:(bi + 1) * cin, :, gi] = w[:, :, :, v]
    set_initializer(g, conv.input[1], w2)
    set_initializer(g, conv.input[2], np.tile(b, group).astype(np.float32))
    set_ints(conv, "kernel_shape", [K, kw])
    tag = "fold.c3"
    shape_in = _add_shape(g, f"{tag}.column_pairs", [-1, H, W // group, group * cin])
    shape_out = _add_shape(g, f"{tag}.unfolded", [-1, Ho, Wo, C])
    x, out = conv.input[0], relu.output[0]
    conv.input[0] = f"{tag}.input"
    relu.output[0] = f"{tag}.relu"
    before = [
        _transpose(x, f"{tag}.input_nhwc", to_nhwc=True),  # (N, 14, 14, 8)
        _node("Reshape", [f"{tag}.input_nhwc", shape_in], f"{tag}.input_pairs_nhwc"),  # (N, 14, 7, 16)
        _transpose(f"{tag}.input_pairs_nhwc", conv.input[0], to_nhwc=False),
    ]
    after = [
        _transpose(relu.output[0], f"{tag}.relu_nhwc", to_nhwc=True),  # (N, 10, 5, 32)
        _node("Reshape", [f"{tag}.relu_nhwc", shape_out], f"{tag}.output_nhwc"),  # (N, 10, 10, 16)
        _transpose(f"{tag}.output_nhwc", out, to_nhwc=False),
    ]
    replace_nodes(g, [conv, relu], before + [conv, relu] + after)


def last_conv_as_nhwc_gemm(m: onnx.ModelProto, conv, relu, *, source: str) -> None:
    """A conv whose kernel covers its whole input, then ReLU and Flatten/Reshape to (N, C): a Gemm over
    the input flattened in NHWC order, the weights permuted to match."""
    g = m.graph
    _check_plain_conv(conv, source)
    _, _, H, W = _shape(m, conv.input[0], source)
    w = initializer_array(g, conv.input[1])  # (C, Cin, H, W)
    if w.shape[2:] != (H, W):
        raise NotRewritable(f"{source}: last conv {conv.name} has a {w.shape[2]}x{w.shape[3]} kernel over a "
                            f"{H}x{W} input (expected the kernel to cover the input)")
    flat = _single_consumer(g, relu, ("Flatten", "Reshape"), source)
    if _shape(m, flat.output[0], source)[1:] != [w.shape[0]]:
        raise NotRewritable(f"{source}: {flat.name} does not flatten C5's output to (N, {w.shape[0]})")
    set_initializer(g, conv.input[1], w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1))  # (C, H*W*Cin)
    tag = "fold.c5"
    gemm = helper.make_node("Gemm", [f"{tag}.input_flat", conv.input[1], conv.input[2]], [conv.output[0]],
                            name=f"{tag}.gemm", transB=1)
    relu.output[0] = flat.output[0]  # the ReLU now yields (N, C) directly
    new = [
        _transpose(conv.input[0], f"{tag}.input_nhwc", to_nhwc=True),  # (N, 5, 5, 16)
        helper.make_node("Flatten", [f"{tag}.input_nhwc"], [f"{tag}.input_flat"], name=f"{tag}.flatten", axis=1),
        gemm,
        relu,
    ]
    replace_nodes(g, [conv, relu, flat], new)


def _merge_reshapes(g) -> None:
    """Reshape -> Transpose to NCHW -> Transpose to NHWC -> Reshape, as between C1's pool and C3, is one
    Reshape: the transposes cancel and two views of the same memory are one view. At batch 1 a call
    costs ~0.04 ms, so one node less is worth having."""
    for second in [n for n in g.node if n.op_type == "Reshape"]:
        to_nhwc = producer(g, second.input[0])
        to_nchw = producer(g, to_nhwc.input[0]) if _is_transpose(to_nhwc, [0, 2, 3, 1]) else None
        first = producer(g, to_nchw.input[0]) if _is_transpose(to_nchw, [0, 3, 1, 2]) else None
        chain = (first, to_nchw, to_nhwc)
        if first is None or first.op_type != "Reshape" or any(len(consumers(g, n.output[0])) != 1 for n in chain):
            continue
        second.input[0] = first.input[0]
        for n in chain:
            g.node.remove(n)


def _is_transpose(node, perm: list[int]) -> bool:
    return node is not None and node.op_type == "Transpose" and attribute(node, "perm") == perm


# ---------------------------------------------------------------- proof
def verify_rewrite(original: Path, rewritten: Path, inputs: np.ndarray, source: str) -> dict:
    """Both fp32 models in onnxruntime on `inputs` (N, 1, 32, 32): logits within EXACT_ATOL + EXACT_RTOL *
    max |logit| and the same argmax, else ValidationError. Returns the comparison's record."""
    expected = load_model(original).predict(inputs)  # (N, 10)
    found = load_model(rewritten).predict(inputs)  # (N, 10): the rewrite keeps the model's contract
    tolerance = EXACT_ATOL + EXACT_RTOL * float(np.abs(expected).max())
    return require_close(expected, found, tolerance, f"{source}: the kernel-friendly rewrite").to_record()


# ---------------------------------------------------------------- LeNet-specific checks and pieces
def _single_consumer(g, node, op_types, source: str):
    op_types = (op_types,) if isinstance(op_types, str) else op_types
    users = consumers(g, node.output[0])
    if len(users) != 1 or users[0].op_type not in op_types:
        found = ", ".join(u.op_type for u in users) or "nothing"
        raise NotRewritable(f"{source}: {node.name} feeds {found} (expected a single {' or '.join(op_types)})")
    return users[0]


def _check_plain_conv(conv, source: str) -> None:
    """Stride 1, no padding or dilation, one group: the convs whose columns can be regrouped."""
    auto_pad = attribute(conv, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if (attribute(conv, "group", 1) != 1 or any(s != 1 for s in attribute(conv, "strides", [1, 1]))
            or any(d != 1 for d in attribute(conv, "dilations", [1, 1])) or any(attribute(conv, "pads", []))
            or auto_pad not in ("NOTSET", "VALID")):
        raise NotRewritable(f"{source}: conv {conv.name} is strided, padded, dilated or grouped "
                            f"(expected stride 1, no padding, one group)")


def _pad_maps(g, conv, next_conv) -> tuple[np.ndarray, np.ndarray]:
    """C1's weights (C, 1, K, K) and bias with zero maps added up to a multiple of PAD_MAPS_TO; the
    next conv gets zero input weights for them, so the function is unchanged."""
    w, b = initializer_array(g, conv.input[1]), initializer_array(g, conv.input[2])
    extra = -len(w) % PAD_MAPS_TO
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
