"""The training input pipeline: whole data set in memory, work done on whole batches.

Images stay as one uint8 tensor (N, 28, 28); each batch is gathered by index, converted to
float, normalised and (optionally) augmented as a single tensor operation. No per-sample PIL,
no DataLoader workers: on a 2-core CPU the per-sample path costs more than the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

# MNIST training-set pixel statistics on the 0-1 scale (the values everyone uses).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


@dataclass(frozen=True)
class Normalization:
    mean: float = MNIST_MEAN
    std: float = MNIST_STD

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


def to_model_input(images: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """uint8 (B, 28, 28) or float 0-1 (B, 28, 28) -> normalised float (B, 1, 28, 28).

    The one place where pixel values become model inputs: training, evaluation and the
    preprocessing of user images all end here.
    """
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return (x - norm.mean) / norm.std


@dataclass(frozen=True)
class AffineAugment:
    """Batched random affine on tensors: rotation (degrees), scale (fraction), shift (pixels)."""

    degrees: float = 10.0
    scale: float = 0.1
    translate_px: float = 2.0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # x: (B, 1, H, W) float, background already normalised; pad with the background value.
        b, _, h, w = x.shape
        rand = torch.rand(b, 4, generator=generator, device="cpu").to(x.device) * 2 - 1  # U(-1, 1)
        angle = rand[:, 0] * math.radians(self.degrees)
        scale = 1 + rand[:, 1] * self.scale
        tx = rand[:, 2] * self.translate_px * 2 / w  # affine_grid works in [-1, 1] units
        ty = rand[:, 3] * self.translate_px * 2 / h
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        background = x.amin(dim=(1, 2, 3), keepdim=True)
        return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


def batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    norm: Normalization,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    augment: AffineAugment | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (inputs (B, 1, 28, 28), labels (B,)) over the whole set, reshuffled on every call."""
    n = labels.numel()
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x = to_model_input(images[idx].to(device, non_blocking=True), norm)
        if augment is not None:
            x = augment(x, generator)
        yield x, labels[idx].to(device, non_blocking=True)
