"""Comb fields: a row of printed boxes on a form, one digit per box.

`split_comb` finds the boxes (printed sides at regular spacing between two horizontal lines, or
a row of separate rectangles), removes the print (`digitrec.reading.forms.unrule`), and gives each box,
left to right: its interior, whether it is empty, and a crop of the digit written in it. A digit
written over its box's edge keeps the ink beyond the edge: a digit is whole pieces of ink, taken
where most of each piece lies (the crossing itself is given back by the remover, so a 7's foot
below the bottom line is part of the 7); two digits touching across a side are cut at the side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digitrec.reading.decode import MIN_SIDE
from digitrec.reading.forms.frames import frame_pairs
from digitrec.reading.forms.lines import Ruling
from digitrec.reading.forms.rulings import EIGHT, Rulings
from digitrec.reading.forms.unrule import Cleaned, remove_rulings

Box = tuple[int, int, int, int]  # x0, y0, x1, y1; x1 and y1 exclusive

SAME_ROW_PX = 3  # separate boxes' top (bottom) edges this close are one row of boxes
SIDE_SPAN = 0.8  # a side covers this share of the height between the row's lines
COVERED = 0.9  # a box's top and bottom lines cover this share of its width
REGULAR_MIN, REGULAR_MAX = 0.5, 1.6  # narrower than this share of the median box is no box; wider hides a side
SPECK_PX = 12  # pieces of ink smaller than this (and than SPECK_STROKES stroke widths squared) are specks
SPECK_STROKES = 2.0
FRAGMENT_SHARE = 0.3  # a box's ink this much smaller than its neighbour's, ending at their shared side
REACH_PX = 4  # (within this many pixels of the interior's edge), is the neighbour's digit spilling over
SPILL_REACH = 0.4  # ... when it stays within this share of the box's width of that edge
EDGE_REACH_PX = 2  # the ink around a box's edges: its lines' width and this many pixels either side
CROP_MARGIN = 0.2  # paper around a digit's crop, a share of the digit's size


@dataclass(frozen=True)
class CombBox:
    """One box of a comb field."""

    index: int  # 0 = leftmost
    interior: Box  # inside the printed lines
    empty: bool
    ink_box: Box | None  # the digit's ink, which may reach beyond the interior
    crop: np.ndarray | None  # uint8 grey: the digit alone on paper (dark on light), `ink_box` with a margin
    ink_pixels: int
    edge_ink: int = 0  # ink pixels on and around the box's printed edges beyond what print leaves there


@dataclass(frozen=True)
class Comb:
    """The boxes of a comb field, left to right, and the field with its print removed."""

    boxes: tuple[CombBox, ...]
    cleaned: Cleaned

    @property
    def filled(self) -> list[CombBox]:
        return [b for b in self.boxes if not b.empty]


# --- finding the boxes ---------------------------------------------------------------------------------


def _covers(lines: list[Ruling], x0: float, x1: float) -> bool:
    covered = sum(max(0.0, min(x1, r.end) - max(x0, r.start)) for r in lines)
    return covered >= COVERED * (x1 - x0)


def rows_of_boxes(rulings: Rulings) -> list[tuple[list[Ruling], list[Ruling], list[Ruling]]]:
    """(top pieces, bottom pieces, sides) of each row of boxes, top to bottom."""
    rows: list[tuple[list[Ruling], list[Ruling], list[Ruling]]] = []
    for top, bottom in frame_pairs(rulings.horizontal):
        row = next(
            (
                r
                for r in rows
                if abs(r[0][0].position - top.position) <= SAME_ROW_PX
                and abs(r[1][0].position - bottom.position) <= SAME_ROW_PX
            ),
            None,
        )
        if row is None:
            rows.append(([top], [bottom], []))
            continue
        row[0].extend([top] if top not in row[0] else [])
        row[1].extend([bottom] if bottom not in row[1] else [])
    for tops, bottoms, sides in rows:
        for side in rulings.vertical:
            y_top, y_bottom = tops[0].at(side.position), bottoms[0].at(side.position)
            x = side.at((y_top + y_bottom) / 2)
            reach = min(side.end, y_bottom) - max(side.start, y_top)
            if reach >= SIDE_SPAN * (y_bottom - y_top) and any(r.start - 3 <= x <= r.end + 3 for r in tops):
                sides.append(side)
        sides.sort(key=lambda s: s.position)
    return sorted(rows, key=lambda row: row[0][0].position)


def _interior(left: Ruling, right: Ruling, top: Ruling, bottom: Ruling, xl: float, xr: float) -> Box:
    """The pixels inside four lines: below the top line's lowest row over the box, and so on."""
    y0 = max(top.hi + round(top.slope * x) for x in (xl, xr)) + 1
    y1 = min(bottom.lo + round(bottom.slope * x) for x in (xl, xr))
    x0 = max(left.hi + round(left.slope * y) for y in (y0, y1)) + 1
    x1 = min(right.lo + round(right.slope * y) for y in (y0, y1))
    return (int(x0), int(y0), int(x1), int(y1))


