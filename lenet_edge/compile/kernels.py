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

Each kernel gets the layer's names (LayerNames: its arrays' C names, chosen before any C is written) and
returns a Kernel: C statements over its inputs in0, in1, ... and outputs out0, ... (pointers the generator
passes in), the constant arrays it needs, and a one-line description with the shapes. The convolution and
pooling kernels are in conv.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from ..graph import GraphIndex, attributes, describe
from ..sessions import open_session, session_options
from .csource import CWriter
from .runtime_graph import Value

C_TYPES = {np.dtype(np.uint8): "uint8_t", np.dtype(np.int8): "int8_t", np.dtype(np.float32): "float",
           np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t"}
ALIASES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")  # same bytes, another shape: no code
ELEMENTWISE = ("QuantizeLinear", "DequantizeLinear", "Tanh", "QLinearSigmoid")  # fused into one loop in a row


@dataclass
class Constant:
    name: str  # the array's C name
    values: np.ndarray
    comment: str = ""
    condition: str = ""  # a preprocessor condition (HAVE_DSP): in the build only where it holds


class LayerNames:
    """The C names of one layer: its function and its arrays (function_suffix), chosen before its C is
    written. A second array of the same suffix in one layer (two fused lookup tables) gets suffix2."""

    def __init__(self, function: str) -> None:
        self.function = function
        self._taken: set[str] = set()

    def array(self, suffix: str) -> str:
        while suffix in self._taken:
            suffix = _next_name(suffix)
        self._taken.add(suffix)
        return f"{self.function}_{suffix}"


@dataclass
class Kernel:
    inputs: list[str]  # activation values read (constants are folded into `constants`)
    outputs: list[str]
    description: str
    body: str
    constants: list[Constant] = field(default_factory=list)
    macs: int = 0  # multiply-accumulates executed per inference (zero taps skipped not counted), for the report
    exact: bool = True  # reproduces onnxruntime bit for bit (float kernels whose mlas code differs: False)
    # for one-input element-wise kernels: the C expression of one output element, given the input's
    element: Callable[[str], str] | None = None
    element_type: str = ""  # the C type of the input element
    helpers: frozenset[str] = frozenset()  # the shared C functions it calls (dot_u8_i8, tanh_mlas, ...)
    nodes: list[str] = field(default_factory=list)  # the graph's nodes it computes (set by the generator)


def elementwise(node, x: Value, y: Value, element: Callable[[str], str], exact: bool = True,
                constants: list[Constant] | None = None, helpers: frozenset[str] = frozenset()) -> Kernel:
    """A one-input element-wise kernel; chains of them (DequantizeLinear -> Tanh -> QuantizeLinear) are fused
    by the generator into one loop, so no float tensor is ever stored."""
    return Kernel([node.input[0]], [node.output[0]], f"{describe(node)} {shape_text(x)} -> {shape_text(y)}",
                  elementwise_body(x.size, element("x"), c_type(x.dtype)), constants or [], exact=exact,
                  element=element, element_type=c_type(x.dtype), helpers=helpers)


def elementwise_body(size: int, element: str, x_type: str) -> str:
    c = CWriter()
    with c.block(f"for (int i = 0; i < {size}; i++)"):
        c.line(f"const {x_type} x = in0[i];")
        c.line(f"out0[i] = {element};")
    return c.text()


def fuse_elementwise(first: Kernel, second: Kernel, size: int) -> Kernel:
    """`second` applied to `first`'s output, element by element, in one loop: no buffer in between. Both
    kernels' constants come along (named apart by the layer's LayerNames)."""
    def element(x: str) -> str:
        return second.element(f"({first.element(x)})")

    return Kernel(first.inputs, second.outputs, f"{first.description}; {second.description}",
                  elementwise_body(size, element("x"), first.element_type), first.constants + second.constants,
                  exact=first.exact and second.exact, element=element, element_type=first.element_type,
                  helpers=first.helpers | second.helpers, nodes=first.nodes + second.nodes)


def _next_name(name: str) -> str:
    """table -> table2 -> table3 ..."""
    number = re.search(r"\d+$", name)
    return f"{name[:number.start()]}{int(number.group()) + 1}" if number else f"{name}2"


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


def short_type(dtype) -> str:
    return {"uint8": "u8", "int8": "i8"}[np.dtype(dtype).name]


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


def scalar(graph: GraphIndex, node, index: int, what: str):
    value = graph.constant(node, index)
    if value is None or value.size != 1:
        raise unsupported(node, f"{what} must be a constant scalar (found "
                                f"{'a computed value' if value is None else f'shape {value.shape}'})")
    return value.reshape(-1)[0]


def per_channel(graph: GraphIndex, node, index: int, channels: int, what: str) -> np.ndarray:
    value = graph.constant(node, index)
    if value is None or value.size not in (1, channels):
        raise unsupported(node, f"{what} must be a constant of 1 or {channels} values")
    return np.broadcast_to(value.reshape(-1), (channels,)).copy()


def requantize_line(target: str, acc: str, scale: str, out_dtype, out_zp: int) -> str:
    lo, hi = type_range(out_dtype)
    return f"{target} = ({c_type(out_dtype)})requantize({acc}, {scale}, {lo - out_zp}, {hi - out_zp}, {out_zp});"


def conv_geometry(node, attrs: dict, kernel: tuple[int, int]):
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise unsupported(node, f"auto_pad {attrs['auto_pad']!r} (expected explicit pads)")
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    if len(kernel) != 2 or len(strides) != 2 or len(pads) != 4:
        raise unsupported(node, "only 2-D windows are supported")
    return strides, dilations, pads


def geometry_text(kernel, strides, pads, dilations, group=1) -> str:
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


def qgemm(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames, matmul: bool = False) -> Kernel:
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
    a_scale = np.float32(scalar(graph, node, 1, "a_scale"))
    a_zp = int(scalar(graph, node, 2, "a_zero_point"))
    b_scale = per_channel(graph, node, 4, n, "b_scale").astype(np.float32)
    b_zp = per_channel(graph, node, 5, n, "b_zero_point").astype(np.int32)
    bias = None if bias_slot is None else graph.constant(node, bias_slot)
    bias = np.zeros(n, np.int32) if bias is None else np.broadcast_to(bias.reshape(-1), (n,)).astype(np.int32)
    quantized = len(node.input) > y_slot and bool(node.input[y_slot])
    scale = (alpha * a_scale) * b_scale  # float32, in onnxruntime's order
    if quantized:
        scale = scale / np.float32(scalar(graph, node, y_slot, "y_scale"))
    taps = b_t.astype(np.int32) - b_zp[:, None]  # (N, K)
    bias = bias - a_zp * taps.sum(axis=1)  # sum (a - za) b = sum a b - za sum b, exactly
    w_type = b.dtype if not b_zp.any() else np.dtype(np.int32)
    w, bias_name, scale_name = names.array("w"), names.array("bias"), names.array("scale")
    if quantized:
        y_zp = int(scalar(graph, node, y_slot + 1, "y_zero_point"))
        store = requantize_line("out0[j]", "acc", f"{scale_name}[j]", y.dtype, y_zp)
    else:
        store = f"out0[j] = (float)acc * {scale_name}[j];"
    c, helpers = CWriter(), frozenset()
    with c.block(f"for (int j = 0; j < {n}; j++)"):
        if w_type == np.int8:  # two taps per SMLAD on a Cortex-M4
            dot = f"dot_{short_type(a.dtype)}_i8"
            helpers = frozenset({dot})
            c.line(f"const int32_t acc = {dot}(in0, {w} + j * {k}, {k}, {bias_name}[j]);")
        else:
            c.line(f"const {c_type(w_type)} *wj = {w} + j * {k};")
            c.line(f"int32_t acc = {bias_name}[j];")
            c.line(f"for (int i = 0; i < {k}; i++) acc += in0[i] * wj[i];")
        c.line(store)
    return Kernel([node.input[0]], [node.output[0]], f"{describe(node)} {shape_text(a)} -> {shape_text(y)}",
                  c.text(),
                  [Constant(w, taps.astype(w_type).reshape(-1), f"({n}, {k}), one row per output"),
                   Constant(bias_name, narrow(bias), "bias with the input zero point folded in"),
                   Constant(scale_name, scale.astype(np.float32), "alpha * a_scale * b_scale" +
                            (" / y_scale" if quantized else ""))],
                  macs=n * k, helpers=helpers)


def quantize_linear(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
    x, y = values[node.input[0]], values[node.output[0]]
    scale = np.float32(scalar(graph, node, 1, "y_scale"))
    zp = int(scalar(graph, node, 2, "y_zero_point")) if graph.constant(node, 2) is not None else 0
    lo, hi = type_range(y.dtype)
    return elementwise(node, x, y, lambda v: f"({c_type(y.dtype)})quantize(({v}) / {c_float(scale)}, "
                                             f"{c_float(lo - zp)}, {c_float(hi - zp)}, {zp})")


def dequantize_linear(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
    x, y = values[node.input[0]], values[node.output[0]]
    scale = np.float32(scalar(graph, node, 1, "x_scale"))
    zp = int(scalar(graph, node, 2, "x_zero_point")) if graph.constant(node, 2) is not None else 0
    if x.dtype.itemsize == 1:  # arithmetic.c's dequantize: integer arithmetic on a core without an FPU
        return elementwise(node, x, y, lambda v: f"dequantize((int32_t)({v}) - {zp}, {c_float(scale)})")
    return elementwise(node, x, y, lambda v: f"(float)((int32_t)({v}) - {zp}) * {c_float(scale)}")


def transpose(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
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


@dataclass
class Operand:
    """One input of a broadcasting binary operator: the C expression of its element at [i0, i1, ...] of the
    output, and the constant array behind it (None: an activation, read through in{position})."""
    expression: str
    constant: Constant | None


def _operand(graph: GraphIndex, node, index: int, values: dict[str, Value], out: Value, what: str,
             inputs: list[str], names: LayerNames) -> Operand:
    """Input `index` of `node` broadcast to `out`'s shape: a constant becomes the array `array` (smaller than
    the output when broadcast: per-channel, scalar) named `what` in the layer; an activation is
    in{its position in `inputs`}."""
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
    if constant is None:
        return Operand(f"in{inputs.index(name)}[{index_text}]", None)
    array = names.array(what)
    return Operand(f"{array}[{index_text}]", Constant(array, constant))


def _broadcast_loops(out: Value, expression: str) -> str:
    """Nested loops over `out`'s shape (indices i0, i1, ...), storing `expression` in order."""
    c = CWriter()
    c.line("int o = 0;")
    with c.nested(" ".join(f"for (int i{d} = 0; i{d} < {size}; i{d}++)" for d, size in enumerate(out.shape))):
        c.line(f"out0[o++] = {expression};")
    return c.text()


def _binary_inputs(graph, node, values, out, slots: tuple[int, int], names: LayerNames, distinct: bool):
    """(a, b, activation inputs in parameter order, constants): the inputs' order is fixed first, so each
    operand is written with its parameter's name (`distinct`: x * x passes one buffer)."""
    inputs = [node.input[i] for i in slots if graph.constant(node, i) is None]
    if distinct:
        inputs = list(dict.fromkeys(inputs))
    a, b = (_operand(graph, node, i, values, out, what, inputs, names)
            for i, what in zip(slots, ("a", "b"), strict=True))
    return a, b, inputs, [o.constant for o in (a, b) if o.constant is not None]


def qlinear_binary(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
    """QLinearMul / QLinearAdd (com.microsoft) with mlas's SSE2 arithmetic: Mul rounds
    float((a - za) * (b - zb)) * (sa * sb / sc) + zc; Add rounds (zc - (ra * za + rb * zb)) + a * ra + b * rb
    with ra = sa / sc, rb = sb / sc (the scalar-B form adds b * rb to the fixed part first)."""
    out = values[node.output[0]]
    a, b, inputs, constants = _binary_inputs(graph, node, values, out, (0, 3), names, distinct=True)
    a, b = a.expression, b.expression
    sa, sb, sc = (np.float32(scalar(graph, node, i, what)) for i, what in ((1, "A_scale"), (4, "B_scale"),
                                                                            (6, "C_scale")))
    za, zb, zc = (int(scalar(graph, node, i, what)) for i, what in ((2, "A_zero_point"), (5, "B_zero_point"),
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
    return Kernel(inputs, [node.output[0]], f"{describe(node)} -> {shape_text(out)}", body, constants)


def float_binary(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
    out = values[node.output[0]]
    a, b, inputs, constants = _binary_inputs(graph, node, values, out, (0, 1), names, distinct=True)
    op = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}[node.op_type]
    body = _broadcast_loops(out, f"{a.expression} {op} {b.expression}")
    for constant in constants:
        constant.values = constant.values.astype(np.float32)
    return Kernel(inputs, [node.output[0]], f"{describe(node)} -> {shape_text(out)}", body, constants)


def tanh(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
    """mlas's tanh: a 13/6-degree rational approximation on [-9, 9] (the polynomial of Eigen). On x86 with FMA3
    onnxruntime evaluates it with fused multiply-adds, as c/tanh.c does where the core has a fused
    multiply-add instruction; a core without an FPU rounds each step twice, so logits can differ in the last
    bits: same argmax, not bit-identical."""
    x, y = values[node.input[0]], values[node.output[0]]
    return elementwise(node, x, y, lambda v: f"tanh_mlas({v})", exact=False, helpers=frozenset({"tanh_mlas"}))


def qlinear_sigmoid(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
    """QLinearSigmoid (com.microsoft), uint8 or int8 in and out, as onnxruntime runs it: every code looked up
    in a 256-entry table built once from the node's scales and zero points (see sigmoid_table)."""
    x, y = values[node.input[0]], values[node.output[0]]
    if x.dtype != y.dtype or x.dtype not in (np.uint8, np.int8):
        raise unsupported(node, f"{shape_text(x)} -> {shape_text(y)} (expected uint8 or int8 in and out, "
                                "the same type)")
    x_scale, y_scale = (np.float32(scalar(graph, node, i, what)) for i, what in ((1, "X_scale"), (3, "Y_scale")))
    x_zp, y_zp = (scalar(graph, node, i, what) if len(node.input) > i and node.input[i] else None
                  for i, what in ((2, "X_zero_point"), (4, "Y_zero_point")))  # absent: 0, as onnxruntime reads it
    table = sigmoid_table(x_scale, x_zp, y_scale, y_zp, x.dtype)
    name = names.array("table")
    # int8: the table is in the order of the code's byte
    index = (lambda v: v) if x.dtype == np.uint8 else (lambda v: f"(uint8_t){v}")
    order = " (X's byte: 0..127, then -128..-1)" if x.dtype == np.int8 else ""
    return elementwise(node, x, y, lambda v: f"{name}[{index(v)}]", constants=[Constant(
        name, table, f"{describe(node)}: Y for each X{order}, computed by onnxruntime; X scale {c_float(x_scale)}, "
                     f"zero point {int(x_zp or 0)}, Y scale {c_float(y_scale)}, zero point {int(y_zp or 0)}")])


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


def average_pool(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
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
    strides, _, pads = conv_geometry(node, attrs, (kh, kw))
    _, channels, in_h, in_w = x.shape
    _, _, out_h, out_w = y.shape
    pixel = f"xc[iy * {in_w} + ix]"
    if node.op_type == "QLinearAveragePool":
        x_scale, x_zp = np.float32(scalar(graph, node, 1, "x_scale")), int(scalar(graph, node, 2, "x_zero_point"))
        y_scale, y_zp = np.float32(scalar(graph, node, 3, "y_scale")), int(scalar(graph, node, 4, "y_zero_point"))
        lo, hi = type_range(y.dtype)
        term = f"{c_float(x_scale)} * (float)((int32_t){pixel} - {x_zp})"
        result = (f"({c_type(y.dtype)})quantize(mean / {c_float(y_scale)} + {c_float(y_zp)}, "
                  f"{c_float(lo)}, {c_float(hi)}, 0)")
    else:
        term, result = pixel, "mean"
    count = kh * kw if attrs.get("count_include_pad", 0) else "(he - hs) * (we - ws)"
    c = CWriter()
    with c.block(f"for (int c = 0; c < {channels}; c++)"):
        c.line(f"const {c_type(x.dtype)} *xc = in0 + c * {in_h * in_w};")
        with c.block(f"for (int oy = 0; oy < {out_h}; oy++)"):
            c.line(f"const int y0 = oy * {strides[0]} - {pads[0]};")
            c.line(f"const int hs = y0 < 0 ? 0 : y0, he = y0 + {kh} > {in_h} ? {in_h} : y0 + {kh};")
            with c.block(f"for (int ox = 0; ox < {out_w}; ox++)"):
                c.line(f"const int x0 = ox * {strides[1]} - {pads[1]};")
                c.line(f"const int ws = x0 < 0 ? 0 : x0, we = x0 + {kw} > {in_w} ? {in_w} : x0 + {kw};")
                c.line("float sum = 0.0f;")
                with c.nested("for (int iy = hs; iy < he; iy++)"), c.nested("for (int ix = ws; ix < we; ix++)"):
                    c.line(f"sum += {term};")
                c.line(f"const float mean = sum / (float)({count});")
                c.line(f"out0[(c * {out_h} + oy) * {out_w} + ox] = {result};")
    return Kernel([node.input[0]], [node.output[0]], f"{describe(node)} {shape_text(x)} -> {shape_text(y)}, "
                  f"{geometry_text((kh, kw), strides, pads, (1, 1))}", c.text())


def reduce_sum(graph: GraphIndex, node, values: dict[str, Value], names: LayerNames) -> Kernel:
    """ReduceSum of a float row, summed in order (onnxruntime's vectorised sum adds in another order: the last
    bits can differ)."""
    x, y = values[node.input[0]], values[node.output[0]]
    if y.size != 1:
        raise unsupported(node, f"only a full reduction to one value is supported (found {shape_text(y)})")
    c = CWriter()
    c.line("float sum = 0.0f;")
    c.line(f"for (int i = 0; i < {x.size}; i++) sum += in0[i];")
    c.line("out0[0] = sum;")
    return Kernel([node.input[0]], [node.output[0]], f"{describe(node)} {shape_text(x)} -> {shape_text(y)}",
                  c.text(), exact=False)
