"""torch.nn.Module -> a clean ONNX graph: one input `image` (N, 1, 32, 32), one output `logits` (N, 10).

The torch 2.x exporter (dynamo=True) traces with torch.export, decomposes to ATen and lets
onnxscript's optimizer fold constants, so derived tensors (the classic C3's dense kernel,
the RBF prototypes' squared norms, the unsqueezed subsampling coefficients) arrive as
initializers and no training-only op (dropout, batch-norm statistics) survives.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

from ..contract import INPUT_NAME, OUTPUT_NAME
from ..errors import ModelError, first_line

BATCH_DIM = "batch"
EXAMPLE_BATCH = 2  # torch.export specialises sizes 0 and 1, so trace with 2 and mark it dynamic
# Per-node metadata the exporter adds; only the module scopes (C1, S2, ...) are worth keeping:
# the stack traces hold absolute source paths and make the file differ from machine to machine.
KEPT_NODE_METADATA = ("pkg.torch.onnx.name_scopes",)


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress lines and warnings (e.g. 'torchvision is not installed')."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def to_onnx(model, opset: int, input_size: int = 32):
    """The model (eval mode) as an onnx.ModelProto at `opset` with a dynamic batch dimension."""
    import torch

    model.eval()
    example = torch.zeros(EXAMPLE_BATCH, 1, input_size, input_size)
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                model, (example,), None, dynamo=True, opset_version=opset, verbose=False, optimize=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},),
            )
        except Exception as exc:  # torch.export and onnxscript raise many untyped errors
            raise ModelError(f"{model.variant}: torch.onnx.export failed at opset {opset} ({first_line(exc)})") from exc
    proto = program.model_proto
    _strip_metadata(proto)
    return proto


def _strip_metadata(proto) -> None:
    graph = proto.graph
    for item in [*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        kept = [(p.key, p.value) for p in item.metadata_props if p.key in KEPT_NODE_METADATA]
        del item.metadata_props[:]
        for key, value in kept:
            item.metadata_props.add(key=key, value=value)
    for node in graph.node:
        node.doc_string = ""
    del graph.metadata_props[:]  # torch.export's program signature: PyTorch internals, ~0.6 KB a device never reads
