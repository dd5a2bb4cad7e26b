"""Per-class metrics, confusion matrix, confused pairs and mistakes, checked against hand counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digitrec.errors import ConfigError
from digitrec.evaluation.analysis import (
    Predictions,
    analyze,
    class_metrics,
    confused_pairs,
    confusion_matrix,
    find_mistakes,
    predict_split,
)
from digitrec.models.checkpoint import load_checkpoint

# Ten images of digits 0-3 and what a model predicted for them (worked out by hand below).
TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
PRED = [0, 0, 1, 1, 1, 2, 2, 0, 3, 3]
# Confidence of each prediction; the three mistakes (positions 2, 7, 8) at 0.6, 0.9, 0.75.
CONF = [0.9, 0.8, 0.6, 0.95, 0.7, 0.99, 0.85, 0.9, 0.75, 0.5]


def _hand_predictions(temperature: float = 1.0) -> Predictions:
    # Logits whose softmax gives exactly CONF on the predicted class and spreads the rest evenly.
    probs = torch.zeros(10, 10, dtype=torch.float64)
    for i, (p, c) in enumerate(zip(PRED, CONF)):
        probs[i] = (1 - c) / 9
        probs[i, p] = c
    logits = probs.log().float()
    n = len(TRUE)
    return Predictions(
        "test",
        torch.arange(100, 100 + n),
        torch.zeros(n, 28, 28, dtype=torch.uint8),
        torch.tensor(TRUE),
        logits,
        temperature,
    )


def test_metrics_match_a_hand_computed_case():
    a = analyze(_hand_predictions())
    assert a.n == 10 and a.accuracy == pytest.approx(0.7)
    by_digit = {c.digit: c for c in a.per_class}
    # digit 0: predicted at 0, 1, 7 (two right) -> precision 2/3; 3 zeros, 2 found -> recall 2/3
    assert (by_digit[0].precision, by_digit[0].recall, by_digit[0].f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # digit 1: predicted at 2, 3, 4 (two right) -> 2/3; both ones found -> 1; F1 = 2 * (2/3) / (5/3) = 0.8
    assert (by_digit[1].precision, by_digit[1].recall, by_digit[1].f1) == pytest.approx((2 / 3, 1.0, 0.8))
    # digit 2: predicted at 5, 6 (both right) -> 1; 2 of 4 found -> 0.5; F1 = 2/3
    assert (by_digit[2].precision, by_digit[2].recall, by_digit[2].f1) == pytest.approx((1.0, 0.5, 2 / 3))
    # digit 3: predicted at 8, 9 (one right) -> 0.5; the one three found -> 1; F1 = 2/3
    assert (by_digit[3].precision, by_digit[3].recall, by_digit[3].f1) == pytest.approx((0.5, 1.0, 2 / 3))
    assert [c.support for c in a.per_class] == [3, 2, 4, 1, 0, 0, 0, 0, 0, 0]
    assert all(c.precision == c.recall == c.f1 == 0 for c in a.per_class[4:])
    # macro means over the digits present (0-3)
    assert a.macro_precision == pytest.approx((2 / 3 + 2 / 3 + 1 + 0.5) / 4)
    assert a.macro_recall == pytest.approx((2 / 3 + 1 + 0.5 + 1) / 4)
    assert a.macro_f1 == pytest.approx((2 / 3 + 0.8 + 2 / 3 + 2 / 3) / 4)


def test_confusion_matrix_and_pairs_match_hand_counts():
    a = analyze(_hand_predictions())
    cm = a.confusion
    assert len(cm) == 10 and all(len(row) == 10 for row in cm)
    assert sum(map(sum, cm)) == 10  # every image counted once
    assert [row[:4] for row in cm[:4]] == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 1], [0, 0, 0, 1]]
    assert sum(cm[i][i] for i in range(10)) == 7
    pairs = [(p.true, p.predicted, p.count) for p in a.confused_pairs]
    assert pairs == [(0, 1, 1), (2, 0, 1), (2, 3, 1)]  # ties by true digit, then prediction
    assert [p.rate for p in a.confused_pairs] == pytest.approx([1 / 3, 1 / 4, 1 / 4])


def test_confused_pairs_sorted_by_count_and_truncated():
    cm = torch.zeros(10, 10, dtype=torch.int64)
    cm[4, 9], cm[9, 4], cm[7, 1], cm[3, 3] = 5, 2, 7, 100
    pairs = confused_pairs(cm.numpy(), top=2)
    assert [(p.true, p.predicted, p.count) for p in pairs] == [(7, 1, 7), (4, 9, 5)]


def test_mistakes_are_most_confident_first_with_source_indices():
    a = analyze(_hand_predictions())
    assert [(m.position, m.index, m.true, m.predicted) for m in a.mistakes] == [
        (7, 107, 2, 0),
        (8, 108, 2, 3),
        (2, 102, 0, 1),
    ]
    assert [m.confidence for m in a.mistakes] == pytest.approx([0.9, 0.75, 0.6], abs=1e-6)
    assert [m.true_probability for m in a.mistakes] == pytest.approx([0.1 / 9, 0.25 / 9, 0.4 / 9], abs=1e-6)
    assert len(find_mistakes(_hand_predictions().probs, np.array(TRUE), limit=2)) == 2


def test_temperature_changes_confidence_not_predictions():
    cold, warm = analyze(_hand_predictions(1.0)), analyze(_hand_predictions(2.0))
    assert warm.confusion == cold.confusion and warm.accuracy == cold.accuracy
    assert warm.loss == pytest.approx(cold.loss)  # the loss is on the raw logits, as in training
    assert all(w.confidence < c.confidence for w, c in zip(warm.mistakes, cold.mistakes))
    assert warm.temperature == 2.0


def test_to_dict_has_the_report_fields():
    d = analyze(_hand_predictions()).to_dict()
    assert set(d["per_class"]) == {str(i) for i in range(10)}
    assert set(d["per_class"]["1"]) == {"precision", "recall", "f1", "support"}
    assert set(d["macro"]) == {"precision", "recall", "f1"}
    assert d["n_mistakes"] == 3 and len(d["mistakes"]) == 3
    assert d["confused_pairs"][0] == {"true": 0, "predicted": 1, "count": 1, "rate": pytest.approx(1 / 3)}


def test_predict_split_on_the_shipped_model(mnist):
    checkpoint = load_checkpoint()
    test = predict_split(checkpoint, mnist, "test", limit=300)
    assert test.logits.shape == (300, 10) and test.images.shape == (300, 28, 28)
    assert np.array_equal(test.labels, mnist.test_labels[:300].numpy())
    assert test.temperature == checkpoint.temperature
    val = predict_split(checkpoint, mnist, "val", limit=200)
    assert val.logits.shape == (200, 10)
    assert np.array_equal(val.labels, mnist.train_labels.numpy()[val.indices])
    a = analyze(test)
    assert sum(map(sum, a.confusion)) == 300 and sum(c.support for c in a.per_class) == 300
    assert len(a.mistakes) == 300 - round(a.accuracy * 300)
    with pytest.raises(ConfigError):
        predict_split(checkpoint, mnist, "train")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_metrics_equal_scikit_learns(seed):
    # random predictions, some digits missing from the labels or the predictions, as on a slice
    sklearn = pytest.importorskip("sklearn.metrics")  # the [train] extra; the numpy code needs none
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, 500)
    predicted = np.where(rng.random(500) < 0.8, labels, rng.integers(1, 10, 500))
    confusion = confusion_matrix(labels, predicted)
    assert np.array_equal(confusion, sklearn.confusion_matrix(labels, predicted, labels=list(range(10))))
    per_class, macro = class_metrics(confusion)
    p, r, f, s = sklearn.precision_recall_fscore_support(labels, predicted, labels=list(range(10)), zero_division=0)
    got = np.array([[c.precision, c.recall, c.f1, c.support] for c in per_class])
    np.testing.assert_allclose(got, np.stack([p, r, f, s], axis=1), rtol=0, atol=1e-12)
    expected = sklearn.precision_recall_fscore_support(labels, predicted, average="macro", zero_division=0)[:3]
    np.testing.assert_allclose(macro, expected, rtol=0, atol=1e-12)


def test_numpy_loss_and_ece_equal_torchs():
    import torch.nn.functional as F

    from digitrec.evaluation.reliability import expected_calibration_error

    logits = torch.randn(400, 10, generator=torch.Generator().manual_seed(0)) * 4
    labels = torch.randint(0, 10, (400,), generator=torch.Generator().manual_seed(1))
    a = analyze(Predictions("test", np.arange(400), np.zeros((400, 28, 28), np.uint8), labels, logits, 1.0))
    assert a.loss == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-6)
    probs = torch.softmax(logits.double(), 1)
    confidence, predicted = probs.max(1)
    bins = (torch.bucketize(confidence, torch.linspace(0, 1, 16, dtype=torch.float64)) - 1).clamp(0, 14)
    gaps = [
        abs(((predicted == labels)[bins == b].double().sum() - confidence[bins == b].sum()).item()) for b in range(15)
    ]
    assert a.ece == pytest.approx(sum(gaps) / 400, abs=1e-12)
    assert expected_calibration_error(probs, labels) == pytest.approx(a.ece, abs=1e-12)
