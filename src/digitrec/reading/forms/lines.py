"""Straight printed lines in an ink mask: the page's skew, and long thin straight rows of ink.

`digitrec.reading.forms.rulings` runs the whole search; this module holds the geometry it works in. The
mask is sheared by the page's skew so that every line of the page runs along one pixel row (or,
transposed, column) over its whole length; then a line is a band of a few rows whose bridged runs
are long, straight (centred on one row where nothing else touches them) and thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import numpy as np
from scipy import ndimage

MAX_SKEW = 3.5  # degrees searched either way
SKEW_STEPS = (0.25, 0.05)  # degrees: a coarse search, then a fine one around its best
SKEW_SAMPLE = 30_000  # pixels used to measure the skew
MIN_LINE_PX = 20  # nothing shorter is a printed line
MAX_THICKNESS = 7  # printed lines are 1-3 px, up to ~5 once blurred; thicker is a pen stroke
GAP_PX = 10  # dashes and dots this close are one line
RUN_PX = 8  # shorter runs (once gaps are bridged) are not line evidence
CORE = 0.7  # rows of a line hold this share of its longest row's ink
FRINGE = 0.25  # rows beside a line holding this fraction of its length are its blurred edge
SEGMENT_SHARE = 0.25  # a piece on a line's row this much shorter than its longest piece is not print
SOLID = 0.9  # a box's edge is inked in this share of its columns
STRAIGHT = 0.85  # a line's ink is centred on one row (+-1) in this share of its columns ...
CLEAR = 0.3  # ... judged where no other ink touches it: at least this share of its columns


@dataclass(frozen=True)
class Ruling:
    """One straight printed line.

    For a horizontal line, `position` is its centre's y at x = 0 and it runs y = position + slope * x
    from x = start to end (exclusive); `lo` and `hi` are its first and last pixel row at x = 0, its
    blurred edge included, shifted along the line by round(slope * x); its `thickness` core rows
    (the print itself, not its blurred edge) start at row `core`. A vertical line is the same
    with x and y exchanged (x = position + slope * y). `coverage` is the share of the extent inked:
    1 for a solid line, less for dashes and dots. `framed`: a vertical line found as a box's side,
    spanning the height between two horizontal lines.
    """

    orientation: str  # "horizontal" or "vertical"
    position: float
    slope: float
    thickness: int
    lo: int
    hi: int
    core: int
    start: int
    end: int
    coverage: float
    framed: bool = False

    @overload
    def at(self, t: float) -> float: ...

    @overload
    def at(self, t: np.ndarray) -> np.ndarray: ...

    def at(self, t):
        """The line's centre across it (y for horizontal, x for vertical) at `t` along it."""
        return self.position + self.slope * t

    @property
    def length(self) -> int:
        return self.end - self.start


# --- geometry: skew and shear ---------------------------------------------------------------------


@dataclass(frozen=True)
class Shear:
    """Moves each column of an (H, W) image up or down by round(slope * x) so that a line
    y = c + slope * x lies in one row: row r of the sheared image holds y = r - off + shift(x)."""

    rows: np.ndarray  # (H, W) int: the sheared row of each pixel
    height: int  # rows of the sheared image
    off: int

    def forward(self, image: np.ndarray) -> np.ndarray:
        out = np.zeros((self.height, image.shape[1]), image.dtype)
        out[self.rows, np.arange(image.shape[1])[None, :]] = image
        return out

    def back(self, sheared: np.ndarray) -> np.ndarray:
        return sheared[self.rows, np.arange(sheared.shape[1])[None, :]]


def shear(shape: tuple[int, int], slope: float) -> Shear:
    """The shear that lays lines of this slope along the rows of an image of this shape."""
    h, w = shape
    shift = np.round(np.arange(w) * slope).astype(np.int64)
    off = int(shift.max())
    rows = np.arange(h)[:, None] - shift[None, :] + off
    return Shear(rows=rows, height=h + off - int(shift.min()), off=off)


