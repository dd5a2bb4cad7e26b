"""Reading form fields: comb boxes one digit each, ruled lines after the print is removed, and a
printed line never read as a digit.

Fields are rendered from MNIST *training* digits (`digitrec.reading.forms.synth`).
"""

from __future__ import annotations

import numpy as np
import pytest

from digitrec.errors import BadImageError, NotAnImageError
from digitrec.making import negatives
from digitrec.reading import synth
from digitrec.reading.forms import synth as fs
from digitrec.reading.forms.comb import split_comb
from digitrec.reading.forms.field import read_comb, read_field
from digitrec.reading.forms.results import NO_DIGIT
from digitrec.reading.marks import EXPECTED_DIGIT_THRESHOLD, MarkOpinions
from digitrec.reading.recognize import Recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def digits_of(mnist, rng: np.random.Generator, n: int):
    idx = rng.choice(20_000, n, replace=False)
    return list(mnist.train_images.numpy()[idx]), list(mnist.train_labels.numpy()[idx])


def test_a_comb_is_read_box_by_box_with_empty_boxes_skipped(mnist, recognizer):
    rng = np.random.default_rng(31)
    right = 0
    for _ in range(4):
        digits, labels = digits_of(mnist, rng, 4)
        field = fs.render_comb(digits, labels, rng, n_boxes=7, cross_probability=0.0)
        reading = read_field(recognizer, field.image, name="f.png", field="amount")
        assert (reading.layout, reading.field, reading.file) == ("comb", "amount", "f.png")
        assert reading.text == field.text or reading.needs_review  # never wrong unflagged
        right += reading.text == field.text and not reading.needs_review
        assert [d["box_index"] for d in reading.digits] == [i for i, v in enumerate(field.labels) if v is not None]
        for d, (x0, y0, x1, y1) in zip(reading.digits, [b for b, v in zip(field.boxes, field.labels) if v is not None]):
            cx, cy = (d["box"][0] + d["box"][2]) / 2, (d["box"][1] + d["box"][3]) / 2
            assert x0 - 3 <= cx <= x1 + 3 and y0 - 3 <= cy <= y1 + 3  # each digit's box is in its printed box
        assert reading.to_dict()["digits"][0].keys() == {"digit", "confidence", "box", "box_index"}
    assert right >= 3


def test_a_seven_over_its_box_edge_is_one_digit(recognizer):
    """A 7 whose foot crosses its box's bottom edge (and another over the right side): each is
    one digit in its own box, and neither the edges nor the spill are read as a 1."""
    hand, lines, look = comb_of_four()
    pen = fs.LineLook(width=6.0, rgb=(0, 0, 0), pattern="solid", dash=1.0, gap=0.0)
    fs.draw_segment(hand, (145, 50), (200, 50), pen)
    fs.draw_segment(hand, (200, 50), (165, 150), pen)  # 20 px below the bottom edge
    fs.draw_segment(hand, (265, 50), (330, 50), pen)  # 10 px over the right side
    fs.draw_segment(hand, (330, 50), (290, 118), pen)
    image = fs.compose(hand, lines, look, synth.clean_style("scan"), np.random.default_rng(0))
    reading = read_field(recognizer, image)
    assert reading.text == "77" and [d["box_index"] for d in reading.digits] == [1, 2]
    assert reading.digits[0]["box"][3] >= 148  # the foot below the box is part of the digit


def test_a_number_on_a_ruled_line_is_read_after_the_line_is_removed(mnist, recognizer):
    rng = np.random.default_rng(32)
    right = 0
    for _ in range(4):
        digits, labels = digits_of(mnist, rng, int(rng.integers(3, 6)))
        field = fs.render_ruled(digits, labels, rng, touch_probability=1.0)
        reading = read_field(recognizer, field.image)
        assert reading.layout == "ruled"
        assert reading.text == field.text or reading.needs_review or reading.rejected  # never wrong unflagged
        right += reading.text == field.text
    assert right >= 3


@pytest.mark.parametrize("kind", ["comb", "ruled"])
def test_printed_lines_alone_are_never_read(recognizer, kind):
    """Blank combs (3-10 boxes, separate or shared sides, any grey, skewed) and blank ruled
    lines (solid, dashed, dotted): no digit, rejected as "no digit found"."""
    rng = np.random.default_rng(33 if kind == "comb" else 34)
    for _ in range(8):
        if kind == "comb":
            field = fs.blank_comb(rng, n_boxes=int(rng.integers(3, 11)), separate_probability=0.5)
        else:
            field = fs.blank_ruled(rng)
        reading = read_field(recognizer, field.image)
        assert reading.layout in (kind, "plain")  # a faint dotted line may not be found as print ...
        assert (reading.text, reading.digits, reading.rejected, reading.reason) == ("", [], True, NO_DIGIT)