def _regular(pairs: list[tuple[Ruling, Ruling]], y: float) -> list[tuple[Ruling, Ruling]]:
    """Keep box-sized gaps between sides; a gap a whole number of boxes wide (a side hidden under
    a thick stroke) is cut into equal boxes."""
    if not pairs:
        return []
    widths = np.array([right.at(y) - left.at(y) for left, right in pairs])
    typical = float(np.median(widths[widths >= 0.5 * widths.max()]))  # not the gaps between separate boxes
    out: list[tuple[Ruling, Ruling]] = []
    for (left, right), width in zip(pairs, widths):
        if width < REGULAR_MIN * typical:
            continue
        parts = max(1, int(round(width / typical))) if width > REGULAR_MAX * typical else 1
        for k in range(parts):
            a = left if k == 0 else _shifted(left, k * width / parts)
            b = right if k == parts - 1 else _shifted(left, (k + 1) * width / parts)
            out.append((a, b))
    return out


def _shifted(side: Ruling, dx: float) -> Ruling:
    """An invisible side `dx` pixels right of `side`, as thin as a pixel."""
    centre = round(side.position + dx)
    return Ruling(
        orientation="vertical",
        position=float(centre),
        slope=side.slope,
        thickness=1,
        lo=centre,
        hi=centre,
        core=centre,
        start=side.start,
        end=side.end,
        coverage=0.0,
        framed=True,
    )


def find_boxes(rulings: Rulings) -> list[Box]:
    """The interiors of the boxes of the row with the most boxes, left to right (none when there
    is no row of boxes)."""
    best: list[Box] = []
    for tops, bottoms, sides in rows_of_boxes(rulings):
        y = (tops[0].at(sides[0].position) + bottoms[0].at(sides[0].position)) / 2 if sides else 0.0
        pairs = [
            (left, right)
            for left, right in zip(sides, sides[1:])
            if _covers(tops, left.at(y), right.at(y)) and _covers(bottoms, left.at(y), right.at(y))
        ]
        boxes = []
        for left, right in _regular(pairs, y):
            xl, xr = left.at(y), right.at(y)
            top = min(tops, key=lambda r: abs((r.start + r.end) / 2 - (xl + xr) / 2))
            bottom = min(bottoms, key=lambda r: abs((r.start + r.end) / 2 - (xl + xr) / 2))
            box = _interior(left, right, top, bottom, xl, xr)
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
        if len(boxes) > len(best):
            best = boxes
    return best


# --- what is written in them -----------------------------------------------------------------------------


def owners(hand: np.ndarray, boxes: list[Box], speck: float) -> np.ndarray:
    """Which box each pixel of handwriting belongs to (int image, -1: none).

    A piece of ink goes whole to the box holding most of its pixels (a digit over its box's edge
    keeps what spills out); a piece shared by two boxes' interiors (two digits touching across
    the side between them) is cut at the middle of that side. Specks and ink in no box go nowhere.
    """
    labels, n = ndimage.label(hand, EIGHT)
    where = np.zeros(labels.shape, np.int64)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        where[y0:y1, x0:x1] = i + 1
    counts = np.bincount((labels * (len(boxes) + 1) + where).ravel(), minlength=(n + 1) * (len(boxes) + 1))
    counts = counts.reshape(n + 1, len(boxes) + 1)[:, 1:]
    area = np.bincount(labels.ravel(), minlength=n + 1)
    ranked = np.sort(counts, axis=1)
    whole = np.where((ranked[:, -1] > 0) & (area >= speck), counts.argmax(axis=1), -1)
    shared = (ranked[:, -2] >= max(speck, 1) if len(boxes) > 1 else np.zeros(n + 1, bool)) & (area >= speck)
    whole[0], shared[0] = -1, False
    owner = whole[labels]
    for label in np.nonzero(shared)[0]:
        # Cut only between the boxes that share it: the tip of a stroke reaching past the next side
        # would otherwise make a sliver of a few pixels into a third box's "digit".
        sharing = np.nonzero(counts[label] >= max(speck, 1))[0]
        cuts = [(boxes[a][2] + boxes[b][0]) / 2 for a, b in zip(sharing, sharing[1:])]
        ys, xs = np.nonzero(labels == label)
        owner[ys, xs] = sharing[np.searchsorted(cuts, xs)]
    return owner


