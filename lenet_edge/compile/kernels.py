"""One C kernel per ONNX operator, reproducing onnxruntime's CPU arithmetic exactly.

onnxruntime's int8 arithmetic (mlas), which the kernels follow:
- QuantizeLinear: float32 x / scale (a true division), clamp to the type's range around the zero
  point, round half to even, add the zero point.
- QLinearConv / QGemm: exact int32 accumulation including the int32 bias, then requantisation
  float(acc) * scale with one float32 scale per output channel, computed in float32 as
  x_scale * w_scale[c] / y_scale (QGemm: alpha * a_scale * b_scale [/ y_scale]); no fixed-point
  multiplier. A numpy emulation of exactly this matched onnxruntime 1.32 on 10,000 of 10,000 test
  images; rounding half away from zero matched 9,996, TFLite-style Q31 fixed point 7,107.
- DequantizeLinear: float(x - zero_point) * scale.
- QLinearSigmoid: a 256-entry table per node, which the compiler gets by running the node in onnxruntime
  on all 256 codes (see sigmoid_table).
The C is compiled with -ffp-contract=off: a fused multiply-add rounds once where onnxruntime rounds twice.

Each kernel returns a Kernel: C statements over its inputs in0, in1, ... and outputs out0, ... (pointers
the generator passes in), the constant arrays it needs, and a one-line description with the shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from ..graph import GraphIndex, attributes, describe
from ..sessions import open_session, session_options
from .runtime_graph import Value

C_TYPES = {np.dtype(np.uint8): "uint8_t", np.dtype(np.int8): "int8_t", np.dtype(np.float32): "float",
           np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t"}
# A conv with at most this share of nonzero taps loops over those only (quantize --auto's rewrites add
# zeros: C1's padded maps, the averaging convs). Cortex-M4F instructions per inference of the --auto
# models, dense -> sparse: lenet5-tanh 2,320,782 -> 2,087,455, lenet5-modern 2,676,668 -> 2,482,346,
# lenet5 2,352,918 -> 2,157,370. At 0.7 modern's C3 over column pairs (62 % nonzero) went sparse too and
# cost 2,633,847: a row of taps is one dot product, cheaper than as many indexed taps.
SPARSE_MAX_SHARE = 0.5
ALIASES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")  # same bytes, another shape: no code


@dataclass
class Constant:
    name: str  # suffix; the generator prefixes the layer's name
    values: np.ndarray
    comment: str = ""


@dataclass
class Kernel:
    inputs: list[str]  # activation values read (constants are folded into `constants`)
    outputs: list[str]
    description: str
    body: str
    constants: list[Constant] = field(default_factory=list)
    macs: int = 0  # multiply-accumulates executed per inference (zero taps skipped not counted), for the report
    exact: bool = True  # reproduces onnxruntime bit for bit (float kernels whose mlas code differs: False)
    element: str = ""  # for one-input element-wise kernels: the C expression of one output element of `x`
    element_type: str = ""  # the C type of `x`


def elementwise(node, x: Value, y: Value, element: str, exact: bool = True) -> Kernel:
    """A one-input element-wise kernel; chains of them (DequantizeLinear -> Tanh -> QuantizeLinear) are fused
    by the generator into one loop, so no float tensor is ever stored."""
    return Kernel([node.input[0]], [node.output[0]], f"{describe(node)} {shape_text(x)} -> {shape_text(y)}",
                  elementwise_body(x.size, element, c_type(x.dtype)), exact=exact, element=element,
                  element_type=c_type(x.dtype))


def elementwise_body(size: int, element: str, x_type: str) -> str:
    return f"for (int i = 0; i < {size}; i++) {{\n  const {x_type} x = in0[i];\n  out0[i] = {element};\n}}"


def fuse_elementwise(first: Kernel, second: Kernel, size: int) -> Kernel:
    """`second` applied to `first`'s output, element by element, in one loop: no buffer in between. Both
    kernels' constants come along (two lookup tables in a row: the second one's renamed, table -> table2)."""
    constants, outer = list(first.constants), second.element
    for constant in second.constants:
        name = constant.name
        while name in {c.name for c in constants}:
            name = _next_name(name)
        outer = _replace_word(outer, constant.name, name)
        constants.append(Constant(name, constant.values, constant.comment))
    element = _replace_word(outer, "x", f"({first.element})")
    return Kernel(first.inputs, second.outputs, f"{first.description}; {second.description}",
                  elementwise_body(size, element, first.element_type), constants, exact=first.exact and second.exact,
                  element=element, element_type=first.element_type)


def _next_name(name: str) -> str:
    """table -> table2 -> table3 ..."""
    number = re.search(r"\d+$", name)
    return f"{name[:number.start()]}{int(number.group()) + 1}" if number else f"{name}2"


def _replace_word(text: str, word: str, replacement: str) -> str:
    """Every whole-word `word` in the C expression `text` replaced, `replacement` taken literally."""
    return re.sub(rf"\b{re.escape(word)}\b", lambda match: replacement, text)


def narrow(values: np.ndarray) -> np.ndarray:
    """Integers in the smallest of int16 / int32 that holds them all: LeNet's biases (with the input zero point
    folded in) fit in 16 bits, which saves 472 bytes of lenet5-modern's flash."""
    values = np.asarray(values)
    return values.astype(np.int16) if values.size and np.abs(values).max() <= 32767 else values.astype(np.int32)


