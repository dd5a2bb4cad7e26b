"""Printed lines on forms (rulings, box frames, underlines, table borders): find them.

Handwriting on a form rarely sits on blank paper: a number is written on a ruled line, a digit in
a printed box. Form readers remove the printed structure first; this module finds it, and
`digitrec.reading.forms.unrule` removes it while keeping the handwriting that crosses it.

How a printed line is told from a pen stroke (everything in pixels of the image handed in, dark
ink on light paper; the geometry is in `digitrec.reading.forms.lines` and `digitrec.reading.forms.frames`):

- it is straight: the page's skew (up to 3.5 degrees) is measured once, from the rows in which
  horizontal ink lines up best, and the mask is sheared so that every line of the page runs along
  one pixel row (or column) over its whole length; where nothing else touches it, a line's ink is
  centred on one row, while the tops of digits curve across the rows;
- it is long: a horizontal line is at least `LINE_SPAN` of the image's width or `LONG_DIGITS`
  digit heights long (the digit height is measured on the ink shaped like handwriting), or it is
  a row of box edges each `BOX_DIGITS` digit heights long; dashes and dots a few pixels apart are
  bridged first, so dashed and dotted lines count whole;
- it is thin: a few pixels across;
- a vertical line is a box's side: a thin column of ink spanning the whole height between two
  horizontal lines, on the row's regular lattice of sides (a "1" or the stem of a 9 spanning its
  box is not); or it is `LONG_DIGITS` digit heights long (a table's border).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digitrec.reading.forms.frames import framed_lines
from digitrec.reading.forms.lines import Ruling, long_lines, measure_skew, shear

EIGHT = np.ones((3, 3), bool)
MIN_LINE_PX = 20  # nothing shorter is a printed line
LINE_SPAN = 0.4  # a horizontal line spans this fraction of the image's width ...
LONG_DIGITS = 2.5  # ... or this many digit heights, whichever is shorter (a page's short rulings)
BOX_DIGITS = 0.6  # separate boxes' edges on one row: each piece this many digit heights long
BACKGROUND_PX = 41  # clear ink is first found by a closing wider than any pen stroke ...
ROUGH_SHARE = 0.3  # ... as this share of the ink's typical darkness; the paper is then the mean
PAPER_PX = 21  # brightness of the other pixels over this window
MIN_DARKNESS = 0.08  # ink is darker than the paper by at least this much (0-1, relative to the paper), ...
NOISE_SIGMAS = 6.0  # ... this many noise standard deviations, ...
INK_SHARE = 0.25  # ... and this share of the ink's typical darkness (90th percentile); print may be
FAINT_SHARE = 0.12  # fainter (thin grey or coloured lines, blurred dots), after averaging its darkness
FAINT_ALONG = 5  # over this many pixels along the line
EDGE_PX = 3  # a line this close to the image's edge runs out of it


@dataclass(frozen=True)
class Rulings:
    """What `find_rulings` saw in an image."""

    lines: tuple[Ruling, ...]
    mask: np.ndarray  # bool (H, W): ink pixels of printed lines (crossing handwriting included)
    ink: np.ndarray  # bool (H, W): all ink
    paper: np.ndarray  # float (H, W) 0-1: the paper's brightness (to paint removed lines with)
    slope: float  # dy/dx of the page's horizontal lines
    digit_height: float | None  # typical height of the handwriting, when any was measurable

    @property
    def horizontal(self) -> list[Ruling]:
        return sorted((r for r in self.lines if r.orientation == "horizontal"), key=lambda r: r.position)

    @property
    def vertical(self) -> list[Ruling]:
        return sorted((r for r in self.lines if r.orientation == "vertical"), key=lambda r: r.position)


# --- ink --------------------------------------------------------------------------------------------


def as_float(gray: np.ndarray) -> np.ndarray:
    """uint8 0-255 or float 0-1 grey -> float32 0-1."""
    g = np.asarray(gray)
    if g.ndim != 2:
        raise ValueError(f"need a 2-D grey image, got shape {g.shape}")
    return g.astype(np.float32) / 255 if g.dtype == np.uint8 else g.astype(np.float32)


@dataclass(frozen=True)
class InkMaps:
    """What `find_ink` finds."""

    ink: np.ndarray  # bool (H, W): the ink
    faint_rows: np.ndarray  # bool (H, W): fainter ink that lines up along the rows ...
    faint_cols: np.ndarray  # ... and along the columns (where print is looked for)
    paper: np.ndarray  # float (H, W) 0-1: the paper's brightness


def _threshold(darkness: np.ndarray, share: float, level: float | None = None) -> tuple[float, float]:
    """(threshold, ink level): above the paper's noise and MIN_DARKNESS, and `share` of the ink's
    typical darkness (its 90th percentile unless given)."""
    median = float(np.median(darkness))
    floor = max(MIN_DARKNESS, median + NOISE_SIGMAS * 1.4826 * float(np.median(np.abs(darkness - median))))
    if level is None:
        strong = darkness[darkness > floor]
        level = float(np.percentile(strong, 90)) if strong.size else 1.0
    return max(floor, share * level), level


def paper_level(g: np.ndarray) -> np.ndarray:
    """The paper's brightness under the ink (float 0-1 image in, same shape out).

    A grey closing wider than any stroke removes the ink, but on a steep light gradient it reads
    the brighter paper up to half its width away. So it only finds the clear ink; the paper is
    then the mean of the other pixels over a smaller window, which follows the gradient."""
    size = min(BACKGROUND_PX, 2 * (min(g.shape) // 2) + 1)
    closed = ndimage.grey_closing(g, size=(size, size))
    rough = (closed - g) / np.maximum(closed, 0.05)
    clear, _ = _threshold(rough, ROUGH_SHARE)
    paper = ~ndimage.binary_dilation(rough > clear, EIGHT, iterations=2)
    weight = ndimage.uniform_filter(paper.astype(np.float32), PAPER_PX)
    mean = ndimage.uniform_filter(np.where(paper, g, 0).astype(np.float32), PAPER_PX)
    return np.where(weight > 0.05, mean / np.maximum(weight, 1e-6), closed).astype(np.float32)


def find_ink(gray: np.ndarray) -> InkMaps:
    """Grey image (dark ink on light paper) -> ink masks and the paper's brightness.

    Ink is what is darker than the paper around it (`paper_level`: uneven light and shadows stay
    in the paper); the threshold follows the ink's contrast. Print is looked for in fainter masks:
    thin grey or coloured lines and dots that blur pales. A line is long, so the darkness is first
    averaged over FAINT_ALONG pixels along the rows (or columns): the noise drops, the line does not.
    """
    g = as_float(gray)
    paper = paper_level(g)
    darkness = np.clip((paper - g) / np.maximum(paper, 0.05), 0, 1)
    threshold, level = _threshold(darkness, INK_SHARE)
    faint = []
    for axis in (1, 0):
        along = ndimage.uniform_filter1d(darkness, FAINT_ALONG, axis=axis)
        cut = _threshold(along, FAINT_SHARE, level)[0]
        faint.append((along > cut) & (darkness > cut / 2))  # and dark itself: a line across is not widened
    return InkMaps(ink=darkness > threshold, faint_rows=faint[0], faint_cols=faint[1], paper=paper)


def digit_height(mask: np.ndarray) -> float | None:
    """Median height of the pieces of ink shaped like handwriting: not specks, not thin slivers
    (a "1" or a frame line), not far wider than tall (a ruling with what touches it)."""
    labels, n = ndimage.label(mask, EIGHT)
    if n == 0:
        return None
    boxes = ndimage.find_objects(labels)
    heights = np.array([b[0].stop - b[0].start for b in boxes])
    widths = np.array([b[1].stop - b[1].start for b in boxes])
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = (areas >= 30) & (heights >= 10) & (4 * widths >= heights) & (widths <= 6 * heights)
    return float(np.median(heights[keep])) if keep.any() else None


# --- the whole page ----------------------------------------------------------------------------------


def line_pixels(lines: list[Ruling], ink: np.ndarray, grow: int = 0) -> np.ndarray:
    """The ink pixels of the lines in image coordinates (`grow` > 0: their whole bands, ink or
    not, widened by `grow` pixels on each side). The lines of one orientation share one slope."""
    out = np.zeros(ink.shape, bool)
    for vertical in (False, True):
        group = [r for r in lines if (r.orientation == "vertical") == vertical]
        if not group:
            continue
        image = ink.T if vertical else ink
        geometry = shear(image.shape, group[0].slope)
        band = np.zeros((geometry.height, image.shape[1]), bool)
        for line in group:
            lo, hi = max(0, line.lo + geometry.off - grow), line.hi + geometry.off + grow + 1
            band[lo:hi, max(0, line.start - grow) : line.end + grow] = True
        if not grow:
            band &= geometry.forward(image)
        pixels = geometry.back(band)
        out |= pixels.T if vertical else pixels
    return out


def _overlaps(line: Ruling, others: list[Ruling]) -> bool:
    return any(o.lo <= line.hi and line.lo <= o.hi and o.start < line.end and line.start < o.end for o in others)


def find_rulings(gray: np.ndarray) -> Rulings:
    """Find the printed horizontal and vertical lines in a grey image (uint8 0-255 or float 0-1,
    dark ink on light paper)."""
    maps = find_ink(gray)
    ink, across, down = maps.ink, maps.faint_rows, maps.faint_cols
    w = ink.shape[1]
    slope = measure_skew(across)
    height = digit_height(ink)
    min_len = max(MIN_LINE_PX, min(LINE_SPAN * w, LONG_DIGITS * height) if height else LINE_SPAN * w)
    min_piece = BOX_DIGITS * height if height else min_len
    rows = shear(ink.shape, slope)
    horizontal = long_lines(rows.forward(across), min_len, rows.off, slope, "horizontal", min_piece)
    cols = shear(ink.T.shape, -slope)
    sheared_t = cols.forward(down.T)
    vertical = framed_lines(sheared_t, cols.off, -slope, sorted(horizontal, key=lambda r: r.at(w / 2)))
    mask = line_pixels(horizontal, across) | line_pixels(vertical, down)
    rest_height = digit_height(ink & ~mask)
    if rest_height:
        long_v = max(MIN_LINE_PX, LONG_DIGITS * rest_height)
        found = long_lines(sheared_t, long_v, cols.off, -slope, "vertical", min_piece=long_v)
    else:
        # Nothing shaped like handwriting to measure a line against (a blank field, or one thin
        # "1"): a vertical line is print when it is long against the image and runs out of it
        # (a table's border crossing a field; a "1" is written inside the field).
        long_v = max(MIN_LINE_PX, LINE_SPAN * ink.shape[0])
        found = long_lines(sheared_t, long_v, cols.off, -slope, "vertical", min_piece=long_v)
        found = [v for v in found if v.start <= EDGE_PX or v.end >= ink.shape[0] - EDGE_PX]
    extra = [v for v in found if not _overlaps(v, vertical)]
    mask |= line_pixels(extra, down)
    vertical += extra
    return Rulings(
        lines=tuple(horizontal + vertical),
        mask=mask,
        ink=ink | mask,
        paper=maps.paper,
        slope=slope,
        digit_height=height,
    )
