"""The three LeNet-5 variants.

`lenet5` is the network of LeCun et al. 1998 ("Gradient-based learning applied to
document recognition"), layer by layer; `lenet5-tanh` is the form most tutorials build from
it (tanh, average pooling, dense C3, linear output); `lenet5-modern` is the form used today
(ReLU, max-pooling, dense C3, linear output), which quantizes well and is the edge default.
All take (B, 1, 32, 32) inputs and return (B, 10) logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..contract import LAYERS  # noqa: F401  (re-exported: the layer names live with the contract)
from ..mnist import CLASSIC_PREPROCESSING, MODERN_PREPROCESSING

# C3's connection table (paper, Table I): S2 maps feeding each of the 16 C3 maps.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),  # 3 contiguous
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),  # 4 contiguous
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # 4 non-contiguous
    (0, 1, 2, 3, 4, 5),  # all six
)


def squash(x: torch.Tensor) -> torch.Tensor:
    """The paper's sigmoid: f(a) = A tanh(S a), A = 1.7159, S = 2/3, so f(±1) = ±1."""
    return 1.7159 * torch.tanh(x * (2.0 / 3.0))


def _lecun_uniform_(module: nn.Module, fan_in: int) -> None:
    """The paper's initialisation: uniform in ±2.4 / fan-in."""
    for p in module.parameters():
        nn.init.uniform_(p, -2.4 / fan_in, 2.4 / fan_in)