def runs_along(mask: np.ndarray, gap: int = GAP_PX, length: int = RUN_PX) -> np.ndarray:
    """Pixels of runs along each row at least `length` long once gaps up to `gap` are bridged
    (the bridge itself included: a dashed line becomes one run)."""
    if mask.shape[1] == 0:
        return mask.copy()
    padded = np.pad(mask, ((0, 0), (gap, gap)), mode="edge")
    closed = ndimage.binary_closing(padded, structure=np.ones((1, gap + 1), bool))
    opened = ndimage.binary_opening(closed, structure=np.ones((1, length), bool))
    return opened[:, gap:-gap]


def measure_skew(mask: np.ndarray) -> float:
    """The slope (dy/dx) at which horizontal runs of ink line up best in rows: the projection
    profile of the sheared runs has its highest peak. (The peak, not the profile's spread: a
    faint dotted line has few pixels next to the handwriting above it.)"""
    ys, xs = np.nonzero(runs_along(mask))
    if ys.size < MIN_LINE_PX:
        return 0.0
    step = max(1, ys.size // SKEW_SAMPLE)
    ys, xs = ys[::step], xs[::step]
    best = 0.0
    for i, grain in enumerate(SKEW_STEPS):
        reach = MAX_SKEW if i == 0 else SKEW_STEPS[i - 1]
        angles = best + np.arange(-reach, reach + grain / 2, grain)
        slopes = np.tan(np.radians(angles))
        rows = ys[None, :] - np.round(xs[None, :] * slopes[:, None]).astype(np.int64)
        rows -= rows.min()
        span = int(rows.max()) + 1
        flat = (rows + np.arange(len(slopes))[:, None] * span).ravel()
        profile = np.bincount(flat, minlength=len(slopes) * span).reshape(len(slopes), span)
        best = float(angles[int(np.argmax(_peakedness(profile, coarse=i == 0)))])
    return float(np.tan(np.radians(best)))


def _peakedness(profile: np.ndarray, coarse: bool) -> np.ndarray:
    """How well each angle's row profile (one row per angle) gathers a line into few rows.
    Coarse: the highest pair of rows (a line split over two rows by a coarse angle counts whole).
    Fine: the sum of squares of the rows around the peak; a thick line fills its rows at many
    angles, but is spread over the fewest rows at the right one."""
    if coarse:
        return (profile[:, :-1] + profile[:, 1:]).max(axis=1)
    padded = np.pad(profile, ((0, 0), (MAX_THICKNESS, MAX_THICKNESS))).astype(np.float64)
    window = np.argmax(profile, axis=1)[:, None] + np.arange(2 * MAX_THICKNESS + 1)[None, :]
    return (np.take_along_axis(padded, window, axis=1) ** 2).sum(axis=1)


def spans(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a 1-D array, end exclusive."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


# --- finding lines in a sheared mask ---------------------------------------------------------------


def straightness(band: np.ndarray, judged: np.ndarray) -> float:
    """Share of the judged columns of a piece (band: its rows x columns of ink) whose ink is
    centred within a row of the piece's median centre, counted in pixels. A printed line, even
    one stepping between two rows of the shear, keeps its centre; the tops of digits curve."""
    if not judged.any():
        return 0.0
    count = band.sum(axis=0)[judged]
    centre = (band * np.arange(band.shape[0])[:, None]).sum(axis=0)[judged] / count
    on_line = np.abs(centre - np.median(centre)) <= 1.0
    return float(count[on_line].sum() / count.sum())


def line_pieces(
    pieces: list[tuple[int, int]], band: np.ndarray, core: slice, clear: np.ndarray, min_len: float, min_piece: float
) -> list[tuple[int, int]]:
    """The pieces of one row that are print (band: the row's ink, rows x columns; core: its core
    rows; clear: columns with no ink just above or below the band).

    Either one piece at least `min_len` long (with the pieces beside it not much shorter, or
    box-like: solid and `min_piece` long), or a row of box-like pieces adding up to `min_len`
    (the edges of separate boxes, some bridged together). Print is straight where it is clear of other ink, and mostly clear
    of it: the tops of digits written at one height run into the digits' bodies and curve, even
    when bridged into one long piece across their boxes' sides.
    """
    inked = np.asarray(band[core].any(axis=0))
    judged = inked & clear

    def straight(s: int, e: int) -> bool:
        use = judged[s:e] if judged[s:e].sum() >= CLEAR * inked[s:e].sum() else inked[s:e]
        return straightness(band[:, s:e], use) >= STRAIGHT

    def mostly_clear(chosen: list[tuple[int, int]]) -> bool:
        return sum(judged[s:e].sum() for s, e in chosen) >= CLEAR * sum(inked[s:e].sum() for s, e in chosen)

    pieces = [(s, e) for s, e in pieces if e - s >= 2 * RUN_PX and straight(s, e)]
    longest = max((e - s for s, e in pieces), default=0)
    boxlike = [(s, e) for s, e in pieces if e - s >= min_piece and band[:, s:e].any(axis=0).mean() >= SOLID]
    if longest >= min_len:
        chosen = [(s, e) for s, e in pieces if e - s >= SEGMENT_SHARE * longest or (s, e) in boxlike]
        return chosen if mostly_clear(chosen) else []
    if len(boxlike) >= 2 and sum(e - s for s, e in boxlike) >= min_len and mostly_clear(boxlike):
        return boxlike
    return []


def band_rows(profile: np.ndarray) -> tuple[int, int, int, int]:
    """(first row, last row, first core row, thickness) of the line at the profile's peak: the
    rows next to it holding CORE of its length, and one row of blurred edge on each side.
    Handwriting sitting on the line adds rows with less (its strokes are short and cross the row)."""
    peak = int(np.argmax(profile))
    lo = hi = peak
    while lo > 0 and profile[lo - 1] >= CORE * profile[peak]:
        lo -= 1
    while hi + 1 < len(profile) and profile[hi + 1] >= CORE * profile[peak]:
        hi += 1
    core, thickness = lo, hi - lo + 1
    if lo > 0 and profile[lo - 1] >= FRINGE * profile[peak]:
        lo -= 1
    if hi + 1 < len(profile) and profile[hi + 1] >= FRINGE * profile[peak]:
        hi += 1
    return lo, hi, core, thickness


def long_lines(
    sheared: np.ndarray, min_len: float, off: int, slope: float, orientation: str, min_piece: float = 0.0
) -> list[Ruling]:
    """Lines along the rows of a sheared ink mask: rows whose bridged runs add up to `min_len`
    in pieces `line_pieces` accepts."""
    runs = runs_along(sheared)
    profile = runs.sum(axis=1)
    near = runs.copy()
    near[1:] |= runs[:-1]
    near[:-1] |= runs[1:]
    candidate = near.sum(axis=1) >= min_len
    found = []
    for a, b in spans(candidate):
        for lo, hi, core, thickness in bands(profile[a:b], candidate[a:b]):
            lo, hi, core = a + lo, a + hi, a + core
            if thickness > MAX_THICKNESS:
                continue
            band = sheared[lo : hi + 1]
            core_rows = slice(core - lo, core - lo + thickness)
            clear = ~np.asarray(sheared[max(0, lo - 2) : lo].any(axis=0) | sheared[hi + 1 : hi + 3].any(axis=0))
            weights = profile[lo : hi + 1].astype(np.float64) + 1e-9
            centre = lo + float(np.average(np.arange(hi - lo + 1), weights=weights))
            pieces = line_pieces(
                spans(np.asarray(runs[lo : hi + 1].any(axis=0))), band, core_rows, clear, min_len, min_piece
            )
            for s, e in pieces:
                found.append(
                    Ruling(
                        orientation=orientation,
                        position=centre - off,
                        slope=slope,
                        thickness=thickness,
                        lo=lo - off,
                        hi=hi - off,
                        core=core - off,
                        start=s,
                        end=e,
                        coverage=float(band[:, s:e].any(axis=0).mean()),
                    )
                )
    return found


def bands(profile: np.ndarray, candidate: np.ndarray) -> list[tuple[int, int, int, int]]:
    """`band_rows` of each line in a run of candidate rows, strongest first: a run can hold two
    lines (the top and bottom of a box when the boxes' sides fill every row in between)."""
    out = []
    left = candidate.copy()
    while left.any():
        lo, hi, core, thickness = band_rows(np.where(left, profile, 0))
        out.append((lo, hi, core, thickness))
        left[max(0, lo - 1) : hi + 2] = False
    return out
