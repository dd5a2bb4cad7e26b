"""Deeper nets: a small residual network and an MnistSimpleCNN-style stack."""

from __future__ import annotations

import torch
from torch import nn

from digitrec.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut, as in ResNet."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@register_model
def resnet_small(width: int = 16) -> nn.Module:
    """Small residual net: stem + 3 stages of one BasicBlock (28 -> 14 -> 7), global pool."""
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1, bias=False),
        nn.BatchNorm2d(w),
        nn.ReLU(inplace=True),  # (B, w, 28, 28)
        BasicBlock(w, w),
        BasicBlock(w, 2 * w, stride=2),  # (B, 2w, 14, 14)
        BasicBlock(2 * w, 4 * w, stride=2),  # (B, 4w, 7, 7)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, 10),
    )


@register_model
def simple_cnn(width: int = 16, kernel: int = 5) -> nn.Module:
    """MnistSimpleCNN-style: unpadded conv-BN-ReLU stack (no pooling) down to a tiny map, BN'd head.

    With the default 5x5 kernels: 28 -> 24 -> 20 -> 16 -> 12 -> 8 -> 4 over six layers of
    width, 2x, 3x, 4x, 5x, 6x `width` channels, as in An et al. (2020), "An Ensemble of Simple
    CNN Models for MNIST Digit Recognition".
    """
    layers: list[nn.Module] = []
    c_in, size = 1, 28
    for i in range(1, 7):
        c_out = width * i
        layers += [nn.Conv2d(c_in, c_out, kernel, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        c_in, size = c_out, size - (kernel - 1)
    return nn.Sequential(
        *layers,
        nn.Flatten(),  # (B, 6w * size * size)
        nn.Linear(c_in * size * size, 10, bias=False),
        nn.BatchNorm1d(10),
    )
