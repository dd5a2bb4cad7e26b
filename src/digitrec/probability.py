"""Logits to probabilities: the one softmax, used by recognition, calibration and reports."""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """(N, C) logits (a numpy array or a CPU tensor) -> (N, C) float64 probabilities of
    softmax(logits / T), computed stably (the largest logit of each row is subtracted first)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
