"""How pixels become a model's input: the normalisation every path (training, evaluation, the
preprocessing of user images) ends with, and which checkpoints record."""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
