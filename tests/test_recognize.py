"""Predicting one digit per image: accuracy on photographed MNIST test digits, calibrated
confidences, the reject threshold and the reasons for rejecting what is not a digit."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitrec.evaluation.calibration import choose_reject_threshold
from digitrec.models.checkpoint import load_checkpoint
from digitrec.probability import softmax
from digitrec.reading import synth
from digitrec.reading.recognize import DEFAULT_REJECT_THRESHOLD, Prediction, Recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def paper() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (300, 300), 235)
    return image, ImageDraw.Draw(image)


# ---- the reject threshold (a pure function of validation probabilities) ---------------------------


def test_threshold_keeps_everything_when_every_prediction_is_right():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    assert choose_reject_threshold(probs, np.array([0, 0, 1])) == pytest.approx(0.6)  # the lowest confidence


def test_threshold_rejects_the_low_confidence_mistakes():
    rng = np.random.default_rng(0)
    confidence = np.sort(rng.uniform(0.5, 1.0, 1000))[::-1]
    labels = np.zeros(1000, int)
    labels[-40:] = 1  # the 40 least confident are wrong
    probs = np.stack([confidence, 1 - confidence], 1)
    t = choose_reject_threshold(probs, labels, target_precision=0.995, min_coverage=0.5)
    accepted = confidence >= t
    assert (labels[accepted] == 0).mean() >= 0.995
    assert accepted.sum() >= 960  # no more rejected than needed: the lowest threshold meeting the target
    assert t > confidence[-35]


def test_threshold_never_splits_equal_confidences():
    probs = np.array([[0.9, 0.1]] * 3 + [[0.7, 0.3]] * 2)
    labels = np.array([0, 0, 0, 0, 1])  # one of the two 0.7 predictions is wrong
    t = choose_reject_threshold(probs, labels, target_precision=0.99, min_coverage=0.5)
    assert t == pytest.approx(0.9)  # both 0.7s are rejected together


def test_threshold_falls_back_to_min_coverage_for_a_weak_model():
    probs = np.tile([[0.8, 0.2]], (10, 1)) * np.linspace(1, 0.7, 10)[:, None]
    probs[:, 1] = 1 - probs[:, 0]
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])  # half wrong at every confidence
    t = choose_reject_threshold(probs, labels, target_precision=0.99, min_coverage=0.9)
    assert (probs.max(1) >= t).mean() == pytest.approx(0.9)


def test_threshold_checks_its_inputs_and_leaves_them_alone():
    probs = np.array([[0.6, 0.4], [0.2, 0.8]])
    labels = np.array([0, 1])
    before = probs.copy()
    choose_reject_threshold(probs, labels)
    assert np.array_equal(probs, before)
    with pytest.raises(ValueError):
        choose_reject_threshold(probs, np.array([0]))
    with pytest.raises(ValueError):
        choose_reject_threshold(probs, labels, target_precision=0)


def test_default_threshold_is_used_without_calibration():
    checkpoint = load_checkpoint()
    checkpoint.meta = {k: v for k, v in checkpoint.meta.items() if k != "calibration"}
    recognizer = Recognizer(checkpoint)
    assert recognizer.reject_threshold == DEFAULT_REJECT_THRESHOLD and recognizer.temperature == 1.0


def test_confidence_is_the_tempered_softmax_and_the_threshold_comes_from_the_checkpoint(mnist):
    checkpoint = load_checkpoint()
    checkpoint.meta = copy.deepcopy(checkpoint.meta)
    checkpoint.meta["calibration"] = {"temperature": 3.0, "reject_threshold": 0.999999}
    recognizer = Recognizer(checkpoint)
    digit = mnist.test_images[0].numpy()
    logits = recognizer.backend.logits(
        np.asarray(
            (digit[None, None] / 255.0 - recognizer.normalization.mean) / recognizer.normalization.std, np.float32
        )
    )
    prediction = recognizer.predict(digit, top_k=10)
    expected = softmax(logits, 3.0)[0]
    got = {t["digit"]: t["probability"] for t in prediction.top_k}
    assert prediction.confidence == pytest.approx(expected.max(), abs=0.02)  # same digit, preprocessed
    assert sum(got.values()) == pytest.approx(1.0)
    # a tempered 7 is below 0.999999: rejected for low confidence, with its alternatives kept
    assert prediction.rejected and prediction.reason == "low confidence" and prediction.digit is None
    assert prediction.top_k[0]["digit"] == 7


# ---- accuracy on real handwriting, photographed ----------------------------------------------------


def test_photographed_mnist_test_digits_are_recognised(recognizer, mnist):
    rng = np.random.default_rng(12345)
    idx = rng.choice(10000, 50, replace=False)
    files = [synth.encode(synth.render_digit(mnist.test_images[i].numpy(), rng)) for i in idx]
    predictions = recognizer.predict_many(files, names=[f"{i}.png" for i in idx])
    labels = mnist.test_labels[idx].numpy()
    top1 = np.mean([p.top_k[0]["digit"] == y for p, y in zip(predictions, labels) if p.top_k])
    accepted_right = np.mean([p.digit == y for p, y in zip(predictions, labels)])
    assert top1 >= 0.9 and accepted_right >= 0.85, (top1, accepted_right)
    assert [p.file for p in predictions] == [f"{i}.png" for i in idx]


def test_predict_many_makes_one_model_call(recognizer, mnist):
    calls = []
    original = recognizer.backend.logits

    def counting(x):
        calls.append(x.shape)
        return original(x)

    recognizer.backend.logits = counting
    try:
        images = [mnist.test_images[i].numpy() for i in range(6)]
        predictions = recognizer.predict_many(images, top_k=2)
    finally:
        recognizer.backend.logits = original
    assert calls == [(6, 1, 28, 28)]
    assert [p.digit for p in predictions] == mnist.test_labels[:6].tolist()
    assert all(len(p.top_k) == 2 for p in predictions)


def test_prediction_fields(recognizer, mnist):
    p = recognizer.predict(mnist.test_images[1].numpy(), top_k=3, name="two.png")
    d = p.to_dict()
    assert list(d) == ["file", "digit", "confidence", "top_k", "rejected", "reason"]
    assert d["file"] == "two.png" and d["digit"] == 2 and not d["rejected"] and d["reason"] is None
    probs = [t["probability"] for t in d["top_k"]]
    assert probs == sorted(probs, reverse=True) and d["confidence"] == probs[0]
    assert json.loads(json.dumps(d)) == d


# ---- reject instead of guessing --------------------------------------------------------------------


def rejection(recognizer, image) -> Prediction:
    p = recognizer.predict(image)
    assert p.rejected and p.digit is None, p
    return p


def test_a_blank_page_is_rejected(recognizer):
    assert rejection(recognizer, Image.new("RGB", (400, 300), (240, 236, 228))).reason == "no ink found"


def test_a_dash_is_rejected(recognizer):
    image, draw = paper()
    draw.line([40, 150, 260, 150], fill=20, width=10)
    assert rejection(recognizer, image).reason.startswith("only a straight line")


def test_a_filled_blob_is_rejected(recognizer):
    image, draw = paper()
    draw.ellipse([90, 80, 210, 220], fill=30)
    assert "blob" in rejection(recognizer, image).reason


def test_a_face_is_rejected(recognizer):
    image, draw = paper()
    draw.ellipse([60, 60, 240, 240], outline=20, width=10)
    draw.ellipse([110, 110, 130, 130], fill=20)
    draw.ellipse([170, 110, 190, 130], fill=20)
    assert "drawing" in rejection(recognizer, image).reason


def test_a_too_wide_mark_is_rejected(recognizer):
    image, draw = paper()
    draw.line([60, 140, 240, 160], fill=20, width=14)  # a wide stroke, not spanning the page
    draw.line([60, 150, 60, 175], fill=20, width=14)
    assert rejection(recognizer, image).reason == "too wide to be a digit"


def test_several_digits_are_rejected_with_a_pointer_to_read(recognizer, mnist):
    rng = np.random.default_rng(4)
    number = synth.render_number(
        [mnist.test_images[i].numpy() for i in (0, 1, 2)],
        [7, 2, 1],
        rng,
        synth.clean_style(),
        height=80,
        touch_probability=0,
    )
    assert "digitrec read" in rejection(recognizer, number.image).reason


def test_ink_running_off_the_image_is_rejected(recognizer):
    image, draw = paper()
    draw.line([0, 0, 299, 299], fill=20, width=14)  # a big X over the whole frame
    draw.line([0, 299, 299, 0], fill=20, width=14)
    assert "runs off the image" in rejection(recognizer, image).reason
