"""Prediction-time accuracy boosters: test-time augmentation and checkpoint ensembles.

Both are ordinary modules whose output is log-probabilities (log of the mean of the members'
softmax), so `argmax`, cross-entropy and every backend treat them like a single model's logits.
`digitrec evaluate` averages the same way in numpy (`digitrec.evaluation.scoring`), on either
backend; these modules are for torch code (training scripts, benchmarks) that wants one module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from digitrec.errors import CheckpointError
from digitrec.evaluation.scoring import DEFAULT_SHIFTS
from digitrec.models.checkpoint import Checkpoint, load_checkpoint


def _mean_log_softmax(logits: list[torch.Tensor]) -> torch.Tensor:
    # log(mean(softmax)) computed stably: logsumexp of log-softmaxes minus log(count)
    stacked = torch.stack([F.log_softmax(z.float(), dim=1) for z in logits])  # (M, B, 10)
    return torch.logsumexp(stacked, dim=0) - torch.log(torch.tensor(float(len(logits))))


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift (B, C, H, W) by whole pixels, filling with each image's background (its minimum)."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    padded = F.pad(x - background, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + h, left : left + w] + background


class ShiftTTA(nn.Module):
    """Average the model's probabilities over small shifts of the input."""

    def __init__(self, model: nn.Module, shifts: Sequence[tuple[int, int]] = DEFAULT_SHIFTS) -> None:
        super().__init__()
        self.model = model
        self.shifts = tuple(shifts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 10) log-probabilities
        return _mean_log_softmax([self.model(shift(x, dy, dx)) for dy, dx in self.shifts])


class Ensemble(nn.Module):
    """Average the probabilities of several models, each at its own calibrated temperature."""

    def __init__(self, models: Sequence[nn.Module], temperatures: Sequence[float] | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)
        self.temperatures = list(temperatures or [1.0] * len(models))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 10) log-probabilities
        return _mean_log_softmax([m(x) / t for m, t in zip(self.members, self.temperatures)])


def load_ensemble(
    paths: Sequence[str | os.PathLike | None], tta: bool = False, device: str | torch.device = "cpu"
) -> Checkpoint:
    """One checkpoint, or several averaged, optionally with test-time augmentation.

    Members must share the input normalisation (they are fed the same tensor). The result keeps
    the first member's metadata; its temperature is 1 because each member's is applied inside.
    """
    checkpoints = [load_checkpoint(p, device) for p in (paths or [None])]
    first = checkpoints[0]
    for other in checkpoints[1:]:
        if other.normalization != first.normalization:
            raise CheckpointError(f"{other.path}: normalisation differs from {first.path}; cannot ensemble them")
    if len(checkpoints) == 1 and not tta:
        return first
    model: nn.Module = (
        Ensemble([c.model for c in checkpoints], [c.temperature for c in checkpoints])
        if len(checkpoints) > 1
        else first.model
    )
    if tta:
        model = ShiftTTA(model)
    arch = "+".join(c.arch for c in checkpoints) + (" (TTA)" if tta else "")
    meta = dict(
        first.meta,
        calibration={"temperature": 1.0 if len(checkpoints) > 1 else first.temperature},
        members=[c.path for c in checkpoints],
    )
    return Checkpoint(
        model=model.eval(), arch=arch, arch_kwargs={}, normalization=first.normalization, meta=meta, path=first.path
    )
