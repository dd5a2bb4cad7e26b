"""The robustness conditions and the negatives render what they claim, and the product reads a
thick 1, a closed-up 8 and a blurred 0 while it rejects blobs, scribbles and letters."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digitrec.making import negatives
from digitrec.making.negatives import NEGATIVE_KINDS, font_files, render_negative
from digitrec.reading import synth
from digitrec.reading.conditions import Condition, all_conditions, marker_stroke, render_condition, widen_pen
from digitrec.reading.marks import REASONS
from digitrec.reading.recognize import Recognizer
from digitrec.weights import MARKS_PATH


def darkness(image) -> np.ndarray:
    """0 on white paper, 1 on black ink."""
    return 1 - np.asarray(image.convert("L"), np.float32) / 255


def first_of(mnist, digit: int, n: int) -> list[np.ndarray]:
    images, labels = mnist.test_images.numpy(), mnist.test_labels.numpy()
    return list(images[labels == digit][:n])


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def test_every_condition_renders_and_the_seed_decides(mnist):
    digit = mnist.test_images[0].numpy()
    conditions = all_conditions()
    assert len(conditions) == 13 and conditions[0].label == "clean"
    for condition in conditions:
        a = render_condition(digit, condition, np.random.default_rng(5))
        b = render_condition(digit, condition, np.random.default_rng(5))
        assert a.mode == "RGB" and min(a.size) >= 40
        assert np.array_equal(np.asarray(a), np.asarray(b)), condition
    with pytest.raises(ValueError, match="unknown condition"):
        Condition("crayon")


def test_marker_widens_and_pencil_lightens(mnist):
    digit = mnist.test_images[1].numpy()
    coverage = synth.ink_coverage(digit, 100)
    assert marker_stroke(coverage, 20).sum() > 2 * coverage.sum()
    widened = widen_pen(digit[None], 2)  # the same at 28x28, in MNIST's margin
    assert widened.shape == (1, 28, 28) and (widened > 127).sum() > 1.5 * (digit > 127).sum()
    assert np.array_equal(widen_pen(digit[None], 0)[0], digit)
    clean = darkness(render_condition(digit, Condition("clean"), np.random.default_rng(0)))
    pencil = darkness(render_condition(digit, Condition("pencil", 2), np.random.default_rng(0)))
    assert np.percentile(pencil, 99.9) < 0.5 < np.percentile(clean, 99.9)


def test_every_negative_kind_renders_from_debian_fonts(mnist):
    assert font_files(), "install fonts-dejavu-core and fonts-liberation"
    rng = np.random.default_rng(0)
    for kind in NEGATIVE_KINDS:
        image = render_negative(kind, rng, mnist.test_images[0].numpy())
        assert image.mode == "RGB"
        dark = darkness(image)
        assert (dark.max() - np.median(dark) > 0.2) == (kind != "blank"), kind
    with pytest.raises(ValueError, match="unknown kind"):
        render_negative("smiley", rng)


def closed_eight(digit: np.ndarray) -> synth.Image.Image:
    """An 8 written with a marker so fat that its loops have closed up (no hole left in the ink)."""
    coverage = synth.ink_coverage(digit, 90)
    for extra in range(6, 40, 2):
        fat = marker_stroke(coverage, extra)
        holes = ndimage.binary_fill_holes(fat > 0.5) & ~(fat > 0.5)
        if holes.sum() < 4:
            break
    page = np.pad(fat, 40)
    return synth.compose(page, synth.clean_style(), np.random.default_rng(0))


@pytest.mark.skipif(not MARKS_PATH.is_file(), reason="no mark classifier installed")
def test_a_thick_one_a_closed_eight_and_a_blurred_zero_are_read(mnist, recognizer):
    rng = np.random.default_rng(1)
    cases = [(1, render_condition(d, Condition("marker", 2), rng)) for d in first_of(mnist, 1, 5)]
    cases += [(8, closed_eight(d)) for d in first_of(mnist, 8, 5)]
    cases += [(0, render_condition(d, Condition("blur", 2), rng)) for d in first_of(mnist, 0, 5)]
    predictions = [recognizer.predict(synth.encode(image)) for _, image in cases]
    not_digit = set(REASONS.values()) | {"a filled blob or smudge, not a written digit"}
    assert not [p.reason for p in predictions if p.reason in not_digit]
    right = sum(p.digit == label for (label, _), p in zip(cases, predictions))
    assert right >= len(cases) - 1, [(label, p.digit, p.reason) for (label, _), p in zip(cases, predictions)]


def test_without_the_mark_classifier_the_blob_rule_still_rejects_a_smudge(mnist):
    plain = Recognizer.load(marks=False)
    assert plain.marks is None
    blob = render_negative("blob", np.random.default_rng(3))
    assert plain.predict(synth.encode(blob)).reason == "a filled blob or smudge, not a written digit"


@pytest.mark.skipif(not MARKS_PATH.is_file(), reason="no mark classifier installed")
def test_negatives_are_rejected_with_a_reason_and_more_than_by_the_blob_rule(mnist, recognizer):
    rng = np.random.default_rng(7)
    digits = mnist.test_images.numpy()
    kinds = ("blob", "scribble", "crossed", "letter", "word", "noise", "blank")
    pictures = [
        (kind, synth.encode(render_negative(kind, rng, digits[int(rng.integers(len(digits)))])))
        for kind in kinds
        for _ in range(12)
    ]
    blob_rule = Recognizer.load(marks=False)
    now = [recognizer.predict(data) for _, data in pictures]
    before = [blob_rule.predict(data) for _, data in pictures]
    assert all(p.reason for p in now if p.rejected)
    share = {kind: np.mean([p.rejected for (k, _), p in zip(pictures, now) if k == kind]) for kind in kinds}
    rejected, rejected_before = np.mean([p.rejected for p in now]), np.mean([p.rejected for p in before])
    # The target is 95% (benchmarks/robustness.py measures it; the README says how far it is).
    assert rejected >= 0.85 and rejected >= rejected_before + 0.15, (share, rejected_before)
    assert share["blob"] >= 0.9 and share["crossed"] >= 0.9, share


@pytest.mark.skipif(not MARKS_PATH.is_file(), reason="no mark classifier installed")
def test_read_flags_a_number_with_a_crossed_out_digit(mnist, recognizer):
    """`read` asks the mark classifier about each digit it read: a number whose middle digit is
    struck through is flagged, naming that digit; the same number written plainly is not flagged
    for it, and a recogniser without the classifier does not ask."""
    rng = np.random.default_rng(7)
    three, five, seven = (first_of(mnist, d, 1)[0] for d in (3, 5, 7))

    def number(middle: np.ndarray) -> bytes:
        page = np.zeros((140, 340), np.float32)
        for x, cover in ((20, synth.ink_coverage(three, 80)), (130, middle), (240, synth.ink_coverage(seven, 80))):
            page[30 : 30 + cover.shape[0], x : x + cover.shape[1]] = np.maximum(
                page[30 : 30 + cover.shape[0], x : x + cover.shape[1]], cover
            )
        return synth.encode(synth.compose(page, synth.clean_style(), np.random.default_rng(0)))

    struck = number(negatives.crossed(rng, 90, five))
    plain = number(synth.ink_coverage(five, 80))
    reading = recognizer.read(struck)
    assert reading.needs_review and "digit 2: crossed out, not a written digit" in (reading.reason or ""), reading
    assert "not a written digit" not in (recognizer.read(plain).reason or "")
    without = Recognizer.load(marks=False).read(struck)
    assert "not a written digit" not in (without.reason or "")


def test_the_robustness_benchmark_draws_what_it_did_not_read(mnist, recognizer, tmp_path, monkeypatch):
    # `benchmarks/robustness.py --failures DIR`: every digit not read right (and every negative
    # accepted) on a captioned sheet per set, nothing that was read right.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    robustness = importlib.import_module("robustness")
    rng = np.random.default_rng(0)
    digit = mnist.test_images[0].numpy()  # a 7
    blank = synth.encode(Image.new("RGB", (200, 200), (235, 235, 230)))
    sets = {
        "clean": [(7, synth.encode(render_condition(digit, Condition("clean", 1), rng))), (3, blank)],
        "neg:blank": [(None, blank)],
    }
    failures: dict = {}
    shares = robustness.score(recognizer, sets, failures)
    assert shares["clean"]["right"] == 0.5 and shares["neg:blank"]["rejected"] == 1.0
    assert list(failures) == ["clean"] and len(failures["clean"]) == 1
    assert failures["clean"][0][1].startswith("3: no ink")  # the label, then what `predict` said
    (sheet,) = robustness.contact_sheets(failures, tmp_path / "failures")
    assert sheet.name == "clean.png"
    pixels = np.asarray(Image.open(sheet))
    assert pixels.shape == (128 + 14, 8 * 128) and (pixels[128:] < 128).any()  # one row, captioned