def test_plain_paper_is_read_as_a_number(mnist, recognizer):
    rng = np.random.default_rng(35)
    digits, labels = digits_of(mnist, rng, 3)
    field = fs.render_ruled(digits, labels, rng)
    reading = read_field(recognizer, field.unprinted)
    assert reading.layout == "plain" and reading.text == field.text
    assert "box_index" not in reading.digits[0]


def test_a_number_in_a_frame_is_read_as_a_number(mnist, recognizer):
    """One printed box alone is a frame around a number, not a comb of one box."""
    rng = np.random.default_rng(36)
    digits, labels = digits_of(mnist, rng, 3)
    field = fs.render_ruled(digits, labels, rng, touch_probability=0.0)
    h, w = field.image.shape
    cover = np.zeros((h + 40, w + 40), np.float32)
    look = fs.LineLook(width=2.0, rgb=(0.2, 0.2, 0.2), pattern="solid", dash=1.0, gap=0.0)
    for p0, p1 in (((10, 10), (w + 30, 10)), ((10, h + 30), (w + 30, h + 30)), ((10, 10), (10, h + 30))):
        fs.draw_segment(cover, p0, p1, look)
    fs.draw_segment(cover, (w + 30, 10), (w + 30, h + 30), look)
    image = np.pad(field.unprinted, 20, mode="edge")
    image = (image * (1 - 0.8 * cover)).astype(np.uint8)
    reading = read_field(recognizer, image)
    assert reading.layout == "ruled" and reading.text == field.text


def test_a_lone_one_is_still_a_digit(mnist, recognizer):
    """A field holding one thin "1" and nothing else: the 1 is handwriting, not a printed line
    (it does not run out of the field), on plain paper and on a ruled line."""
    ones = np.nonzero(mnist.train_labels.numpy()[:2000] == 1)[0][:3]
    rng = np.random.default_rng(37)
    for i in ones:
        digit = mnist.train_images.numpy()[i]
        field = fs.render_ruled([digit], [1], rng, touch_probability=0.0)
        assert read_field(recognizer, field.image).text == "1"
        assert read_field(recognizer, field.unprinted).text == "1"


def test_unusable_input_is_one_line(recognizer):
    with pytest.raises(NotAnImageError):
        read_field(recognizer, b"not an image at all")
    with pytest.raises(BadImageError, match="too small"):
        read_field(recognizer, np.full((4, 4), 255, np.uint8))


def test_a_dotted_line_too_faint_to_be_found_is_not_read_either(recognizer):
    """Its dots, found as no print, are marks too small to be digits: nothing is read."""
    look = fs.LineLook(width=2.1, rgb=(0.36, 0.5, 0.18), pattern="dotted", dash=1.1, gap=4.0)
    rng = np.random.default_rng(38)
    for _ in range(6):
        reading = read_field(recognizer, fs.blank_ruled(rng, look=look).image)
        assert (reading.text, reading.digits, reading.rejected) == ("", [], True)


def comb_of_four() -> tuple[np.ndarray, np.ndarray, fs.LineLook]:
    """The print of a comb of four 100 x 100 boxes (interiors x 21-119, 121-219, ...; y 31-129),
    and an empty handwriting layer to draw in."""
    hand = np.zeros((160, 440), np.float32)
    lines = np.zeros_like(hand)
    look = fs.LineLook(width=2.0, rgb=(0.25, 0.25, 0.25), pattern="solid", dash=1.0, gap=0.0)
    for x in (20, 120, 220, 320, 420):
        fs.draw_segment(lines, (x, 30), (x, 130), look)
    fs.draw_segment(lines, (20, 30), (420, 30), look)
    fs.draw_segment(lines, (20, 130), (420, 130), look)
    return hand, lines, look


