"""Comb fields: the boxes found in order, empty ones reported empty, each digit cropped whole.

Fields are rendered from MNIST *training* digits (`digitrec.reading.forms.synth`).
"""

from __future__ import annotations

import numpy as np
import pytest

from digitrec.reading import synth
from digitrec.reading.forms import synth as fs
from digitrec.reading.forms.comb import find_boxes, owners, split_comb
from digitrec.reading.forms.rulings import find_rulings


def digits_of(mnist, rng: np.random.Generator, n: int):
    idx = rng.choice(20_000, n, replace=False)
    return list(mnist.train_images.numpy()[idx]), list(mnist.train_labels.numpy()[idx])


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


@pytest.mark.parametrize("separate", [0.0, 1.0])
def test_boxes_are_found_in_order(mnist, separate):
    """Shared sides or separate boxes, 3-9 of them, skewed, digits over the edges: every box,
    left to right, its interior overlapping the true one."""
    rng = np.random.default_rng(21 if separate else 22)
    for _ in range(5):
        digits, labels = digits_of(mnist, rng, int(rng.integers(3, 8)))
        field = fs.render_comb(digits, labels, rng, separate_probability=separate)
        boxes = find_boxes(find_rulings(field.image))
        assert len(boxes) == len(field.boxes)
        assert all(iou(a, b) >= 0.6 for a, b in zip(boxes, field.boxes)), (boxes, field.boxes)


def test_empty_boxes_are_reported_empty(mnist):
    """Half the boxes left empty: each box is reported empty exactly when nothing is written in
    it (a digit spilling into its neighbour's box stays its own)."""
    rng = np.random.default_rng(23)
    for _ in range(6):
        digits, labels = digits_of(mnist, rng, 4)
        field = fs.render_comb(digits, labels, rng, n_boxes=8, cross_probability=0.3)
        comb = split_comb(field.image)
        assert comb is not None
        assert [b.empty for b in comb.boxes] == [v is None for v in field.labels]


def test_an_empty_comb_has_only_empty_boxes():
    rng = np.random.default_rng(24)
    for n in (3, 6, 10):
        comb = split_comb(fs.blank_comb(rng, n_boxes=n).image)
        assert comb is not None and len(comb.boxes) == n
        assert all(b.empty and b.crop is None for b in comb.boxes)
        assert not comb.cleaned.hand.any()


def test_a_digit_over_its_box_edge_is_cropped_whole():
    """A 7 whose foot crosses its box's bottom edge: the crop holds the foot below the edge, and
    none of the print."""
    hand = np.zeros((160, 340), np.float32)
    lines = np.zeros_like(hand)
    look = fs.LineLook(width=2.0, rgb=(0.25, 0.25, 0.25), pattern="solid", dash=1.0, gap=0.0)
    for x in (20, 120, 220, 320):
        fs.draw_segment(lines, (x, 30), (x, 130), look)
    fs.draw_segment(lines, (20, 30), (320, 30), look)
    fs.draw_segment(lines, (20, 130), (320, 130), look)
    pen = fs.LineLook(width=6.0, rgb=(0, 0, 0), pattern="solid", dash=1.0, gap=0.0)
    fs.draw_segment(hand, (145, 50), (200, 50), pen)
    fs.draw_segment(hand, (200, 50), (165, 150), pen)  # 20 px below the bottom edge
    image = fs.compose(hand, lines, look, synth.clean_style("scan"), np.random.default_rng(0))
    comb = split_comb(image)
    assert comb is not None and [b.empty for b in comb.boxes] == [True, False, True]
    box = comb.boxes[1]
    assert box.ink_box is not None and box.crop is not None
    assert box.ink_box[3] >= 148 > box.interior[3]  # the foot, beyond the box
    stroke = (hand >= 0.5).sum()
    dark = (box.crop < 128).sum()  # the 7, all of it and nothing else
    assert box.crop.dtype == np.uint8 and 0.85 * stroke <= dark <= 1.05 * stroke


def test_a_ruled_line_is_no_comb(mnist):
    rng = np.random.default_rng(25)
    digits, labels = digits_of(mnist, rng, 5)
    assert split_comb(fs.render_ruled(digits, labels, rng).image) is None


def test_a_stroke_shared_by_two_boxes_leaves_no_sliver_in_a_third():
    """Two digits touching across the side between boxes 2 and 3, one of them with a stroke
    reaching back a few pixels past the side of box 1: the piece is cut between the two boxes
    that share it, and box 1 gets nothing. (It used to get the tip: a box of a few pixels whose
    crop was too small to be an image, and the whole field failed.)"""
    boxes = [(0, 0, 40, 40), (44, 0, 84, 40), (88, 0, 128, 40)]  # sides at 40-44 and 84-88
    hand = np.zeros((40, 130), bool)
    hand[18:23, 40:110] = True  # from x=40, left of the cut at 42 between boxes 1 and 2
    owner = owners(hand, boxes, speck=12)
    assert not (owner == 0).any()
    assert (owner[hand] >= 1).all()
    assert (owner[20, 40:86] == 1).all() and (owner[20, 88:110] == 2).all()  # cut at the middle of their side


def test_a_tiny_mark_in_a_box_is_ink_not_an_error():
    """A box holding only a mark a few pixels wide still gets a crop a reader can take (the
    models then judge it), never one too small to be an image."""
    hand = np.zeros((160, 240), np.float32)
    lines = np.zeros_like(hand)
    look = fs.LineLook(width=2.0, rgb=(0.25, 0.25, 0.25), pattern="solid", dash=1.0, gap=0.0)
    for x in (20, 120, 220):
        fs.draw_segment(lines, (x, 30), (x, 130), look)
    fs.draw_segment(lines, (20, 30), (220, 30), look)
    fs.draw_segment(lines, (20, 130), (220, 130), look)
    dash = fs.LineLook(width=2.0, rgb=(0, 0, 0), pattern="solid", dash=1.0, gap=0.0)
    fs.draw_segment(hand, (70, 80), (77, 80), dash)  # a dash of ink about 2x8 pixels, more than a speck
    image = fs.compose(hand, lines, look, synth.clean_style("scan"), np.random.default_rng(0))
    comb = split_comb(image)
    assert comb is not None and len(comb.boxes) == 2
    marked = [b for b in comb.boxes if not b.empty]
    assert marked and all(b.crop is not None and min(b.crop.shape) >= 8 for b in marked)
