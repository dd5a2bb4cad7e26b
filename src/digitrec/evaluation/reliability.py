"""Is a reported confidence of 0.9 right nine times in ten? Reliability bins and ECE, in numpy.

Expected calibration error (ECE) bins predictions by confidence (the top probability) into
equal-width bins and averages |accuracy - mean confidence| weighted by bin size. numpy only, so
`digitrec evaluate` measures it on a base install; fitting the temperature that lowers it is
`digitrec.evaluation.calibration` (torch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_BINS = 15  # equal-width confidence bins, the usual choice in the calibration literature


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data: per equal-width confidence bin, what was claimed and achieved."""

    edges: list[float]  # n_bins + 1 bin edges on [0, 1]
    confidence: list[float]  # mean top-class probability in each bin (nan when empty)
    accuracy: list[float]  # fraction correct in each bin (nan when empty)
    count: list[int]  # predictions in each bin
    ece: float  # expected calibration error, 0-1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reliability(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> Reliability:
    """Bin (N, C) probabilities by top-class confidence; bins are (lo, hi], the first includes 0.

    `probs` and `labels` are numpy arrays or CPU tensors."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)  # (N,)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64) if len(probs) else np.zeros(0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" gives i with edges[i-1] < c <= edges[i]; shift to 0-based, 0 joins the first bin
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    nonempty = count > 0
    mean_conf = np.where(nonempty, conf_sum / np.maximum(count, 1), np.nan)
    mean_acc = np.where(nonempty, correct_sum / np.maximum(count, 1), np.nan)
    n = max(int(count.sum()), 1)
    ece = float(np.abs(correct_sum - conf_sum).sum() / n)  # sum_b |acc_b - conf_b| * n_b / N
    return Reliability(
        edges=edges.tolist(),
        confidence=mean_conf.tolist(),
        accuracy=mean_acc.tolist(),
        count=[int(c) for c in count],
        ece=ece,
    )


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """ECE (0-1) of (N, C) probabilities against (N,) labels with equal-width bins."""
    return reliability(probs, labels, n_bins).ece
