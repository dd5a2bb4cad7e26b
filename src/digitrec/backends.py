"""Inference backends: the same model answered by eager PyTorch or ONNX Runtime.

A backend maps normalised model inputs (B, 1, 28, 28) float32 to logits (B, 10) float32 numpy.
Preprocessing and softmax/temperature live outside, so every backend gives the same answers.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from .checkpoint import Checkpoint

BACKENDS = ("torch", "onnx")


class Backend(Protocol):
    name: str

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, 1, 28, 28) float32 normalised -> (B, 10) float32 logits."""


class TorchBackend:
    name = "torch"

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.model = checkpoint.model.eval()
        self.device = next(self.model.parameters()).device

    @torch.inference_mode()
    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)).float().cpu().numpy()


def create_backend(name: str, checkpoint: Checkpoint) -> Backend:
    if name == "torch":
        return TorchBackend(checkpoint)
    from .errors import ConfigError

    raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
