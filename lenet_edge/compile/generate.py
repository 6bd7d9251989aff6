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
from .kernels import (
    ALIASES,
    KERNELS,
    Constant,
    Kernel,
    c_float,
    c_type,
    fusable_pool,
    fuse_elementwise,
    qlinear_conv,
    quantize_like_onnxruntime,
    unsupported,
)
from .runtime_graph import Value, optimized_model, value_shapes

PIXELS = "pixels"  # the entry's input: raw pixels, not an ONNX value
ALIGN = 4  # every arena buffer starts on a word: float and int32 buffers need it


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
    layers: list[str] = field(default_factory=list)


def compile_model(path: Path, name: str = "lenet") -> Program:
    """Generate the C for the int8 model at `path`; ModelError naming the node for what cannot be compiled."""
    from ..runtime.model_file import read_model_bytes

    path = Path(path)
    data = read_model_bytes(path)
    model = optimized_model(data, path)
    contract = ModelContract.from_metadata(metadata(model), str(path))
    graph = GraphIndex(model)
    if graph.inputs != [INPUT_NAME] or graph.outputs != [OUTPUT_NAME]:
        raise ModelError(f"{path}: inputs {graph.inputs} and outputs {graph.outputs} "
                         f"(expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}], as lenet-edge export writes them)")
    side = contract.preprocessing.input_size - 2 * contract.preprocessing.pad
    values = value_shapes(model, INPUT_NAME, contract.preprocessing(np.zeros((1, side, side), np.uint8)))
    kernels = []
    input_kernel, skipped = _input_kernel(graph, values, contract, side)
    kernels.append(input_kernel)
    alias, fused = {}, set()
    for node in graph.nodes:
        if node.op_type == "Constant" or node is skipped:
            continue
        if node.op_type in ALIASES:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
            continue
        if node.domain not in ("", "ai.onnx", "com.microsoft") or node.op_type not in KERNELS:
            raise unsupported(node, "no C kernel for this operator of onnxruntime's optimised graph (expected an "
                              "int8 model from lenet-edge quantize; kernels for "
                              f"{', '.join(sorted(KERNELS))}, and {', '.join(ALIASES)})")
        consumers = graph.consumers[node.output[0]]
        pool = consumers[0] if node.op_type == "QLinearConv" and len(consumers) == 1 else None
        if pool is not None and fusable_pool(pool, attributes(pool)) and node.output[0] not in graph.outputs:
            kernel = qlinear_conv(graph, node, values, pool)
            fused.add(id(pool))
        elif id(node) in fused:
            continue
        else:
            kernel = KERNELS[node.op_type](graph, node, values)
        kernel.inputs = [alias.get(n, n) for n in kernel.inputs]
        previous = kernels[-1]
        if (kernel.element and previous.element and kernel.inputs == previous.outputs
                and len(graph.consumers[node.input[0]]) == 1 and node.input[0] not in graph.outputs):
            kernels[-1] = fuse_elementwise(previous, kernel, values[node.input[0]].size)
            continue
        kernels.append(kernel)
    output = alias.get(OUTPUT_NAME, OUTPUT_NAME)
    if values[OUTPUT_NAME] != Value(np.dtype(np.float32), (1, len(contract.class_labels))):
        raise ModelError(f"{path}: output {OUTPUT_NAME} is {values[OUTPUT_NAME]} "
                         f"(expected float32 (1, {len(contract.class_labels)}))")
    offsets, arena_bytes = _plan_arena(kernels, values, output)
    return _render(name, path, data, contract, kernels, values, offsets, arena_bytes, output, side)


def _input_kernel(graph: GraphIndex, values: dict[str, Value], contract: ModelContract, side: int):
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
    body = (f"for (int y = 0; y < {size}; y++) {{\n"
            f"  for (int x = 0; x < {size}; x++) {{\n"
            f"    const int py = y - {pre.pad}, px = x - {pre.pad};\n"
            f"    const int inside = py >= 0 && py < {side} && px >= 0 && px < {side};\n"
            f"    out0[y * {size} + x] = inside ? table[in0[py * {side} + px]] : "
            f"{c_float(pad_value) if out.dtype == np.float32 else int(pad_value)};\n"
            f"  }}\n"
            f"}}")
    how = "preprocessing and the first QuantizeLinear" if quantizer is not None else "preprocessing"
    kernel = Kernel([PIXELS], [target], f"input: u8 {side}x{side} pixels -> {_shape(out)}, {how} as one table "
                    f"(pad {pre.pad}, mean {pre.mean}, std {pre.std})", body,
                    [Constant("table", np.asarray(table).astype(out.dtype), "pixel value -> model input")])
    return kernel, quantizer


def _shape(value: Value) -> str:
    from .kernels import shape_text

    return shape_text(value)


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


