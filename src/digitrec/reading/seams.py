"""Candidate cuts through a wide piece of ink that may hold touching digits: seam carving.

A seam is the top-to-bottom path through the piece that crosses the least ink, within a band of
columns, so a cut can lean with slanted writing. The cheapest seams, away from the piece's sides
and from each other, are the candidate cuts; segmentation decides which of them to use.
"""

from __future__ import annotations

import numpy as np

CUT_MARGIN = 0.2  # no cut closer than this (fraction of line height) to a piece's side
CUT_SPACING = 0.1  # candidate cuts at least this far apart (fraction of line height)
CUT_EVERY = 0.15  # at most one candidate cut per this much width (fraction of line height)
INK_COST = 50.0  # a seam crossing one ink pixel costs as much as this many paper pixels
SEAM_DRIFT = 0.2  # a seam stays within this many line heights of its centre column
DIAGONAL = 0.4  # extra cost of a diagonal seam step: seams run straight unless ink is in the way
SEAM_STEP = 1  # columns a seam may move per row
SEAM_CELLS = 4_000_000  # rows x bands x band width carved at once (~40 MB of work arrays)
MIN_PART = 0.08  # each side of a cut keeps at least this fraction of the piece's ink


def band_energy(mask: np.ndarray, centres: np.ndarray, drift: int, rows: int) -> np.ndarray:
    """(rows, K, 2 drift + 1) the cost of each pixel of the bands round `centres` in a piece's mask:
    INK_COST on ink, 1 on paper, infinite outside the piece; rows below the piece's own cost
    nothing (a seam carved through them keeps its cost, its column and its path)."""
    h, w = mask.shape
    cols = centres[:, None] - drift + np.arange(2 * drift + 1)[None, :]  # (K, width), may leave the piece
    inside = (cols >= 0) & (cols < w)
    energy = np.zeros((rows, len(centres), cols.shape[1]))
    energy[:h] = np.where(mask[:, np.clip(cols, 0, w - 1)], INK_COST, 1.0)
    energy[:, ~inside] = np.inf
    return energy


