"""Where a model fails: per-class metrics, the confusion matrix, confused pairs, the mistakes.

Every number is computed here in numpy from the labels and the model's logits (the per-class
precision, recall and F1 from the confusion matrix, as scikit-learn defines them), so the torch
and the ONNX Runtime backends of `digitrec evaluate` share one metrics path and a base install
runs it. The results are dataclasses that the CLI, the report and the notebook share.
Confidences are calibrated: they are softmax(logits / T) with the checkpoint's fitted temperature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from digitrec.errors import ConfigError
from digitrec.evaluation.reliability import DEFAULT_BINS, expected_calibration_error
from digitrec.probability import softmax

if TYPE_CHECKING:
    import torch

    from digitrec.models.checkpoint import Checkpoint
    from digitrec.training.data import Mnist
    from digitrec.training.mnist_files import MnistArrays

SPLITS = ("test", "val")
CLASSES = tuple(range(10))


@dataclass(frozen=True)
class Predictions:
    """One pass of a model over a split: the inputs, the logits and the calibrated probabilities.

    Built from numpy arrays or CPU tensors; stored as numpy."""

    split: str  # "test" or "val"
    indices: np.ndarray  # (N,) positions in the MNIST test set, or in the training set for "val"
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64
    logits: np.ndarray  # (N, 10) float32: a model's logits, or an ensemble's log mean probability
    temperature: float

    def __post_init__(self) -> None:
        for name in ("indices", "images", "labels", "logits"):
            object.__setattr__(self, name, np.asarray(getattr(self, name)))

    @property
    def probs(self) -> np.ndarray:
        """(N, 10) calibrated probabilities, softmax(logits / T), float64."""
        return softmax(self.logits, self.temperature)


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


def split_rows(
    data: Mnist | MnistArrays, split: str, meta: Mapping[str, Any] | None = None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, images, labels) of the test set or of the validation split recorded in a
    checkpoint's `meta` (the first `limit` of them). Rebuilding the validation split needs torch
    (it is drawn with torch's seeded generator, `checkpoint_split`); the test set does not."""
    if split == "test":
        indices = np.arange(len(data.test_labels))
        images_all, labels_all = np.asarray(data.test_images), np.asarray(data.test_labels)
    elif split == "val":
        import torch

        from digitrec.training.data import checkpoint_split

        _, val = checkpoint_split(meta or {}, torch.as_tensor(np.asarray(data.train_labels)))
        indices = val.numpy()
        images_all, labels_all = np.asarray(data.train_images), np.asarray(data.train_labels)
    else:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if limit is not None:
        indices = indices[:limit]
    return indices, images_all[indices], labels_all[indices].astype(np.int64)


def predict_split(
    checkpoint: Checkpoint,
    data: Mnist | MnistArrays,
    split: str = "test",
    device: torch.device | str = "cpu",
    limit: int | None = None,
) -> Predictions:
    """Run a torch checkpoint over the test set or its recorded validation split (first `limit` images)."""
    import torch

    from digitrec.training.metrics import predict_logits

    indices, images, labels = split_rows(data, split, checkpoint.meta, limit)
    logits = predict_logits(checkpoint.model, torch.from_numpy(images), checkpoint.normalization, device).numpy()
    return Predictions(
        split=split, indices=indices, images=images, labels=labels, logits=logits, temperature=checkpoint.temperature
    )


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(10, 10) int64 counts, [true][predicted]."""
    k = len(CLASSES)
    cells = np.asarray(labels, dtype=np.int64) * k + np.asarray(predicted, dtype=np.int64)
    return np.bincount(cells, minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)  # 0 where undefined (zero_division=0)


def class_metrics(confusion: np.ndarray) -> tuple[list[ClassMetrics], tuple[float, float, float]]:
    """Per-digit precision, recall, F1 and support (all ten digits) from the confusion matrix,
    and their unweighted (macro) means over the digits that occur as a label or a prediction
    (scikit-learn's convention, so a slice without some digit is not penalised for it)."""
    tp = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted)  # 2PR / (P + R), without the rounding of P and R
    per_class = [
        ClassMetrics(digit=c, precision=float(p), recall=float(r), f1=float(f), support=int(s))
        for c, p, r, f, s in zip(CLASSES, precision, recall, f1, support)
    ]
    present = (support + predicted) > 0
    if not present.any():
        return per_class, (0.0, 0.0, 0.0)
    macro = tuple(float(v[present].mean()) for v in (precision, recall, f1))
    return per_class, (macro[0], macro[1], macro[2])


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


def find_mistakes(probs: Any, labels: Any, indices: Any | None = None, limit: int | None = None) -> list[Mistake]:
    """Misclassified images, the most confident mistakes first (the worst ones for a user)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)  # (N,), (N,)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")]
    if limit is not None:
        order = order[:limit]
    indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
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


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (nats) of softmax(logits) against the labels, as training reports it."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]  # logsumexp per row
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def analyze(predictions: Predictions, top_pairs: int | None = 10, n_bins: int = DEFAULT_BINS) -> Analysis:
    """All the metrics of one split. `mistakes` lists every error, most confident first."""
    labels, logits = predictions.labels.astype(np.int64), predictions.logits
    probs = predictions.probs
    predicted = probs.argmax(axis=1)
    confusion = confusion_matrix(labels, predicted)
    per_class, (macro_p, macro_r, macro_f1) = class_metrics(confusion)
    n = len(labels)
    return Analysis(
        split=predictions.split,
        n=n,
        accuracy=float(np.mean(predicted == labels)) if n else float("nan"),
        loss=cross_entropy(logits, labels) if n else float("nan"),
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
