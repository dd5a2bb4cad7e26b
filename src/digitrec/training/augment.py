"""Batched pen and scanner augmentations: what other pens, paper and scanners do to a digit.

MNIST's digits are written with one thin, crisp, dark pen and scanned cleanly. The shipped models
never saw a felt-tip marker, a pencil, an out-of-focus photo or a low-resolution scan, so these
augmentations make them on the fly, on whole batches of ink (0-1, ink bright on a zero
background, (B, 1, 28, 28)), as tensor operations: no per-sample Python loops over pixels. Each
one touches an image with probability `p` and draws its own strength per image.

- stroke width: grey dilation (a max-pool) thickens the stroke, grey erosion (a min-pool) thins
  it; fractional widths blend two neighbouring levels;
- blur: a Gaussian of a per-image sigma, one grouped convolution for the whole batch;
- low resolution: the 28x28 digit shrunk to 7-14 pixels (area average) and enlarged back;
- ink level: a pencil's grey instead of a pen's full ink (peak ink 30-60% dark), with a contrast
  curve (gamma);
- paper grain: fine noise on the paper and the ink.

`pen` (stroke width) runs before the random affine of `digitrec.training.pipeline`, the rest
(`scan`) after it, the order in which a pen, the writer's hand and a scanner act.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _rand(b: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(b, generator=generator).to(device)  # drawn on the CPU: the same on every device


def _chosen(b: int, p: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(B, 1, 1, 1) bool: which images this augmentation touches."""
    return (_rand(b, generator, device) < p).view(b, 1, 1, 1)


def stroke_width(
    x: torch.Tensor, thin: float, thick: float, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Change each stroke's width by a random amount in [-thin, +thick] pixels.

    (B, 1, H, W) -> (B, 1, H, W). A 3x3 grey dilation widens a stroke by 2 pixels (one a side),
    a 3x3 erosion narrows it by 2; a width change w is w/2 such steps, the fraction blended
    linearly between the two neighbouring levels.
    """
    b = x.shape[0]
    down = math.ceil(thin / 2)
    up = math.ceil(thick / 2)
    levels = [x]
    for _ in range(down):
        levels.insert(0, -F.max_pool2d(-levels[0], 3, stride=1, padding=1))  # erosion
    for _ in range(up):
        levels.append(F.max_pool2d(levels[-1], 3, stride=1, padding=1))  # dilation
    stack = torch.stack(levels)  # (L, B, 1, H, W), level `down` is the original
    width = _rand(b, generator, x.device) * (thin + thick) - thin  # pixels, -thin..thick
    width = torch.where(_chosen(b, p, generator, x.device).view(b), width, torch.zeros_like(width))
    pos = width / 2 + down  # position in the stack
    lo = pos.floor().clamp(0, len(levels) - 1).long()
    hi = (lo + 1).clamp(max=len(levels) - 1)
    frac = (pos - lo).view(b, 1, 1, 1)
    index = torch.arange(b, device=x.device)
    return stack[lo, index] * (1 - frac) + stack[hi, index] * frac


def gaussian_blur(
    x: torch.Tensor, max_sigma: float, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Blur each image by a Gaussian of sigma uniform in [0.3, max_sigma] pixels (B, 1, H, W).

    Every image gets its own kernel; one grouped convolution per axis does the whole batch.
    """
    b, _, h, w = x.shape
    sigma = 0.3 + _rand(b, generator, x.device) * max(max_sigma - 0.3, 0.0)  # (B,)
    chosen = _chosen(b, p, generator, x.device)
    radius = max(1, math.ceil(2.5 * max_sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(taps[None, :] ** 2) / (2 * sigma[:, None] ** 2))  # (B, K)
    kernel = kernel / kernel.sum(1, keepdim=True)
    flat = x.reshape(1, b, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0)), kernel.view(b, 1, 1, -1), groups=b)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius)), kernel.view(b, 1, -1, 1), groups=b)
    return torch.where(chosen, flat.reshape(b, 1, h, w), x)


def low_resolution(
    x: torch.Tensor, smallest: int, largest: int, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shrink each image to a random side in [smallest, largest] pixels (area average, as a
    scanner's sensor does) and enlarge it back (bilinear, as a viewer does). (B, 1, H, W).

    One resize pair per distinct size (at most `largest - smallest + 1`), each on a whole batch.
    """
    b, _, h, w = x.shape
    sizes = smallest + (_rand(b, generator, x.device) * (largest - smallest + 1)).long().clamp(max=largest - smallest)
    chosen = _chosen(b, p, generator, x.device)
    out = x
    for size in range(smallest, largest + 1):
        pick = chosen & (sizes == size).view(b, 1, 1, 1)
        small = F.interpolate(x, size=(size, size), mode="area")
        back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        out = torch.where(pick, back, out)
    return out


def ink_level(x: torch.Tensor, lightest: float, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale each image's ink to a peak uniform in [lightest, 1] (0.3: a light pencil, 30% dark)
    after a contrast curve ink**gamma with gamma in [0.7, 1.4]. (B, 1, H, W), 0-1."""
    b = x.shape[0]
    level = lightest + _rand(b, generator, x.device) * (1 - lightest)
    gamma = 0.7 + 0.7 * _rand(b, generator, x.device)
    chosen = _chosen(b, p, generator, x.device)
    faded = x.clamp(0, 1).pow(gamma.view(b, 1, 1, 1)) * level.view(b, 1, 1, 1)
    return torch.where(chosen, faded, x)


def paper_grain(x: torch.Tensor, max_std: float, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add fine grain of standard deviation uniform in [0, max_std] (0-1 scale) to paper and ink,
    kept within 0-1. (B, 1, H, W)."""
    b = x.shape[0]
    std = _rand(b, generator, x.device) * max_std
    noise = torch.randn(x.shape, generator=generator).to(x.device) * std.view(b, 1, 1, 1)
    grained = (x + noise).clamp(0, 1)  # on the zero paper only the inky half of the grain shows
    return torch.where(_chosen(b, p, generator, x.device), grained, x)


@dataclass(frozen=True)
class InkAugment:
    """The pen and scanner augmentations a TrainConfig turns on (0 or None switches one off).

    stroke: the widest stroke gain, pixels at 28x28 (0-4); thinning goes to `thin` pixels.
    blur: the largest Gaussian sigma, pixels. lowres: the smallest side a digit is shrunk to
    (7-14). ink: the lightest peak ink (0.3 = pencil). grain: the largest noise std. p: the
    chance that each of them touches a given image.
    """

    stroke: float = 0.0
    thin: float = 1.0
    blur: float = 0.0
    lowres: int = 0
    ink: float = 0.0
    grain: float = 0.0
    p: float = 0.5

    @property
    def active(self) -> bool:
        return bool(self.stroke or self.blur or self.lowres or self.ink or self.grain)

    def pen(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """What the pen does (before the hand's affine): stroke width. (B, 1, 28, 28) ink 0-1."""
        if self.stroke:
            x = stroke_width(x, self.thin, self.stroke, self.p, generator)
        return x

    def scan(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """What paper, light and scanner do: blur, low resolution, ink level, grain."""
        if self.blur:
            x = gaussian_blur(x, self.blur, self.p, generator)
        if self.lowres:
            x = low_resolution(x, self.lowres, 14, self.p, generator)
        if self.ink:
            x = ink_level(x, self.ink, self.p, generator)
        if self.grain:
            x = paper_grain(x, self.grain, self.p, generator)
        return x
