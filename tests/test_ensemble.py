"""Ensembles and test-time augmentation (`digitrec.evaluation.scoring`): an ensemble of one is the
model, several average their calibrated probabilities, TTA averages over one-pixel shifts, and
neither hurts accuracy on real digits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.evaluation.members import load_member
from digitrec.evaluation.scoring import DEFAULT_SHIFTS, Scorer, combine, disagreement, probabilities, score, shift
from digitrec.models.inputs import Normalization
from digitrec.probability import softmax
from digitrec.weights import DEFAULT_MODEL_PATH

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (6, 28, 28), dtype=np.uint8)
PLAIN = Normalization(0.0, 1.0)  # inputs are the images / 255


def linear_scorer(seed: int, temperature: float) -> Scorer:
    """A fixed random linear model: logits depend on every pixel, so shifts change them."""
    weights = np.random.default_rng(seed).normal(size=(28 * 28, 10)).astype(np.float32)
    return Scorer(f"linear{seed}", PLAIN, temperature, lambda x: x.reshape(len(x), -1) @ weights)


def raw_logits(scorer: Scorer, images: np.ndarray = IMAGES) -> np.ndarray:
    return scorer.logits((images.astype(np.float32) / 255)[:, None])


def test_shift_moves_content_and_keeps_background():
    x = np.full((1, 1, 5, 5), -1.0, np.float32)
    x[0, 0, 2, 2] = 3.0
    moved = shift(x, 1, -1)
    assert moved[0, 0, 3, 1] == 3.0 and moved[0, 0, 2, 2] == -1.0
    assert (moved == -1.0).sum() == 24


@pytest.mark.parametrize("dy,dx", [*DEFAULT_SHIFTS, (2, -3)])
def test_shift_is_a_roll_whose_wrapped_rows_and_columns_are_background(dy, dx):
    x = RNG.normal(size=(3, 1, 28, 28)).astype(np.float32)
    expected = np.roll(x, (dy, dx), axis=(2, 3))
    background = x.min(axis=(1, 2, 3))[:, None, None]
    rows = slice(0, dy) if dy >= 0 else slice(dy, None)
    cols = slice(0, dx) if dx >= 0 else slice(dx, None)
    expected[:, 0, rows, :] = background
    expected[:, 0, :, cols] = background
    np.testing.assert_array_equal(shift(x, dy, dx), expected)


def test_ensemble_of_one_is_the_model():
    model = linear_scorer(1, temperature=0.7)
    one = score([model], IMAGES)
    np.testing.assert_allclose(one.logits, raw_logits(model), rtol=1e-6)
    assert one.temperature == 0.7  # calibrated later, at the model's own temperature
    assert one.member_predictions.shape == (1, len(IMAGES)) and disagreement(one.member_predictions) == 0.0


def test_an_ensemble_averages_each_members_calibrated_probabilities():
    a, b = linear_scorer(1, temperature=0.7), linear_scorer(2, temperature=2.0)
    both = score([a, b], IMAGES)
    expected = (softmax(raw_logits(a), 0.7) + softmax(raw_logits(b), 2.0)) / 2
    np.testing.assert_allclose(np.exp(both.logits), expected, rtol=1e-6)
    np.testing.assert_allclose(np.exp(both.logits).sum(axis=1), 1.0, rtol=1e-9)
    assert both.temperature == 1.0  # already calibrated: members' temperatures applied inside
    answers = np.stack([raw_logits(a).argmax(1), raw_logits(b).argmax(1)])
    np.testing.assert_array_equal(both.member_predictions, answers)
    assert disagreement(both.member_predictions) == np.mean(answers[0] != answers[1])
    # combine() is the same average over probabilities computed once, as the benchmark uses it
    again = combine([probabilities(a, IMAGES, temperature=0.7), probabilities(b, IMAGES, temperature=2.0)])
    np.testing.assert_allclose(again.logits, both.logits, rtol=1e-9)


def test_tta_averages_the_probabilities_over_the_shifts():
    model = linear_scorer(3, temperature=0.5)
    tta = score([model], IMAGES, tta=True)
    x = (IMAGES.astype(np.float32) / 255)[:, None]
    per_shift = [softmax(model.logits(shift(x, dy, dx)), 1.0) for dy, dx in DEFAULT_SHIFTS]
    np.testing.assert_allclose(np.exp(tta.logits), np.mean(per_shift, axis=0), rtol=1e-6)
    assert tta.temperature == 0.5  # a lone model is calibrated after the shifts are averaged
    assert not np.allclose(per_shift[0], per_shift[1])  # the shifts do change the answer's odds


def test_tta_and_ensembles_keep_accuracy_on_real_digits(mnist):
    images, labels = mnist.test_images[:1000].numpy(), mnist.test_labels[:1000].numpy()
    model = load_member(None, "torch").scorer

    def accuracy(scores) -> float:
        return float((scores.logits.argmax(1) == labels).mean())

    base = accuracy(score([model], images))
    assert accuracy(score([model], images, tta=True)) >= base - 0.01
    pair = score([model, model], images)
    assert accuracy(pair) == base and disagreement(pair.member_predictions) == 0.0


def test_evaluate_cli_accepts_ensembles(capsys):
    assert main(["evaluate", "--model", str(DEFAULT_MODEL_PATH), "--model", str(DEFAULT_MODEL_PATH), "--json"]) == 0
    pair = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert pair["n"] == 10000 and pair["test_accuracy"] == single["test_accuracy"]
    assert pair["arch"] == f"{single['arch']}+{single['arch']}"
