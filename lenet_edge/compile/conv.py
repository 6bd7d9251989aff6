"""QLinearConv (with the MaxPool after it fused in) and MaxPool as C, exactly as onnxruntime computes them.

A convolution is one frame (output channels, output positions, the pool's window, requantisation) around
one window strategy, chosen by the layer's shape: the taps of each kernel row as one dot product (`dot`),
only the nonzero taps (`sparse`), or tap by tap with bounds checks and zero points (`general`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..graph import GraphIndex, attributes, describe
from .csource import CWriter, initialiser, inline_block
from .kernels import (
    Constant,
    Kernel,
    LayerNames,
    c_type,
    conv_geometry,
    geometry_text,
    narrow,
    per_channel,
    requantize_line,
    scalar,
    shape_text,
    short_type,
    type_range,
    unsupported,
)
from .runtime_graph import Value

# A conv with at most this share of nonzero taps loops over those only (quantize --auto's rewrites add
# zeros: C1's padded maps, the averaging convs). Cortex-M4F instructions per inference of the --auto
# models, dense -> sparse: lenet5-tanh 2,320,782 -> 2,087,455, lenet5-modern 2,676,668 -> 2,482,346,
# lenet5 2,352,918 -> 2,157,370. At 0.7 modern's C3 over column pairs (62 % nonzero) went sparse too and
# cost 2,633,847: a row of taps is one dot product, cheaper than as many indexed taps.
SPARSE_MAX_SHARE = 0.5


@dataclass(frozen=True)
class Conv:
    """One QLinearConv's shapes and integer arithmetic: taps with the weight zero point folded in, and the
    bias with the input zero point folded in when there is no padding (sum (x - zx) w = sum x w - zx sum w)."""
    x: Value
    m: int  # output channels
    cg: int  # input channels per group
    kh: int
    kw: int
    group: int
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]
    x_zp: int
    taps: np.ndarray  # (M, C/g*kH*kW) int32
    w_type: np.dtype
    bias: np.ndarray
    scale: np.ndarray  # float32, x_scale * w_scale / y_scale in onnxruntime's order

    @property
    def in_h(self) -> int:
        return self.x.shape[2]

    @property
    def in_w(self) -> int:
        return self.x.shape[3]


def read_conv(graph: GraphIndex, node, values: dict[str, Value]) -> Conv:
    x = values[node.input[0]]
    weights = graph.constant(node, 3)
    if weights is None or weights.ndim != 4:
        raise unsupported(node, "weights must be a constant (M, C/group, kH, kW) tensor")
    attrs = attributes(node)
    m, cg, kh, kw = weights.shape
    strides, dilations, pads = conv_geometry(node, attrs, (kh, kw))
    x_scale = np.float32(scalar(graph, node, 1, "x_scale"))
    x_zp = int(scalar(graph, node, 2, "x_zero_point"))
    w_scale = per_channel(graph, node, 4, m, "w_scale").astype(np.float32)
    w_zp = per_channel(graph, node, 5, m, "w_zero_point").astype(np.int32)
    y_scale = np.float32(scalar(graph, node, 6, "y_scale"))
    bias = graph.constant(node, 8)
    bias = np.zeros(m, np.int32) if bias is None else bias.astype(np.int32)
    taps = weights.reshape(m, -1).astype(np.int32) - w_zp[:, None]
    if not any(pads):
        bias = bias - x_zp * taps.sum(axis=1)
    w_type = weights.dtype if not w_zp.any() else np.dtype(np.int32)  # a weight zero point is folded in
    return Conv(x, m, cg, kh, kw, int(attrs.get("group", 1)), strides, dilations, pads, x_zp, taps, w_type, bias,
                (x_scale * w_scale) / y_scale)


@dataclass(frozen=True)
class Window:
    """How a conv sums one window into `acc` at output (oy, ox): its arrays, the line that opens output
    channel m, and the statements of the window itself."""
    constants: list[Constant]
    channel: str
    write: Callable[[CWriter], None]
    macs_per_position: int  # over all output channels
    note: str = ""  # for the layer's comment
    helpers: frozenset[str] = frozenset()


def _window_origin(conv: Conv) -> str:
    return (f"const {c_type(conv.x.dtype)} *xw = xg + (oy * {conv.strides[0]}) * {conv.in_w} "
            f"+ ox * {conv.strides[1]};")


def dot_window(conv: Conv, names: LayerNames, bias: str) -> Window:
    """Each kernel row is kw contiguous bytes: one dot product (two taps per SMLAD on a Cortex-M4)."""
    w = names.array("w")
    dot = f"dot_{short_type(conv.x.dtype)}_i8"

    def write(c: CWriter) -> None:
        c.line(_window_origin(conv))
        c.line(f"int32_t acc = {bias}[m];")
        with c.nested(f"for (int c = 0; c < {conv.cg}; c++)"), c.nested(f"for (int ky = 0; ky < {conv.kh}; ky++)"):
            c.line(f"acc = {dot}(xw + c * {conv.in_h * conv.in_w} + ky * {conv.in_w}, "
                   f"wm + (c * {conv.kh} + ky) * {conv.kw}, {conv.kw}, acc);")

    return Window([_weights(conv, w)], _channel_weights(conv, w), write, conv.taps.size,
                  helpers=frozenset({dot}))


def sparse_window(conv: Conv, names: LayerNames, bias: str) -> Window:
    """Only the nonzero taps, each with its input offset from the window's first input: exact, a sum of the
    same nonzero products (the rewrites' zero taps skipped)."""
    offset, weight, start = names.array("tap_offset"), names.array("tap_weight"), names.array("tap_start")
    offsets = (np.arange(conv.cg)[:, None, None] * (conv.in_h * conv.in_w) + np.arange(conv.kh)[None, :, None]
               * conv.in_w + np.arange(conv.kw)[None, None, :]).reshape(-1)
    rows, cols = np.nonzero(conv.taps)  # row-major: in output channel order
    tap_start = np.concatenate([[0], np.cumsum((conv.taps != 0).sum(axis=1))])
    constants = [Constant(offset, narrow(offsets[cols]), "input offset of each nonzero tap"),
                 Constant(weight, conv.taps[rows, cols].astype(np.int8), "its weight"),
                 Constant(start, narrow(tap_start), "output channel m's taps: tap_start[m] to tap_start[m + 1]")]

    def write(c: CWriter) -> None:
        c.line(_window_origin(conv))
        c.line(f"int32_t acc = {bias}[m];")
        c.line(f"for (int k = k0; k < k1; k++) acc += xw[{offset}[k]] * {weight}[k];")

    nonzero = int((conv.taps != 0).sum())
    return Window(constants, f"const int k0 = {start}[m], k1 = {start}[m + 1];", write, nonzero,
                  note=f", {nonzero} of {conv.taps.size} taps nonzero")


def general_window(conv: Conv, names: LayerNames, bias: str) -> Window:
    """Tap by tap: padding (taps outside the input skipped, the input zero point subtracted per tap),
    dilation, and weights that are not int8 once their zero point is folded in."""
    w = names.array("w")
    x_term = (f"((int32_t)xc[iy * {conv.in_w} + ix] - {conv.x_zp})" if any(conv.pads) else
              f"xc[iy * {conv.in_w} + ix]")

    def write(c: CWriter) -> None:
        c.line(f"int32_t acc = {bias}[m];")
        with c.block(f"for (int c = 0; c < {conv.cg}; c++)"):
            c.line(f"const {c_type(conv.x.dtype)} *xc = xg + c * {conv.in_h * conv.in_w};")
            c.line(f"const {c_type(conv.w_type)} *wc = wm + c * {conv.kh * conv.kw};")
            c.line("int t = 0;")
            window_loops(c, conv.strides, conv.dilations, conv.pads, (conv.in_h, conv.in_w), (conv.kh, conv.kw),
                         f"acc += {x_term} * wc[t++];")

    return Window([_weights(conv, w)], _channel_weights(conv, w), write, conv.taps.size)


def _weights(conv: Conv, name: str) -> Constant:
    return Constant(name, conv.taps.astype(conv.w_type).reshape(-1), f"({conv.m}, {conv.cg}, {conv.kh}, {conv.kw})")


def _channel_weights(conv: Conv, name: str) -> str:
    return f"const {c_type(conv.w_type)} *wm = {name} + m * {conv.cg * conv.kh * conv.kw};"


def window_loops(c: CWriter, strides, dilations, pads, image: tuple[int, int], kernel: tuple[int, int],
                 inner: str) -> None:
    """Loops over a window's taps at output (oy, ox); `inner` sees iy, ix (taps outside the input skipped)."""
    (sy, sx), (dy, dx), (in_h, in_w), (kh, kw) = strides, dilations, image, kernel
    check_y = f" if (iy < 0 || iy >= {in_h}) continue;" if pads[0] or pads[2] else ""
    check_x = f" if (ix < 0 || ix >= {in_w}) continue;" if pads[1] or pads[3] else ""
    with c.block(f"for (int ky = 0; ky < {kh}; ky++)"):
        c.line(f"const int iy = oy * {sy} - {pads[0]} + ky * {dy};{check_y}")
        with c.block(f"for (int kx = 0; kx < {kw}; kx++)"):
            c.line(f"const int ix = ox * {sx} - {pads[1]} + kx * {dx};{check_x}")
            c.line(inner)


def fusable_pool(node, attrs: dict) -> bool:
    """A MaxPool that can run inside the convolution before it: disjoint windows (kernel = stride), no padding,
    no dilation, no ceil_mode. Requantisation is monotonic (scale > 0), so the max of requantised outputs is
    the requantised max of the accumulators: one requantisation per pooled output instead of four."""
    kernel = list(attrs.get("kernel_shape", ()))
    return (node.op_type == "MaxPool" and len(kernel) == 2 and list(attrs.get("strides", (1, 1))) == kernel
            and not any(attrs.get("pads", (0,) * 4)) and list(attrs.get("dilations", (1, 1))) == [1, 1]
            and not attrs.get("ceil_mode", 0) and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and not (len(node.output) > 1 and node.output[1]))


def choose_window(conv: Conv, names: LayerNames, bias: str) -> Window:
    dense = not any(conv.pads) and conv.dilations == (1, 1) and conv.w_type == np.int8
    if dense and (conv.taps != 0).mean() <= SPARSE_MAX_SHARE:
        return sparse_window(conv, names, bias)
    if dense:
        return dot_window(conv, names, bias)
    return general_window(conv, names, bias)


def patch_weights(taps: np.ndarray) -> np.ndarray:
    """(M, K) taps -> (M, 4 * ceil(K / 4)) int8, zero padded, each group of four stored w0 w2 w1 w3 (see
    c/patch.c: the order in which SXTB16 pairs them with the patch's halfwords)."""
    m, k = taps.shape
    padded = np.zeros((m, -(-k // 4) * 4), np.int8)
    padded[:, :k] = taps
    return padded.reshape(m, -1, 4)[:, :, [0, 2, 1, 3]].reshape(m, -1)


def patch_eligible(conv: Conv) -> bool:
    """Windows as halfword patches, two output channels at a time: int8 weights without padding or dilation,
    one group, an even number of output channels."""
    return (not any(conv.pads) and conv.dilations == (1, 1) and conv.w_type == np.int8 and conv.group == 1
            and conv.m % 2 == 0 and (conv.taps != 0).mean() > SPARSE_MAX_SHARE)


def write_gather(c: CWriter, conv: Conv, patch: str, origin: str, patch_type: str = "int16_t") -> None:
    """The window at `origin` (a pointer expression) into the array `patch`, in (c, ky, kx) order."""
    c.line(f"const {c_type(conv.x.dtype)} *xw = {origin};")
    c.line(f"{patch_type} *d = {patch};")
    with c.nested(f"NO_UNROLL for (int c = 0; c < {conv.cg}; c++)"), \
            c.block(f"NO_UNROLL for (int ky = 0; ky < {conv.kh}; ky++, d += {conv.kw})"):
        c.line(f"const {c_type(conv.x.dtype)} *r = xw + c * {conv.in_h * conv.in_w} + ky * {conv.in_w};")
        c.line(" ".join(f"d[{k}] = r[{k}];" for k in range(conv.kw)))


def patch_body(conv: Conv, names: LayerNames, bias: str, store, pool: tuple[int, int],
               out_hw: tuple[int, int]) -> tuple[str, list[Constant]]:
    """The conv as patches: per output position (per pooled output, its window pairs side by side), each
    window gathered once as halfwords, then two output channels at a time over it (c/patch.c)."""
    (ph, pw), (out_h, out_w) = pool, out_hw
    w = names.array("w_patch")
    k = conv.taps.shape[1]
    groups = -(-k // 4)
    pair = pw % 2 == 0 and ph * pw > 1  # two windows of a pool cell side by side share each widened weight
    windows = 2 if pair else 1
    (sy, sx), m = conv.strides, conv.m
    this, after = f"{bias}[m]", f"{bias}[m + 1]"  # the biases of the two output channels at a time
    c = CWriter()
    c.line(f"int16_t patch[{windows}][{4 * groups}];  /* {'two windows' if pair else 'the window'}, widened, "
           f"in groups of four */")
    if 4 * groups > k:
        with c.block(f"for (int k = {k}; k < {4 * groups}; k++)"):
            for i in range(windows):
                c.line(f"patch[{i}][k] = 0;")
    if ph * pw > 1:
        c.line(f"int32_t best[{m}];")
    with c.block(f"for (int py = 0; py < {out_h}; py++)"), c.block(f"for (int px = 0; px < {out_w}; px++)"):
        if ph * pw == 1:
            for i in range(windows):
                write_gather(c, conv, f"patch[{i}]", f"in0 + (py * {sy}) * {conv.in_w} + px * {sx}")
            with c.block(f"NO_UNROLL for (int m = 0; m < {m}; m += 2)"):
                c.line(f"int32_t acc[2] = {initialiser(this, after)};")
                c.line(f"patch_dot_2x1(patch[0], {w} + m * {4 * groups}, {w} + (m + 1) * {4 * groups}, {groups}, "
                       "acc);")
                c.line(store("m", "acc[0]"))
                c.line(store("m + 1", "acc[1]"))
        else:
            c.line(f"NO_UNROLL for (int m = 0; m < {m}; m++) best[m] = INT32_MIN;")
            with c.block(f"for (int dy = 0; dy < {ph}; dy++)"), \
                    c.block(f"for (int dx = 0; dx < {pw}; dx += {windows})"):
                c.line(f"const int oy = py * {ph} + dy, ox = px * {pw} + dx;")
                for i in range(windows):
                    with c.block(""):
                        write_gather(c, conv, f"patch[{i}]", f"in0 + (oy * {sy}) * {conv.in_w} + (ox + {i}) * {sx}")
                with c.block(f"NO_UNROLL for (int m = 0; m < {m}; m += 2)"):
                    if pair:
                        c.line(f"int32_t acc[4] = {initialiser(this, this, after, after)};")
                        c.line(f"patch_dot_2x2(patch[0], patch[1], {w} + m * {4 * groups}, {w} + (m + 1) * "
                               f"{4 * groups}, {groups}, acc);")
                        c.line("const int32_t a = acc[0] > acc[1] ? acc[0] : acc[1], "
                               "b = acc[2] > acc[3] ? acc[2] : acc[3];")
                    else:
                        c.line(f"int32_t acc[2] = {initialiser(this, after)};")
                        c.line(f"patch_dot_2x1(patch[0], {w} + m * {4 * groups}, {w} + (m + 1) * {4 * groups}, "
                               f"{groups}, acc);")
                        c.line("const int32_t a = acc[0], b = acc[1];")
                    c.line("if (a > best[m]) best[m] = a;")
                    c.line("if (b > best[m + 1]) best[m + 1] = b;")
            c.line(f"NO_UNROLL for (int m = 0; m < {m}; m++) {store('m', 'best[m]')}")
    return c.text(), [Constant(w, patch_weights(conv.taps).reshape(-1),
                               f"({m}, {conv.cg}, {conv.kh}, {conv.kw}), each channel's taps padded to "
                               f"{4 * groups}, in groups of four stored w0 w2 w1 w3")]


def region_eligible(conv: Conv, pool: tuple[int, int]) -> bool:
    """One input channel, a 2x2 pool, stride 1: a pool cell's four windows read one small region."""
    return conv.cg == 1 and pool == (2, 2) and conv.strides == (1, 1) and conv.kw <= 8


def region_weights(conv: Conv) -> np.ndarray:
    """(M, kH, ceil(kW / 2), 2) int16: each kernel row as halfword pairs, the last one zero padded."""
    pairs = -(-conv.kw // 2)
    rows = np.zeros((conv.m, conv.kh, 2 * pairs), np.int16)
    rows[:, :, :conv.kw] = conv.taps.reshape(conv.m, conv.kh, conv.kw)
    return rows.reshape(-1)


def region_body(conv: Conv, names: LayerNames, bias: str, store, out_hw: tuple[int, int]) -> tuple[str, list[Constant]]:
    """A one-channel conv with a 2x2 pool, with a DSP extension: each pool cell's (kH + 1) x (kW + 1) inputs
    widened once into a region; each kernel row's weights, stored as halfword pairs, loaded once for the
    cell's four windows (SMLAD on the pairs at even offsets for the left windows, odd for the right)."""
    (out_h, out_w), pairs = out_hw, -(-conv.kw // 2)
    rw, rh = conv.kw + 1, conv.kh + 1
    w = names.array("w_pairs")
    x_type = c_type(conv.x.dtype)
    c = CWriter()
    c.line(f"int16_t region[{rh * rw + 2}];  /* a pool cell's inputs, widened; 2 spare: the last pair's "
           "second half meets a zero weight */")
    c.line(f"region[{rh * rw}] = 0;")
    c.line(f"region[{rh * rw + 1}] = 0;")
    with c.block(f"for (int py = 0; py < {out_h}; py++)"), c.block(f"for (int px = 0; px < {out_w}; px++)"):
        c.line(f"const {x_type} *xw = in0 + (py * 2) * {conv.in_w} + px * 2;")
        with c.block(f"NO_UNROLL for (int r = 0; r < {rh}; r++)"):
            c.line(f"const {x_type} *x = xw + r * {conv.in_w};")
            c.line(f"int16_t *d = region + r * {rw};")
            c.line(" ".join(f"d[{k}] = x[{k}];" for k in range(rw)))
        with c.block(f"NO_UNROLL for (int m = 0; m < {conv.m}; m++)"):
            c.line(f"const patch_word *k = (const patch_word *){w} + m * {conv.kh * pairs};")
            c.line(f"int32_t a = {bias}[m], b = a, e = a, f = a;  /* windows (0, 0), (0, 1), (1, 0), (1, 1) */")
            with c.block(f"NO_UNROLL for (int ky = 0; ky < {conv.kh}; ky++, k += {pairs})"):
                c.line(f"const int16_t *top = region + ky * {rw}, *low = top + {rw};")
                for j in range(pairs):
                    c.line(f"const int32_t w{j} = (int32_t)k[{j}];")
                for j in range(pairs):
                    c.line(f"a = __smlad((int32_t)*(const patch_word *)(top + {2 * j}), w{j}, a);")
                    c.line(f"b = __smlad((int32_t)*(const patch_word *)(top + {2 * j + 1}), w{j}, b);")
                    c.line(f"e = __smlad((int32_t)*(const patch_word *)(low + {2 * j}), w{j}, e);")
                    c.line(f"f = __smlad((int32_t)*(const patch_word *)(low + {2 * j + 1}), w{j}, f);")
            c.line("a = a > b ? a : b;")
            c.line("e = e > f ? e : f;")
            c.line(store("m", "(a > e ? a : e)"))
    return c.text(), [Constant(w, region_weights(conv), f"({conv.m}, {conv.kh}, {2 * pairs}): each kernel row as "
                                                        "halfword pairs, zero padded")]


def write_nonzero_gather(c: CWriter, conv: Conv, origin: str) -> None:
    """The nonzero inputs of the window at `origin` into value[0..n) with their tap (c, ky, kx) in tap[]."""
    c.line(f"const {c_type(conv.x.dtype)} *xw = {origin};")
    c.line("int n = 0;")
    with c.nested(f"NO_UNROLL for (int c = 0; c < {conv.cg}; c++)"), \
            c.block(f"NO_UNROLL for (int ky = 0; ky < {conv.kh}; ky++)"):
        c.line(f"const {c_type(conv.x.dtype)} *r = xw + c * {conv.in_h * conv.in_w} + ky * {conv.in_w};")
        c.line(f"const int row = (c * {conv.kh} + ky) * {conv.kw};")
        for kx in range(conv.kw):
            c.line(inline_block(f"if (r[{kx}])", f"value[n] = r[{kx}];", f"tap[n++] = (uint16_t)(row + {kx});"))


def region_taps(conv: Conv) -> np.ndarray:
    """(kH + 1, kW + 1, 4) uint8: for each input of a pool cell's region, its tap in each of the cell's four
    windows (0, 0), (0, 1), (1, 0), (1, 1), or kH * kW where it is outside that window (a zero weight)."""
    taps = np.full((conv.kh + 1, conv.kw + 1, 4), conv.kh * conv.kw, np.uint8)
    for r in range(conv.kh + 1):
        for col in range(conv.kw + 1):
            for i, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                if 0 <= r - dy < conv.kh and 0 <= col - dx < conv.kw:
                    taps[r, col, i] = (r - dy) * conv.kw + col - dx
    return taps.reshape(-1)


def plain_region_body(conv: Conv, names: LayerNames, bias: str, store, out_hw: tuple[int, int]
                      ) -> tuple[str, list[Constant]]:
    """A one-channel conv with a 2x2 pool, without a DSP extension: each pool cell's region read once, its
    nonzero inputs (14 % of C1's) multiplied into the four windows they fall in, through a table of taps."""
    (out_h, out_w), k = out_hw, conv.kh * conv.kw
    rw, rh = conv.kw + 1, conv.kh + 1
    w, taps = names.array("w_padded"), names.array("region_taps")
    x_type = c_type(conv.x.dtype)
    c = CWriter()
    c.line(f"{x_type} value[{rh * rw}];  /* a pool cell's nonzero inputs, and where in its region */")
    c.line(f"uint8_t at[{rh * rw}];")
    with c.block(f"for (int py = 0; py < {out_h}; py++)"), c.block(f"for (int px = 0; px < {out_w}; px++)"):
        c.line("int n = 0;")
        with c.block(f"NO_UNROLL for (int r = 0; r < {rh}; r++)"):
            c.line(f"const {x_type} *x = in0 + (py * 2 + r) * {conv.in_w} + px * 2;")
            for col in range(rw):
                c.line(inline_block(f"if (x[{col}])", f"value[n] = x[{col}];",
                                    f"at[n++] = (uint8_t)(r * {rw} + {col});"))
        with c.block(f"NO_UNROLL for (int m = 0; m < {conv.m}; m++)"):
            c.line(f"const int8_t *wm = {w} + m * {k + 1};")
            c.line(f"int32_t a = {bias}[m], b = a, e = a, f = a;  /* windows (0, 0), (0, 1), (1, 0), (1, 1) */")
            with c.block("for (int i = 0; i < n; i++)"):
                c.line("const int32_t v = value[i];")
                c.line(f"const uint8_t *t = {taps} + at[i] * 4;")
                c.line("a += v * wm[t[0]];")
                c.line("b += v * wm[t[1]];")
                c.line("e += v * wm[t[2]];")
                c.line("f += v * wm[t[3]];")
            c.line("a = a > b ? a : b;")
            c.line("e = e > f ? e : f;")
            c.line(store("m", "(a > e ? a : e)"))
    padded = np.zeros((conv.m, k + 1), np.int8)
    padded[:, :k] = conv.taps
    return c.text(), [Constant(w, padded.reshape(-1), f"({conv.m}, {k} + 1): each channel's taps and a zero for "
                                                      "the inputs outside a window"),
                      Constant(taps, region_taps(conv), f"({rh}, {rw}, 4): each region input's tap in the four "
                                                        f"windows, {k} outside")]


def plain_patch_body(conv: Conv, names: LayerNames, bias: str, store, pool: tuple[int, int],
                     out_hw: tuple[int, int]) -> tuple[str, list[Constant], frozenset[str]]:
    """The conv without a DSP extension: each window's nonzero inputs gathered once (c/nonzero.c), then one
    dot product over them per output channel."""
    (ph, pw), (out_h, out_w), (sy, sx) = pool, out_hw, conv.strides
    w = names.array("w")
    k = conv.taps.shape[1]
    x_type = c_type(conv.x.dtype)
    dot = f"dot_nonzero_{short_type(conv.x.dtype)}"
    c = CWriter()
    c.line(f"{x_type} value[{k}];  /* a window's nonzero inputs, and their taps */")
    c.line(f"uint16_t tap[{k}];")
    if ph * pw > 1:
        c.line(f"int32_t best[{conv.m}];")
    with c.block(f"for (int py = 0; py < {out_h}; py++)"), c.block(f"for (int px = 0; px < {out_w}; px++)"):
        if ph * pw == 1:
            write_nonzero_gather(c, conv, f"in0 + (py * {sy}) * {conv.in_w} + px * {sx}")
            with c.nested(f"NO_UNROLL for (int m = 0; m < {conv.m}; m++)"):
                c.line(store("m", f"{dot}(value, tap, n, {w} + m * {k}, {bias}[m])"))
        else:
            c.line(f"NO_UNROLL for (int m = 0; m < {conv.m}; m++) best[m] = INT32_MIN;")
            with c.block(f"for (int dy = 0; dy < {ph}; dy++)"), c.block(f"for (int dx = 0; dx < {pw}; dx++)"):
                write_nonzero_gather(c, conv, f"in0 + ((py * {ph} + dy) * {sy}) * {conv.in_w} + (px * {pw} + dx) "
                                              f"* {sx}")
                with c.block(f"NO_UNROLL for (int m = 0; m < {conv.m}; m++)"):
                    c.line(f"const int32_t acc = {dot}(value, tap, n, {w} + m * {k}, {bias}[m]);")
                    c.line("if (acc > best[m]) best[m] = acc;")
            c.line(f"NO_UNROLL for (int m = 0; m < {conv.m}; m++) {store('m', 'best[m]')}")
    return c.text(), [_weights(conv, w)], frozenset({dot})


def frame_body(conv: Conv, window: Window, store: str, pool: tuple[int, int], out_hw: tuple[int, int]) -> str:
    """Output channel by output channel, position by position (by pool window when a pool is fused in),
    `window` summing each window."""
    (ph, pw), (out_h, out_w) = pool, out_hw
    c = CWriter()
    with c.block(f"for (int m = 0; m < {conv.m}; m++)"):
        c.line(f"const {c_type(conv.x.dtype)} *xg = in0 + (m / {conv.m // conv.group}) * "
               f"{conv.cg * conv.in_h * conv.in_w};  /* m's input group */")
        c.line(window.channel)
        with c.block(f"for (int py = 0; py < {out_h}; py++)"), c.block(f"for (int px = 0; px < {out_w}; px++)"):
            if ph * pw > 1:
                c.line("int32_t best = INT32_MIN;")
                with c.block(f"for (int dy = 0; dy < {ph}; dy++)"), c.block(f"for (int dx = 0; dx < {pw}; dx++)"):
                    c.line(f"const int oy = py * {ph} + dy, ox = px * {pw} + dx;")
                    window.write(c)
                    c.line("if (acc > best) best = acc;")
            else:
                c.line("const int oy = py, ox = px;")
                window.write(c)
            c.line(store)
    return c.text()


def qlinear_conv(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames, pool=None) -> Kernel:
    """QLinearConv, with the MaxPool after it fused in when `pool` is given (see fusable_pool). A dense conv
    has two bodies: halfword patches where the core has a DSP extension, plain loops where it has none."""
    conv = read_conv(graph, node, values)
    y = values[node.output[0]]
    y_zp = int(scalar(graph, node, 7, "y_zero_point"))
    out_name, out_value, (ph, pw) = node.output[0], y, (1, 1)
    if pool is not None:
        out_name = pool.output[0]
        out_value = values[out_name]
        ph, pw = (int(k) for k in attributes(pool)["kernel_shape"])  # = its strides; 2x1 as well as 2x2
    out_h, out_w = out_value.shape[2:]
    bias, scale = names.array("bias"), names.array("scale")
    store = requantize_line(f"out0[(m * {out_h} + py) * {out_w} + px]", "best" if ph * pw > 1 else "acc",
                            f"{scale}[m]", y.dtype, y_zp)
    geometry = geometry_text((conv.kh, conv.kw), conv.strides, conv.pads, conv.dilations, conv.group)
    fused = f", then {describe(pool)} {ph}x{pw} fused in" if pool is not None else ""
    description = f"{describe(node)} {shape_text(conv.x)} -> {shape_text(out_value)}, {geometry}"
    constants = [Constant(bias, narrow(conv.bias), "bias with the input zero point folded in"
                          if not any(conv.pads) else "bias"),
                 Constant(scale, conv.scale.astype(np.float32), "x_scale * w_scale / y_scale")]
    if patch_eligible(conv):
        def patch_store(m: str, acc: str) -> str:
            return requantize_line(f"out0[({m}) * {out_h * out_w} + py * {out_w} + px]", acc, f"{scale}[{m}]",
                                   y.dtype, y_zp)

        if region_eligible(conv, (ph, pw)):
            dsp, dsp_weights = region_body(conv, names, bias, patch_store, (out_h, out_w))
            how = "each pool cell's inputs widened once for its four windows"
        else:
            dsp, dsp_weights = patch_body(conv, names, bias, patch_store, (ph, pw), (out_h, out_w))
            how = "windows as halfword patches, two output channels at a time"
        if region_eligible(conv, (ph, pw)):
            plain, plain_weights = plain_region_body(conv, names, bias, patch_store, (out_h, out_w))
            plain_helpers, plain_how = frozenset(), "each pool cell's nonzero inputs multiplied into its four windows"
        else:
            plain, plain_weights, plain_helpers = plain_patch_body(conv, names, bias, patch_store, (ph, pw),
                                                                   (out_h, out_w))
            plain_how = "the nonzero inputs of each window, one dot product over them per output channel"
        helpers = frozenset({"patch_word"}) | plain_helpers
        if not region_eligible(conv, (ph, pw)):
            helpers |= {"patch_dot_2x2" if pw % 2 == 0 and ph * pw > 1 else "patch_dot_2x1"}
        body = CWriter()
        body.directive("#if HAVE_DSP")
        body.lines(dsp)
        body.directive("#else")
        body.lines(plain)
        body.directive("#endif")
        return Kernel([node.input[0]], [out_name],
                      f"{description}{fused}; with a DSP extension {how}, without one {plain_how}", body.text(),
                      [*(Constant(k.name, k.values, k.comment, "HAVE_DSP") for k in dsp_weights),
                       *(Constant(k.name, k.values, k.comment, "!HAVE_DSP") for k in plain_weights), *constants],
                      macs=conv.taps.size * y.shape[2] * y.shape[3], helpers=helpers)
    window = choose_window(conv, names, bias)
    return Kernel([node.input[0]], [out_name], f"{description}{window.note}{fused}",
                  frame_body(conv, window, store, (ph, pw), (out_h, out_w)), [*window.constants, *constants],
                  macs=window.macs_per_position * y.shape[2] * y.shape[3], helpers=window.helpers)


def max_pool(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
    if len(node.output) > 1 and node.output[1]:
        raise unsupported(node, "the Indices output is not supported")
    x, y = values[node.input[0]], values[node.output[0]]
    attrs = attributes(node)
    kh, kw = attrs["kernel_shape"]
    strides, dilations, pads = conv_geometry(node, attrs, (kh, kw))
    _, channels, in_h, in_w = x.shape
    _, _, out_h, out_w = y.shape
    lowest = "-3.402823466e38f" if x.dtype == np.float32 else str(type_range(x.dtype)[0])
    c = CWriter()
    with c.block(f"for (int c = 0; c < {channels}; c++)"):
        c.line(f"const int xo = c * {in_h * in_w};")
        with c.block(f"for (int oy = 0; oy < {out_h}; oy++)"), c.block(f"for (int ox = 0; ox < {out_w}; ox++)"):
            c.line(f"{c_type(x.dtype)} best = {lowest};")
            window_loops(c, strides, dilations, pads, (in_h, in_w), (kh, kw),
                         f"const {c_type(x.dtype)} v = in0[xo + iy * {in_w} + ix]; if (v > best) best = v;")
            c.line(f"out0[(c * {out_h} + oy) * {out_w} + ox] = best;")
    return Kernel([node.input[0]], [node.output[0]],
                  f"{describe(node)} {shape_text(x)} -> {shape_text(y)}, "
                  f"{geometry_text((kh, kw), strides, pads, dilations)}", c.text())