def carve(energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest top-to-bottom path through each band of `energy` (H, K, width): it moves at most
    SEAM_STEP columns per row, paying each pixel's energy and DIAGONAL more per column moved
    sideways. All bands are carved together, one row at a time (the row loop is the cost, not the
    bands). Returns (costs (K,), columns within the band (K, H))."""
    h, k, width = energy.shape
    total = energy[0].copy()
    back = np.zeros(energy.shape, np.int8)
    padded = np.full((k, width + 2 * SEAM_STEP), np.inf)
    rows = np.arange(k)[:, None]
    best = np.empty((k, width))
    option = np.empty((k, width))
    better = np.empty((k, width), bool)
    for y in range(1, h):
        padded[:, SEAM_STEP : SEAM_STEP + width] = total
        # the cheapest of the steps d = -SEAM_STEP..SEAM_STEP, ties to the leftmost (a running
        # strict minimum: what argmin over the stacked options picks, with a few array passes)
        np.add(padded[:, :width], DIAGONAL * SEAM_STEP, out=best)
        choice = back[y]
        choice.fill(-SEAM_STEP)
        for d in range(1 - SEAM_STEP, SEAM_STEP + 1):
            np.add(padded[:, SEAM_STEP + d : SEAM_STEP + d + width], DIAGONAL * abs(d), out=option)
            np.less(option, best, out=better)
            np.minimum(option, best, out=best)
            choice[better] = d
        total = energy[y] + best
    xs = np.empty((k, h), np.int64)
    xs[:, -1] = total.argmin(axis=1)
    for y in range(h - 1, 0, -1):
        xs[:, y - 1] = xs[:, y] + back[y][rows[:, 0], xs[:, y]]
    return total.min(axis=1), xs


def seams_of(
    pieces: list[tuple[np.ndarray, np.ndarray]], drift: int, cells: int = SEAM_CELLS
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`seams` of several pieces (mask, centres) at once: their bands are carved in one row loop
    (a shorter piece's bands run on through rows that cost nothing, which changes neither their
    cost nor their path), at most `cells` (rows x bands x band width) at a time."""
    width = 2 * drift + 1
    out: list[tuple[np.ndarray, np.ndarray]] = []
    i = 0
    while i < len(pieces):
        mask, centres = pieces[i]
        if mask.shape[0] * len(centres) * width > cells:  # a huge piece alone: its bands in batches
            batch = max(1, cells // (mask.shape[0] * width))
            parts = [seams_of([(mask, centres[j : j + batch])], drift, cells)[0] for j in range(0, len(centres), batch)]
            out.append((np.concatenate([c for c, _ in parts]), np.concatenate([x for _, x in parts])))
            i += 1
            continue
        group, rows, bands = [], 0, 0  # the following pieces, as many as fit in `cells`
        while i < len(pieces) and max(rows, pieces[i][0].shape[0]) * (bands + len(pieces[i][1])) * width <= cells:
            group.append(pieces[i])
            rows, bands = max(rows, pieces[i][0].shape[0]), bands + len(pieces[i][1])
            i += 1
        energy = np.concatenate([band_energy(m, c, drift, rows) for m, c in group], axis=1)
        costs, xs = carve(energy)
        start = 0
        for m, c in group:
            stop = start + len(c)
            out.append((costs[start:stop], xs[start:stop, : m.shape[0]] + (c[:, None] - drift)))
            start = stop
    return out


def seams(mask: np.ndarray, centres: np.ndarray, drift: int, cells: int = SEAM_CELLS) -> tuple[np.ndarray, np.ndarray]:
    """For each centre, the minimal-ink top-to-bottom path through a piece that stays within
    `drift` columns of it (seam carving in a band, `carve`): it moves at most SEAM_STEP columns per
    row, each ink pixel crossed costs INK_COST, each step 1, a sideways step DIAGONAL more per
    column. At most `cells` (rows x bands x band width) are carved at once. Returns (costs (K,),
    columns (K, H))."""
    return seams_of([(mask, centres)], drift, cells)[0]


def cut_options(mask: np.ndarray, height: float) -> tuple[np.ndarray, int]:
    """(centres of the bands a wide piece's seams are carved in, their drift): bands every few
    pixels, away from the piece's sides (none when it is too narrow)."""
    w = mask.shape[1]
    margin = max(1, int(CUT_MARGIN * height))
    drift = max(1, int(SEAM_DRIFT * height))
    step = max(1, int(0.04 * height))
    centres = np.arange(margin, w - margin, step) if w > 2 * margin else np.zeros(0, np.int64)
    return centres, drift


def choose_cuts(
    mask: np.ndarray, height: float, centres: np.ndarray, costs: np.ndarray, paths: np.ndarray
) -> list[tuple[np.ndarray, float]]:
    """The candidate cuts among a piece's seams: the cheapest (least ink crossed), away from the
    sides and from each other. Returns (columns (H,) relative to the mask, ink pixels crossed)
    per seam, left to right."""
    h, w = mask.shape
    total_ink = mask.sum()
    options = []
    # ink left of each seam: per row, the ink before its column (a running count along the row)
    before = np.zeros((h, w + 1), np.int64)
    np.cumsum(mask, axis=1, out=before[:, 1:])
    lefts = before[np.arange(h), np.clip(paths, 0, w)].sum(axis=1)  # (K,)
    for centre, cost, xs, left_ink in zip(centres, costs, paths, lefts):
        if min(left_ink, total_ink - left_ink) >= MIN_PART * total_ink:  # not a sliver off a side
            options.append((cost, abs(centre - w / 2), xs))
    cuts: list[tuple[np.ndarray, float]] = []
    for _, _, xs in sorted(options, key=lambda o: o[:2]):
        if all(abs(xs.mean() - c.mean()) >= CUT_SPACING * height for c, _ in cuts):
            cuts.append((xs, float(mask[np.arange(h), xs].sum())))
        if len(cuts) >= max(1, int(w / (CUT_EVERY * height)) - 1):
            break
    return sorted(cuts, key=lambda c: c[0].mean())


def cuts_of_pieces(masks: list[np.ndarray], height: float) -> list[list[tuple[np.ndarray, float]]]:
    """`candidate_cuts` of several pieces of a line, their seams carved together."""
    options = [cut_options(mask, height) for mask in masks]
    wide = [k for k, (centres, _) in enumerate(options) if len(centres)]
    carved = seams_of([(masks[k], options[k][0]) for k in wide], max(1, int(SEAM_DRIFT * height)))
    cuts: list[list[tuple[np.ndarray, float]]] = [[] for _ in masks]
    for k, (costs, paths) in zip(wide, carved):
        cuts[k] = choose_cuts(masks[k], height, options[k][0], costs, paths)
    return cuts


def candidate_cuts(mask: np.ndarray, height: float) -> list[tuple[np.ndarray, float]]:
    """Seams along which a wide piece may hold two touching digits: the cheapest seams (least
    ink crossed) in bands across the piece, away from the sides and from each other. Returns
    (columns (H,) relative to the mask, ink pixels crossed) per seam, left to right."""
    return cuts_of_pieces([mask], height)[0]
