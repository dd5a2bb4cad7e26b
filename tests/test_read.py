"""Reading whole numbers: segmentation (broken strokes merged, touching digits split, left to
right), the reading's fields and boxes, limits, and the overlay."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from digitrec import segment as sg
from digitrec import synth
from digitrec.recognize import Recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def digits_of(mnist, rng, n):
    idx = rng.choice(10000, n, replace=False)
    return [mnist.test_images[i].numpy() for i in idx], mnist.test_labels[idx].tolist()


def matches(box, true) -> bool:
    """The reading's box is the true digit's: its centre inside, and mostly overlapping (a thin 1's
    faint ink edge may be outside the confident ink)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return true[0] <= cx <= true[2] and true[1] <= cy <= true[3] and iou(box, true) > 0.45


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_scanned_numbers_are_read_exactly_with_their_boxes(recognizer, mnist):
    rng = np.random.default_rng(2024)
    exact = 0
    for _ in range(8):
        images, labels = digits_of(mnist, rng, int(rng.integers(3, 9)))
        number = synth.render_number(images, labels, rng, synth.random_style(rng, "scan"), touch_probability=0)
        reading = recognizer.read(synth.encode(number.image))
        if reading.text == number.text:
            exact += 1
            assert all(matches(d["box"], true) for d, true in zip(reading.digits, number.boxes))
    assert exact >= 7


def test_photographed_numbers_with_touching_digits_are_read(recognizer, mnist):
    rng = np.random.default_rng(77)
    results = []
    for _ in range(10):
        images, labels = digits_of(mnist, rng, int(rng.integers(3, 7)))
        number = synth.render_number(images, labels, rng, touch_probability=0.3)
        reading = recognizer.read(synth.encode(number.image, "JPEG", quality=90))
        results.append(reading.text == number.text)
    assert sum(results) >= 7, results


def test_touching_pairs_are_split(recognizer, mnist):
    rng = np.random.default_rng(8)
    right = 0
    for _ in range(8):
        images, labels = digits_of(mnist, rng, 2)
        number = synth.render_number(images, labels, rng, synth.random_style(rng, "scan"), touch_probability=1.0)
        assert number.touching == 1
        right += recognizer.read(synth.encode(number.image)).text == number.text
    assert right >= 6


def test_broken_strokes_of_one_digit_are_merged(recognizer, mnist):
    # A 5 and a 7 whose tops were written as separate strokes (a band of rows erased under the
    # cap), between two whole digits: still four digits.
    pieces = []
    for index, cut in ((15, True), (0, True), (2, False), (4, False)):  # test digits 5, 7, 1, 4
        cov = synth.ink_coverage(mnist.test_images[index].numpy(), 90)
        if cut:
            top = np.nonzero(cov.max(1) > 0.5)[0][0]
            cov[top + 16 : top + 21, :] = 0
        pieces.append(cov)
    page = np.zeros((160, 60 + sum(p.shape[1] + 50 for p in pieces)), np.float32)
    x = 40
    for cov in pieces:
        page[35 : 35 + cov.shape[0], x : x + cov.shape[1]] = cov
        x += cov.shape[1] + 50
    image = Image.fromarray(((1 - page) * 255).astype(np.uint8))
    labels, found = sg.pp.pieces(sg.pp.extract_ink(image, sg.READ_MAX_SIDE).mask)
    assert len(found) >= 6  # the strokes really are separate pieces
    reading = recognizer.read(image)
    assert reading.text == "5714", reading


def test_reading_fields_and_order(recognizer, mnist):
    rng = np.random.default_rng(9)
    images, labels = digits_of(mnist, rng, 5)
    number = synth.render_number(images, labels, rng, synth.clean_style(), height=70, touch_probability=0)
    reading = recognizer.read(synth.encode(number.image), name="n.png")
    d = reading.to_dict()
    assert list(d) == ["file", "text", "digits", "needs_review", "rejected", "reason"]
    assert d["file"] == "n.png" and not d["rejected"] and d["text"] == number.text
    xs = [item["box"][0] for item in d["digits"]]
    assert xs == sorted(xs)
    w, h = number.image.size
    for item in d["digits"]:
        x0, y0, x1, y1 = item["box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert set(item) == {"digit", "confidence", "box"} and 0 <= item["confidence"] <= 1


def test_boxes_are_in_the_input_pixels_of_a_large_photo(recognizer, mnist):
    rng = np.random.default_rng(10)
    images, labels = digits_of(mnist, rng, 4)
    number = synth.render_number(images, labels, rng, synth.clean_style(), height=300, touch_probability=0)
    assert max(number.image.size) > sg.READ_MAX_SIDE  # processed shrunk, reported in input pixels
    reading = recognizer.read(number.image)
    assert reading.text == number.text
    assert all(matches(d["box"], true) for d, true in zip(reading.digits, number.boxes))


def test_twenty_digits_are_read_and_more_are_refused(recognizer, mnist):
    rng = np.random.default_rng(11)
    images, labels = digits_of(mnist, rng, 20)
    number = synth.render_number(images, labels, rng, synth.clean_style(), height=48, touch_probability=0,
                                 gap=(0.25, 0.4))
    reading = recognizer.read(number.image)
    assert not reading.rejected and len(reading.digits) == 20
    assert sum(a == b for a, b in zip(reading.text, number.text)) >= 18
    images, labels = digits_of(mnist, rng, 23)
    longer = synth.render_number(images, labels, rng, synth.clean_style(), height=48, touch_probability=0,
                                 gap=(0.25, 0.4))
    refused = recognizer.read(longer.image)
    assert refused.rejected and refused.reason == "more than 20 digits" and refused.text == ""


def test_a_blank_page_and_two_lines_are_rejected(recognizer, mnist):
    blank = recognizer.read(Image.new("L", (600, 200), 230))
    assert blank.rejected and blank.reason == "no ink found" and blank.digits == []
    rng = np.random.default_rng(12)
    lines = []
    for _ in range(2):
        images, labels = digits_of(mnist, rng, 3)
        lines.append(np.asarray(synth.render_number(images, labels, rng, synth.clean_style(), height=60,
                                                    touch_probability=0).image.convert("L")))
    width = max(line.shape[1] for line in lines)
    stacked = np.vstack([np.pad(line, ((0, 0), (0, width - line.shape[1])), constant_values=255) for line in lines])
    two = recognizer.read(stacked)
    assert two.rejected and two.reason == "more than one line of writing"


def test_overlay_draws_boxes_on_the_upright_image(recognizer, mnist):
    rng = np.random.default_rng(13)
    images, labels = digits_of(mnist, rng, 3)
    number = synth.render_number(images, labels, rng, synth.clean_style(), height=60, touch_probability=0)
    reading = recognizer.read(number.image)
    overlay = recognizer.draw_overlay(number.image, reading)
    w, h = number.image.size
    assert overlay.mode == "RGB" and overlay.size[0] == w and overlay.size[1] > h  # a header band on top
    pixels = np.asarray(overlay).reshape(-1, 3)
    green = (pixels[:, 1] > 120) & (pixels[:, 0] < 80) & (pixels[:, 2] < 80)
    assert green.sum() > 50  # confident boxes are drawn in green
