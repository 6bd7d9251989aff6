"""Per-layer table of a LeNet-5 variant: output shape, trainable parameters, connections."""

from __future__ import annotations

import torch
from torch import nn

from .models import LAYERS, EuclideanRBF, SparseC3, Subsampling


def _connections(layer: nn.Module, out_shape: tuple[int, ...], params: int) -> int:
    """Connections as the paper counts them: one per multiply-add input, bias included."""
    spatial = out_shape[-1] * out_shape[-2] if len(out_shape) == 4 else 1
    if isinstance(layer, Subsampling):
        return 5 * out_shape[1] * spatial  # 4 inputs + bias per unit
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        return 4 * out_shape[1] * spatial  # 4 inputs per unit, no weights
    if isinstance(layer, (SparseC3, nn.Conv2d, nn.Sequential)) and len(out_shape) == 4:
        return params * spatial  # shared weights: each one used at every output position
    if isinstance(layer, (nn.Linear, nn.Sequential, EuclideanRBF)):
        return params
    raise TypeError(f"no connection rule for {type(layer).__name__}")


def summarize(model: nn.Module) -> list[dict]:
    """One row per layer (C1 .. OUTPUT) with shapes traced on a (1, 1, 32, 32) input."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
        for name in LAYERS
    ]
    with torch.no_grad():
        model(torch.zeros(1, 1, 32, 32))
    for h in hooks:
        h.remove()
    rows = []
    for name in LAYERS:
        layer = getattr(model, name)
        params = sum(p.numel() for p in layer.parameters() if p.requires_grad)
        out = shapes[name]
        rows.append({
            "layer": name,
            "output_shape": list(out[1:]),
            "parameters": params,
            "connections": _connections(layer, out, params),
        })
    return rows


def format_summary(variant: str, rows: list[dict]) -> str:
    lines = [f"{variant}", f"{'layer':<8}{'output':>14}{'parameters':>13}{'connections':>14}"]
    for r in rows:
        shape = "x".join(str(d) for d in r["output_shape"])
        lines.append(f"{r['layer']:<8}{shape:>14}{r['parameters']:>13,}{r['connections']:>14,}")
    total_p = sum(r["parameters"] for r in rows)
    total_c = sum(r["connections"] for r in rows)
    lines.append(f"{'total':<8}{'':>14}{total_p:>13,}{total_c:>14,}")
    return "\n".join(lines)