def _format_array(c_name: str, constant: Constant) -> tuple[str, int]:
    values = np.asarray(constant.values).reshape(-1)
    ctype = c_type(values.dtype)
    if values.dtype == np.float32:
        items, per_line = [c_float(v) for v in values], 4
    else:
        items, per_line = [str(int(v)) for v in values], 16
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    comment = f"  /* {constant.comment} */" if constant.comment else ""
    text = f"static const {ctype} {c_name}[{len(values)}] = {{{comment}\n  " + ",\n  ".join(lines) + "\n};\n"
    return text, values.nbytes


TANH = """
/* mlas's tanh (onnxruntime's CPU kernel): clamp to [-9, 9], then a rational approximation (Eigen's
   coefficients, spelled as in mlas), each step a fused multiply-add as onnxruntime computes it on x86
   with FMA3 and on ARM64. */
#if defined(__ARM_FEATURE_FMA) && defined(__thumb__)
/* Cortex-M4F/M7: VFMA.F32 rounds once (clang would call a software fmaf here, ~40x slower) */
static inline float muladd(float a, float b, float c)
{
  __asm__("vfma.f32 %0, %1, %2" : "+t"(c) : "t"(a), "t"(b));
  return c;
}
#elif defined(__thumb__) && !defined(__ARM_FP)
/* no FPU (Cortex-M0+/M3): a software fused multiply-add costs ~3,000 instructions, 10^8 per image here;
   two roundings instead, so the logits may differ from onnxruntime's in the last bits */
static inline float muladd(float a, float b, float c) { return a * b + c; }
#else
static inline float muladd(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
#endif
static float tanh_mlas(float x)
{
  x = x < -9.0f ? -9.0f : x;
  x = x > 9.0f ? 9.0f : x;
  const float x2 = x * x;
  float p = muladd(x2, -2.76076847742355e-16f, 2.00018790482477e-13f);
  p = muladd(p, x2, -8.60467152213735e-11f);
  p = muladd(p, x2, 5.12229709037114e-08f);
  p = muladd(p, x2, 1.48572235717979e-05f);
  p = muladd(p, x2, 6.37261928875436e-04f);
  p = muladd(p, x2, 4.89352455891786e-03f);
  p = p * x;
  float q = muladd(x2, 1.19825839466702e-06f, 1.18534705686654e-04f);
  q = muladd(q, x2, 2.26843463243900e-03f);
  q = muladd(q, x2, 4.89352518554385e-03f);
  return p / q;
}
"""


def _dot_helpers(body: str) -> str:
    """The dot products the kernels call (dot_u8_i8: uint8 activations, int8 weights; dot_i8_i8), each once."""
    kinds = [k for k in ("u8", "i8") if f"dot_{k}_i8(" in body]
    if not kinds:
        return ""
    ctype = {"u8": "uint8_t", "i8": "int8_t"}
    widen = {"u8": "__uxtb16", "i8": "__sxtb16"}
    dsp = "".join(
        f"static inline int32_t dot_{k}_i8(const {ctype[k]} *x, const int8_t *w, int n, int32_t acc)\n{{\n"
        f"  for (; n >= 4; n -= 4, x += 4, w += 4) {{\n"
        f"    const uint32_t xs = *(const unaligned_word *)x, ws = *(const unaligned_word *)w;\n"
        f"    acc = __smlad((int32_t){widen[k]}(xs), (int32_t)__sxtb16(ws), acc);  /* taps 0 and 2 */\n"
        f"    acc = __smlad((int32_t){widen[k]}(__ror(xs, 8)), (int32_t)__sxtb16(__ror(ws, 8)), acc);  /* 1 and 3 */\n"
        f"  }}\n"
        f"  for (; n > 0; n--) acc += *x++ * *w++;\n"
        f"  return acc;\n}}\n" for k in kinds)
    plain = "".join(
        f"static inline int32_t dot_{k}_i8(const {ctype[k]} *x, const int8_t *w, int n, int32_t acc)\n{{\n"
        f"  for (int i = 0; i < n; i++) acc += x[i] * w[i];\n"
        f"  return acc;\n}}\n" for k in kinds)
    return ("\n#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP\n"
            "/* Cortex-M4/M7/M33: SMLAD multiplies two pairs of 16-bit halves and adds both products to the\n"
            "   accumulator; UXTB16/SXTB16 widen bytes 0 and 2 (or 1 and 3 after a rotation) of a word into such\n"
            "   pairs. Exact integer arithmetic: the same sum, in another order. */\n"
            "#include <arm_acle.h>\n"
            "typedef uint32_t __attribute__((aligned(1), may_alias)) unaligned_word;  /* loads at any address */\n"
            + dsp + "#else\n" + plain + "#endif\n")


FP_CONTRACT = """\
/* GCC contracts a * b + c into one fused multiply-add by default (-ffp-contract=fast): not here. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

"""

