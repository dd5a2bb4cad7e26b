"""The bounded search reads a line as the full search does, classifying fewer candidates (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digitrec.reading import search, synth
from digitrec.reading import segment as sg
from digitrec.reading.candidates import candidate_images, line_candidates
from digitrec.reading.recognize import Recognizer
from digitrec.reading.verifier import Verifier, load_verifier


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def numbers(mnist, seed: int, count: int) -> list[bytes]:
    """Numbers of 3-8 test digits in the reading benchmark's style mix, a fifth of pairs touching."""
    rng = np.random.default_rng(seed)
    images, labels = mnist.test_images.numpy(), mnist.test_labels.numpy()
    out = []
    for _ in range(count):
        idx = rng.choice(len(images), size=int(rng.integers(3, 9)), replace=False)
        number = synth.render_number(
            list(images[idx]), list(labels[idx]), rng, synth.random_style(rng), touch_probability=0.3
        )
        out.append(synth.encode(number.image, "PNG"))
    return out


def test_the_search_reads_as_the_full_search(recognizer, mnist):
    """Same text, digits, confidences, flags and reasons, to the last bit; fewer candidates classified."""
    classified = made = total = 0
    flagged = 0
    for data in numbers(mnist, 3, 24):
        full = sg.read_number(recognizer, data, name="n.png")
        assert search.read_line(recognizer, data, name="n.png") == full
        marked = sg.read_number(recognizer, data, name="n.png", not_digit=recognizer.expected_digit_opinions)
        assert recognizer.read(data, name="n.png") == marked
        assert (marked.text, marked.digits) == (full.text, full.digits)  # the marks only flag
        flagged += full.needs_review
        line = line_candidates(data)
        if not line.reason:
            total += len(line.spans)
            classified += len(search.search_line(recognizer, line).spans)
            made += sum(image is not None for image in line.digits28 or [])
    assert classified < 0.8 * total  # the search prunes (about half the candidates on these numbers)
    assert made < 0.9 * total  # and makes fewer into images (about three quarters)


def test_the_same_readings_under_another_verifier(recognizer, mnist):
    """The bounds follow the verifier's weights whatever their signs: a checker and margin weighed
    against, a wide review margin (every runner-up matters)."""
    shipped = load_verifier()
    weights = {**shipped.weights, "checker": -0.3, "log_margin": -0.05, "split_conf": -0.2}
    odd = Verifier(bias=shipped.bias, weights=weights, review_margin=8.0)
    other = Recognizer(recognizer.model, reader=recognizer.reader.model, verifier=odd)
    for data in numbers(mnist, 4, 8):
        assert search.read_line(other, data) == sg.read_number(other, data)


def test_bounds_hold_for_every_candidate(recognizer, mnist):
    """No candidate scores above its bound, whatever the models said of it."""
    verifier = recognizer.verifier
    for data in numbers(mnist, 5, 6):
        line = sg.analyse_line(recognizer, data)
        if line.reason:
            continue
        scores = sg.candidate_scores(line, verifier)
        bare = line_candidates(data)  # the checker's log-odds not known: its whole range
        for bounds in (search.score_bounds(bare, verifier, checker=True), search.score_bounds(line, verifier, True)):
            actual = np.array([scores[span].max() for span in line.spans])
            assert np.all(actual <= bounds + 1e-9)


def test_a_candidate_scores_the_same_among_few_or_all(recognizer, mnist):
    line = sg.analyse_line(recognizer, numbers(mnist, 6, 1)[0])
    features = sg.candidate_features(line)
    rows = np.arange(0, len(line.spans), 3)
    everything = sg.feature_log_odds(features, recognizer.verifier)
    assert np.array_equal(sg.feature_log_odds(features[rows], recognizer.verifier), everything[rows])
    assert np.array_equal(
        sg.feature_log_odds(sg.candidate_features(line, list(rows)), recognizer.verifier), everything[rows]
    )


def test_split_parts_are_classified_with_the_candidate(recognizer, mnist):
    """A classified candidate's split confidence reads its two sides at each cut: they are classified too."""
    for data in numbers(mnist, 7, 6):
        line = line_candidates(data)
        if line.reason:
            continue
        parts = search.split_parts(line)
        kept = set(search.search_line(recognizer, line).spans)
        for span, found in zip(line.spans, parts):
            if span in kept:
                assert all(line.spans[k] in kept for k in found)


def test_a_rejected_line_is_rejected_alike(recognizer):
    blank = synth.encode(Image.new("L", (300, 80), 255), "PNG")
    assert search.read_line(recognizer, blank) == sg.read_number(recognizer, blank)
    assert search.read_line(recognizer, blank).rejected


def test_a_markers_candidates_are_read_with_the_pen_trained_model_averaged_in(mnist):
    # The reading model never saw a marker's strokes; the default model was trained with the pen
    # augmentations. Only candidates that had to be thinned get its opinion.
    recognizer = Recognizer.load()
    assert recognizer.pen_model is recognizer and recognizer.reader is not recognizer
    digits = [mnist.test_images[k].numpy() / 255.0 for k in range(4)]
    thinned = np.array([False, True, False, True])
    probs = sg.candidate_probabilities(recognizer, digits, thinned)
    reader, own = recognizer.reader.probabilities(digits), recognizer.probabilities(digits)
    np.testing.assert_allclose(probs[~thinned], reader[~thinned])
    np.testing.assert_allclose(probs[thinned], (reader[thinned] + own[thinned]) / 2)
    assert not np.allclose(reader[thinned], own[thinned])  # the two models do differ
    # A marker's digit is marked thinned when its candidate image is made; MNIST's pen is not.
    pen, marker = digits[0].astype(np.float32), ndimage.grey_dilation(digits[0], size=(5, 5)).astype(np.float32)
    for digit, thick in ((pen, False), (marker, True)):
        image = synth.render_number([digit * 255, digit * 255], [7, 7], np.random.default_rng(0), height=90).image
        line = line_candidates(synth.encode(image))
        whole = [k for k, (i, j) in enumerate(line.spans) if line.boxes[k][2] - line.boxes[k][0] > 0.4 * line.height]
        _, marked = candidate_images(line, whole)
        assert whole and any(marked) == thick, (thick, marked)  # (two digits as one candidate are not thick)
