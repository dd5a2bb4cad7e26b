"""Where a model fails: per-class metrics, the confusion matrix, confused pairs, the mistakes.

The numbers come from scikit-learn (`precision_recall_fscore_support`, `confusion_matrix`);
this module only chooses the split, runs the model once and packages the results as
dataclasses that the CLI, the report and the notebook share. Confidences are calibrated: they
are softmax(logits / T) with the checkpoint's fitted temperature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from digitrec.errors import ConfigError
from digitrec.evaluation.calibration import DEFAULT_BINS, expected_calibration_error, probabilities
from digitrec.models.checkpoint import Checkpoint
from digitrec.training.data import Mnist, checkpoint_split
from digitrec.training.metrics import predict_logits

SPLITS = ("test", "val")
CLASSES = tuple(range(10))


@dataclass(frozen=True)
class Predictions:
    """One pass of a model over a split: the inputs, the logits and the calibrated probabilities."""

    split: str  # "test" or "val"
    indices: torch.Tensor  # (N,) positions in the MNIST test set, or in the training set for "val"
    images: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64
    logits: torch.Tensor  # (N, 10) float32
    temperature: float

    @property
    def probs(self) -> torch.Tensor:
        """(N, 10) calibrated probabilities, softmax(logits / T)."""
        return probabilities(self.logits, self.temperature)


@dataclass(frozen=True)
class ClassMetrics:
    digit: int
    precision: float  # of the images predicted as this digit, the fraction that are
    recall: float  # of the images of this digit, the fraction found
    f1: float
    support: int  # images of this digit


@dataclass(frozen=True)
class ConfusedPair:
    true: int
    predicted: int
    count: int
    rate: float  # count / images of the true digit


@dataclass(frozen=True)
class Mistake:
    position: int  # row in the Predictions (and in its images tensor)
    index: int  # position in the split's source set (see Predictions.indices)
    true: int
    predicted: int
    confidence: float  # calibrated probability of the (wrong) prediction
    true_probability: float  # calibrated probability the model gave the right digit


@dataclass
class Analysis:
    split: str
    n: int
    accuracy: float  # 0-1
    loss: float  # mean cross-entropy of the raw logits (nats), as training reports it
    ece: float  # expected calibration error of the calibrated confidences, 0-1
    temperature: float
    per_class: list[ClassMetrics]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    confusion: list[list[int]]  # [true][predicted] counts, 10 x 10
    confused_pairs: list[ConfusedPair]  # off-diagonal cells, most frequent first
    mistakes: list[Mistake] = field(default_factory=list)  # most confident first

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_class"] = {str(c.digit): {k: v for k, v in asdict(c).items() if k != "digit"} for c in self.per_class}
        out["macro"] = {
            "precision": out.pop("macro_precision"),
            "recall": out.pop("macro_recall"),
            "f1": out.pop("macro_f1"),
        }
        out["n_mistakes"] = len(self.mistakes)
        return out

    def per_class_table(self) -> str:
        """A plain-text table of the per-class metrics with the macro average."""
        lines = ["digit  precision  recall     f1  support"]
        lines += [
            f"{c.digit:>5}  {c.precision:9.4f}  {c.recall:6.4f}  {c.f1:.4f}  {c.support:7d}" for c in self.per_class
        ]
        lines.append(f"macro  {self.macro_precision:9.4f}  {self.macro_recall:6.4f}  {self.macro_f1:.4f}  {self.n:7d}")
        return "\n".join(lines)

    def pairs_table(self) -> str:
        """A plain-text table of the most confused (true, predicted) pairs."""
        lines = ["true -> predicted  count  % of true digit"]
        lines += [f"{p.true:>4} -> {p.predicted:<9}  {p.count:5d}  {100 * p.rate:15.2f}" for p in self.confused_pairs]
        return "\n".join(lines)


def predict_split(
    checkpoint: Checkpoint,
    data: Mnist,
    split: str = "test",
    device: torch.device | str = "cpu",
    limit: int | None = None,
) -> Predictions:
    """Run the checkpoint over the test set or its recorded validation split (first `limit` images)."""
    if split == "test":
        indices = torch.arange(len(data.test_labels))
        images_all, labels_all = data.test_images, data.test_labels
    elif split == "val":
        _, indices = checkpoint_split(checkpoint.meta, data.train_labels)
        images_all, labels_all = data.train_images, data.train_labels
    else:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if limit is not None:
        indices = indices[:limit]
    images, labels = images_all[indices], labels_all[indices]
    logits = predict_logits(checkpoint.model, images, checkpoint.normalization, device)  # (N, 10)
    return Predictions(
        split=split, indices=indices, images=images, labels=labels, logits=logits, temperature=checkpoint.temperature
    )


def class_metrics(labels: np.ndarray, predicted: np.ndarray) -> tuple[list[ClassMetrics], tuple[float, float, float]]:
    """Per-digit precision, recall, F1 and support (all ten digits), and their unweighted (macro)
    means over the digits that occur as a label or a prediction (scikit-learn's convention, so a
    slice without some digit is not penalised for it)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(CLASSES), zero_division=0
    )
    per_class = [
        ClassMetrics(digit=c, precision=float(p), recall=float(r), f1=float(f), support=int(s))
        for c, p, r, f, s in zip(CLASSES, precision, recall, f1, support)
    ]
    macro_p, macro_r, macro_f1, _ = precision_recall_fscore_support(labels, predicted, average="macro", zero_division=0)
    return per_class, (float(macro_p), float(macro_r), float(macro_f1))