def _spills(owner: np.ndarray, boxes: list[Box]) -> None:
    """A box whose only ink is small, next to a box with a digit, touching their shared side and
    staying near it, holds that digit's spill-over when the digit reaches that side too: give it
    back (in place). A digit of its own (a thin 1, a 7 whose bar starts at the side) reaches on
    towards its box's middle, or its neighbour stops short of the side."""
    area = np.bincount(owner[owner >= 0].ravel(), minlength=len(boxes))
    for i in range(len(boxes)):
        if not area[i]:
            continue
        cols = np.nonzero((owner == i).any(axis=0))[0]
        x0, x1 = boxes[i][0], boxes[i][2]
        sides = ((i - 1, x0, cols.min(), cols.max() + 1 - x0), (i + 1, x1, cols.max() + 1, x1 - cols.min()))
        for j, edge, end, reach in sides:
            if not (0 <= j < len(boxes) and area[i] < FRAGMENT_SHARE * area[j] and abs(end - edge) <= REACH_PX):
                continue
            theirs = np.nonzero((owner == j).any(axis=0))[0]
            near = theirs.max() + 1 >= boxes[j][2] - REACH_PX if j < i else theirs.min() <= boxes[j][0] + REACH_PX
            if near and reach <= SPILL_REACH * (x1 - x0):
                owner[owner == i] = j
                area[j], area[i] = area[j] + area[i], 0
                break


def edge_ink(cleaned: Cleaned, boxes: list[Box], owner: np.ndarray) -> list[int]:
    """Per box, the ink on and around its printed edges that is no digit's (print, what was
    dropped as print, specks) beyond the comb's median: every box of a comb has the same print
    around it, so more ink there is handwriting lying on the print (a "1" written against a side,
    the arc of a 0 along it), which line removal cannot give back."""
    free = cleaned.rulings.ink & (owner < 0)
    h, w = free.shape
    reach = max(EDGE_REACH_PX, max((r.hi - r.lo + 1 for r in cleaned.rulings.lines), default=0) + EDGE_REACH_PX)
    counts = np.array(
        [
            int(free[max(0, y0 - reach) : min(h, y1 + reach), max(0, x0 - reach) : min(w, x1 + reach)].sum())
            for x0, y0, x1, y1 in boxes
        ]
    )
    return [int(v) for v in np.maximum(0, counts - np.median(counts))]


def split_comb(gray: np.ndarray, cleaned: Cleaned | None = None) -> Comb | None:
    """Find the boxes of a comb field in a grey image (dark ink on light paper) and what is written
    in each; None when the image holds no row of boxes."""
    cleaned = cleaned if cleaned is not None else remove_rulings(gray)
    boxes = find_boxes(cleaned.rulings)
    if not boxes:
        return None
    owner = owners(cleaned.hand, boxes, max(SPECK_PX, SPECK_STROKES * cleaned.stroke_width**2))
    _spills(owner, boxes)
    edges = edge_ink(cleaned, boxes, owner)
    out = []
    for i, box in enumerate(boxes):
        mine = owner == i
        if not mine.any():
            out.append(
                CombBox(index=i, interior=box, empty=True, ink_box=None, crop=None, ink_pixels=0, edge_ink=edges[i])
            )
            continue
        ys, xs = np.nonzero(mine.any(axis=1))[0], np.nonzero(mine.any(axis=0))[0]
        ink_box = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
        out.append(
            CombBox(
                index=i,
                interior=box,
                empty=False,
                ink_box=ink_box,
                crop=_crop(cleaned, mine, ink_box),
                ink_pixels=int(mine.sum()),
                edge_ink=edges[i],
            )
        )
    return Comb(boxes=tuple(out), cleaned=cleaned)


def _crop(cleaned: Cleaned, mine: np.ndarray, ink_box: Box) -> np.ndarray:
    """The digit alone on paper: its ink (with a pixel of its blurred edge) from the cleaned image,
    everything else in the crop painted with the paper's brightness; a margin of CROP_MARGIN of
    the digit's size, so that a reader sees the digit with paper around it as in a photo."""
    wide, tall = ink_box[2] - ink_box[0], ink_box[3] - ink_box[1]
    margin = max(2, int(CROP_MARGIN * max(wide, tall)))
    # A mark of a few pixels is still a box's ink (the models call it no digit), not a bad image:
    # its crop gets paper enough to be the smallest image a reader takes.
    mx, my = max(margin, -(-(MIN_SIDE - wide) // 2)), max(margin, -(-(MIN_SIDE - tall) // 2))
    h, w = mine.shape
    x0, y0 = max(0, ink_box[0] - mx), max(0, ink_box[1] - my)
    x1, y1 = min(w, ink_box[2] + mx), min(h, ink_box[3] + my)
    near = ndimage.binary_dilation(mine[y0:y1, x0:x1], EIGHT)
    paper = np.clip(cleaned.rulings.paper[y0:y1, x0:x1] * 255 + 0.5, 0, 255).astype(np.uint8)
    crop = np.where(near, cleaned.image[y0:y1, x0:x1], paper)
    pad = (
        (y0 - (ink_box[1] - my), ink_box[3] + my - y1),
        (x0 - (ink_box[0] - mx), ink_box[2] + mx - x1),
    )
    return np.pad(crop, pad, mode="edge") if any(p for side in pad for p in side) else crop