def c_float(value) -> str:
    """A float32 as an exact C literal (hexadecimal: no decimal rounding on the way)."""
    value = float(np.float32(value))
    if not np.isfinite(value):
        raise ModelError(f"constant {value} cannot be compiled (expected a finite float32)")
    if not value:
        return "0.0f"
    mantissa, exponent = value.hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"  # 0x1.fe00000000000p+7 -> 0x1.fep+7f


def c_type(dtype) -> str:
    return C_TYPES[np.dtype(dtype)]


def shape_text(value: Value) -> str:
    short = {"uint8": "u8", "int8": "i8", "float32": "f32", "int32": "i32"}[value.dtype.name]
    return f"{short} {'x'.join(map(str, value.shape))}"


def type_range(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def quantize_like_onnxruntime(x: np.ndarray, scale, zero_point) -> np.ndarray:
    """QuantizeLinear as mlas computes it: float32 division, clamp, round half to even, add the zero point."""
    zero_point = np.asarray(zero_point)
    lo, hi = type_range(zero_point.dtype)
    zp = int(zero_point.reshape(-1)[0])
    v = np.asarray(x, np.float32) / np.float32(np.asarray(scale).reshape(-1)[0])
    v = np.clip(v, np.float32(lo - zp), np.float32(hi - zp))
    return (np.rint(v).astype(np.int32) + zp).astype(zero_point.dtype)


class Unsupported(ModelError):
    pass


def unsupported(node, why: str) -> Unsupported:
    return Unsupported(f"{describe(node)}: {why}")


def _scalar(graph: GraphIndex, node, index: int, what: str):
    value = graph.constant(node, index)
    if value is None or value.size != 1:
        raise unsupported(node, f"{what} must be a constant scalar (found "
                                f"{'a computed value' if value is None else f'shape {value.shape}'})")
    return value.reshape(-1)[0]


def _per_channel(graph: GraphIndex, node, index: int, channels: int, what: str) -> np.ndarray:
    value = graph.constant(node, index)
    if value is None or value.size not in (1, channels):
        raise unsupported(node, f"{what} must be a constant of 1 or {channels} values")
    return np.broadcast_to(value.reshape(-1), (channels,)).copy()


def _requantize_line(target: str, acc: str, scale: str, out_dtype, out_zp: int) -> str:
    lo, hi = type_range(out_dtype)
    return (f"{target} = ({c_type(out_dtype)})quantize((float){acc} * {scale}, "
            f"{c_float(lo - out_zp)}, {c_float(hi - out_zp)}, {out_zp});")


def _conv_geometry(node, attrs: dict, kernel: tuple[int, int]):
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise unsupported(node, f"auto_pad {attrs['auto_pad']!r} (expected explicit pads)")
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    if len(kernel) != 2 or len(strides) != 2 or len(pads) != 4:
        raise unsupported(node, "only 2-D windows are supported")
    return strides, dilations, pads


def _window_loops(node, strides, dilations, pads, in_h, in_w, kh, kw, inner: str) -> str:
    """Loops over a window's taps at output (oy, ox); `inner` sees iy, ix (taps outside the input skipped)."""
    sy, sx = strides
    dy, dx = dilations
    check_y = f"if (iy < 0 || iy >= {in_h}) continue; " if pads[0] or pads[2] else ""
    check_x = f"if (ix < 0 || ix >= {in_w}) continue; " if pads[1] or pads[3] else ""
    return (f"for (int ky = 0; ky < {kh}; ky++) {{\n"
            f"  const int iy = oy * {sy} - {pads[0]} + ky * {dy}; {check_y}\n"
            f"  for (int kx = 0; kx < {kw}; kx++) {{\n"
            f"    const int ix = ox * {sx} - {pads[1]} + kx * {dx}; {check_x}\n"
            f"    {inner}\n"
            f"  }}\n"
            f"}}")


def fusable_pool(node, attrs: dict) -> bool:
    """A MaxPool that can run inside the convolution before it: disjoint windows (kernel = stride), no padding,
    no dilation, no ceil_mode. Requantisation is monotonic (scale > 0), so the max of requantised outputs is
    the requantised max of the accumulators: one requantisation per pooled output instead of four."""
    kernel = list(attrs.get("kernel_shape", ()))
    return (node.op_type == "MaxPool" and len(kernel) == 2 and list(attrs.get("strides", (1, 1))) == kernel
            and not any(attrs.get("pads", (0,) * 4)) and list(attrs.get("dilations", (1, 1))) == [1, 1]
            and not attrs.get("ceil_mode", 0) and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and not (len(node.output) > 1 and node.output[1]))


def qlinear_conv(graph: GraphIndex, node, values: dict[str, Value], pool=None) -> Kernel:
    """QLinearConv, with the MaxPool after it fused in when `pool` is given (see fusable_pool)."""
    x, y = values[node.input[0]], values[node.output[0]]
    weights = graph.constant(node, 3)
    if weights is None or weights.ndim != 4:
        raise unsupported(node, "weights must be a constant (M, C/group, kH, kW) tensor")
    attrs = attributes(node)
    m, cg, kh, kw = weights.shape
    group = int(attrs.get("group", 1))
    strides, dilations, pads = _conv_geometry(node, attrs, (kh, kw))
    _, c, in_h, in_w = x.shape
    _, _, out_h, out_w = y.shape
    x_scale = np.float32(_scalar(graph, node, 1, "x_scale"))
    x_zp = int(_scalar(graph, node, 2, "x_zero_point"))
    w_scale = _per_channel(graph, node, 4, m, "w_scale").astype(np.float32)
    w_zp = _per_channel(graph, node, 5, m, "w_zero_point").astype(np.int32)
    y_scale = np.float32(_scalar(graph, node, 6, "y_scale"))
    y_zp = int(_scalar(graph, node, 7, "y_zero_point"))
    bias = graph.constant(node, 8)
    bias = np.zeros(m, np.int32) if bias is None else bias.astype(np.int32)
    scale = (x_scale * w_scale) / y_scale  # float32, in onnxruntime's order
    taps = weights.reshape(m, -1).astype(np.int32) - w_zp[:, None]  # (M, C/g*kH*kW)
    fast = not any(pads) and dilations == (1, 1) and weights.dtype == np.int8 and not w_zp.any()
    if not any(pads):  # sum (x - zx) w = sum x w - zx sum w: the zero point moves into the bias, exactly
        bias = bias - x_zp * taps.sum(axis=1)
    w_type = weights.dtype if not w_zp.any() else np.dtype(np.int32)  # a weight zero point is folded in
    out_value, out_name, (ph, pw) = y, node.output[0], (1, 1)
    if pool is not None:
        out_name = pool.output[0]
        out_value = values[out_name]
        ph, pw = (int(k) for k in attributes(pool)["kernel_shape"])  # = its strides; 2x1 as well as 2x2
        out_h, out_w = out_value.shape[2:]
    group_size = m // group
    x_type = c_type(x.dtype)
    origin = f"const {x_type} *xw = xg + (oy * {strides[0]}) * {in_w} + ox * {strides[1]};\n"
    nonzero = taps != 0
    sparse = fast and nonzero.mean() <= SPARSE_MAX_SHARE
    weight_constants = [Constant("w", taps.astype(w_type).reshape(-1), f"({m}, {cg}, {kh}, {kw})")]
    if sparse:  # the rewrites' zero taps skipped: exact, a sum of the same nonzero products
        weight_constants = _sparse_taps(taps, (cg, kh, kw), (in_h, in_w))
        window = (origin + "int32_t acc = bias[m];\n"
                  "for (int k = k0; k < k1; k++) acc += xw[tap_offset[k]] * tap_weight[k];")
    elif fast:  # each kernel row is kw contiguous bytes: one dot product (two taps per SMLAD on a Cortex-M4)
        rows = (f"for (int c = 0; c < {cg}; c++)\n"
                f"  for (int ky = 0; ky < {kh}; ky++)\n"
                f"    acc = dot_{_short(x.dtype)}_i8(xw + c * {in_h * in_w} + ky * {in_w}, "
                f"wm + (c * {kh} + ky) * {kw}, {kw}, acc);")
        window = origin + "int32_t acc = bias[m];\n" + rows
    else:
        x_term = f"((int32_t)xc[iy * {in_w} + ix] - {x_zp})" if any(pads) else f"xc[iy * {in_w} + ix]"
        inner = _window_loops(node, strides, dilations, pads, in_h, in_w, kh, kw, f"acc += {x_term} * wc[t++];")
        window = (f"int32_t acc = bias[m];\n"
                  f"for (int c = 0; c < {cg}; c++) {{\n"
                  f"  const {x_type} *xc = xg + c * {in_h * in_w};\n"
                  f"  const {c_type(w_type)} *wc = wm + c * {kh * kw};\n"
                  f"  int t = 0;\n"
                  + _indent(inner, 2) + "\n}")
    store = _requantize_line(f"out0[(m * {out_h} + py) * {out_w} + px]", "best" if ph * pw > 1 else "acc",
                             "scale[m]", y.dtype, y_zp)
    if ph * pw > 1:
        position = (f"int32_t best = INT32_MIN;\n"
                    f"for (int dy = 0; dy < {ph}; dy++) {{\n"
                    f"  for (int dx = 0; dx < {pw}; dx++) {{\n"
                    f"    const int oy = py * {ph} + dy, ox = px * {pw} + dx;\n"
                    + _indent(window, 4) + "\n"
                    f"    if (acc > best) best = acc;\n"
                    f"  }}\n"
                    f"}}\n{store}")
    else:
        position = f"const int oy = py, ox = px;\n{window}\n{store}"
    weights_of_m = ("  const int k0 = tap_start[m], k1 = tap_start[m + 1];\n" if sparse else
                    f"  const {c_type(w_type)} *wm = w + m * {cg * kh * kw};\n")
    body = (f"for (int m = 0; m < {m}; m++) {{\n"
            f"  const {x_type} *xg = in0 + (m / {group_size}) * {cg * in_h * in_w};  /* m's input group */\n"
            + weights_of_m +
            f"  for (int py = 0; py < {out_h}; py++) {{\n"
            f"    for (int px = 0; px < {out_w}; px++) {{\n"
            + _indent(position, 6) + "\n"
            "    }\n"
            "  }\n"
            "}")
    geometry = _geometry_text((kh, kw), strides, pads, dilations, group)
    fused = f", then {describe(pool)} {ph}x{pw} fused in" if pool is not None else ""
    skipped = f", {int(nonzero.sum())} of {taps.size} taps nonzero" if sparse else ""
    return Kernel([node.input[0]], [out_name],
                  f"{describe(node)} {shape_text(x)} -> {shape_text(out_value)}, {geometry}{skipped}{fused}", body,
                  [*weight_constants,
                   Constant("bias", narrow(bias), "bias with the input zero point folded in"
                            if not any(pads) else "bias"),
                   Constant("scale", scale.astype(np.float32), "x_scale * w_scale / y_scale")],
                  macs=int(nonzero.sum() if sparse else taps.size) * y.shape[2] * y.shape[3])


def _sparse_taps(taps: np.ndarray, window: tuple[int, int, int], image: tuple[int, int]) -> list[Constant]:
    """A conv's nonzero taps (M, C*kH*kW), output channel by output channel: each one's input offset from
    the window's first input, its weight, and where each output channel's taps start."""
    (cg, kh, kw), (in_h, in_w) = window, image
    offsets = (np.arange(cg)[:, None, None] * (in_h * in_w) + np.arange(kh)[None, :, None] * in_w
               + np.arange(kw)[None, None, :]).reshape(-1)
    rows, cols = np.nonzero(taps)  # row-major: in output channel order
    tap_start = np.concatenate([[0], np.cumsum((taps != 0).sum(axis=1))])
    return [Constant("tap_offset", narrow(offsets[cols]), "input offset of each nonzero tap"),
            Constant("tap_weight", taps[rows, cols].astype(np.int8), "its weight"),
            Constant("tap_start", narrow(tap_start), "output channel m's taps: tap_start[m] to tap_start[m + 1]")]


def _short(dtype) -> str:
    return {"uint8": "u8", "int8": "i8"}[np.dtype(dtype).name]


def _geometry_text(kernel, strides, pads, dilations, group=1) -> str:
    parts = [f"{kernel[0]}x{kernel[1]}", f"stride {_pair_text(strides)}"]
    if any(pads):
        parts.append(f"pads {list(pads)}")
    if tuple(dilations) != (1, 1):
        parts.append(f"dilation {_pair_text(dilations)}")
    if group != 1:
        parts.append(f"group {group}")
    return " ".join(parts)


def _pair_text(values) -> str:
    """(2, 2) -> '2', (2, 1) -> '2x1' (vertical x horizontal, as kernel shapes are written)."""
    return f"{values[0]}" if values[0] == values[1] else f"{values[0]}x{values[1]}"


def max_pool(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    if len(node.output) > 1 and node.output[1]:
        raise unsupported(node, "the Indices output is not supported")
    x, y = values[node.input[0]], values[node.output[0]]
    attrs = attributes(node)
    kh, kw = attrs["kernel_shape"]
    strides, dilations, pads = _conv_geometry(node, attrs, (kh, kw))
    _, c, in_h, in_w = x.shape
    _, _, out_h, out_w = y.shape
    inner = _window_loops(node, strides, dilations, pads, in_h, in_w, kh, kw,
                          f"const {c_type(x.dtype)} v = in0[xo + iy * {in_w} + ix]; if (v > best) best = v;")
    lowest = "-3.402823466e38f" if x.dtype == np.float32 else str(type_range(x.dtype)[0])
    body = (f"for (int c = 0; c < {c}; c++) {{\n"
            f"  const int xo = c * {in_h * in_w};\n"
            f"  for (int oy = 0; oy < {out_h}; oy++) {{\n"
            f"    for (int ox = 0; ox < {out_w}; ox++) {{\n"
            f"      {c_type(x.dtype)} best = {lowest};\n"
            + _indent(inner, 6) + "\n"
            f"      out0[(c * {out_h} + oy) * {out_w} + ox] = best;\n"
            f"    }}\n"
            f"  }}\n"
            f"}}")
    return Kernel([node.input[0]], [node.output[0]],
                  f"{describe(node)} {shape_text(x)} -> {shape_text(y)}, "
                  f"{_geometry_text((kh, kw), strides, pads, dilations)}", body)


def qgemm(graph: GraphIndex, node, values: dict[str, Value], matmul: bool = False) -> Kernel:
    """QGemm (com.microsoft), or QLinearMatMul with `matmul` (no bias, no alpha; y_scale and y_zero_point at 6, 7)."""
    a, y = values[node.input[0]], values[node.output[0]]
    attrs = {} if matmul else attributes(node)
    bias_slot, y_slot = (None, 6) if matmul else (6, 7)
    if attrs.get("transA", 0):
        raise unsupported(node, "transA=1 is not supported")
    b = graph.constant(node, 3)
    if b is None or b.ndim != 2:
        raise unsupported(node, "B must be a constant matrix")
    b_t = b.T if not attrs.get("transB", 0) else b  # (N, K): one contiguous row per output
    n, k = b_t.shape
    if a.shape != (1, k):
        raise unsupported(node, f"A of shape {a.shape} (expected (1, {k}): one image)")
    alpha = np.float32(attrs.get("alpha", 1.0))
    a_scale = np.float32(_scalar(graph, node, 1, "a_scale"))
    a_zp = int(_scalar(graph, node, 2, "a_zero_point"))
    b_scale = _per_channel(graph, node, 4, n, "b_scale").astype(np.float32)
    b_zp = _per_channel(graph, node, 5, n, "b_zero_point").astype(np.int32)
    bias = None if bias_slot is None else graph.constant(node, bias_slot)
    bias = np.zeros(n, np.int32) if bias is None else np.broadcast_to(bias.reshape(-1), (n,)).astype(np.int32)
    quantized = len(node.input) > y_slot and bool(node.input[y_slot])
    scale = (alpha * a_scale) * b_scale  # float32, in onnxruntime's order
    if quantized:
        scale = scale / np.float32(_scalar(graph, node, y_slot, "y_scale"))
    taps = b_t.astype(np.int32) - b_zp[:, None]  # (N, K)
    bias = bias - a_zp * taps.sum(axis=1)  # sum (a - za) b = sum a b - za sum b, exactly
    w_type = b.dtype if not b_zp.any() else np.dtype(np.int32)
    if quantized:
        y_zp = int(_scalar(graph, node, y_slot + 1, "y_zero_point"))
        store = _requantize_line("out0[j]", "acc", "scale[j]", y.dtype, y_zp)
    else:
        store = "out0[j] = (float)acc * scale[j];"
    if w_type == np.int8:  # two taps per SMLAD on a Cortex-M4
        dot = f"  const int32_t acc = dot_{_short(a.dtype)}_i8(in0, w + j * {k}, {k}, bias[j]);\n"
    else:
        dot = (f"  const {c_type(w_type)} *wj = w + j * {k};\n"
               f"  int32_t acc = bias[j];\n"
               f"  for (int i = 0; i < {k}; i++) acc += in0[i] * wj[i];\n")
    body = (f"for (int j = 0; j < {n}; j++) {{\n" + dot +
            f"  {store}\n"
            f"}}")
    return Kernel([node.input[0]], [node.output[0]], f"{describe(node)} {shape_text(a)} -> {shape_text(y)}", body,
                  [Constant("w", taps.astype(w_type).reshape(-1), f"({n}, {k}), one row per output"),
                   Constant("bias", narrow(bias), "bias with the input zero point folded in"),
                   Constant("scale", scale.astype(np.float32), "alpha * a_scale * b_scale" +
                            (" / y_scale" if quantized else ""))],
                  macs=n * k)


def quantize_linear(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    x, y = values[node.input[0]], values[node.output[0]]
    scale = np.float32(_scalar(graph, node, 1, "y_scale"))
    zp = int(_scalar(graph, node, 2, "y_zero_point")) if graph.constant(node, 2) is not None else 0
    lo, hi = type_range(y.dtype)
    return elementwise(node, x, y, f"({c_type(y.dtype)})quantize((x) / {c_float(scale)}, {c_float(lo - zp)}, "
                                   f"{c_float(hi - zp)}, {zp})")


def dequantize_linear(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    x, y = values[node.input[0]], values[node.output[0]]
    scale = np.float32(_scalar(graph, node, 1, "x_scale"))
    zp = int(_scalar(graph, node, 2, "x_zero_point")) if graph.constant(node, 2) is not None else 0
    return elementwise(node, x, y, f"(float)((int32_t)(x) - {zp}) * {c_float(scale)}")


def transpose(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    x, y = values[node.input[0]], values[node.output[0]]
    perm = list(attributes(node).get("perm", range(len(x.shape)))[::1])
    in_strides = np.cumprod((1,) + x.shape[:0:-1])[::-1]  # row-major strides of x
    loops, index = [], []
    for d, size in enumerate(y.shape):
        loops.append(f"for (int i{d} = 0; i{d} < {size}; i{d}++)")
        index.append(f"i{d} * {int(in_strides[perm[d]])}")
    body = " ".join(loops) + f" *out0++ = in0[{' + '.join(index)}];"
    return Kernel([node.input[0]], [node.output[0]],
                  f"{describe(node)} {shape_text(x)} -> {shape_text(y)}, perm {perm}", body)


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.splitlines())


def _operand(graph: GraphIndex, node, index: int, values: dict[str, Value], out: Value, what: str):
    """(C expression of element [i0, i1, ...] of input `index` broadcast to `out`'s shape, its constant or None).

    A constant becomes an array of its own (smaller than the output when broadcast: per-channel, scalar)."""
    name = node.input[index]
    constant = graph.constant(node, index)
    shape = tuple(constant.shape) if constant is not None else values[name].shape
    shape = (1,) * (len(out.shape) - len(shape)) + shape
    if any(s not in (1, o) for s, o in zip(shape, out.shape, strict=True)):
        raise unsupported(node, f"{what} of shape {shape} does not broadcast to {out.shape}")
    strides = np.cumprod((1,) + shape[:0:-1])[::-1]
    terms = [f"i{d} * {int(stride)}" if stride != 1 else f"i{d}"
             for d, (size, stride) in enumerate(zip(shape, strides, strict=True)) if size > 1]
    index_text = " + ".join(terms) or "0"
    array = what if constant is not None else f"in{index}"
    return f"{array}[{index_text}]", constant


def _broadcast_loops(out: Value, expression: str) -> str:
    """Nested loops over `out`'s shape (indices i0, i1, ...), storing `expression` in order."""
    loops = " ".join(f"for (int i{d} = 0; i{d} < {size}; i{d}++)" for d, size in enumerate(out.shape))
    return f"int o = 0;\n{loops}\n  out0[o++] = {expression};"


def _binary_inputs(graph, node, values, out, slots: tuple[int, int]):
    (a, a_const), (b, b_const) = (_operand(graph, node, i, values, out, name) for i, name in zip(
        slots, ("a", "b"), strict=True))
    inputs = [node.input[i] for i, c in zip(slots, (a_const, b_const), strict=True) if c is None]
    constants = [Constant(name, c) for name, c in (("a", a_const), ("b", b_const)) if c is not None]
    return a, b, inputs, constants


def _renumber(text: str, inputs: list[str], node) -> str:
    """Inputs are passed as in0, in1, ... in the order of `inputs`: rename in{slot} to in{position}."""
    for slot, name in enumerate(node.input):
        if name in inputs:
            text = text.replace(f"in{slot}[", f"IN{inputs.index(name)}[")
    return text.replace("IN", "in")


def qlinear_binary(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    """QLinearMul / QLinearAdd (com.microsoft) with mlas's SSE2 arithmetic: Mul rounds
    float((a - za) * (b - zb)) * (sa * sb / sc) + zc; Add rounds (zc - (ra * za + rb * zb)) + a * ra + b * rb
    with ra = sa / sc, rb = sb / sc (the scalar-B form adds b * rb to the fixed part first)."""
    out = values[node.output[0]]
    a, b, inputs, constants = _binary_inputs(graph, node, values, out, (0, 3))
    inputs = list(dict.fromkeys(inputs))  # x * x reads one buffer
    sa, sb, sc = (np.float32(_scalar(graph, node, i, what)) for i, what in ((1, "A_scale"), (4, "B_scale"),
                                                                             (6, "C_scale")))
    za, zb, zc = (int(_scalar(graph, node, i, what)) for i, what in ((2, "A_zero_point"), (5, "B_zero_point"),
                                                                      (7, "C_zero_point")))
    lo, hi = type_range(out.dtype)
    if node.op_type == "QLinearMul":
        ratio = (sa * sb) / sc
        value = f"(float)(((int32_t){a} - {za}) * ((int32_t){b} - {zb})) * {c_float(ratio)} + {c_float(zc)}"
    else:
        ra, rb = sa / sc, sb / sc
        fixed = np.float32(zc) - (ra * np.float32(za) + rb * np.float32(zb))
        b_const = graph.constant(node, 3)
        if b_const is not None and b_const.size < out.size:  # B broadcast: onnxruntime adds it to the fixed part
            constants[-1].values = fixed + b_const.astype(np.float32) * rb
            value = f"{b} + (float){a} * {c_float(ra)}"
        else:
            value = f"({c_float(fixed)} + (float){a} * {c_float(ra)}) + (float){b} * {c_float(rb)}"
    body = _broadcast_loops(out, f"({c_type(out.dtype)})quantize({value}, {c_float(lo)}, {c_float(hi)}, 0)")
    return Kernel(inputs, [node.output[0]], f"{describe(node)} -> {shape_text(out)}",
                  _renumber(body, inputs, node), constants)


def float_binary(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    out = values[node.output[0]]
    a, b, inputs, constants = _binary_inputs(graph, node, values, out, (0, 1))
    op = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}[node.op_type]
    body = _broadcast_loops(out, f"{a} {op} {b}")
    for constant in constants:
        constant.values = constant.values.astype(np.float32)
    return Kernel(inputs, [node.output[0]], f"{describe(node)} -> {shape_text(out)}", _renumber(body, inputs, node),
                  constants)


def tanh(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    """mlas's tanh: a 13/6-degree rational approximation on [-9, 9] (the polynomial of Eigen). On x86 with FMA3
    onnxruntime evaluates it with fused multiply-adds; here each step rounds twice unless the core fuses them
    (TANH_FMA), so logits can differ in the last bits: same argmax, not bit-identical."""
    x, y = values[node.input[0]], values[node.output[0]]
    return elementwise(node, x, y, "tanh_mlas(x)", exact=False)


def qlinear_sigmoid(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    """QLinearSigmoid (com.microsoft), uint8 or int8 in and out, as onnxruntime runs it: every code looked up
    in a 256-entry table built once from the node's scales and zero points (see sigmoid_table)."""
    x, y = values[node.input[0]], values[node.output[0]]
    if x.dtype != y.dtype or x.dtype not in (np.uint8, np.int8):
        raise unsupported(node, f"{shape_text(x)} -> {shape_text(y)} (expected uint8 or int8 in and out, "
                                "the same type)")
    x_scale, y_scale = (np.float32(_scalar(graph, node, i, what)) for i, what in ((1, "X_scale"), (3, "Y_scale")))
    x_zp, y_zp = (_scalar(graph, node, i, what) if len(node.input) > i and node.input[i] else None
                  for i, what in ((2, "X_zero_point"), (4, "Y_zero_point")))  # absent: 0, as onnxruntime reads it
    table = sigmoid_table(x_scale, x_zp, y_scale, y_zp, x.dtype)
    index = "x" if x.dtype == np.uint8 else "(uint8_t)x"  # int8: the table is in the order of the code's byte
    kernel = elementwise(node, x, y, f"table[{index}]")
    order = " (X's byte: 0..127, then -128..-1)" if x.dtype == np.int8 else ""
    kernel.constants = [Constant("table", table, f"{describe(node)}: Y for each X{order}, computed by onnxruntime; "
                                                 f"X scale {c_float(x_scale)}, zero point {int(x_zp or 0)}, Y scale "
                                                 f"{c_float(y_scale)}, zero point {int(y_zp or 0)}")]
    return kernel


def sigmoid_table(x_scale, x_zero_point, y_scale, y_zero_point, dtype) -> np.ndarray:
    """onnxruntime's QLinearSigmoid table for these scales and zero points (None: absent), in the order of the
    code's byte (uint8 0..255; int8 0..127 then -128..-1): the node itself, run by onnxruntime on all 256 codes.

    Computed, not re-derived: onnxruntime fills it by dequantising the codes, running mlas's vectorised logistic
    (a rational approximation, its kernel picked per CPU) and quantising; redoing that float rounding in numpy
    would be one more emulation to keep in step, while this is by construction the table of the onnxruntime
    that the check compares with."""
    from onnx import helper, numpy_helper

    dtype = np.dtype(dtype)
    element = helper.np_dtype_to_tensor_dtype(dtype)
    constants = {"X_scale": np.float32(x_scale), "X_zero_point": x_zero_point, "Y_scale": np.float32(y_scale),
                 "Y_zero_point": y_zero_point}
    initializers = [numpy_helper.from_array(np.asarray(v).astype(dtype if "zero" in k else np.float32), k)
                    for k, v in constants.items() if v is not None]
    inputs = ["X"] + [k if v is not None else "" for k, v in constants.items()]
    while not inputs[-1]:
        inputs.pop()
    graph = helper.make_graph([helper.make_node("QLinearSigmoid", inputs, ["Y"], domain="com.microsoft")],
                              "qlinear_sigmoid_table", [helper.make_tensor_value_info("X", element, [256])],
                              [helper.make_tensor_value_info("Y", element, [256])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(
        "com.microsoft", 1)], ir_version=9)
    session = open_session(model.SerializeToString(), "QLinearSigmoid", session_options(optimization="none"))
    codes = np.arange(256, dtype=np.uint8).view(dtype)
    table = session.run(["Y"], {"X": codes})[0]
    if table.dtype != dtype or table.shape != (256,):
        raise ModelError(f"onnxruntime's QLinearSigmoid gave {table.dtype} {table.shape} (expected {dtype} (256,))")
    return table


def average_pool(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    """AveragePool (float) and QLinearAveragePool (com.microsoft) as onnxruntime computes them: the window's
    values (dequantized to float, scale * (x - zp), for the int8 one) summed in window order, divided by the
    count, and for the int8 one rounded (y / y_scale + y_zp)."""
    x, y = values[node.input[0]], values[node.output[0]]
    attrs = attributes(node)
    if attrs.get("channels_last", 0):
        raise unsupported(node, "channels_last=1 is not supported")
    if attrs.get("ceil_mode", 0):
        raise unsupported(node, "ceil_mode=1 is not supported")
    kh, kw = attrs["kernel_shape"]
    strides, _, pads = _conv_geometry(node, attrs, (kh, kw))
    _, c, in_h, in_w = x.shape
    _, _, out_h, out_w = y.shape
    pixel = f"xc[iy * {in_w} + ix]"
    if node.op_type == "QLinearAveragePool":
        x_scale, x_zp = np.float32(_scalar(graph, node, 1, "x_scale")), int(_scalar(graph, node, 2, "x_zero_point"))
        y_scale, y_zp = np.float32(_scalar(graph, node, 3, "y_scale")), int(_scalar(graph, node, 4, "y_zero_point"))
        lo, hi = type_range(y.dtype)
        term = f"{c_float(x_scale)} * (float)((int32_t){pixel} - {x_zp})"
        result = (f"({c_type(y.dtype)})quantize(mean / {c_float(y_scale)} + {c_float(y_zp)}, "
                  f"{c_float(lo)}, {c_float(hi)}, 0)")
    else:
        term, result = pixel, "mean"
    count = kh * kw if attrs.get("count_include_pad", 0) else "(he - hs) * (we - ws)"
    body = (f"for (int c = 0; c < {c}; c++) {{\n"
            f"  const {c_type(x.dtype)} *xc = in0 + c * {in_h * in_w};\n"
            f"  for (int oy = 0; oy < {out_h}; oy++) {{\n"
            f"    const int y0 = oy * {strides[0]} - {pads[0]};\n"
            f"    const int hs = y0 < 0 ? 0 : y0, he = y0 + {kh} > {in_h} ? {in_h} : y0 + {kh};\n"
            f"    for (int ox = 0; ox < {out_w}; ox++) {{\n"
            f"      const int x0 = ox * {strides[1]} - {pads[1]};\n"
            f"      const int ws = x0 < 0 ? 0 : x0, we = x0 + {kw} > {in_w} ? {in_w} : x0 + {kw};\n"
            f"      float sum = 0.0f;\n"
            f"      for (int iy = hs; iy < he; iy++)\n"
            f"        for (int ix = ws; ix < we; ix++)\n"
            f"          sum += {term};\n"
            f"      const float mean = sum / (float)({count});\n"
            f"      out0[(c * {out_h} + oy) * {out_w} + ox] = {result};\n"
            f"    }}\n"
            f"  }}\n"
            f"}}")
    return Kernel([node.input[0]], [node.output[0]], f"{describe(node)} {shape_text(x)} -> {shape_text(y)}, "
                  f"{_geometry_text((kh, kw), strides, pads, (1, 1))}", body)


def reduce_sum(graph: GraphIndex, node, values: dict[str, Value]) -> Kernel:
    """ReduceSum of a float row, summed in order (onnxruntime's vectorised sum adds in another order: the last
    bits can differ)."""
    x, y = values[node.input[0]], values[node.output[0]]
    if y.size != 1:
        raise unsupported(node, f"only a full reduction to one value is supported (found {shape_text(y)})")
    body = f"float sum = 0.0f;\nfor (int i = 0; i < {x.size}; i++) sum += in0[i];\nout0[0] = sum;"
    return Kernel([node.input[0]], [node.output[0]], f"{describe(node)} {shape_text(x)} -> {shape_text(y)}", body,
                  exact=False)


KERNELS = {
    "QLinearConv": qlinear_conv,
    "MaxPool": max_pool,
    "QGemm": qgemm,
    "QLinearMatMul": lambda graph, node, values: qgemm(graph, node, values, matmul=True),
    "QuantizeLinear": quantize_linear,
    "DequantizeLinear": dequantize_linear,
    "Transpose": transpose,
    "QLinearMul": qlinear_binary,
    "QLinearAdd": qlinear_binary,
    "QLinearAveragePool": average_pool,
    "AveragePool": average_pool,
    "Add": float_binary,
    "Sub": float_binary,
    "Mul": float_binary,
    "Div": float_binary,
    "Tanh": tanh,
    "QLinearSigmoid": qlinear_sigmoid,
    "ReduceSum": reduce_sum,
}
