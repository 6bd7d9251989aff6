"""An int8 ONNX model -> one C99 source and header: const weights, one static arena, no malloc, no libc.

The entry function takes the raw pixels (28x28 uint8, MNIST polarity) and writes the float32 logits.
The model's preprocessing contract and its first QuantizeLinear become one 256-entry table, so the
device does no float arithmetic before the first convolution and needs no 32x32 float input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAME, OUTPUT_NAME, ModelContract
from ..errors import ModelError
from ..graph import GraphIndex, attributes, metadata
from . import conv, kernels
from .csource import CWriter, template
from .kernels import (
    ALIASES,
    ELEMENTWISE,
    Constant,
    Kernel,
    LayerNames,
    c_float,
    c_type,
    fuse_elementwise,
    quantize_like_onnxruntime,
    shape_text,
    unsupported,
)
from .layers import INPUT_LAYER, kernel_layer, node_layers
from .runtime_graph import Value, optimized_model, value_shapes

PIXELS = "pixels"  # the entry's input: raw pixels, not an ONNX value
ALIGN = 4  # every arena buffer starts on a word: float and int32 buffers need it
KERNELS = {  # operator -> kernel builder (graph, node, values, names) -> Kernel
    "QLinearConv": conv.qlinear_conv,
    "MaxPool": conv.max_pool,
    "QGemm": kernels.qgemm,
    "QLinearMatMul": lambda graph, node, values, names: kernels.qgemm(graph, node, values, names, matmul=True),
    "QuantizeLinear": kernels.quantize_linear,
    "DequantizeLinear": kernels.dequantize_linear,
    "Transpose": kernels.transpose,
    "QLinearMul": kernels.qlinear_binary,
    "QLinearAdd": kernels.qlinear_binary,
    "QLinearAveragePool": kernels.average_pool,
    "AveragePool": kernels.average_pool,
    "Add": kernels.float_binary,
    "Sub": kernels.float_binary,
    "Mul": kernels.float_binary,
    "Div": kernels.float_binary,
    "Tanh": kernels.tanh,
    "QLinearSigmoid": kernels.qlinear_sigmoid,
    "ReduceSum": kernels.reduce_sum,
}


@dataclass(frozen=True)
class Layer:
    """One generated function: the model's layers it computes (C1+S2), what it is, and the value it writes."""
    function: str  # layer1
    layer: str  # C1+S2, as the model names its layers (lenet_edge.compile.layers)
    description: str
    macs: int
    output: str  # the ONNX value of onnxruntime's graph it writes (a fused pool's output)
    trace_offset: int  # where the check build copies that output in NAME_trace


@dataclass
class Program:
    name: str
    source: str  # the .c file
    header: str  # the .h file
    variant: str
    arena_bytes: int
    constant_bytes: int
    macs: int
    exact: bool  # every kernel reproduces onnxruntime bit for bit
    layers: list[Layer] = field(default_factory=list)
    trace_source: str = ""  # the .c of a check build: each layer's output kept in NAME_trace (check.py)
    trace_bytes: int = 0


