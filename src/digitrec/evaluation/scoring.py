"""Scoring a split with one model or several, on any backend, in numpy: test-time augmentation,
ensembles and how often the members disagree.

A member is anything that maps normalised inputs (B, 1, 28, 28) float32 to logits (B, 10): a
torch checkpoint or an ONNX Runtime session (`digitrec.evaluation.members`). What is averaged,
and at which temperature, is the same as `digitrec.evaluation.ensemble`'s torch modules:

- one model: its logits, calibrated later at its own temperature;
- one model with TTA: log of the mean probability over the shifts (T = 1 inside), calibrated
  later at the model's temperature;
- several models: log of the mean of every member's probability at the member's own temperature
  (and over the shifts with TTA); already calibrated, so the result's temperature is 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from digitrec.models.inputs import Normalization, normalize
from digitrec.probability import softmax

# One-pixel shifts: the variation MNIST's centring by centre of mass leaves in real digits.
DEFAULT_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
BATCH = 1000  # images per backend call: large enough to amortise the call, small in memory


@dataclass(frozen=True)
class Scorer:
    """What scoring needs of a model: its input normalisation, temperature and logits."""

    name: str  # the model's path, as reported
    normalization: Normalization
    temperature: float
    logits: Callable[[np.ndarray], np.ndarray]  # (B, 1, 28, 28) float32 normalised -> (B, 10)


@dataclass(frozen=True)
class Scores:
    logits: np.ndarray  # (N, 10): one model's logits, or the log of the averaged probabilities
    temperature: float  # to apply to `logits` for calibrated probabilities
    member_predictions: np.ndarray  # (M, N) int64: each member's answer (argmax), M >= 1


def shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift (B, C, H, W) by whole pixels, filling with each image's background (its minimum)."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    background = x.min(axis=(1, 2, 3), keepdims=True)
    out = np.broadcast_to(background, x.shape).copy()
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def model_logits(scorer: Scorer, images: np.ndarray, shifts: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """(S, N, 10): the model's logits on uint8 images (N, 28, 28), once per shift."""
    x = normalize(images.astype(np.float32) / np.float32(255.0), scorer.normalization)  # (N, 1, 28, 28)
    out = []
    for dy, dx in shifts:
        moved = shift(x, dy, dx)
        parts = [scorer.logits(moved[i : i + BATCH]) for i in range(0, len(moved), BATCH)]
        out.append(np.concatenate(parts) if parts else np.zeros((0, 10), np.float32))
    return out


def score(scorers: Sequence[Scorer], images: np.ndarray, tta: bool = False) -> Scores:
    """Run every model over uint8 images (N, 28, 28) and combine them (see the module's docstring)."""
    if not scorers:
        raise ValueError("nothing to score: no model")
    shifts = DEFAULT_SHIFTS if tta else ((0, 0),)
    single = len(scorers) == 1
    mean_probs, answers = [], []
    for scorer in scorers:
        per_shift = model_logits(scorer, images, shifts)
        if single and not tta:
            return Scores(per_shift[0], scorer.temperature, per_shift[0].argmax(axis=1)[None])
        inner = 1.0 if single else scorer.temperature  # a lone model is calibrated after averaging
        probs = np.mean([softmax(z, inner) for z in per_shift], axis=0)  # (N, 10)
        mean_probs.append(probs)
        answers.append(probs.argmax(axis=1))
    with np.errstate(divide="ignore"):  # a probability of exactly 0 is log 0 = -inf, as torch gives
        logits = np.log(np.mean(mean_probs, axis=0))
    return Scores(logits, scorers[0].temperature if single else 1.0, np.stack(answers))


def disagreement(member_predictions: np.ndarray) -> float:
    """The share of images on which the members' answers are not all the same (0 for one member)."""
    answers = np.asarray(member_predictions)
    if answers.shape[1] == 0:
        return float("nan")
    return float(np.mean((answers != answers[:1]).any(axis=0)))
