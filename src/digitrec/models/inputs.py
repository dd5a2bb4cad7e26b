"""How pixels become a model's input: the normalisation every path (training, evaluation, the
preprocessing of user images) ends with, and which checkpoints record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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
    """uint8 (B, 28, 28) or float 0-1 (B, 28, 28) tensor -> normalised float (B, 1, 28, 28).

    The one place where pixel values become model inputs: training and evaluation end here, and
    `normalize` below is the same arithmetic on numpy arrays, for inference without torch.
    """
    import torch  # here, not at the top: inference (numpy, ONNX Runtime) imports this module without torch

    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return (x - norm.mean) / norm.std


def normalize(images: np.ndarray, norm: Normalization) -> np.ndarray:
    """float 0-1 (B, 28, 28) or (B, 1, 28, 28) array -> normalised float32 (B, 1, 28, 28).

    `to_model_input` in float32 numpy, to the last bit (tests/test_light.py): torch subtracts and
    divides by the float scalars in float32, as numpy does with float32 scalars."""
    x = np.ascontiguousarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    return (x - np.float32(norm.mean)) / np.float32(norm.std)