def compile_model(path: Path, name: str = "lenet") -> Program:
    """Generate the C for the int8 model at `path`; ModelError naming the node for what cannot be compiled."""
    import onnx

    from ..runtime.model_file import read_model_bytes

    path = Path(path)
    data = read_model_bytes(path)
    model = optimized_model(data, path)
    contract = ModelContract.from_metadata(metadata(model), str(path))
    graph = GraphIndex(model)
    layer_of = node_layers(graph, onnx.load_from_string(data))
    if graph.inputs != [INPUT_NAME] or graph.outputs != [OUTPUT_NAME]:
        raise ModelError(f"{path}: inputs {graph.inputs} and outputs {graph.outputs} "
                         f"(expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}], as lenet-edge export writes them)")
    side = contract.preprocessing.input_size - 2 * contract.preprocessing.pad
    values = value_shapes(model, INPUT_NAME, contract.preprocessing(np.zeros((1, side, side), np.uint8)))
    layer_names = [LayerNames("layer0")]
    input_kernel, skipped = _input_kernel(graph, values, contract, side, layer_names[0])
    layers = [input_kernel]
    alias, fused = {}, set()
    for node in graph.nodes:
        if node.op_type == "Constant" or node is skipped or id(node) in fused:
            continue
        if node.op_type in ALIASES:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
            continue
        if node.domain not in ("", "ai.onnx", "com.microsoft") or node.op_type not in KERNELS:
            raise unsupported(node, "no C kernel for this operator of onnxruntime's optimised graph (expected an "
                              "int8 model from lenet-edge quantize; kernels for "
                              f"{', '.join(sorted(KERNELS))}, and {', '.join(ALIASES)})")
        previous = layers[-1]
        # an element-wise node right after another joins its loop (and its layer's names)
        joins = (node.op_type in ELEMENTWISE and previous.element is not None
                 and [alias.get(node.input[0], node.input[0])] == previous.outputs
                 and len(graph.consumers[node.input[0]]) == 1 and node.input[0] not in graph.outputs)
        names = layer_names[-1] if joins else LayerNames(f"layer{len(layers)}")
        consumers = graph.consumers[node.output[0]]
        pool = consumers[0] if node.op_type == "QLinearConv" and len(consumers) == 1 else None
        if pool is not None and conv.fusable_pool(pool, attributes(pool)) and node.output[0] not in graph.outputs:
            kernel = conv.qlinear_conv(graph, node, values, names, pool)
            kernel.nodes = [node.name, pool.name]
            fused.add(id(pool))
        else:
            kernel = KERNELS[node.op_type](graph, node, values, names)
            kernel.nodes = [node.name]
        kernel.inputs = [alias.get(n, n) for n in kernel.inputs]
        if joins:
            layers[-1] = fuse_elementwise(previous, kernel, values[node.input[0]].size)
        else:
            layers.append(kernel)
            layer_names.append(names)
    output = alias.get(OUTPUT_NAME, OUTPUT_NAME)
    if values[OUTPUT_NAME] != Value(np.dtype(np.float32), (1, len(contract.class_labels))):
        raise ModelError(f"{path}: output {OUTPUT_NAME} is {values[OUTPUT_NAME]} "
                         f"(expected float32 (1, {len(contract.class_labels)}))")
    offsets, arena_bytes = _plan_arena(layers, values, output)
    return _render(Plan(name, path.name, hashlib.sha256(data).hexdigest(), contract, side, layers, values, offsets,
                        arena_bytes, output, layer_of))


def _input_kernel(graph: GraphIndex, values: dict[str, Value], contract: ModelContract, side: int,
                  names: LayerNames):
    """Pixels -> the model's first quantized tensor through a 256-entry table (and the padding's value).

    Returns the kernel and the QuantizeLinear node it replaces (None if the first layer takes floats).
    """
    pre = contract.preprocessing
    levels = np.broadcast_to(np.arange(256, dtype=np.uint8)[:, None, None], (256, side, side))
    prepared = pre(levels)[:, 0]  # (256, 32, 32) float32, exactly as the host runtime prepares inputs
    table, pad_value = prepared[:, pre.pad, pre.pad], prepared[0, 0, 0]
    consumers = graph.consumers[INPUT_NAME]
    quantizer = consumers[0] if len(consumers) == 1 and consumers[0].op_type == "QuantizeLinear" else None
    target = INPUT_NAME
    if quantizer is not None:
        scale, zp = graph.constant(quantizer, 1), graph.constant(quantizer, 2)
        if scale is None or zp is None or scale.size != 1 or zp.size != 1:
            raise unsupported(quantizer, "the input's scale and zero point must be constant scalars")
        table, pad_value = quantize_like_onnxruntime(table, scale, zp), quantize_like_onnxruntime(pad_value, scale, zp)
        target = quantizer.output[0]
    out = values[target]
    size = pre.input_size
    table_name = names.array("table")
    c = CWriter()
    with c.block(f"for (int y = 0; y < {size}; y++)"), c.block(f"for (int x = 0; x < {size}; x++)"):
        c.line(f"const int py = y - {pre.pad}, px = x - {pre.pad};")
        c.line(f"const int inside = py >= 0 && py < {side} && px >= 0 && px < {side};")
        c.line(f"out0[y * {size} + x] = inside ? {table_name}[in0[py * {side} + px]] : "
               f"{c_float(pad_value) if out.dtype == np.float32 else int(pad_value)};")
    how = "preprocessing and the first QuantizeLinear" if quantizer is not None else "preprocessing"
    kernel = Kernel([PIXELS], [target], f"input: u8 {side}x{side} pixels -> {shape_text(out)}, {how} as one table "
                    f"(pad {pre.pad}, mean {pre.mean}, std {pre.std})", c.text(),
                    [Constant(table_name, np.asarray(table).astype(out.dtype), "pixel value -> model input")])
    return kernel, quantizer


