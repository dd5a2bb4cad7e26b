"""Remove printed lines from a form image and keep the handwriting that crosses them.

`remove_rulings` takes what `digitrec.reading.forms.rulings.find_rulings` found and:

1. takes the line pixels out of the ink, except where a pen stroke crosses the line: the stroke's
   ink continues on both sides of the line (`CROSS_DEPTH` pixels deep), so the line pixels
   between its two ends are the stroke's (a 7 crossing its box's bottom edge keeps its foot). The
   stroke may cross at a slant: row by row across the line, the kept pixels move from where the
   stroke leaves one side to where it enters the other. On the line's blurred edge, what touches
   a stroke beside the line is the stroke's (a digit resting on a ruling keeps its foot). A
   stroke running along a line, on top of it (a 9's stem on its box's side), is found by its
   darkness: print and ink both absorb light, so where a pen went over the print the line is
   darker than the print alone anywhere else (`along_lines`; print as dark as the pen hides it);
2. drops what is left of a line that is not handwriting: pieces of ink touching a removed line
   with hardly any ink away from it (a blurred edge, the overshoot of a frame's corner, the end
   of a dash). A printed line must never come back as a "1" or a "-". Specks of noise (a few
   pixels) are not handwriting either;
3. paints the removed lines, their blurred edges included, with the paper's own brightness, so
   a reader that thresholds the image differently does not find them again.
"""

from __future__ import annotations

from collections.abc import Callable
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
# A pen over a line darkens it: a stretch of a line whose darkest pixel across it lets through at
# most ALONG_RATIO of the light the print alone lets through (the line's ALONG_PRINT_PERCENTILE-th
# percentile, relative to the paper), darker by at least ALONG_STEP of the paper's brightness and
# ALONG_SPREAD times the noise of the print's tone, for ALONG_RUN pixels or more, is a stroke on
# the line. (Chosen on comb and ruled fields of validation digits: benchmarks/forms.py --split val.)
ALONG_RATIO = 0.7
ALONG_STEP = 0.08
ALONG_SPREAD = 4.0
ALONG_RUN = 3
ALONG_GAP = 3  # pixels: a stroke paler along this stretch is still one stroke
ALONG_PRINT_PERCENTILE = 90
ALONG_MIN_PX = 12  # a line inked over fewer pixels than this has no measurable print level
ALONG_COVERAGE = 0.9  # nor has a dashed or dotted line: its dashes' ends are paler than their middles


@dataclass(frozen=True)
class Cleaned:
    """A form image with its printed lines removed."""

    image: np.ndarray  # uint8 (H, W): the input with the lines painted over with paper
    hand: np.ndarray  # bool (H, W): the handwriting's ink (noise specks left out)
    restored: np.ndarray  # bool (H, W): line pixels given back to strokes crossing the lines or lying along them
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


def _marked(lines: list[Ruling], images: tuple[np.ndarray, ...], mark: Callable[..., None]) -> np.ndarray:
    """The pixels `mark(line, off, *sheared images, kept)` marks in `kept` for each line, with the
    lines of each orientation laid along rows (vertical ones transposed, all sheared by their
    shared slope), back in image coordinates."""
    out = np.zeros(images[0].shape, bool)
    for vertical in (False, True):
        group = [r for r in lines if (r.orientation == "vertical") == vertical]
        if not group:
            continue
        laid = [image.T if vertical else image for image in images]
        geometry = shear(laid[0].shape, group[0].slope)
        sheared = [geometry.forward(image) for image in laid]
        kept = np.zeros((geometry.height, laid[0].shape[1]), bool)
        for line in group:
            mark(line, geometry.off, *sheared, kept)
        back = geometry.back(kept)
        out |= back.T if vertical else back
    return out


def crossings(lines: list[Ruling], other: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """The lines' ink pixels that belong to pen strokes crossing them. `other` is the ink that
    is not print (the strokes on either side). The lines of one orientation share one slope."""
    return _marked(lines, (other, ink), _cross_one)


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


def along_lines(lines: list[Ruling], tone: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """The lines' ink pixels under pen strokes running along them (on top of the print, where
    `crossings` finds no stroke leaving on either side): the stretches of a line darker than its
    print (see ALONG_RATIO). `tone` is the image relative to the paper's brightness (1 paper, 0
    black), so that uneven light does not make a stretch of print look darker."""
    return _marked(lines, (tone, ink), _along_one)


def _along_one(line: Ruling, off: int, toned: np.ndarray, inked: np.ndarray, kept: np.ndarray) -> None:
    """Mark (in `kept`, sheared space) the line's pixels a pen went over along it."""
    s, e = line.start, line.end
    band = slice(line.lo + off, line.hi + off + 1)  # blurred edge included
    on = inked[band, s:e].any(axis=0)
    if on.sum() < ALONG_MIN_PX or line.coverage < ALONG_COVERAGE:
        return
    darkest = np.where(inked[band, s:e], toned[band, s:e], np.inf).min(axis=0)  # per pixel along
    # The print's own tone: most of the line (a stroke may cover most of a short box side).
    # Its noise from the same part: for normal noise, the 90th and 75th percentiles lie 0.61 sd apart.
    level, quartile = (float(v) for v in np.percentile(darkest[on], [ALONG_PRINT_PERCENTILE, 75]))
    spread = (level - quartile) / 0.61
    threshold = min(ALONG_RATIO * level, level - max(ALONG_STEP, ALONG_SPREAD * spread))
    dark = on & (darkest <= threshold)
    # runs, not single noisy pixels; a stroke paler for a pixel or two stays one stroke
    dark = ndimage.binary_opening(ndimage.binary_closing(dark, np.ones(ALONG_GAP + 1, bool)), np.ones(ALONG_RUN, bool))
    # the pen's own pixels there, not the print beside them across the line
    kept[band, s:e] |= dark[None, :] & inked[band, s:e] & (toned[band, s:e] <= threshold)


def drop_stubs(hand: np.ndarray, near_lines: np.ndarray, on_lines: np.ndarray | None = None) -> np.ndarray:
    """Pieces of `hand` touching `near_lines` with hardly any ink away from them (fewer than
    STUB_PX pixels, or STUB_SHARE of the piece): what is left of a line, not handwriting (a
    digit's tail cut off by a line reaches away from it). `on_lines`: pixels given back to strokes
    along the lines, not counted in a piece's size (a 1 half on its box's side stays a 1)."""
    labels, n = ndimage.label(hand, EIGHT)
    if n == 0:
        return np.zeros_like(hand)
    touching = np.bincount(labels[near_lines & hand], minlength=n + 1) > 0
    away = np.bincount(labels[~near_lines & hand], minlength=n + 1)
    counted = labels if on_lines is None else labels[~on_lines]
    area = np.bincount(counted.ravel(), minlength=n + 1)
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
    along = along_lines(lines, as_float(gray) / np.maximum(rulings.paper, 1e-3), ink) & mask
    restored = (crossings(lines, other, ink) & mask) | along
    band = line_pixels(lines, ink, grow=1)
    hand = other | restored
    near = ndimage.binary_dilation(mask, EIGHT, iterations=STUB_REACH)
    dropped = drop_stubs(hand, near, along)
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
