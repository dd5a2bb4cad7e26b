"""Scoring a split with one model or several, on any backend, in numpy: test-time augmentation,
ensembles and how often the members disagree.

A member is anything that maps normalised inputs (B, 1, 28, 28) float32 to logits (B, 10): a
torch checkpoint or an ONNX Runtime session (`digitrec.evaluation.members`). This is the one
place that averages models or shifts, for `digitrec evaluate` and benchmarks/best_recipe.py alike:

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


def probabilities(scorer: Scorer, images: np.ndarray, tta: bool = False, temperature: float = 1.0) -> np.ndarray:
    """(N, 10): the model's probabilities at `temperature` on uint8 images (N, 28, 28), averaged
    over the shifts with TTA."""
    shifts = DEFAULT_SHIFTS if tta else ((0, 0),)
    return np.mean([softmax(z, temperature) for z in model_logits(scorer, images, shifts)], axis=0)


def combine(member_probabilities: Sequence[np.ndarray]) -> Scores:
    """Several members' calibrated probabilities (M, N, 10) -> their average as a model's scores:
    log of the mean probability, already calibrated (temperature 1)."""
    if not member_probabilities:
        raise ValueError("nothing to combine: no member")
    return Scores(
        _log(np.mean(member_probabilities, axis=0)), 1.0, np.stack([p.argmax(axis=1) for p in member_probabilities])
    )


def score(scorers: Sequence[Scorer], images: np.ndarray, tta: bool = False) -> Scores:
    """Run every model over uint8 images (N, 28, 28) and combine them (see the module's docstring)."""
    if not scorers:
        raise ValueError("nothing to score: no model")
    if len(scorers) > 1:
        return combine([probabilities(s, images, tta, s.temperature) for s in scorers])
    scorer = scorers[0]
    if tta:  # a lone model is calibrated after averaging over the shifts
        logits = _log(probabilities(scorer, images, tta=True))
    else:
        logits = model_logits(scorer, images, ((0, 0),))[0]
    return Scores(logits, scorer.temperature, logits.argmax(axis=1)[None])


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):  # a probability of exactly 0 is log 0 = -inf, as torch gives
        return np.log(p)


def disagreement(member_predictions: np.ndarray) -> float:
    """The share of images on which the members' answers are not all the same (0 for one member)."""
    answers = np.asarray(member_predictions)
    if answers.shape[1] == 0:
        return float("nan")
    return float(np.mean((answers != answers[:1]).any(axis=0)))