def _plan_arena(kernels: list[Kernel], values: dict[str, Value], output: str) -> tuple[dict[str, int], int]:
    """First-fit offsets in one arena for every intermediate value, by lifetime (kernel index range)."""
    first, last = {}, {}
    for i, kernel in enumerate(kernels):
        for name in kernel.outputs:
            first.setdefault(name, i)
            last[name] = i
        for name in kernel.inputs:
            last[name] = i
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    offsets = {}
    for name in sorted(first, key=lambda n: first[n]):
        if name == output:
            continue
        size = -(-values[name].nbytes // ALIGN) * ALIGN
        offset = 0
        for start, end, a, b in sorted(placed):
            overlaps_in_time = not (b < first[name] or last[name] < a)
            if overlaps_in_time and start < offset + size and offset < end:
                offset = end
        placed.append((offset, offset + size, first[name], last[name]))
        offsets[name] = offset
    return offsets, max((end for _, end, _, _ in placed), default=0)


def _format_array(constant: Constant) -> tuple[str, int]:
    values = np.asarray(constant.values).reshape(-1)
    ctype = c_type(values.dtype)
    if values.dtype == np.float32:
        items, per_line = [c_float(v) for v in values], 4
    else:
        items, per_line = [str(int(v)) for v in values], 16
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    comment = f"  /* {constant.comment} */" if constant.comment else ""
    text = (f"static const {ctype} {constant.name}[{len(values)}] = " + "{" + comment + "\n  " + ",\n  ".join(lines)
            + "\n};\n")
    if constant.condition:
        text = f"#if {constant.condition}\n{text}#endif\n"
    return text, values.nbytes


@dataclass(frozen=True)
class Plan:
    """Everything the C is written from, decided before a line of it is: the layers with their names, the
    arena's offsets, the file's identity."""
    name: str  # file names and C prefix
    model_name: str  # the ONNX file's name
    digest: str  # its sha256
    contract: ModelContract
    side: int  # input pixels per side
    layers: list[Kernel]
    values: dict[str, Value]
    offsets: dict[str, int]  # arena offset of each intermediate value
    arena_bytes: int
    output: str  # the value written to the logits
    layer_of: dict[str, str]  # node name -> the model's layer (C1, S2, ...)

    @property
    def exact(self) -> bool:
        return all(k.exact for k in self.layers)


def _dot_helpers(used: set[str]) -> str:
    """The dot products the layers call (dot_u8_i8: uint8 activations, int8 weights; dot_i8_i8), each once."""
    kinds = [k for k in ("u8", "i8") if f"dot_{k}_i8" in used]
    if not kinds:
        return ""
    ctype = {"u8": "uint8_t", "i8": "int8_t"}
    widen = {"u8": "__uxtb16", "i8": "__sxtb16"}
    return template("dot.c", dsp="".join(template("dot_dsp.c", kind=k, ctype=ctype[k], widen=widen[k]) for k in kinds),
                    plain="".join(template("dot_plain.c", kind=k, ctype=ctype[k]) for k in kinds))


def _is_edge(plan: Plan, index: int) -> bool:
    """Whether layer `index` comes before the first or after the last layer holding 1 % or more of the
    multiply-accumulates (the input table, the output layer, the logits): arithmetic.c's FOR_SIZE. A reorder
    between the convolutions has no multiply-accumulates but a loop that runs 10,000 times: it stays fast."""
    total = sum(k.macs for k in plan.layers)
    working = [i for i, k in enumerate(plan.layers) if k.macs * 100 >= total]
    return bool(working) and not working[0] <= index <= working[-1]


def _layer_function(plan: Plan, index: int, kernel: Kernel) -> tuple[str, str, str]:
    """(the layer's C function, its call in the entry function, the pointer to its output there)."""
    params, args = [], []
    for i, value_name in enumerate(kernel.inputs):
        ctype = "uint8_t" if value_name == PIXELS else c_type(plan.values[value_name].dtype)
        params.append(f"const {ctype} *in{i}")
        args.append(PIXELS if value_name == PIXELS else f"(const {ctype} *)(arena + {plan.offsets[value_name]})")
    for i, value_name in enumerate(kernel.outputs):
        ctype = c_type(plan.values[value_name].dtype)
        params.append(f"{ctype} *out{i}")
        args.append("logits" if value_name == plan.output else f"({ctype} *)(arena + {plan.offsets[value_name]})")
    for_size = " FOR_SIZE" if _is_edge(plan, index) else ""
    c = CWriter()
    with c.function(f"static NOINLINE{for_size} void layer{index}({', '.join(params)})"):
        c.lines(kernel.body)
    return c.text() + "\n", f"  layer{index}({', '.join(args)});", args[-1]


def _render(plan: Plan) -> Program:
    name, upper = plan.name, plan.name.upper()
    promise = ("Its logits are bit-identical to onnxruntime's CPU execution of that file." if plan.exact else
               "It predicts as onnxruntime's CPU execution of that file does (float layers: last bits may differ).")
    helpers = set().union(*(k.helpers for k in plan.layers))
    parts = [template("banner.c", name=name, variant=plan.contract.variant, model=plan.model_name,
                      digest=plan.digest, promise=promise), template("arithmetic.c"), _dot_helpers(helpers)]
    if "patch_word" in helpers:  # the halfword-patch kernels (conv.py), only those the layers call
        parts.append(template("patch.c", functions="".join(
            template(f"{function}.c") for function in ("patch_dot_2x2", "patch_dot_2x1") if function in helpers)))
    nonzero = [kind for kind in ("u8", "i8") if f"dot_nonzero_{kind}" in helpers]
    if nonzero:
        ctype = {"u8": "uint8_t", "i8": "int8_t"}
        parts.append(template("nonzero.c", functions="".join(template("dot_nonzero.c", kind=kind, ctype=ctype[kind])
                                                             for kind in nonzero)))
    if "tanh_mlas" in helpers:
        parts.append("\n" + template("tanh.c"))
    calls, traced, constant_bytes, trace_offsets = [], [], 0, []
    for index, kernel in enumerate(plan.layers):
        parts.append(f"\n/* layer{index}: {kernel.description} */\n")
        by_condition: dict[str, int] = {}
        for constant in kernel.constants:
            text, nbytes = _format_array(constant)
            parts.append(text)
            by_condition[constant.condition] = by_condition.get(constant.condition, 0) + nbytes
        # one variant of a layer's arrays is built: count the larger
        constant_bytes += by_condition.pop("", 0) + max(by_condition.values(), default=0)
        function, call, output = _layer_function(plan, index, kernel)
        parts.append(function)
        calls.append(call)
        nbytes = plan.values[kernel.outputs[0]].nbytes
        trace_offsets.append(sum(plan.values[k.outputs[0]].nbytes for k in plan.layers[:index]))
        traced += [call, f"  trace({trace_offsets[-1]}, {output}, {nbytes});"]
    entry = {"arena_bytes": plan.arena_bytes, "upper": upper, "name": name}
    trace_bytes = sum(plan.values[k.outputs[0]].nbytes for k in plan.layers)
    trace_source = "".join([*parts, template("trace.c", name=name, trace_bytes=trace_bytes),
                            template("entry.c", **entry, calls="\n".join(traced))])
    parts.append(template("entry.c", **entry, calls="\n".join(calls)))
    header = template("header.h", name=name, upper=upper, variant=plan.contract.variant, model=plan.model_name,
                      digest=plan.digest, side=plan.side, pixels=plan.side * plan.side,
                      classes=len(plan.contract.class_labels), arena_bytes=max(plan.arena_bytes, ALIGN),
                      constant_bytes=constant_bytes)
    layers = [Layer(f"layer{i}", kernel_layer(k.nodes, plan.layer_of) if k.nodes else INPUT_LAYER, k.description,
                    k.macs, k.outputs[0], trace_offsets[i]) for i, k in enumerate(plan.layers)]
    return Program(name, "".join(parts), header, plan.contract.variant, plan.arena_bytes, constant_bytes,
                   sum(k.macs for k in plan.layers), plan.exact, layers, trace_source, trace_bytes)