class Subsampling(nn.Module):
    """S2/S4: each 2x2 block summed, times a trainable coefficient plus a trainable bias per map."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        block_sum = F.avg_pool2d(x, 2) * 4.0
        return squash(block_sum * self.weight[:, None, None] + self.bias[:, None, None])


class SparseC3(nn.Module):
    """C3 with the paper's connection table: 16 maps, each from 3, 4 or 6 of the 6 S2 maps.

    Only the 1,500 connected weights (plus 16 biases) are parameters; each forward pass
    scatters them into a dense (16, 6, 5, 5) kernel whose unconnected taps are zero. One
    dense convolution is ~15x faster on CPU than a grouped convolution per fan-in.
    """

    def __init__(self):
        super().__init__()
        connected = torch.zeros(16, 6, 5, 5, dtype=torch.bool)
        for out_map, in_maps in enumerate(C3_TABLE):
            connected[out_map, list(in_maps)] = True
        self.register_buffer("taps", connected.flatten().nonzero().squeeze(1), persistent=False)  # (1500,)
        self.weight = nn.Parameter(torch.empty(len(self.taps)))
        self.bias = nn.Parameter(torch.empty(16))

    def kernel(self) -> torch.Tensor:  # (16, 6, 5, 5), zero where C3_TABLE has no connection
        return torch.zeros(16 * 6 * 25, dtype=self.weight.dtype).index_copy(0, self.taps, self.weight).view(16, 6, 5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 6, 14, 14) -> (B, 16, 10, 10)
        return squash(F.conv2d(x, self.kernel(), self.bias))


class SquashedConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squash(super().forward(x))


class SquashedLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squash(super().forward(x))


class EuclideanRBF(nn.Module):
    """Output layer: y_i = sum_j (x_j - w_ij)^2; the nearest prototype wins.

    The logits are -y / 8. The paper's MAP loss is a softmax over -y, but distances of up
    to ~4 x 84 saturate it and one misclassified digit then yields a huge gradient; the
    fixed temperature 8 keeps training stable, and keeps the logits small enough that
    float32 engines agree on them to ~1e-5. Predictions (the argmax) are those of -y.
    The paper fixes the prototypes to stylised 7x12 bitmaps of the digits; here they are
    random ±1 codes (also in the squashing function's range) and stay trainable.
    """

    temperature = 8.0

    def __init__(self, in_features: int = 84, classes: int = 10):
        super().__init__()
        codes = torch.randint(0, 2, (classes, in_features), generator=torch.Generator().manual_seed(0))
        self.weight = nn.Parameter(codes.float() * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 84) -> (B, 10)
        # ||x - w||^2 = ||x||^2 - 2 x.w + ||w||^2, as matrix products (fast and exportable)
        dist = (x * x).sum(1, keepdim=True) - 2 * x @ self.weight.t() + (self.weight * self.weight).sum(1)
        return dist / -self.temperature


class LeNet5(nn.Module):
    """LeNet-5 as published in 1998: 60,840 trainable parameters."""

    variant = "lenet5"
    preprocessing = CLASSIC_PREPROCESSING

    def __init__(self):
        super().__init__()
        self.C1 = SquashedConv(1, 6, 5)  # (B, 6, 28, 28)
        self.S2 = Subsampling(6)  # (B, 6, 14, 14)
        self.C3 = SparseC3()  # (B, 16, 10, 10)
        self.S4 = Subsampling(16)  # (B, 16, 5, 5)
        self.C5 = SquashedConv(16, 120, 5)  # (B, 120, 1, 1)
        self.F6 = SquashedLinear(120, 84)  # (B, 84)
        self.OUTPUT = EuclideanRBF(84, 10)  # (B, 10)
        _lecun_uniform_(self.C1, 25)
        fan_in = torch.tensor([25 * len(t) for t in C3_TABLE])  # per C3 map: 75, 100 or 150
        with torch.no_grad():  # uniform in ±2.4 / fan-in of the map each weight feeds
            bound = (2.4 / fan_in).repeat_interleave(fan_in)  # (1500,), taps are in map order
            self.C3.weight.copy_((torch.rand(1500) * 2 - 1) * bound)
            self.C3.bias.copy_((torch.rand(16) * 2 - 1) * 2.4 / fan_in)
        _lecun_uniform_(self.C5, 400)
        _lecun_uniform_(self.F6, 120)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.S4(self.C3(self.S2(self.C1(x))))
        return self.OUTPUT(self.F6(self.C5(x).flatten(1)))


class LeNet5Modern(nn.Module):
    """LeNet-5 as it is built today: ReLU, max-pooling, dense C3 and a linear output."""

    variant = "lenet5-modern"
    preprocessing = MODERN_PREPROCESSING

    def __init__(self):
        super().__init__()
        self.C1 = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU())  # (B, 6, 28, 28)
        self.S2 = nn.MaxPool2d(2)  # (B, 6, 14, 14)
        self.C3 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU())  # (B, 16, 10, 10)
        self.S4 = nn.MaxPool2d(2)  # (B, 16, 5, 5)
        self.C5 = nn.Sequential(nn.Conv2d(16, 120, 5), nn.ReLU())  # (B, 120, 1, 1)
        self.F6 = nn.Sequential(nn.Linear(120, 84), nn.ReLU())  # (B, 84)
        self.OUTPUT = nn.Linear(84, 10)  # (B, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.C5(self.S4(self.C3(self.S2(self.C1(x)))))
        return self.OUTPUT(self.F6(x.flatten(1)))


class LeNet5Tanh(nn.Module):
    """The textbook LeNet-5 of the tutorials: the paper's layer sizes with its simplifications undone
    the common way. Plain tanh instead of 1.7159 tanh(2a/3); S2/S4 as parameter-free 2x2 average
    pooling with stride 2 (the paper's subsampling without its trainable coefficient and bias); C3
    connected to all six S2 maps instead of Table I's 60 of 96 pairs; a linear 10-way output trained
    with softmax cross-entropy instead of the RBF units. 61,706 trainable parameters, the same as
    lenet5-modern, which differs only in ReLU and max-pooling."""

    variant = "lenet5-tanh"
    preprocessing = MODERN_PREPROCESSING

    def __init__(self):
        super().__init__()
        self.C1 = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh())  # (B, 6, 28, 28)
        self.S2 = nn.AvgPool2d(2, stride=2)  # (B, 6, 14, 14)
        self.C3 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.Tanh())  # (B, 16, 10, 10)
        self.S4 = nn.AvgPool2d(2, stride=2)  # (B, 16, 5, 5)
        self.C5 = nn.Sequential(nn.Conv2d(16, 120, 5), nn.Tanh())  # (B, 120, 1, 1)
        self.F6 = nn.Sequential(nn.Linear(120, 84), nn.Tanh())  # (B, 84)
        self.OUTPUT = nn.Linear(84, 10)  # (B, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.C5(self.S4(self.C3(self.S2(self.C1(x)))))
        return self.OUTPUT(self.F6(x.flatten(1)))


VARIANTS = {cls.variant: cls for cls in (LeNet5, LeNet5Modern, LeNet5Tanh)}


def build_model(variant: str) -> nn.Module:
    from ..errors import ModelError

    if variant not in VARIANTS:
        raise ModelError(f"unknown variant {variant!r} (expected one of {', '.join(VARIANTS)})")
    return VARIANTS[variant]()
