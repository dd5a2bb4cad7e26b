"""Remove printed lines from a form image and keep the handwriting that crosses them.

`remove_rulings` takes what `digitrec.reading.forms.rulings.find_rulings` found and:

1. takes the line pixels out of the ink, except where a pen stroke crosses the line: the stroke's
   ink continues on both sides of the line (`CROSS_DEPTH` pixels deep), so the line pixels
   between its two ends are the stroke's (a 7 crossing its box's bottom edge keeps its foot). The
   stroke may cross at a slant: row by row across the line, the kept pixels move from where the
   stroke leaves one side to where it enters the other. On the line's blurred edge, what touches
   a stroke beside the line is the stroke's (a digit resting on a ruling keeps its foot);
2. drops what is left of a line that is not handwriting: pieces of ink touching a removed line
   with hardly any ink away from it (a blurred edge, the overshoot of a frame's corner, the end
   of a dash). A printed line must never come back as a "1" or a "-". Specks of noise (a few
   pixels) are not handwriting either;
3. paints the removed lines, their blurred edges included, with the paper's own brightness, so
   a reader that thresholds the image differently does not find them again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digitrec.reading.forms.lines import Ruling, shear
from digitrec.reading.forms.rulings import EIGHT, Rulings, as_float, find_rulings, line_pixels

CROSS_DEPTH = 2  # a stroke crosses a line when its ink continues this many pixels on both sides
STUB_REACH = 2  # ink this close to a removed line may be what is left of it ...
STUB_PX = 6  # ... when it has fewer pixels than this farther away ...
STUB_SHARE = 0.25  # ... or less than this share of its pixels
SPECK_PX = 4  # smaller pieces of ink are noise (left as they are in the image)


@dataclass(frozen=True)
class Cleaned:
    """A form image with its printed lines removed."""

    image: np.ndarray  # uint8 (H, W): the input with the lines painted over with paper
    hand: np.ndarray  # bool (H, W): the handwriting's ink (noise specks left out)
    restored: np.ndarray  # bool (H, W): line pixels given back to strokes crossing the lines
    dropped: np.ndarray  # bool (H, W): ink dropped as what was left of a line
    rulings: Rulings
    stroke_width: float  # of the handwriting, pixels


def stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width: twice the distance to the paper along the strokes' middles."""
    if not mask.any():
        return 1.0
    distance = ndimage.distance_transform_edt(mask)
    ridge = mask & (distance >= ndimage.maximum_filter(distance, size=3))
    return float(np.median(2 * distance[ridge] - 1))


def crossings(lines: list[Ruling], other: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """The lines' ink pixels that belong to pen strokes crossing them. `other` is the ink that
    is not print (the strokes on either side). The lines of one orientation share one slope."""
    restored = np.zeros(ink.shape, bool)
    for vertical in (False, True):
        group = [r for r in lines if (r.orientation == "vertical") == vertical]
        if not group:
            continue
        other_t, ink_t = (other.T, ink.T) if vertical else (other, ink)
        geometry = shear(other_t.shape, group[0].slope)
        strokes, inked = geometry.forward(other_t), geometry.forward(ink_t)
        kept = np.zeros_like(inked)
        for line in group:
            _cross_one(line, geometry.off, strokes, inked, kept)
        back = geometry.back(kept)
        restored |= back.T if vertical else back
    return restored


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    """A 1-D bool array moved k places (right when k > 0), paper coming in."""
    out = np.zeros_like(a)
    if k >= 0:
        out[k:] = a[: len(a) - k]
    else:
        out[:k] = a[-k:]
    return out


def _cross_one(line: Ruling, off: int, strokes: np.ndarray, inked: np.ndarray, kept: np.ndarray) -> None:
    """Mark (in `kept`, sheared space) the line's pixels that are handwriting: under strokes
    crossing it, and on its blurred edge where a stroke touches it from that side.

    A stroke crossing the line leaves one side where `before` is ink and enters the other where
    `after` is, shifted along the line by d (a slanted stroke); at a fraction f of the way across,
    it is `before` moved by f * d, and `after` moved back by (1 - f) * d. Every shift up to ~45
    degrees is tried: a straight stroke gets its own pixels back, and no more."""
    lo, hi, s, e = line.lo + off, line.hi + off, line.start, line.end
    if lo - CROSS_DEPTH < 0 or hi + CROSS_DEPTH >= strokes.shape[0]:
        return  # a line at the image's edge: nothing beyond it to cross to
    before = np.asarray(strokes[lo - CROSS_DEPTH : lo, s:e].all(axis=0))
    after = np.asarray(strokes[hi + 1 : hi + 1 + CROSS_DEPTH, s:e].all(axis=0))
    rows = hi - lo + 1
    reach = rows + 2  # how far along the line a stroke may move while crossing it (~45 degrees)
    core = range(line.core + off, line.core + off + line.thickness)
    for i in range(rows):
        f = (i + 1) / (rows + 1)
        stroke = np.zeros_like(before)
        for d in range(-reach, reach + 1):
            stroke |= _shift(before, round(f * d)) & _shift(after, -round((1 - f) * d))
        if lo + i not in core:  # the blurred edge: a stroke beside it owns what touches it
            stroke |= ndimage.binary_dilation(before if lo + i < core.start else after, np.ones(3, bool))
        kept[lo + i, s:e] |= stroke & inked[lo + i, s:e]


def drop_stubs(hand: np.ndarray, near_lines: np.ndarray) -> np.ndarray:
    """Pieces of `hand` touching `near_lines` with hardly any ink away from them (fewer than
    STUB_PX pixels, or STUB_SHARE of the piece): what is left of a line, not handwriting (a
    digit's tail cut off by a line reaches away from it)."""
    labels, n = ndimage.label(hand, EIGHT)
    if n == 0:
        return np.zeros_like(hand)
    touching = np.bincount(labels[near_lines & hand], minlength=n + 1) > 0
    away = np.bincount(labels[~near_lines & hand], minlength=n + 1)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    stub = touching & ((away < STUB_PX) | (away < STUB_SHARE * area))
    stub[0] = False
    return stub[labels]


def remove_rulings(gray: np.ndarray, rulings: Rulings | None = None) -> Cleaned:
    """Remove the printed lines from a grey image (uint8 0-255 or float 0-1, dark ink on light
    paper), keeping handwriting that crosses them. `rulings` defaults to `find_rulings(gray)`."""
    rulings = rulings if rulings is not None else find_rulings(gray)
    ink, mask = rulings.ink, rulings.mask
    other = ink & ~mask
    width = stroke_width(other)
    lines = list(rulings.lines)
    restored = crossings(lines, other, ink) & mask
    band = line_pixels(lines, ink, grow=1)
    hand = other | restored
    near = ndimage.binary_dilation(mask, EIGHT, iterations=STUB_REACH)
    dropped = drop_stubs(hand, near)
    hand &= ~dropped
    labels, n = ndimage.label(hand, EIGHT)
    hand &= (np.bincount(labels.ravel(), minlength=n + 1) >= SPECK_PX)[labels]  # noise, not handwriting
    erase = (band | ndimage.binary_dilation(mask | dropped, EIGHT)) & ~hand
    image = as_float(gray).copy()
    image[erase] = rulings.paper[erase]
    return Cleaned(
        image=np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8),
        hand=hand,
        restored=restored,
        dropped=dropped,
        rulings=rulings,
        stroke_width=width,
    )
