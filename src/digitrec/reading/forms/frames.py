"""The sides of printed boxes: thin columns of ink spanning the height between two rulings.

A handwritten "1" or the stem of a 9 can be as straight and span its box; the printed sides of a
row of boxes, unlike it, sit on a regular lattice, and are as thin as the rulings they join.
"""

from __future__ import annotations

import numpy as np

from digitrec.reading.forms.lines import FRINGE, MAX_THICKNESS, MIN_LINE_PX, Ruling, runs_along, spans

MIN_BOX_PX = 16  # two horizontal lines closer than this frame no box
FRAME_FILL = 0.95  # a side covers this fraction of the height between its two rulings ...
FRAME_GAP_PX = 2  # ... with gaps no wider than this
LATTICE = 0.06  # the sides of a row of boxes lie within this share of their spacing of a regular lattice
SEPARATE_GAP = 0.55  # separate boxes are at most this share of a box apart


def frame_pairs(horizontals: list[Ruling]) -> list[tuple[Ruling, Ruling]]:
    """Each horizontal line with the nearest line below it sharing enough of its extent (with
    every piece of that line: a top edge bridged across separate boxes has one bottom each)."""
    pairs = []
    for top in horizontals:
        below = [
            b
            for b in horizontals
            if _shared(top, b) >= MIN_LINE_PX and b.at(_middle(top, b)) - top.at(_middle(top, b)) >= MIN_BOX_PX
        ]
        if below:
            nearest = min(b.position for b in below)
            pairs += [(top, b) for b in below if b.position - nearest <= 1]
    return pairs


def _shared(a: Ruling, b: Ruling) -> int:
    return min(a.end, b.end) - max(a.start, b.start)


def _middle(a: Ruling, b: Ruling) -> float:
    return (max(a.start, b.start) + min(a.end, b.end)) / 2


def framed_lines(sheared: np.ndarray, off: int, slope: float, horizontals: list[Ruling]) -> list[Ruling]:
    """Vertical lines of box frames, in the vertical shear of the transposed mask (rows are x):
    thin columns of ink spanning the height between a horizontal line and the next one below.
    Only pixel-sized gaps are bridged: a wider bridge would join a digit's strokes into a column.
    The sides of one row of boxes (separate boxes: several pairs of lines) must be `regular`."""
    bridged = runs_along(sheared, gap=FRAME_GAP_PX, length=1)
    bridged[:-1] |= bridged[1:]  # a thin side stepping from one column to the next (left by rounding) counts whole
    total = np.concatenate([np.zeros((bridged.shape[0], 1), np.int64), np.cumsum(bridged, axis=1)], axis=1)
    rows: dict[tuple[int, int], list[Ruling]] = {}
    for top, bottom in frame_pairs(horizontals):
        row = rows.setdefault((round(top.position), round(bottom.position)), [])
        row += _sides(sheared, total, off, slope, top, bottom, [side for r in rows.values() for side in r])
    return join_columns([side for row in rows.values() for side in regular(row)], sheared, off)


def join_columns(sides: list[Ruling], sheared: np.ndarray, off: int) -> list[Ruling]:
    """Sides in one column across several pairs of rulings are one line (a page's margin, a
    table's column): joined, and followed to the ends of its ink beyond the first and last ruling
    (where no ruling frames it, it would be left as a stroke)."""
    out, done = [], [False] * len(sides)
    for i, side in enumerate(sides):
        if done[i]:
            continue
        group = [j for j in range(i, len(sides)) if not done[j] and sides[j].lo <= side.hi and side.lo <= sides[j].hi]
        for j in group:
            done[j] = True
        if len(group) == 1:
            out.append(side)
            continue
        parts = [sides[j] for j in group]
        lo, hi = min(p.lo for p in parts), max(p.hi for p in parts)
        start, end = min(p.start for p in parts), max(p.end for p in parts)
        column = np.asarray(runs_along(sheared[lo + off : hi + off + 1], length=1).any(axis=0))
        for a, b in spans(column):
            if a <= start < b or a < end <= b:
                start, end = min(start, a), max(end, b)
        out.append(
            Ruling(
                orientation="vertical",
                position=float(np.mean([p.position for p in parts])),
                slope=side.slope,
                thickness=max(p.thickness for p in parts),
                lo=lo,
                hi=hi,
                core=min(p.core for p in parts),
                start=start,
                end=end,
                coverage=float(column[start:end].mean()),
                framed=True,
            )
        )
    return out


