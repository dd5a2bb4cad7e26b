"""The training input pipeline: whole data set in memory, work done on whole batches.

Images stay as one uint8 tensor (N, 28, 28); each batch is gathered by index, converted to
float, normalised and (optionally) augmented as a single tensor operation. No per-sample PIL,
no DataLoader workers: on a 2-core CPU the per-sample path costs more than the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from digitrec.models.inputs import Normalization, to_model_input
from digitrec.training.augment import InkAugment


@dataclass(frozen=True)
class Augment:
    """Batched random affine + optional elastic distortion, one grid_sample per batch.

    Affine: rotation up to `degrees`, zoom up to `scale` (fraction), shift up to `translate_px`.
    Elastic (Simard et al. 2003): a random displacement field smoothed by a Gaussian of `elastic_sigma`
    pixels and scaled to `elastic_alpha` pixels; 0 turns it off.
    """

    degrees: float = 10.0
    scale: float = 0.1
    translate_px: float = 2.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # x: (B, 1, H, W) float, background already normalised; pad with the background value.
        b, _, h, w = x.shape
        rand = (torch.rand(b, 4, generator=generator) * 2 - 1).to(x.device)  # U(-1, 1)
        angle = rand[:, 0] * math.radians(self.degrees)
        scale = 1 + rand[:, 1] * self.scale
        tx = rand[:, 2] * self.translate_px * 2 / w  # affine_grid works in [-1, 1] units
        ty = rand[:, 3] * self.translate_px * 2 / h
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, H, W, 2)
        if self.elastic_alpha > 0:
            grid = grid + self._elastic_field(b, h, w, generator).to(x.device)
        background = x.amin(dim=(1, 2, 3), keepdim=True)
        return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background

    def _elastic_field(self, b: int, h: int, w: int, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.rand(b, 2, h, w, generator=generator) * 2 - 1  # (B, 2, H, W)
        radius = max(1, int(2 * self.elastic_sigma))
        taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(taps**2) / (2 * self.elastic_sigma**2))
        kernel = kernel / kernel.sum()
        smooth = F.conv2d(noise.reshape(b * 2, 1, h, w), kernel.view(1, 1, 1, -1), padding=(0, radius))
        smooth = F.conv2d(smooth, kernel.view(1, 1, -1, 1), padding=(radius, 0)).reshape(b, 2, h, w)
        smooth = smooth / smooth.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)  # peak 1 pixel
        scale = torch.tensor([2 * self.elastic_alpha / w, 2 * self.elastic_alpha / h]).view(1, 2, 1, 1)
        return (smooth * scale).permute(0, 2, 3, 1)  # (B, H, W, 2) in grid units


def epoch_order(n: int, generator: torch.Generator, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This epoch's permutation of range(n); with `world` > 1, rank's disjoint shard of it.

    Every rank draws the same permutation from an identically seeded generator, so the shards
    are disjoint, cover the data (less at most world-1 images), and change every epoch.
    """
    order = torch.randperm(n, generator=generator)
    usable = n - n % world  # equal shards, so every rank takes the same number of steps
    return order[rank:usable:world]


def batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    norm: Normalization,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    order: torch.Tensor | None = None,
    augment: Augment | None = None,
    ink: InkAugment | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (inputs (B, 1, 28, 28), labels (B,)).

    The order is `order` when given, else a fresh permutation from `generator` when `shuffle`,
    else the stored order. `generator` also drives the augmentation: the pen's (`ink.pen`, on the
    0-1 ink), the affine (`augment`, on the normalised input), then the scanner's (`ink.scan`).
    """
    ink = ink if ink is not None and ink.active else None
    if order is None:
        n = labels.numel()
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        pixels = images[idx].to(device, non_blocking=True)
        if ink is not None:
            pixels = ink.pen(pixels.float().div(255).unsqueeze(1), generator)  # (B, 1, 28, 28) 0-1
        x = to_model_input(pixels, norm)
        if augment is not None:
            x = augment(x, generator)
        if ink is not None:
            x = to_model_input(ink.scan(x * norm.std + norm.mean, generator), norm)
        yield x, labels[idx].to(device, non_blocking=True)