def written(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit as ink coverage about 70 px tall, as the form renderer writes it."""
    return synth.ink_coverage(digit, 70, 0.8, 0.0, max_width=90)


def test_a_comb_box_with_a_smudge_is_no_digit(mnist, recognizer):
    """A filled smudge in a box, between two written digits: the mark classifier says it is no
    digit, so the box gives no digit (it shows as a box with `digit` None), the field is flagged
    naming the box, and the digits around it are read."""
    rng = np.random.default_rng(36)
    hand, lines, look = comb_of_four()
    images, labels = mnist.train_images.numpy(), mnist.train_labels.numpy()
    sevens, threes = np.nonzero(labels == 7)[0], np.nonzero(labels == 3)[0]
    for x, digit in ((30, images[sevens[0]]), (330, images[threes[0]])):
        piece = written(digit)
        hand[40 : 40 + piece.shape[0], x : x + piece.shape[1]] = piece
    hand[45:115, 235:305] = np.maximum(hand[45:115, 235:305], negatives.blob(rng, 70))
    image = fs.compose(hand, lines, look, synth.clean_style("scan"), np.random.default_rng(0))
    reading = read_field(recognizer, image)
    assert [d["box_index"] for d in reading.digits] == [0, 2, 3]
    assert reading.digits[1]["digit"] is None and reading.text == "73"
    assert reading.needs_review and "box 3: " in (reading.reason or "")
    assert "box 3: a filled blob or smudge, not a written digit" in (reading.reason or "")


def test_digits_over_their_box_edges_are_one_digit_each(mnist, recognizer):
    """Every digit written over an edge of its box (down, left, right or up, by up to 15% of its
    height): each digit read comes from its own box, none is cut in two, no spill is read as a
    digit of the box next to it. (A 1 written exactly on the comb's outer side goes with the print;
    `HIDDEN_SHARE` flags it only when enough of its ink lay there: not yet always.)"""
    rng = np.random.default_rng(37)
    whole = 0
    for _ in range(4):
        digits, labels = digits_of(mnist, rng, 4)
        field = fs.render_comb(digits, labels, rng, n_boxes=6, cross_probability=1.0)
        reading = read_field(recognizer, field.image)
        read = [d["box_index"] for d in reading.digits]
        assert set(read) <= {i for i, v in enumerate(field.labels) if v is not None} and len(set(read)) == len(read)
        assert all(d["digit"] is not None for d in reading.digits)
        whole += len(reading.text) == 4
    assert whole >= 3


class _SureOf:
    """A recogniser stand-in that reads every box as a 4 with a given probability (the rest
    spread evenly), and every mark as a digit: to check how a field's confidence is made."""

    def __init__(self, probability: float) -> None:
        self.row = np.full(10, (1 - probability) / 9)
        self.row[4] = probability
        self.reader, self.marks = self, None

    def probabilities(self, digits28):
        return np.tile(self.row, (len(digits28), 1))

    def expected_digit_opinions(self, digits28):
        return MarkOpinions([None] * len(digits28))


def test_a_comb_field_is_flagged_when_its_digits_together_are_unsure(mnist):
    """Three boxes each read at 0.97 are each sure enough, but all three are right with
    probability 0.97 ** 3 = 0.913 only: the field is flagged, with that probability and its least
    sure box; at 0.99 each (0.970 together) it is not."""
    rng = np.random.default_rng(38)
    digits, labels = digits_of(mnist, rng, 3)
    field = fs.render_comb(digits, labels, rng, n_boxes=3, empty_probability=0.0, cross_probability=0.0)
    comb = split_comb(field.image)
    assert comb is not None and len(comb.filled) == 3
    unsure = read_comb(_SureOf(0.97), comb)  # type: ignore[arg-type]
    assert unsure.text == "444" and unsure.needs_review
    assert "the field is right with probability 0.913 only, below 0.950" in (unsure.reason or "")
    assert "(least sure: box 1, digit 4 at 0.970)" in (unsure.reason or "")
    sure = read_comb(_SureOf(0.99), comb)  # type: ignore[arg-type]
    assert sure.text == "444" and not sure.needs_review and sure.reason is None


def test_a_comb_box_keeps_a_digit_the_mark_classifier_only_doubts(mnist, monkeypatch):
    """In a comb's box a digit is expected: a mark the classifier gives p(digit) 0.05 is refused
    on its own (below the classifier's threshold) but read in a box (above EXPECTED_DIGIT_THRESHOLD);
    at p(digit) 0.001 the box gives no digit and is flagged."""
    recognizer = Recognizer.load()
    marks = recognizer.marks
    assert marks is not None and marks.model.reject_threshold > 0.05 > EXPECTED_DIGIT_THRESHOLD > 0.001
    rng = np.random.default_rng(39)
    digits, labels = digits_of(mnist, rng, 3)
    field = fs.render_comb(digits, labels, rng, n_boxes=3, empty_probability=0.0, cross_probability=0.0)
    for p_digit, read in ((0.05, True), (0.001, False)):
        monkeypatch.setattr(
            marks, "probabilities", lambda d28, p=p_digit: np.tile([p, *[(1 - p) / 6] * 6], (len(d28), 1))
        )
        assert all(recognizer.not_digit_reasons([np.zeros((28, 28))]))  # refused on its own
        reading = read_field(recognizer, field.image)
        assert (reading.text == field.text) == read, (p_digit, reading.text, reading.reason)
        assert read or (reading.needs_review and all(d["digit"] is None for d in reading.digits))
