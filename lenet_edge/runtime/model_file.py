"""An ONNX model file read and checked before onnxruntime sees it: size cap, external data, operators.

ONNX lets a tensor live in another file (TensorProto.data_location = EXTERNAL with
external_data {location: PATH, offset, length}); onnxruntime then opens PATH relative to
the model's directory or, for a model given as bytes, to the working directory. A
lenet-edge model keeps every tensor inside the file, so any such reference is refused
here, before onnxruntime is called, and onnxruntime gets the bytes that were checked
(nothing can swap the file in between).

The device side must not need the onnx package, so the check reads protobuf's wire
format itself: a walk over the bytes that descends only into the messages that can hold
a tensor (graphs, nodes, attributes, functions, training graphs, sparse tensors), field
numbers from onnx.proto3. ORT-format files (flatbuffers, identifier ORTM) are passed
through as they are: onnxruntime's inference sessions read their tensors from the file
itself.

The same walk lists every node's operator, and a model with an operator that no LeNet
contains (operators.ALLOWED) is refused: above all control flow (Loop, Scan, If), with which
a graph of the right signature can compute for ever inside onnxruntime, where no Python
signal handler runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import ModelError
from ..reading import open_file
from .operators import ALLOWED

MAX_MODEL_BYTES = 64 << 20  # a LeNet-5 is ~250 KB; anything this large is not one of ours
# A quantized LeNet-5 has at most ~120 nodes. onnxruntime optimises the graph when a session is made, a
# call no signal ends (8,000 nodes took 15 s): a graph far larger than any LeNet is refused before.
MAX_NODES = 2000
ORT_FORMAT_ID = b"ORTM"  # flatbuffers file identifier at bytes 4..8 of an .ort model

# message kind -> {field number: message kind} of the fields that can lead to a TensorProto
_CHILDREN = {
    "model": {7: "graph", 20: "training", 25: "function"},  # ModelProto
    "training": {1: "graph", 2: "graph"},  # TrainingInfoProto: initialization, algorithm
    "function": {7: "node", 11: "attribute"},  # FunctionProto: node, attribute_proto
    "graph": {1: "node", 5: "tensor", 15: "sparse"},  # GraphProto: node, initializer, sparse_initializer
    "node": {5: "attribute"},  # NodeProto
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},  # SparseTensorProto: values, indices
    "tensor": {},
}
_NODE_OP_TYPE, _NODE_DOMAIN = 4, 7  # NodeProto.op_type, NodeProto.domain
_TENSOR_NAME = 8  # TensorProto.name
_TENSOR_EXTERNAL_DATA = 13  # TensorProto.external_data: repeated {key = 1, value = 2}, e.g. location
_TENSOR_DATA_LOCATION = 14  # TensorProto.data_location: 0 DEFAULT, 1 EXTERNAL
_EXTERNAL = 1


class Malformed(Exception):
    """Bytes that are not protobuf's wire format (raised by `fields`)."""


class _TooLarge(Exception):
    pass


def read_model_bytes(path: Path) -> bytes:
    """The bytes of a model file of at most MAX_MODEL_BYTES, with no external data."""
    path = Path(path)
    with open_file(path, ModelError, "an .onnx file", missing="no such model file") as f:
        try:
            data = f.read(MAX_MODEL_BYTES + 1)
        except OSError as exc:
            raise ModelError(f"{path}: cannot read ({exc.strerror})") from exc
        if len(data) > MAX_MODEL_BYTES:
            size = os.fstat(f.fileno()).st_size
            raise ModelError(f"{path}: {size} bytes (expected a model of at most {MAX_MODEL_BYTES} bytes)")
    if not data:
        raise ModelError(f"{path}: empty file (expected an ONNX model)")
    if data[4:8] == ORT_FORMAT_ID:
        return data
    try:
        external, operators = _scan(data)
    except Malformed as exc:
        raise ModelError(f"{path}: not a loadable ONNX model (malformed protobuf: {exc})") from None
    except _TooLarge as exc:
        raise ModelError(f"{path}: {exc}") from None
    if external is not None:
        name, location = external
        where = f"file {location!r}" if location else "(no location given)"
        raise ModelError(f"{path}: tensor {name!r} refers to external data {where} (refused: a lenet-edge "
                         f"model keeps every tensor inside the .onnx file; expected no external data)")
    refused = sorted(op for op in operators if op not in ALLOWED)
    if refused:
        names = ", ".join(f"{domain}.{op}" if domain else op for domain, op in refused[:5])
        raise ModelError(f"{path}: operators {names} (refused: not in a LeNet-5, expected convolutions, pooling, "
                         f"matrix products, activations and (de)quantization only; control flow such as Loop, "
                         f"Scan or If is never accepted)")
    return data


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise Malformed(f"bad varint at byte {pos}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def fields(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
    """(field number, wire type, value) of each field of the message in data[pos:end]; the
    value of a length-delimited field (wire type 2) is its (start, end)."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise Malformed(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = _varint(data, pos, end)
            yield field, wire, value
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise Malformed(f"a fixed-size field runs past its message at byte {end}")
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise Malformed(f"field {field} of {length} bytes at byte {pos} runs past its message")
            yield field, wire, (pos, pos + length)
            pos += length
        else:  # 3/4: protobuf groups, never used by ONNX; 6/7 do not exist
            raise Malformed(f"wire type {wire} at byte {pos}")


def _text(data: bytes, span: tuple[int, int]) -> str:
    return data[span[0]:span[1]].decode("utf-8", errors="replace")[:100]


def _scan(data: bytes) -> tuple[tuple[str, str] | None, set[tuple[str, str]]]:
    """(name, location) of the first TensorProto that refers to external data, or None; and the
    (domain, op_type) of every node, in the graph, its subgraphs and the model's functions."""
    stack = [("model", 0, len(data))]  # messages still to read: (kind, start, end)
    external, operators, nodes = None, set(), 0
    while stack:
        kind, start, end = stack.pop()
        if kind == "tensor":
            external = external or _external_reference(data, start, end)
            continue
        if kind == "node":
            operators.add(_operator(data, start, end))
            nodes += 1
            if nodes > MAX_NODES:
                raise _TooLarge(f"more than {MAX_NODES} nodes (expected a LeNet-5, which has fewer than 200)")
        children = _CHILDREN[kind]
        for field, wire, value in fields(data, start, end):
            if wire == 2 and field in children:
                stack.append((children[field], *value))
    return external, operators


def _operator(data: bytes, start: int, end: int) -> tuple[str, str]:
    op_type, domain = "", ""
    for field, wire, value in fields(data, start, end):
        if field == _NODE_OP_TYPE and wire == 2:
            op_type = _text(data, value)
        elif field == _NODE_DOMAIN and wire == 2:
            domain = _text(data, value)
    return ("" if domain == "ai.onnx" else domain), op_type


def _external_reference(data: bytes, start: int, end: int) -> tuple[str, str] | None:
    name, location, external = "", "", False
    for field, wire, value in fields(data, start, end):
        if field == _TENSOR_NAME and wire == 2:
            name = _text(data, value)
        elif field == _TENSOR_DATA_LOCATION and wire == 0 and value == _EXTERNAL:
            external = True
        elif field == _TENSOR_EXTERNAL_DATA and wire == 2:
            external = True
            entry = {f: _text(data, v) for f, w, v in fields(data, *value) if w == 2}  # {1: key, 2: value}
            if entry.get(1) == "location":
                location = entry.get(2, "")
    return (name, location) if external else None