def confused_pairs(confusion: np.ndarray, top: int | None = 10) -> list[ConfusedPair]:
    """Off-diagonal cells with at least one image, most frequent first (ties: by true, predicted)."""
    row_totals = confusion.sum(axis=1)
    cells = [
        (int(confusion[t, p]), t, p)
        for t in range(len(confusion))
        for p in range(len(confusion))
        if t != p and confusion[t, p] > 0
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [
        ConfusedPair(true=t, predicted=p, count=count, rate=count / int(row_totals[t])) for count, t, p in cells[:top]
    ]


def find_mistakes(
    probs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None, limit: int | None = None
) -> list[Mistake]:
    """Misclassified images, the most confident mistakes first (the worst ones for a user)."""
    confidence, predicted = probs.max(dim=1)  # (N,), (N,)
    wrong = torch.nonzero(predicted != labels).flatten()
    order = wrong[torch.argsort(confidence[wrong], descending=True, stable=True)]
    if limit is not None:
        order = order[:limit]
    indices = torch.arange(len(labels)) if indices is None else indices
    return [
        Mistake(
            position=i,
            index=int(indices[i]),
            true=int(labels[i]),
            predicted=int(predicted[i]),
            confidence=float(confidence[i]),
            true_probability=float(probs[i, labels[i]]),
        )
        for i in order.tolist()
    ]


def analyze(predictions: Predictions, top_pairs: int | None = 10, n_bins: int = DEFAULT_BINS) -> Analysis:
    """All the metrics of one split. `mistakes` lists every error, most confident first."""
    labels, logits = predictions.labels.cpu(), predictions.logits.cpu()
    probs = predictions.probs
    predicted = probs.argmax(1)
    y, yhat = labels.numpy(), predicted.numpy()
    per_class, (macro_p, macro_r, macro_f1) = class_metrics(y, yhat)
    confusion = confusion_matrix(y, yhat, labels=list(CLASSES))
    n = int(labels.numel())
    return Analysis(
        split=predictions.split,
        n=n,
        accuracy=float((predicted == labels).float().mean()) if n else float("nan"),
        loss=F.cross_entropy(logits, labels).item() if n else float("nan"),
        ece=expected_calibration_error(probs, labels, n_bins),
        temperature=predictions.temperature,
        per_class=per_class,
        macro_precision=macro_p,
        macro_recall=macro_r,
        macro_f1=macro_f1,
        confusion=confusion.tolist(),
        confused_pairs=confused_pairs(confusion, top_pairs),
        mistakes=find_mistakes(probs, labels, predictions.indices),
    )