HELPERS = """\
/* Round half to even with the float adder itself (onnxruntime's cvtps2dq does the same);
   exact for |v| <= 2^22, and every caller clamps first. */
static inline float round_half_even(float v) { return (v + 12582912.0f) - 12582912.0f; }

/* onnxruntime's QuantizeLinear and requantisation: clamp to the type's range around the zero point,
   round half to even, add the zero point. */
static inline int32_t quantize(float v, float lo, float hi, int32_t zero_point)
{
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  return (int32_t)round_half_even(v) + zero_point;
}
"""


def _render(name, path, data, contract, kernels, values, offsets, arena_bytes, output, side) -> Program:
    upper = name.upper()
    digest = hashlib.sha256(data).hexdigest()
    exact = all(k.exact for k in kernels)
    promise = ("Its logits are bit-identical to onnxruntime's CPU execution of that file." if exact else
               "It predicts as onnxruntime's CPU execution of that file does (float layers: last bits may differ).")
    banner = (f"/* {name}: {contract.variant} int8, generated by lenet-edge compile from {Path(path).name}\n"
              f"   (sha256 {digest}).\n   {promise}\n"
              f"   Never build it with -ffast-math: the float steps must round as onnxruntime's do. */\n")
    parts, calls, constant_bytes, macs, layers = [banner, f'#include "{name}.h"\n\n', FP_CONTRACT, HELPERS,
                                                   _dot_helpers("".join(k.body for k in kernels))], [], 0, 0, []
    if any("tanh_mlas(" in k.body for k in kernels):
        parts.append(TANH)
    for index, kernel in enumerate(kernels):
        fn = f"layer{index}"
        parts.append(f"\n/* {fn}: {kernel.description} */\n")
        for constant in kernel.constants:
            text, nbytes = _format_array(f"{fn}_{constant.name}", constant)
            parts.append(text)
            constant_bytes += nbytes
        params, args = [], []
        for i, value_name in enumerate(kernel.inputs):
            ctype = "uint8_t" if value_name == PIXELS else c_type(values[value_name].dtype)
            params.append(f"const {ctype} *in{i}")
            args.append(PIXELS if value_name == PIXELS else f"(const {ctype} *)(arena + {offsets[value_name]})")
        for i, value_name in enumerate(kernel.outputs):
            ctype = c_type(values[value_name].dtype)
            params.append(f"{ctype} *out{i}")
            args.append("logits" if value_name == output else f"({ctype} *)(arena + {offsets[value_name]})")
        body = kernel.body
        for constant in kernel.constants:  # constants are named after their layer
            body = _rename(body, constant.name, f"{fn}_{constant.name}")
        parts.append(f"static void {fn}({', '.join(params)})\n{{\n" + _indent(body) + "\n}\n")
        calls.append(f"  {fn}({', '.join(args)});")
        macs += kernel.macs
        layers.append(kernel.description)
    parts.append(f"\n/* The one activation buffer: {arena_bytes} bytes, word-aligned; layers reuse it by lifetime. */\n"
                 f"static uint32_t arena_words[{upper}_ARENA_BYTES / 4];\n\n"
                 f"void {name}_infer(const uint8_t {PIXELS}[{upper}_PIXELS], float logits[{upper}_CLASSES])\n{{\n"
                 f"  uint8_t *arena = (uint8_t *)arena_words;\n" + "\n".join(calls) + "\n}\n")
    classes = len(contract.class_labels)
    header = (f"/* {name}: {contract.variant} int8 as C99, generated by lenet-edge compile from {Path(path).name}\n"
              f"   (sha256 {digest}). No heap, no libc; the weights are const (flash). */\n"
              f"#ifndef {upper}_H\n#define {upper}_H\n\n#include <stdint.h>\n\n"
              f"#define {upper}_PIXEL_SIDE {side}  /* input: {side}x{side} uint8, row-major, light digit on dark */\n"
              f"#define {upper}_PIXELS {side * side}\n"
              f"#define {upper}_CLASSES {classes}  /* output: float logits, class i is the digit i */\n"
              f"#define {upper}_ARENA_BYTES {max(arena_bytes, ALIGN)}  /* the static activation buffer */\n"
              f"#define {upper}_CONSTANT_BYTES {constant_bytes}  /* weights, biases, scales, table */\n\n"
              f"#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
              f"/* Classify one digit: {PIXELS} -> logits. Not reentrant (one static arena). */\n"
              f"void {name}_infer(const uint8_t {PIXELS}[{upper}_PIXELS], float logits[{upper}_CLASSES]);\n\n"
              f"#ifdef __cplusplus\n}}\n#endif\n\n#endif\n")
    return Program(name, "".join(parts), header, contract.variant, arena_bytes, constant_bytes, macs, exact, layers)


def _rename(body: str, old: str, new: str) -> str:
    import re

    return re.sub(rf"\b{re.escape(old)}\b", new, body)


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())