def _sides(
    sheared: np.ndarray, total: np.ndarray, off: int, slope: float, top: Ruling, bottom: Ruling, known: list[Ruling]
) -> list[Ruling]:
    """The sides between two horizontal lines (`total`: cumulative ink down each sheared column)."""
    t = -slope  # the horizontal lines' slope
    rows = np.arange(sheared.shape[0])
    x0, x1 = max(top.start, bottom.start), min(top.end, bottom.end)
    x = rows - off - t * (top.at((x0 + x1) / 2) + bottom.at((x0 + x1) / 2)) / 2
    ya = np.ceil(top.at(x) + top.thickness / 2 + 1.5).astype(np.int64).clip(0, sheared.shape[1])
    yb = np.floor(bottom.at(x) - bottom.thickness / 2 - 1.5).astype(np.int64).clip(0, sheared.shape[1])
    reach = 3 + max(top.hi - top.lo, bottom.hi - bottom.lo)  # a side at a line's very end
    inside = (x >= x0 - reach) & (x < x1 + reach) & (yb - ya >= MIN_BOX_PX // 2)
    filled = total[rows, yb] - total[rows, ya]
    cap = min(MAX_THICKNESS, max(top.hi - top.lo, bottom.hi - bottom.lo) + 2)  # one pen prints the frame
    sides: list[Ruling] = []
    for a, b in spans(inside & (filled >= FRAME_FILL * (yb - ya))):
        if b - a > 2 * cap + 2:  # (up to two sides side by side: separate boxes)
            continue
        edge = FRINGE * float(np.mean(yb[a:b] - ya[a:b]))
        lo = a - 1 if a > 0 and inside[a - 1] and filled[a - 1] >= edge else a
        hi = b if b < len(rows) and inside[b] and filled[b] >= edge else b - 1
        xc = float(x[(a + b - 1) // 2])
        start = int(np.floor(top.at(xc) - top.thickness / 2 - 1))
        end = int(np.ceil(bottom.at(xc) + bottom.thickness / 2 + 2))
        middle = sheared[a:b, int(ya[a]) : int(yb[a])]
        side = Ruling(
            orientation="vertical",
            position=(a + b - 1) / 2 - off,
            slope=slope,
            thickness=b - a,
            lo=lo - off,
            hi=hi - off,
            core=a - off,
            start=max(0, start),
            end=min(sheared.shape[1], end),
            coverage=float(middle.any(axis=0).mean()) if middle.size else 0.0,
            framed=True,
        )
        if not any(_overlap(side, other) for other in known + sides):
            sides.append(side)
    return sides


def regular(sides: list[Ruling]) -> list[Ruling]:
    """Drop the sides that break the row's regular spacing: a digit's straight stem (a 1, the
    stem of a 9) spanning its box, not a printed side.

    The printed sides of a row of boxes sit on a lattice x = phase + k * period: one phase when
    neighbouring boxes share a side, two for separate boxes (as many left as right sides, the
    gap between boxes narrower than a box). The lattice holding the most sides wins (a second
    phase, and a lattice point with no side, cost half a side each); sides thicker than most (a pen's stem) do not choose it. A side
    off the lattice, inside one of its boxes, goes."""
    sides = sorted(sides, key=lambda r: r.position)
    if len(sides) < 4:
        return sides
    x = np.array([r.position for r in sides])
    thickness = np.array([r.thickness for r in sides])
    trusted = thickness <= np.median(thickness) + 1
    if trusted.sum() < 3:
        trusted[:] = True
    members = _lattice(x, trusted)
    if members is None:
        return sides
    inside = (x > x[members].min()) & (x < x[members].max())
    return [side for side, keep in zip(sides, members | ~inside) if keep]


def _lattice(x: np.ndarray, trusted: np.ndarray) -> np.ndarray | None:
    """The sides (positions x, sorted) on the best lattice found from the trusted ones; None when
    no lattice holds three of them."""
    steps = np.diff(x)
    best, members = 2.5, None
    for period in np.unique(np.concatenate([steps, steps[:-1] + steps[1:]])):
        if period < MIN_BOX_PX:
            continue
        phase = np.mod(x, period)
        gap = np.abs(phase[:, None] - phase[None, :])
        near = np.minimum(gap, period - gap) <= max(2.0, LATTICE * period)  # near[i, j]: same phase
        for i in np.nonzero(trusted)[0]:
            a = near[i]
            score = float((a & trusted).sum()) - 0.5 * _missing(x[a], period)
            if score > best:
                best, members = score, a
            for j in np.nonzero(~a & trusted)[0]:
                b = near[j] & ~a
                score = float(((a | b) & trusted).sum()) - 0.5 * (1 + _missing(x[a], period) + _missing(x[b], period))
                if score > best and _separate_boxes(x, a, b):
                    best, members = score, a | b
    return members


def _missing(x: np.ndarray, period: float) -> int:
    """Lattice points between the first and last side with no side on them."""
    return int(round((x.max() - x.min()) / period)) + 1 - len(x)


def _separate_boxes(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Do two phases of sides make a row of separate boxes: as many of each, alternating, the
    gaps between boxes narrower than the boxes?"""
    if min(a.sum(), b.sum()) < 2 or abs(int(a.sum()) - int(b.sum())) > 1:
        return False
    order = a[a | b].astype(np.int8)
    if np.any(order[1:] == order[:-1]):
        return False
    steps = np.diff(x[a | b])
    first, second = steps[0::2].mean(), steps[1::2].mean() if len(steps) > 1 else 0.0
    return min(first, second) <= SEPARATE_GAP * max(first, second)


def _overlap(a: Ruling, b: Ruling) -> bool:
    return a.lo <= b.hi and b.lo <= a.hi and a.start < b.end and b.start < a.end
